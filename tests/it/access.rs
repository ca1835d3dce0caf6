//! The role rules hold on the handle itself (the embedder's path, no API in between): staff is
//! refused every guarded read and command with `Error::Forbidden`, a manager gets through, and
//! what is the owners' alone refuses a manager. The API answers the same refusal (403).

use serde_json::{Value, json};
use tillmesh::domain::audit::AuditFilter;
use tillmesh::domain::model::*;
use tillmesh::domain::reports::{DayRange, MAX_TOP_DAYS, Period};
use tillmesh::{Error, Node, NodeHandle};

use crate::common::*;

const MANAGER_PW: &str = "manager password";

/// A shop on `node` with an owner, a manager (Max) and a staff member (Sam) logged in, a
/// product and a sale.
struct People {
    owner: Principal,
    manager: Principal,
    staff: Principal,
    product: uuid::Uuid,
    sale: uuid::Uuid,
}

async fn people(h: &NodeHandle) -> People {
    h.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = h.login_password("olivia", OWNER_PW).await.unwrap();
    for (name, username, role, password, pin) in [
        ("Max Manager", "max", Role::Manager, Some(MANAGER_PW), None),
        ("Sam Staff", "sam", Role::Staff, None, Some("1234")),
    ] {
        h.add_person(
            &owner,
            NewPerson {
                name: name.into(),
                username: username.into(),
                role,
                password: password.map(String::from),
                pin: pin.map(String::from),
            },
        )
        .await
        .unwrap();
    }
    let manager = h.login_password("max", MANAGER_PW).await.unwrap();
    let staff = h.login_pin("sam", "1234").await.unwrap();
    let p = h
        .create_product(&owner, product("AC-1", 500, 2000))
        .await
        .unwrap();
    h.stock_in(&owner, stock_in(p.id, 10, 200)).await.unwrap();
    let sale = h.record_sale(&staff, sale_of(p.id, 1)).await.unwrap();
    People {
        owner,
        manager,
        staff,
        product: p.id,
        sale: sale.id,
    }
}

/// Fails unless `r` is `Error::Forbidden`.
#[track_caller]
fn forbidden<T: std::fmt::Debug>(what: &str, r: tillmesh::Result<T>) {
    match r {
        Err(Error::Forbidden(_)) => {}
        other => panic!("{what}: expected Forbidden, got {other:?}"),
    }
}

/// Fails if `r` is `Error::Forbidden` (anything else — a value, or a refusal for another
/// reason, such as an unknown id — means the role rule let the person through).
#[track_caller]
fn let_through<T: std::fmt::Debug>(what: &str, r: tillmesh::Result<T>) {
    if let Err(Error::Forbidden(m)) = r {
        panic!("{what}: refused: {m}");
    }
}

/// Every guarded read of the handle, as `by`, with the name of what it reads.
fn guarded_reads(
    h: &NodeHandle,
    by: &Principal,
    sale: uuid::Uuid,
) -> Vec<(&'static str, tillmesh::Result<()>)> {
    let today = h.shop_today();
    let range = DayRange::last_days(today, 7, MAX_TOP_DAYS).unwrap();
    let day = today.format("%Y-%m-%d").to_string();
    let audit = AuditFilter {
        from: 0,
        to: i64::MAX,
        limit: 10,
        ..Default::default()
    };
    vec![
        ("daily_sales", h.daily_sales(by, &day, &day).map(drop)),
        (
            "sales_report",
            h.sales_report(by, range, Period::Day).map(drop),
        ),
        ("top_sellers", h.top_sellers(by, range, 10).map(drop)),
        ("staff_report", h.staff_report(by, range).map(drop)),
        ("tax_report", h.tax_report(by, range).map(drop)),
        ("payments_report", h.payments_report(by, range).map(drop)),
        ("inventory_value", h.inventory_value(by).map(drop)),
        ("movement_trend", h.movement_trend(by, range).map(drop)),
        ("shifts", h.shifts(by, 0, i64::MAX).map(drop)),
        ("refunds", h.refunds(by, 0, i64::MAX).map(drop)),
        ("profit_days", h.profit_days(by, &day, &day).map(drop)),
        (
            "profit_by_product",
            h.profit_by_product(by, &day, &day).map(drop),
        ),
        ("sale_profit", h.sale_profit(by, sale).map(drop)),
        ("periods", h.periods(by).map(drop)),
        ("exports", h.exports(by).map(drop)),
        ("documents", h.documents(by).map(drop)),
        (
            "document_bytes catalog",
            h.document_bytes(by, "catalog").map(drop),
        ),
        ("audit", h.audit(by, &audit).map(drop)),
        ("audit_export", h.audit_export(by, &mut Vec::new())),
        (
            "write_backup",
            h.write_backup(by, Vec::new(), |_| {}).map(drop),
        ),
        ("people", h.people(by).map(drop)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_is_refused_every_guarded_read_on_the_handle_and_a_manager_is_not() {
    let node = Node::builder().memory().start().await.unwrap();
    let h = node.handle();
    let p = people(&h).await;

    let refused = guarded_reads(&h, &p.staff, p.sale);
    assert!(refused.len() >= 21, "every guarded read is tried");
    for (what, r) in refused {
        forbidden(what, r);
    }
    for (what, r) in guarded_reads(&h, &p.manager, p.sale) {
        r.unwrap_or_else(|e| panic!("{what} as a manager: {e}"));
    }

    // The export's own reads ask again as the person it was granted to.
    let ex = h.exports(&p.manager).unwrap();
    let day = h.shop_today().format("%Y-%m-%d").to_string();
    assert_eq!(ex.profit_days(&day, &day).unwrap().len(), 1);
    assert!(ex.shifts(0, i64::MAX).unwrap().is_empty());

    // What is the owners' alone: the members document (the staff's PIN hashes) and the sales
    // of revoked tills; the vault is served to no one, as if it were not there.
    forbidden(
        "members as a manager",
        h.document_bytes(&p.manager, "members"),
    );
    h.document_bytes(&p.owner, "members").unwrap();
    forbidden("revoked_sales as a manager", h.revoked_sales(&p.manager));
    h.revoked_sales(&p.owner).unwrap();
    assert!(matches!(
        h.document_bytes(&p.owner, "vault"),
        Err(Error::NotFound(_))
    ));
    let listed: Vec<String> = h
        .documents(&p.manager)
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert!(listed.iter().any(|id| id == "catalog"), "{listed:?}");
    assert!(
        !listed.iter().any(|id| id == "members" || id == "vault"),
        "{listed:?}"
    );
    let owners: Vec<String> = h
        .documents(&p.owner)
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert!(owners.iter().any(|id| id == "members"), "{owners:?}");
    assert!(!owners.iter().any(|id| id == "vault"), "{owners:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_is_refused_every_guarded_command_on_the_handle_and_a_manager_is_not() {
    let node = Node::builder().memory().start().await.unwrap();
    let h = node.handle();
    let p = people(&h).await;
    let csv = "sku,name,price\nAC-2,Second,3.50\n".to_string();

    forbidden(
        "dismiss_alert",
        h.dismiss_alert(&p.staff, "no-such-alert").await,
    );
    let_through(
        "dismiss_alert as a manager (an unknown id)",
        h.dismiss_alert(&p.manager, "no-such-alert").await,
    );
    forbidden(
        "import_products",
        h.import_products(&p.staff, csv.clone(), true).await,
    );
    h.import_products(&p.manager, csv, true).await.unwrap();
    // This node does not sync (no listen address): a manager gets past the rule to that.
    forbidden(
        "add_peer",
        h.add_peer(&p.staff, "/ip4/127.0.0.1/tcp/9").await,
    );
    let_through(
        "add_peer as a manager",
        h.add_peer(&p.manager, "/ip4/127.0.0.1/tcp/9").await,
    );
    forbidden(
        "create_product",
        h.create_product(&p.staff, product("AC-3", 100, 0)).await,
    );
    h.create_product(&p.manager, product("AC-3", 100, 0))
        .await
        .unwrap();
    let count = StockAdjust {
        product_id: p.product,
        variant_id: None,
        counted: 5,
        note: None,
    };
    forbidden(
        "stock_adjust",
        h.stock_adjust(&p.staff, count.clone()).await,
    );
    h.stock_adjust(&p.manager, count).await.unwrap();
    let patch = SettingsPatch {
        receipt_text: Some("Thanks".into()),
        ..Default::default()
    };
    // Staff void their own sale made here within 30 minutes, nothing else.
    let old = h
        .record_sale_at(
            &p.staff,
            sale_of(p.product, 1),
            chrono::Utc::now().timestamp_millis() - 31 * 60 * 1000,
        )
        .await
        .unwrap();
    let owners = h
        .record_sale(&p.owner, sale_of(p.product, 1))
        .await
        .unwrap();
    forbidden(
        "void of a sale older than 30 minutes",
        h.void_sale(&p.staff, old.id, VoidSale::default()).await,
    );
    forbidden(
        "void of another person's sale",
        h.void_sale(&p.staff, owners.id, VoidSale::default()).await,
    );
    h.void_sale(&p.staff, p.sale, VoidSale::default())
        .await
        .unwrap();
    h.void_sale(&p.manager, old.id, VoidSale::default())
        .await
        .unwrap();
    forbidden(
        "update_settings as a manager",
        h.update_settings(&p.manager, patch.clone()).await,
    );
    h.update_settings(&p.owner, patch).await.unwrap();
    node.shutdown().await;
}

/// An API client with a session.
async fn token(base: &str, body: Value) -> String {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/login"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_the_handles_refusal_unchanged() {
    let node = Node::builder()
        .memory()
        .http("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let h = node.handle();
    people(&h).await;
    let base = format!("http://{}", node.http_addr().unwrap());
    let staff = token(&base, json!({"username": "sam", "pin": "1234"})).await;
    let manager = token(&base, json!({"username": "max", "password": MANAGER_PW})).await;
    let http = reqwest::Client::new();
    for path in [
        "/api/v1/reports/sales",
        "/api/v1/reports/daily",
        "/api/v1/export/products.csv",
        "/api/v1/periods",
        "/api/v1/documents",
        "/api/v1/backup",
        // Streamed: refused before the first byte, not a 200 cut short.
        "/api/v1/audit/export",
    ] {
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(&staff)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden", "{path}: {body}");
        assert_eq!(
            body["error"]["message"], "only managers and owners may do this",
            "{path}: {body}"
        );
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(&manager)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} as a manager");
    }
    node.shutdown().await;
}
