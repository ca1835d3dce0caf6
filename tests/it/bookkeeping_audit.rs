//! Alerts, the audit trail and products CSV, end to end: real in-process nodes serving HTTP on
//! 127.0.0.1, two tills synced over loopback (static peers, no mDNS) and cut from each other,
//! and the built `tillmesh` binary verifying audit exports offline.

use crate::common;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tillmesh::domain::alerts::Alert;
use tillmesh::domain::model::*;
use tillmesh::{Node, NodeHandle};

const T: Duration = Duration::from_secs(30);

/// A node serving HTTP on loopback (and the mesh, when `mesh`), with a new shop.
async fn node_with_shop(mesh: bool) -> (Node, NodeHandle, Principal, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut b = Node::builder().memory().http_listener(l);
    if mesh {
        b = b.listen("/ip4/127.0.0.1/tcp/0");
    }
    let node = b.start().await.unwrap();
    let h = node.handle();
    h.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = h.login_password("olivia", OWNER_PW).await.unwrap();
    let url = format!("http://{}", node.http_addr().unwrap());
    (node, h, owner, url)
}

/// An API client logged in as `username`.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn login(base: &str, username: &str, secret: Value) -> Api {
        let http = reqwest::Client::new();
        let mut body = json!({ "username": username });
        body.as_object_mut()
            .unwrap()
            .extend(secret.as_object().unwrap().clone());
        let r = http
            .post(format!("{base}/api/v1/login"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "login {username}");
        let v: Value = r.json().await.unwrap();
        Api {
            http,
            base: base.to_string(),
            token: v["token"].as_str().unwrap().to_string(),
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn post(&self, path: &str, content_type: &str, body: String) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// Products compared without their ids (which differ between shops).
fn comparable(mut ps: Vec<Product>) -> Vec<Value> {
    ps.sort_by(|a, b| a.sku.cmp(&b.sku));
    ps.into_iter()
        .map(|p| {
            let mut v = serde_json::to_value(p).unwrap();
            v.as_object_mut().unwrap().remove("id");
            v
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_csv_round_trips_and_bad_rows_import_nothing() {
    let (a, ah, owner, url_a) = node_with_shop(false).await;
    // Awkward values: commas, quotes, a formula-like name, no barcode, 5.5 % tax, archived.
    let mut p1 = product("RT-1", 250, 2000);
    p1.name = "Milk, \"organic\" 1 l".into();
    p1.category = Some("Dairy".into());
    p1.unit = Some("l".into());
    let mut p2 = product("RT-2", 1999, 550);
    p2.name = "-5 % promo pack".into();
    p2.barcode = None;
    p2.reorder_level = None;
    ah.create_product(&owner, p1).await.unwrap();
    let p2 = ah.create_product(&owner, p2).await.unwrap();
    ah.update_product(
        &owner,
        p2.id,
        ProductPatch {
            archived: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let api_a = Api::login(&url_a, "olivia", json!({ "password": OWNER_PW })).await;
    let (status, exported) = api_a.get("/api/v1/export/products.csv").await;
    assert_eq!(status, 200);
    assert!(
        exported.starts_with(
            "sku,name,price,barcode,category,unit,cost,tax_rate,reorder_level,archived,currency\r\n"
        ),
        "{exported}"
    );
    assert!(
        exported.contains("RT-1,\"Milk, \"\"organic\"\" 1 l\",2.50,"),
        "{exported}"
    );
    assert!(exported.contains(",5.5,,true,EUR"), "{exported}");

    // Re-importing the export into the same shop changes nothing.
    let (status, report) = api_a
        .post("/api/v1/products/import", "text/csv", exported.clone())
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["unchanged"], 2, "{report}");
    assert_eq!(report["created"], 0);

    // Into another shop: a dry run writes nothing; the import gives identical products.
    let (b, bh, _, url_b) = node_with_shop(false).await;
    let api_b = Api::login(&url_b, "olivia", json!({ "password": OWNER_PW })).await;
    let (status, report) = api_b
        .post(
            "/api/v1/products/import?dry_run=true",
            "text/csv",
            exported.clone(),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["imported"], false);
    assert_eq!(report["created"], 2, "{report}");
    assert!(
        bh.products().unwrap().is_empty(),
        "a dry run writes nothing"
    );
    let (status, report) = api_b
        .post("/api/v1/products/import", "text/csv", exported.clone())
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["imported"], true);
    assert_eq!(
        comparable(bh.products().unwrap()),
        comparable(ah.products().unwrap()),
        "export → import gives identical products"
    );
    let (_, exported_b) = api_b.get("/api/v1/export/products.csv").await;
    assert_eq!(exported_b, exported, "and the same CSV");

    // An update by SKU and a new product in one file.
    let csv = "sku,name,price,tax_rate\nRT-1,Milk 1 l,2.75,20\nRT-3,Bread,1.10,5.5\n";
    let (status, report) = api_a
        .post("/api/v1/products/import", "text/csv", csv.into())
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["created"].as_i64(), report["updated"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        report["plan"][0]["fields"],
        json!(["name", "price"]),
        "{report}"
    );
    let rt1 = ah
        .products()
        .unwrap()
        .into_iter()
        .find(|p| p.sku == "RT-1")
        .unwrap();
    assert_eq!(
        (rt1.name.as_str(), rt1.price, rt1.category.as_deref()),
        ("Milk 1 l", 275, Some("Dairy")),
        "columns left out keep their values"
    );

    // Malformed rows: each reported with its row number and column; nothing imported.
    let before = ah.products().unwrap();
    let bad = "sku,name,price,cost,tax_rate,reorder_level\n\
               NEW-1,Fine product,1.00,0.50,20,3\n\
               NEW-2,Bad price,abc,,,\n\
               NEW-3,,1.00,,,\n\
               NEW-1,Same SKU again,1.00,,,\n\
               NEW-4,Too precise,1.005,,,\n\
               NEW-5,Tax,1.00,,150,\n\
               NEW-6,Short row\n\
               RT-3,Negative level,1.00,,,-1\n";
    for dry in [true, false] {
        let (status, body) = api_a
            .post(
                &format!("/api/v1/products/import?dry_run={dry}"),
                "text/csv",
                bad.into(),
            )
            .await;
        let report = if dry {
            assert_eq!(status, 200, "{body}");
            body.clone()
        } else {
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["error"]["code"], "invalid", "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("nothing was imported"),
                "{body}"
            );
            body["report"].clone()
        };
        let errors: Vec<(i64, String)> = report["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["row"].as_i64().unwrap(),
                    e["column"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(
            errors,
            vec![
                (3, "price".into()),
                (4, "name".into()),
                (5, "sku".into()),
                (6, "price".into()),
                (7, "tax_rate".into()),
                (8, "".into()),
                (9, "reorder_level".into()),
            ],
            "{report}"
        );
        assert_eq!(report["imported"], false);
    }
    assert_eq!(ah.products().unwrap(), before, "nothing half-imported");
    let (status, body) = api_a
        .post(
            "/api/v1/products/import",
            "text/csv",
            "name,price\nx,1\n".into(),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["report"]["errors"][0]["column"], "sku", "{body}");
    let (status, body) = api_a
        .post(
            "/api/v1/products/import",
            "text/csv",
            "sku,name,price,colour\n".into(),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["report"]["errors"][0]["row"], 1, "{body}");

    // 10,000 rows in one request, all-or-nothing, one commit.
    let mut big = String::from("sku,name,price,cost,tax_rate,reorder_level\n");
    for i in 0..10_000 {
        big.push_str(&format!(
            "BULK-{i:05},Bulk item {i},{}.{:02},0.40,20,2\n",
            i % 50,
            i % 100
        ));
    }
    let (status, report) = api_b.post("/api/v1/products/import", "text/csv", big).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["created"], 10_000);
    assert_eq!(bh.products().unwrap().len(), 10_002);

    // Sale lines CSV: one row per line, amounts in major units with the currency.
    let rt3 = ah
        .products()
        .unwrap()
        .into_iter()
        .find(|p| p.sku == "RT-3")
        .unwrap();
    ah.stock_in(&owner, stock_in(rt3.id, 10, 50)).await.unwrap();
    let mut sale = sale_of(rt3.id, 3);
    sale.lines.push(NewSaleLine {
        product_id: rt1.id,
        variant_id: None,
        qty: 1,
        discount: None,
    });
    let sale = ah.record_sale(&owner, sale).await.unwrap();
    let (status, lines) = api_a.get("/api/v1/export/sale-lines.csv?from=0").await;
    assert_eq!(status, 200);
    let rows: Vec<&str> = lines.trim_end().split("\r\n").collect();
    assert_eq!(rows.len(), 3, "{lines}");
    assert!(rows[0].starts_with("sale_id,receipt,time,day,"), "{lines}");
    assert!(rows[1].starts_with(&sale.id.to_string()), "{lines}");
    assert!(rows[1].contains(",RT-3,Bread,3,1.10,0.00,5.5,"), "{lines}");
    assert!(rows[1].contains(",3.30,EUR,0,false"), "{lines}");
    drop((ah, bh));
    a.shutdown().await;
    b.shutdown().await;
}

async fn wait_for_async<F, Fut>(mut cond: F, timeout: Duration) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond().await
}

async fn connected(h: &NodeHandle, other: &NodeHandle) -> bool {
    let peer = other.peer_id();
    h.peers()
        .await
        .iter()
        .any(|p| p.peer_id == peer && p.connected)
}

fn converged(a: &NodeHandle, b: &NodeHandle) -> bool {
    a.bucket_digests().unwrap() == b.bucket_digests().unwrap()
}

fn alerts_of(h: &NodeHandle) -> Vec<Alert> {
    h.alerts(true).unwrap()
}

fn by_kind<'a>(alerts: &'a [Alert], kind: &str) -> Vec<&'a Alert> {
    alerts.iter().filter(|a| a.kind == kind).collect()
}

/// Two tills cut off from each other both sell the last item, both create a product with the
/// same SKU and both set one price; once they merge, both list the same alerts (same ids),
/// the event stream announced them, and a dismissal on one is seen on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_identical_on_converged_tills_and_dismissals_sync() {
    let (a, ah, owner_a, url_a) = node_with_shop(true).await;
    assert!(wait_for(|| !ah.addrs().is_empty(), T).await);
    let addr_a = ah.addrs()[0].clone();
    let last = ah
        .create_product(&owner_a, product("LAST", 300, 2000))
        .await
        .unwrap();
    ah.stock_in(&owner_a, stock_in(last.id, 1, 100))
        .await
        .unwrap();
    let priced = ah
        .create_product(&owner_a, product("PRICE", 100, 2000))
        .await
        .unwrap();
    ah.stock_in(&owner_a, stock_in(priced.id, 50, 40))
        .await
        .unwrap();

    let dir = common::mesh::joined_dir(&ah, &owner_a, "Till 2").await;
    let b = Node::builder()
        .data_dir(dir.path())
        .listen("/ip4/127.0.0.1/tcp/0")
        .peer(addr_a)
        .start()
        .await
        .unwrap();
    let bh = b.handle();
    let owner_b = bh.login_password("olivia", OWNER_PW).await.unwrap();
    assert!(wait_for(|| converged(&ah, &bh), T).await, "B caught up");
    let joined = by_kind(&alerts_of(&ah), "device_joined")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(joined.len(), 1, "B's admission raised one alert on A");
    assert_eq!(joined[0].refs.devices, vec![bh.device_id().to_string()]);
    assert_eq!(alerts_of(&ah), alerts_of(&bh), "same alerts before the cut");

    let mut events_a = ah.subscribe();
    // Cut them off from each other.
    assert!(wait_for_async(|| connected(&ah, &bh), T).await);
    ah.block_peer(&bh.peer_id()).await.unwrap();
    bh.block_peer(&ah.peer_id()).await.unwrap();
    assert!(wait_for_async(|| async { !connected(&ah, &bh).await }, T).await);
    assert!(wait_for_async(|| async { !connected(&bh, &ah).await }, T).await);

    let sale_a = ah.record_sale(&owner_a, sale_of(last.id, 1)).await.unwrap();
    let sale_b = bh.record_sale(&owner_b, sale_of(last.id, 1)).await.unwrap();
    assert!(sale_b.warnings.is_empty(), "B saw one in stock");
    let dup_a = ah
        .create_product(&owner_a, product("DUP", 500, 2000))
        .await
        .unwrap();
    let dup_b = bh
        .create_product(&owner_b, product("DUP", 550, 2000))
        .await
        .unwrap();
    for (h, by, price) in [(&ah, &owner_a, 120), (&bh, &owner_b, 125)] {
        h.update_product(
            by,
            priced.id,
            ProductPatch {
                price: Some(price),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    assert!(
        by_kind(&alerts_of(&ah), "oversold").is_empty(),
        "A alone is fine"
    );

    // Heal: both converge to the same changes and the same alerts.
    ah.unblock_peer(&bh.peer_id()).await.unwrap();
    bh.unblock_peer(&ah.peer_id()).await.unwrap();
    assert!(
        wait_for(
            || converged(&ah, &bh) && ah.sale(sale_b.id).is_ok() && bh.sale(sale_a.id).is_ok(),
            T
        )
        .await,
        "merged"
    );
    let alerts = alerts_of(&ah);
    assert_eq!(alerts, alerts_of(&bh), "identical alerts on both tills");
    let oversold = by_kind(&alerts, "oversold");
    assert_eq!(oversold.len(), 1, "{alerts:#?}");
    let mut involved = oversold[0].refs.entries.clone();
    involved.sort();
    let mut both = vec![sale_a.id, sale_b.id];
    both.sort();
    assert_eq!(involved, both, "the oversold alert lists both sales");
    assert_eq!(oversold[0].refs.products, vec![last.id]);
    let dup = by_kind(&alerts, "duplicate_sku");
    assert_eq!(dup.len(), 1, "{alerts:#?}");
    let mut claimants = dup[0].refs.products.clone();
    claimants.sort();
    let mut expected = vec![dup_a.id, dup_b.id];
    expected.sort();
    assert_eq!(claimants, expected);
    let conflict = by_kind(&alerts, "price_conflict");
    assert_eq!(conflict.len(), 1, "{alerts:#?}");
    assert_eq!(conflict[0].refs.products, vec![priced.id]);
    assert!(conflict[0].detail.contains("1.20") && conflict[0].detail.contains("1.25"));

    // A's event stream announced the oversold alert when B's sale arrived (events are sent
    // just after the commit that readers already see: wait for it).
    let mut announced = Vec::new();
    let heard = tokio::time::timeout(T, async {
        loop {
            match events_a.recv().await {
                Ok(Event::Alert { id, .. }) => {
                    announced.push(id.clone());
                    if id == oversold[0].id {
                        return true;
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
            }
        }
    })
    .await;
    assert_eq!(heard, Ok(true), "{announced:?}");

    // Dismiss over HTTP on A (managers and owners only): gone on B too.
    let api_a = Api::login(&url_a, "olivia", json!({ "password": OWNER_PW })).await;
    let id = oversold[0].id.clone();
    let enc = id.replace(':', "%3A");
    let (status, body) = api_a
        .post(
            &format!("/api/v1/alerts/{enc}/dismiss"),
            "application/json",
            String::new(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dismissed"], true);
    let (status, _) = api_a
        .post(
            &format!("/api/v1/alerts/{enc}/dismiss"),
            "application/json",
            String::new(),
        )
        .await;
    assert_eq!(status, 409, "dismissing twice");
    let (status, _) = api_a
        .post(
            "/api/v1/alerts/nope/dismiss",
            "application/json",
            String::new(),
        )
        .await;
    assert_eq!(status, 404);
    let listed = api_a.get_json("/api/v1/alerts").await;
    assert!(
        !listed
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id.as_str()),
        "dismissed alerts are left out by default"
    );
    assert!(
        wait_for(
            || bh
                .alerts(true)
                .unwrap()
                .iter()
                .any(|a| a.id == id && a.dismissed),
            T
        )
        .await,
        "the dismissal synced to B"
    );
    assert!(wait_for(|| converged(&ah, &bh), T).await);
    assert_eq!(alerts_of(&ah), alerts_of(&bh));
    // Staff may not dismiss.
    ah.add_person(
        &owner_a,
        NewPerson {
            name: "Sam".into(),
            username: "sam".into(),
            role: Role::Staff,
            password: None,
            pin: Some("1234".into()),
        },
    )
    .await
    .unwrap();
    let staff = Api::login(&url_a, "sam", json!({ "pin": "1234" })).await;
    let other = &by_kind(&alerts, "duplicate_sku")[0].id;
    let (status, _) = staff
        .post(
            &format!("/api/v1/alerts/{}/dismiss", other.replace(':', "%3A")),
            "application/json",
            String::new(),
        )
        .await;
    assert_eq!(status, 403);

    // A restock starts a new episode: the product runs low again → a new, undismissed alert.
    ah.stock_in(&owner_a, stock_in(last.id, 4, 100))
        .await
        .unwrap();
    assert!(
        by_kind(&ah.alerts(false).unwrap(), "oversold").is_empty(),
        "back above zero"
    );
    ah.record_sale(&owner_a, sale_of(last.id, 2)).await.unwrap();
    let low = by_kind(&ah.alerts(false).unwrap(), "low_stock")
        .into_iter()
        .find(|a| a.refs.products == vec![last.id])
        .cloned()
        .expect("low again: 1 left, reorder level 2");
    assert!(!low.dismissed);
    assert!(wait_for(|| converged(&ah, &bh), T).await);
    assert_eq!(alerts_of(&ah), alerts_of(&bh));

    // A till whose clock runs 10 minutes ahead: A notices when its entry arrives (a local
    // observation, so only A lists it).
    let ahead = chrono::Utc::now().timestamp_millis() + 10 * 60 * 1000;
    let future = bh
        .record_sale_at(&owner_b, sale_of(priced.id, 1), ahead)
        .await
        .unwrap();
    assert!(wait_for(|| ah.sale(future.id).is_ok(), T).await);
    let skew = by_kind(&alerts_of(&ah), "clock_skew")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(skew.len(), 1, "{skew:#?}");
    assert_eq!(skew[0].refs.devices, vec![bh.device_id().to_string()]);
    assert_eq!(skew[0].refs.entries, vec![future.id]);
    assert!(by_kind(&alerts_of(&bh), "clock_skew").is_empty());

    // Revoking B raises `device_revoked`, once, naming B.
    ah.revoke_member(&owner_a, bh.device_id()).await.unwrap();
    let revoked = by_kind(&alerts_of(&ah), "device_revoked")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(revoked.len(), 1, "{revoked:#?}");
    assert_eq!(revoked[0].refs.devices, vec![bh.device_id().to_string()]);
    assert_eq!(revoked[0].id, format!("device_revoked:{}", bh.device_id()));
    drop((ah, bh));
    a.shutdown().await;
    b.shutdown().await;
}

fn tillmesh_bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_tillmesh"))
}

/// The audit trail names who did what on which document, filters by person, kind and date,
/// and its export verifies offline — and a tampered export does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_trail_filters_and_its_export_verifies_offline() {
    let (a, h, owner, url) = node_with_shop(false).await;
    h.add_person(
        &owner,
        NewPerson {
            name: "Sam Staff".into(),
            username: "sam".into(),
            role: Role::Staff,
            password: None,
            pin: Some("1234".into()),
        },
    )
    .await
    .unwrap();
    h.add_person(
        &owner,
        NewPerson {
            name: "Max Manager".into(),
            username: "max".into(),
            role: Role::Manager,
            password: Some("manager password".into()),
            pin: None,
        },
    )
    .await
    .unwrap();
    let staff = h.login_pin("sam", "1234").await.unwrap();
    let manager = h.login_password("max", "manager password").await.unwrap();
    let p = h
        .create_product(&owner, product("AU-1", 400, 2000))
        .await
        .unwrap();
    h.stock_in(&staff, stock_in(p.id, 10, 200)).await.unwrap();
    let s1 = h.record_sale(&staff, sale_of(p.id, 1)).await.unwrap();
    let s2 = h.record_sale(&staff, sale_of(p.id, 2)).await.unwrap();
    h.stock_remove(
        &manager,
        StockRemove {
            product_id: p.id,
            variant_id: None,
            qty: 1,
            reason: RemovalReason::Damaged,
            note: None,
        },
    )
    .await
    .unwrap();
    let checkpoint = h.write_checkpoint().await.unwrap();
    assert_eq!(checkpoint.len(), 1);

    let api = Api::login(&url, "olivia", json!({ "password": OWNER_PW })).await;
    let sales = api.get_json("/api/v1/audit?kind=sale").await;
    let sales = sales["entries"].as_array().unwrap();
    assert_eq!(sales.len(), 2, "{sales:#?}");
    assert_eq!(sales[0]["entries"][0], s2.id.to_string(), "newest first");
    assert_eq!(sales[1]["entries"][0], s1.id.to_string());
    for e in sales {
        assert_eq!(e["person"], staff.person_id.to_string());
        assert_eq!(e["person_name"], "Sam Staff");
        assert_eq!(e["device"], h.device_id());
        assert_eq!(e["signer_role"], "device");
        assert_eq!(e["hash"].as_str().unwrap().len(), 64);
        assert_eq!(e["signature"].as_str().unwrap().len(), 128);
        assert!(e["doc"].as_str().unwrap().starts_with("ledger/"));
    }
    let by_manager = api
        .get_json(&format!("/api/v1/audit?person={}", manager.person_id))
        .await;
    let kinds: Vec<&str> = by_manager["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["removal"]);
    assert_eq!(by_manager["entries"][0]["signer_role"], "manager");
    let created = api.get_json("/api/v1/audit?kind=product_create").await;
    let created = &created["entries"][0];
    assert_eq!(created["person"], owner.person_id.to_string());
    assert_eq!(created["doc"], "catalog");
    assert_eq!(
        created["device"],
        h.device_id(),
        "the change names its device"
    );
    let joined = api
        .get_json("/api/v1/audit?kind=person_add,shop_create")
        .await;
    assert_eq!(joined["entries"].as_array().unwrap().len(), 3);
    let paged = api.get_json("/api/v1/audit?limit=2").await;
    assert_eq!(paged["entries"].as_array().unwrap().len(), 2);
    let cursor = paged["next_cursor"].as_str().unwrap().to_string();
    let next = api
        .get_json(&format!("/api/v1/audit?limit=2&cursor={cursor}"))
        .await;
    assert_ne!(next["entries"][0]["hash"], paged["entries"][0]["hash"]);
    assert_ne!(next["entries"][0]["hash"], paged["entries"][1]["hash"]);
    // Person and kind filters read their own indexes: paged one by one, they give exactly what
    // filtering the whole trail gives, in the same order.
    let all = api.get_json("/api/v1/audit?limit=1000").await["entries"]
        .as_array()
        .unwrap()
        .clone();
    let staff_id = staff.person_id.to_string();
    let device = h.device_id().to_string();
    type Keep<'a> = Box<dyn Fn(&Value) -> bool + 'a>;
    let cases: Vec<(String, Keep)> = vec![
        (
            format!("person={staff_id}"),
            Box::new(|e: &Value| e["person"] == staff_id.as_str()),
        ),
        (
            "kind=sale,removal".into(),
            Box::new(|e: &Value| {
                e["kind"]
                    .as_str()
                    .unwrap()
                    .split('+')
                    .any(|k| k == "sale" || k == "removal")
            }),
        ),
        (
            format!("person={staff_id}&kind=sale"),
            Box::new(|e: &Value| {
                e["person"] == staff_id.as_str() && e["kind"].as_str().unwrap().contains("sale")
            }),
        ),
        (
            format!("kind=product_create,sale&device={device}"),
            Box::new(|e: &Value| {
                e["device"] == device.as_str()
                    && ["product_create", "sale"].contains(&e["kind"].as_str().unwrap())
            }),
        ),
    ];
    for (query, keep) in &cases {
        let want: Vec<&Value> = all.iter().filter(|e| keep(e)).map(|e| &e["hash"]).collect();
        assert!(!want.is_empty(), "{query}: the case matches something");
        let mut got = Vec::new();
        let mut cursor = String::new();
        for _ in 0..=want.len() {
            let page = api
                .get_json(&format!("/api/v1/audit?limit=1&{query}{cursor}"))
                .await;
            got.extend(
                page["entries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["hash"].clone()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        let got: Vec<&Value> = got.iter().collect();
        assert_eq!(got, want, "{query}");
    }
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(2))
        .format("%Y-%m-%d")
        .to_string();
    let none = api
        .get_json(&format!("/api/v1/audit?from={tomorrow}"))
        .await;
    assert!(none["entries"].as_array().unwrap().is_empty());
    assert_eq!(api.get("/api/v1/audit?limit=0").await.0, 400);
    assert_eq!(api.get("/api/v1/audit?cursor=zzz").await.0, 400);
    let staff_api = Api::login(&url, "sam", json!({ "pin": "1234" })).await;
    assert_eq!(staff_api.get("/api/v1/audit").await.0, 403);
    assert_eq!(staff_api.get("/api/v1/audit/export").await.0, 403);

    // The export: every change with its envelope, and the checkpoint.
    let (status, export) = api.get("/api/v1/audit/export").await;
    assert_eq!(status, 200);
    let lines: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "header");
    assert_eq!(lines.last().unwrap()["type"], "end");
    assert!(
        lines.iter().all(|l| l["doc"] != "vault"),
        "the vault is never exported"
    );
    let cp = lines
        .iter()
        .find(|l| l["type"] == "checkpoint")
        .expect("a checkpoint line");
    assert_eq!(cp["entry_id"], checkpoint[0].to_string());
    assert!(cp["heads"]["catalog"].is_array());
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("audit.jsonl");
    std::fs::write(&good, &export).unwrap();
    let out = tillmesh_bin()
        .args(["audit", "verify"])
        .arg(&good)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("OK:"), "{stdout}");
    assert!(stdout.contains("1 checkpoints by 1 device(s)"), "{stdout}");

    // Tampered: a ledger entry's bytes altered (the amount of a sale) …
    let sale_line = lines
        .iter()
        .position(|l| l["type"] == "change" && l["kind"] == "sale")
        .unwrap();
    let mut altered = lines.clone();
    let env = altered[sale_line]["envelope"].as_str().unwrap();
    let mut bytes = data_encoding::BASE64.decode(env.as_bytes()).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    altered[sale_line]["envelope"] = Value::String(data_encoding::BASE64.encode(&bytes));
    // … and a checkpointed change removed.
    let catalog_line = lines
        .iter()
        .position(|l| l["type"] == "change" && l["doc"] == "catalog")
        .unwrap();
    let mut removed = lines.clone();
    removed.remove(catalog_line);
    for (name, doc, expect) in [
        ("altered.jsonl", &altered, "problem"),
        ("removed.jsonl", &removed, "not in the file"),
    ] {
        let path = dir.path().join(name);
        let text: String = doc.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, text).unwrap();
        let out = tillmesh_bin()
            .args(["audit", "verify"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} must not verify");
        assert!(stderr.contains(expect), "{name}: {stderr}");
    }
    // The CLI against the running node: `audit export` writes a file that verifies, and
    // `export` writes every CSV, products and sale lines included.
    let cli_export = dir.path().join("cli-audit.jsonl");
    let csv_dir = dir.path().join("csv");
    let (token, base) = (api.token.clone(), url.clone());
    let (exp, verify, csvs) = {
        let (cli_export, csv_dir) = (cli_export.clone(), csv_dir.clone());
        tokio::task::spawn_blocking(move || {
            let exp = tillmesh_bin()
                .args([
                    "audit", "export", "--api", &base, "--token", &token, "--out",
                ])
                .arg(&cli_export)
                .output()
                .unwrap();
            let verify = tillmesh_bin()
                .args(["audit", "verify"])
                .arg(&cli_export)
                .output()
                .unwrap();
            let csvs = tillmesh_bin()
                .args(["export", "--api", &base, "--token", &token, "--out"])
                .arg(&csv_dir)
                .output()
                .unwrap();
            (exp, verify, csvs)
        })
        .await
        .unwrap()
    };
    assert!(
        exp.status.success(),
        "{}",
        String::from_utf8_lossy(&exp.stderr)
    );
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert!(
        csvs.status.success(),
        "{}",
        String::from_utf8_lossy(&csvs.stderr)
    );
    let products_csv = std::fs::read_to_string(csv_dir.join("products.csv")).unwrap();
    assert!(
        products_csv.contains("AU-1,Product AU-1,4.00,"),
        "{products_csv}"
    );
    let sale_lines = std::fs::read_to_string(csv_dir.join("sale-lines.csv")).unwrap();
    assert_eq!(
        sale_lines.trim_end().split("\r\n").count(),
        3,
        "{sale_lines}"
    );

    let junk = dir.path().join("junk.jsonl");
    std::fs::write(&junk, "hello\n").unwrap();
    let out = tillmesh_bin()
        .args(["audit", "verify"])
        .arg(&junk)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a tillmesh audit export"));

    drop(h);
    a.shutdown().await;
}

/// `reindex` rebuilds the audit index, the stock episodes and the dismissals to what they were.
#[tokio::test]
async fn reindex_keeps_the_audit_trail_and_alerts() {
    use tillmesh::domain::audit::AuditFilter;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::builder().data_dir(dir.path()).start().await.unwrap();
    let h = node.handle();
    h.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = h.login_password("olivia", OWNER_PW).await.unwrap();
    let p = h
        .create_product(&owner, product("RX", 100, 0))
        .await
        .unwrap();
    h.stock_in(&owner, stock_in(p.id, 3, 50)).await.unwrap();
    h.record_sale(&owner, sale_of(p.id, 2)).await.unwrap();
    let low = h.alerts(false).unwrap();
    assert_eq!(low.len(), 1, "{low:#?}");
    assert_eq!(low[0].kind, "low_stock");
    h.dismiss_alert(&owner, &low[0].id).await.unwrap();
    assert!(h.alerts(false).unwrap().is_empty());
    h.write_checkpoint().await.unwrap();
    let all = AuditFilter {
        from: 0,
        to: i64::MAX,
        limit: 1000,
        ..Default::default()
    };
    let before = (
        h.audit(&owner, &all).unwrap().entries,
        h.alerts(true).unwrap(),
    );
    assert!(before.0.iter().any(|e| e.kind == "alert_dismiss"));
    assert!(before.0.iter().any(|e| e.kind == "checkpoint"));
    drop(h);
    node.shutdown().await;

    let store = tillmesh::store::Store::open(&dir.path().join(tillmesh::node::STORE_FILE)).unwrap();
    let report = tillmesh::domain::reindex::reindex(&store).unwrap();
    assert_eq!(
        report.entries, 2,
        "the checkpoint is not counted as a stock or sales entry"
    );
    drop(store);
    let node = Node::builder().data_dir(dir.path()).start().await.unwrap();
    let h = node.handle();
    let owner = h.login_password("olivia", OWNER_PW).await.unwrap();
    let after = (
        h.audit(&owner, &all).unwrap().entries,
        h.alerts(true).unwrap(),
    );
    assert_eq!(after, before);
    let by_owner = AuditFilter {
        person: Some(owner.person_id),
        ..all.clone()
    };
    let by_kind = AuditFilter {
        kinds: vec!["sale".into(), "stock_in".into()],
        ..all.clone()
    };
    let indexed = (
        h.audit(&owner, &by_owner).unwrap().entries,
        h.audit(&owner, &by_kind).unwrap().entries,
    );
    assert!(
        !indexed.0.is_empty() && indexed.1.len() == 2,
        "{indexed:#?}"
    );
    drop(h);
    node.shutdown().await;

    // A store from before the person and kind indexes (version 4) gets them when it opens
    // (migration 5).
    {
        use tillmesh::store::tables::*;
        let db = redb::Database::open(dir.path().join(tillmesh::node::STORE_FILE)).unwrap();
        let tx = db.begin_write().unwrap();
        tx.delete_table(AUDIT_BY_PERSON).unwrap();
        tx.delete_table(AUDIT_BY_KIND).unwrap();
        tx.open_table(META)
            .unwrap()
            .insert("schema_version", 4u64.to_le_bytes().as_slice())
            .unwrap();
        tx.commit().unwrap();
    }
    let node = Node::builder().data_dir(dir.path()).start().await.unwrap();
    let h = node.handle();
    let owner = h.login_password("olivia", OWNER_PW).await.unwrap();
    assert_eq!(
        (
            h.audit(&owner, &by_owner).unwrap().entries,
            h.audit(&owner, &by_kind).unwrap().entries,
        ),
        indexed,
        "after migration 5"
    );
    drop(h);
    node.shutdown().await;
}
