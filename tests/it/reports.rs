//! Reports on real nodes: a hand-computed day with exact cents (tax, discounts, split tender with
//! change, cash rounding, a void, a partial return), the same reports byte for byte on three
//! converged tills, after a reindex, and whatever order a void and its sale arrive in.

use crate::common;
use std::time::Duration;

use chrono::{Days, NaiveDate, TimeZone};
use common::*;
use tillmesh::docs::Envelope;
use tillmesh::domain::model::*;
use tillmesh::domain::reports::*;
use tillmesh::{Node, NodeHandle};
use uuid::Uuid;

const T: Duration = Duration::from_secs(30);

fn day(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// Noon of a shop-local day in Paris (the test shops' time zone), in ms.
fn paris_noon(d: NaiveDate) -> i64 {
    chrono_tz::Europe::Paris
        .from_local_datetime(&d.and_hms_opt(12, 0, 0).unwrap())
        .single()
        .unwrap()
        .timestamp_millis()
}

fn item(sku: &str, name: &str, price: i64, tax_rate: u32, category: &str) -> NewProduct {
    NewProduct {
        sku: sku.into(),
        name: name.into(),
        price,
        barcode: None,
        category: Some(category.into()),
        unit: None,
        cost: Some(price / 3),
        tax_rate: Some(tax_rate),
        reorder_level: None,
        variants: vec![],
    }
}

fn line(product_id: Uuid, variant_id: Option<Uuid>, qty: i64, discount: i64) -> NewSaleLine {
    NewSaleLine {
        product_id,
        variant_id,
        qty,
        discount: (discount > 0).then_some(discount),
    }
}

fn pay(method: PaymentMethod, amount: Option<i64>) -> NewPayment {
    NewPayment { method, amount }
}

/// Every report over `range` (and the 7-day movement trend ending on its last day) as JSON, one
/// per line: what "byte-identical" compares.
fn all_reports(h: &NodeHandle, range: DayRange) -> String {
    let top = DayRange::last_days(range.to, 30, MAX_TOP_DAYS).unwrap();
    let trend = DayRange::last_days(range.to, 7, 7).unwrap();
    let by = &owner_of(h);
    [
        serde_json::to_string(&h.sales_report(by, range, Period::Day).unwrap()).unwrap(),
        serde_json::to_string(&h.sales_report(by, range, Period::Week).unwrap()).unwrap(),
        serde_json::to_string(&h.sales_report(by, range, Period::Month).unwrap()).unwrap(),
        serde_json::to_string(&h.top_sellers(by, top, 100).unwrap()).unwrap(),
        serde_json::to_string(&h.staff_report(by, range).unwrap()).unwrap(),
        serde_json::to_string(&h.tax_report(by, range).unwrap()).unwrap(),
        serde_json::to_string(&h.payments_report(by, range).unwrap()).unwrap(),
        serde_json::to_string(&h.inventory_value(by).unwrap()).unwrap(),
        serde_json::to_string(&h.movement_trend(by, trend).unwrap()).unwrap(),
    ]
    .join("\n")
}

/// The shop of the hand-computed example, on `h`: EUR, prices with tax, cash rounded to 5 cents.
///
/// Stock in (today): A 20 @ 4.00 then 10 @ 4.50; B 50 @ 1.00; V/S 5 @ 15.00; V/L 5 @ 16.00.
/// Sales five days ago (D0), taxes rounded half up per line, `tax = total × r / (1 + r)`:
/// - S1 (owner): A×3 − 1.03 discount = 28.97 (tax 4.83), B×3 = 7.50 (tax 0.39): 36.47, tax
///   5.22; card 10.00 + cash 30.00; the cash due 26.47 rounds to 26.45 (rounding −0.02),
///   change 3.55;
/// - S2 (Sam, staff): V/L×1 = 35.00 (tax 5.83), A×1 = 10.00 (tax 1.67): 45.00, card;
/// - S3 (Sam): B×2 = 5.00 (tax 0.26), cash — voided today by the owner;
/// - S4 (owner): V/S×2 = 60.00 (tax 10.00), card — one returned today, refunded 30.00 (tax 5.00)
///   in cash.
struct Example {
    d0: NaiveDate,
    today: NaiveDate,
    owner: Principal,
    sam: Principal,
    a: Product,
    b: Product,
    v: Product,
}

async fn hand_computed_example(h: &NodeHandle, owner: &Principal) -> Example {
    h.update_settings(
        owner,
        SettingsPatch {
            cash_rounding: Some(5),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    h.add_person(
        owner,
        NewPerson {
            name: "Sam Staff".into(),
            username: "sam".into(),
            role: Role::Staff,
            password: None,
            pin: Some("2468".into()),
        },
    )
    .await
    .unwrap();
    let sam = h.login_pin("sam", "2468").await.unwrap();
    let a = h
        .create_product(owner, item("A", "Apple juice", 1000, 2000, "Food"))
        .await
        .unwrap();
    let b = h
        .create_product(owner, item("B", "Bread", 250, 550, "Food"))
        .await
        .unwrap();
    let mut v = item("V", "Tee", 3000, 2000, "Clothes");
    v.variants = vec![
        NewVariant {
            sku: "V-S".into(),
            name: "S".into(),
            barcode: None,
            price: None,
        },
        NewVariant {
            sku: "V-L".into(),
            name: "L".into(),
            barcode: None,
            price: Some(3500),
        },
    ];
    let v = h.create_product(owner, v).await.unwrap();
    let (vs, vl) = variants(&v);
    for (p, var, qty, cost) in [
        (a.id, None, 20, 400),
        (a.id, None, 10, 450),
        (b.id, None, 50, 100),
        (v.id, Some(vs), 5, 1500),
        (v.id, Some(vl), 5, 1600),
    ] {
        h.stock_in(
            owner,
            StockIn {
                product_id: p,
                variant_id: var,
                qty,
                unit_cost: Some(cost),
                note: None,
            },
        )
        .await
        .unwrap();
    }

    let today = h.shop_today();
    let d0 = today.checked_sub_days(Days::new(5)).unwrap();
    let at = paris_noon(d0);
    let s1 = h
        .record_sale_at(
            owner,
            NewSale {
                lines: vec![line(a.id, None, 3, 103), line(b.id, None, 3, 0)],
                payments: vec![
                    pay(PaymentMethod::Card, Some(1000)),
                    pay(PaymentMethod::Cash, Some(3000)),
                ],
                note: None,
                ticket_id: None,
            },
            at,
        )
        .await
        .unwrap();
    assert_eq!((s1.total, s1.tax, s1.discount), (3647, 522, 103));
    assert_eq!((s1.rounding, s1.change_due), (-2, 355));
    assert_eq!(s1.day, day(d0));
    let s2 = h
        .record_sale_at(
            &sam,
            NewSale {
                lines: vec![line(v.id, Some(vl), 1, 0), line(a.id, None, 1, 0)],
                payments: vec![pay(PaymentMethod::Card, None)],
                note: None,
                ticket_id: None,
            },
            at + 1,
        )
        .await
        .unwrap();
    assert_eq!((s2.total, s2.tax), (4500, 750));
    let s3 = h
        .record_sale_at(
            &sam,
            NewSale {
                lines: vec![line(b.id, None, 2, 0)],
                payments: vec![pay(PaymentMethod::Cash, None)],
                note: None,
                ticket_id: None,
            },
            at + 2,
        )
        .await
        .unwrap();
    assert_eq!((s3.total, s3.tax, s3.rounding), (500, 26, 0));
    let s4 = h
        .record_sale_at(
            owner,
            NewSale {
                lines: vec![line(v.id, Some(vs), 2, 0)],
                payments: vec![pay(PaymentMethod::Card, None)],
                note: None,
                ticket_id: None,
            },
            at + 3,
        )
        .await
        .unwrap();
    assert_eq!((s4.total, s4.tax), (6000, 1000));
    h.void_sale(owner, s3.id, VoidSale::default())
        .await
        .unwrap();
    let r = h
        .return_sale(
            owner,
            s4.id,
            NewReturn {
                lines: vec![ReturnLine { line: 0, qty: 1 }],
                refund_method: Some(PaymentMethod::Cash),
                reason: None,
            },
        )
        .await
        .unwrap();
    assert_eq!((r.refund, r.tax), (3000, 500));
    // The return is recorded today; if midnight passed meanwhile, the example's days are off.
    assert_eq!(h.shop_today(), today, "the example ran across midnight");
    Example {
        d0,
        today,
        owner: owner.clone(),
        sam,
        a,
        b,
        v,
    }
}

/// The tee's variants S and L.
fn variants(v: &Product) -> (Uuid, Uuid) {
    let by_sku = |sku: &str| v.variants.iter().find(|x| x.sku == sku).unwrap().id;
    (by_sku("V-S"), by_sku("V-L"))
}

fn totals(
    count: i64,
    gross: i64,
    discounts: i64,
    refunds: i64,
    returns: i64,
    tax: i64,
    rounding: i64,
) -> SalesTotals {
    SalesTotals {
        count,
        gross,
        discounts,
        refunds,
        returns,
        tax,
        net: gross - refunds - tax,
        rounding,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_of_a_hand_computed_example_to_the_cent() {
    let s = shop().await;
    let h = &s.h;
    let ex = hand_computed_example(h, &s.owner).await;
    let (d0, today) = (ex.d0, ex.today);
    let range = DayRange::new(d0, today).unwrap();

    // Sales per day: the sales on D0 (S3 voided there), the return today.
    let r = h.sales_report(&ex.owner, range, Period::Day).unwrap();
    assert_eq!(r.periods.len(), 6, "every day of the range, empty ones too");
    assert_eq!(r.periods[0].period, day(d0));
    assert_eq!(r.periods[0].totals, totals(3, 14147, 103, 0, 0, 2272, -2));
    for p in &r.periods[1..5] {
        assert_eq!(p.totals, SalesTotals::default(), "{}", p.period);
    }
    assert_eq!(r.periods[5].period, day(today));
    assert_eq!(r.periods[5].totals, totals(0, 0, 0, 3000, 1, -500, 0));
    assert_eq!(r.totals, totals(3, 14147, 103, 3000, 1, 1772, -2));
    assert_eq!(r.totals.net, 9375);
    // Weeks and months add up to the same, and cover the range exactly.
    for group in [Period::Week, Period::Month] {
        let g = h.sales_report(&ex.owner, range, group).unwrap();
        assert_eq!(g.totals, r.totals);
        let mut sum = SalesTotals::default();
        for p in &g.periods {
            sum.count += p.totals.count;
            sum.gross += p.totals.gross;
            sum.tax += p.totals.tax;
            sum.refunds += p.totals.refunds;
        }
        assert_eq!(
            (sum.count, sum.gross, sum.tax, sum.refunds),
            (3, 14147, 1772, 3000)
        );
        assert_eq!(g.periods.first().unwrap().from, day(d0));
        assert_eq!(g.periods.last().unwrap().to, day(today));
    }
    // The node's older daily totals agree.
    let daily = h.daily_sales(&ex.owner, &day(d0), &day(today)).unwrap();
    assert_eq!(daily.iter().map(|d| d.total).sum::<i64>(), 14147 - 3000);

    // Top sellers: A 4 (28.97 + 10.00), B 3 (S3 voided), V/L 1, V/S 2 − 1 returned.
    let top = h
        .top_sellers(
            &ex.owner,
            DayRange::last_days(today, 30, MAX_TOP_DAYS).unwrap(),
            10,
        )
        .unwrap();
    let (vs, vl) = variants(&ex.v);
    let row = |p: &Product, v: Option<Uuid>, sku: &str, name: &str, qty, revenue| TopSeller {
        product_id: p.id,
        variant_id: v,
        sku: sku.into(),
        name: name.into(),
        qty,
        revenue,
    };
    let a = row(&ex.a, None, "A", "Apple juice", 4, 3897);
    let b = row(&ex.b, None, "B", "Bread", 3, 750);
    let l = row(&ex.v, Some(vl), "V-L", "Tee L", 1, 3500);
    let sm = row(&ex.v, Some(vs), "V-S", "Tee S", 1, 3000);
    assert_eq!(
        top.by_qty,
        vec![a.clone(), b.clone(), l.clone(), sm.clone()]
    );
    assert_eq!(top.by_revenue, vec![a.clone(), l.clone(), sm, b.clone()]);
    let two = h
        .top_sellers(
            &ex.owner,
            DayRange::last_days(today, 30, MAX_TOP_DAYS).unwrap(),
            2,
        )
        .unwrap();
    assert_eq!(two.by_qty, vec![a.clone(), b]);
    // A window that ends before the return still has both tees sold.
    let before = h
        .top_sellers(
            &ex.owner,
            DayRange::last_days(d0, 1, MAX_TOP_DAYS).unwrap(),
            10,
        )
        .unwrap();
    assert_eq!(
        before.by_revenue[0],
        row(&ex.v, Some(vs), "V-S", "Tee S", 2, 6000)
    );

    // Per person and per till.
    let staff = h.staff_report(&ex.owner, range).unwrap();
    assert_eq!(staff.people.len(), 2);
    let (o, m) = (&staff.people[0], &staff.people[1]);
    assert_eq!(
        (o.person_id, o.name.as_str(), o.count, o.total, o.refunds),
        (
            Some(ex.owner.person_id),
            "Olivia Owner",
            2,
            3647 + 6000,
            3000
        )
    );
    assert_eq!(
        (m.person_id, m.name.as_str(), m.count, m.total, m.refunds),
        (Some(ex.sam.person_id), "Sam Staff", 1, 4500, 0)
    );
    assert_eq!(staff.tills.len(), 1);
    let till = &staff.tills[0];
    assert_eq!(
        (
            till.device.as_str(),
            till.name.as_str(),
            till.count,
            till.total,
            till.refunds
        ),
        (h.device_id(), "Till 1", 3, 14147, 3000)
    );

    // Tax per rate: 5.5 % (B in S1); 20 % (A, the tees, minus the return).
    let tax = h.tax_report(&ex.owner, range).unwrap();
    assert_eq!(
        tax.rates,
        vec![
            TaxRateTotals {
                tax_rate: 550,
                net: 711,
                tax: 39,
                gross: 750
            },
            TaxRateTotals {
                tax_rate: 2000,
                net: 8664,
                tax: 1733,
                gross: 10397
            },
        ]
    );
    assert_eq!(
        tax.totals,
        TaxRateTotals {
            tax_rate: 0,
            net: 9375,
            tax: 1772,
            gross: 11147
        }
    );

    // Payment methods: cash 30.00 − 3.55 change, refund 30.00 in cash; cards 10 + 45 + 60.
    let pay = h.payments_report(&ex.owner, range).unwrap();
    let m = |method, received, refunded| MethodTotals {
        method,
        received,
        refunded,
        net: received - refunded,
    };
    assert_eq!(
        pay.methods,
        vec![
            m(PaymentMethod::Cash, 2645, 3000),
            m(PaymentMethod::Card, 11500, 0),
            m(PaymentMethod::Other, 0, 0),
        ]
    );
    assert_eq!((pay.received, pay.refunded, pay.net), (14145, 3000, 11145));
    assert_eq!(
        pay.received,
        r.totals.gross + r.totals.rounding,
        "money in = goods + rounding"
    );

    // Inventory: A 26 = 10 @ 4.50 + 16 @ 4.00; B 47 @ 1.00; V/S 4 @ 15.00; V/L 4 @ 16.00.
    let inv = h.inventory_value(&ex.owner).unwrap();
    assert_eq!(
        (
            inv.at_cost,
            inv.at_retail,
            inv.on_hand,
            inv.items,
            inv.negative
        ),
        (28000, 63750, 81, 4, 0)
    );
    assert_eq!(
        inv.categories,
        vec![
            CategoryValue {
                category: Some("Food".into()),
                on_hand: 73,
                at_cost: 15600,
                at_retail: 37750
            },
            CategoryValue {
                category: Some("Clothes".into()),
                on_hand: 8,
                at_cost: 12400,
                at_retail: 26000
            },
        ]
    );

    // Movements: the sales went out on D0; stock in, the void and the return came in today.
    let trend = h
        .movement_trend(&ex.owner, DayRange::last_days(today, 7, 7).unwrap())
        .unwrap();
    assert_eq!(
        trend.kinds,
        vec![
            MovementKind::Return,
            MovementKind::Sale,
            MovementKind::StockIn,
            MovementKind::Void
        ]
    );
    assert_eq!(trend.days.len(), 7);
    let on = |d: NaiveDate| trend.days.iter().find(|x| x.day == day(d)).unwrap();
    let k = |kind, qty_in, qty_out| KindQty {
        kind,
        qty_in,
        qty_out,
    };
    assert_eq!((on(d0).qty_in, on(d0).qty_out), (0, 12));
    assert_eq!(on(d0).kinds[1], k(MovementKind::Sale, 0, 12));
    let t = on(today);
    assert_eq!((t.qty_in, t.qty_out), (93, 0));
    assert_eq!(
        t.kinds,
        vec![
            k(MovementKind::Return, 1, 0),
            k(MovementKind::Sale, 0, 0),
            k(MovementKind::StockIn, 90, 0),
            k(MovementKind::Void, 2, 0),
        ]
    );
    let quiet = trend.days.iter().filter(|x| x.qty_in + x.qty_out == 0);
    assert_eq!(quiet.count(), 5);

    // Bad input is refused with the field named.
    let field = |e: tillmesh::Error| match e {
        tillmesh::Error::Invalid { field, .. } => field.unwrap_or_default(),
        e => panic!("{e}"),
    };
    assert_eq!(field(DayRange::new(today, d0).unwrap_err()), "from");
    let long = DayRange::new(today.checked_sub_days(Days::new(400)).unwrap(), today).unwrap();
    assert_eq!(
        field(h.top_sellers(&ex.owner, long, 10).unwrap_err()),
        "days"
    );
    assert_eq!(
        field(h.top_sellers(&ex.owner, range, 0).unwrap_err()),
        "limit"
    );
    assert_eq!(
        field(h.top_sellers(&ex.owner, range, 101).unwrap_err()),
        "limit"
    );
    s.node.shutdown().await;
}

/// Envelopes of `from` in three batches: the shop's documents, the ledger documents
/// `ledger_first` picks, the other ledger documents.
fn ordered(from: &NodeHandle, ledger_first: impl Fn(&str) -> bool) -> [Vec<Envelope>; 3] {
    let all = from.envelopes().unwrap();
    let (ledger, shop): (Vec<Envelope>, Vec<Envelope>) =
        all.into_iter().partition(|e| e.doc.starts_with("ledger/"));
    let (first, rest): (Vec<Envelope>, Vec<Envelope>) =
        ledger.into_iter().partition(|e| ledger_first(&e.doc));
    [shop, first, rest]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_void_before_its_sale_and_a_reindex_give_the_same_reports() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::builder().data_dir(dir.path()).start().await.unwrap();
    let ah = a.handle();
    ah.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = ah.login_password("olivia", OWNER_PW).await.unwrap();
    let ex = hand_computed_example(&ah, &owner).await;
    let range = DayRange::new(ex.d0, ex.today).unwrap();
    let expected = all_reports(&ah, range);
    let genesis = ah.genesis().unwrap();
    let d0_docs = format!("ledger/{}/", day(ex.d0));

    // Today's ledger (the void of S3, the return of S4, the stock) before the sales of D0, and
    // the other way round: the same reports once everything is in.
    for today_first in [true, false] {
        let z = Node::builder().memory().start().await.unwrap();
        let zh = z.handle();
        let [shop_docs, first, rest] = ordered(&ah, |doc| doc.starts_with(&d0_docs) != today_first);
        for (i, batch) in [shop_docs, first].into_iter().enumerate() {
            let results = zh
                .import_envelopes((i == 0).then_some(genesis).flatten(), batch)
                .await
                .unwrap();
            assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        }
        let r = zh.sales_report(&owner, range, Period::Day).unwrap();
        if today_first {
            // The void of S3 and the return are in, no sale yet: nothing counts but the refund.
            assert_eq!(r.totals, totals(0, 0, 0, 3000, 1, -500, 0));
        } else {
            assert_eq!(r.totals, totals(4, 14647, 103, 0, 0, 2298, -2));
        }
        let results = zh.import_envelopes(None, rest).await.unwrap();
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        assert_eq!(
            all_reports(&zh, range),
            expected,
            "today's ledger first: {today_first}"
        );
        drop(zh);
        z.shutdown().await;
    }

    // A reindex rebuilds the same aggregates.
    drop(ah);
    a.shutdown().await;
    let store = tillmesh::store::Store::open(&dir.path().join(tillmesh::node::STORE_FILE)).unwrap();
    let report = tillmesh::domain::reindex::reindex(&store).unwrap();
    assert!(report.entries >= 11, "{report:?}");
    drop(store);
    let a = Node::builder().data_dir(dir.path()).start().await.unwrap();
    assert_eq!(all_reports(&a.handle(), range), expected);
    a.shutdown().await;

    // A store from before the reports (version 3, no report tables) gets them filled when it
    // opens (migration 4).
    {
        use tillmesh::store::tables::*;
        let db = redb::Database::open(dir.path().join(tillmesh::node::STORE_FILE)).unwrap();
        let tx = db.begin_write().unwrap();
        tillmesh::domain::reports::delete_tables(&tx).unwrap();
        tx.open_table(META)
            .unwrap()
            .insert("schema_version", 3u64.to_le_bytes().as_slice())
            .unwrap();
        tx.commit().unwrap();
    }
    let a = Node::builder().data_dir(dir.path()).start().await.unwrap();
    assert_eq!(
        all_reports(&a.handle(), range),
        expected,
        "after migration 4"
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_converged_tills_give_byte_identical_reports() {
    let a = Node::builder()
        .memory()
        .listen("/ip4/127.0.0.1/tcp/0")
        .start()
        .await
        .unwrap();
    let ah = a.handle();
    ah.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = ah.login_password("olivia", OWNER_PW).await.unwrap();
    assert!(wait_for(|| !ah.addrs().is_empty(), T).await, "A listens");
    let addr = ah.addrs()[0].clone();

    let mut others = Vec::new();
    for name in ["Till 2", "Till 3"] {
        let dir = common::mesh::joined_dir(&ah, &owner, name).await;
        let node = Node::builder()
            .data_dir(dir.path())
            .listen("/ip4/127.0.0.1/tcp/0")
            .peer(&addr)
            .start()
            .await
            .unwrap();
        others.push((dir, node));
    }
    let bh = others[0].1.handle();
    let ch = others[1].1.handle();
    assert!(wait_for(|| ah.devices().unwrap().len() == 3, T).await);

    // The example on A, then sales, a void and a return on B and C.
    let ex = hand_computed_example(&ah, &owner).await;
    let range = DayRange::new(ex.d0, ex.today).unwrap();
    let owner_b = bh.login_password("olivia", OWNER_PW).await.unwrap();
    let owner_c = ch.login_password("olivia", OWNER_PW).await.unwrap();
    for h in [&bh, &ch] {
        assert!(
            wait_for(
                || h.product(ex.v.id).is_ok() && h.product(ex.a.id).is_ok(),
                T
            )
            .await,
            "the catalog reached every till"
        );
    }
    let sb = bh
        .record_sale(
            &owner_b,
            NewSale {
                lines: vec![line(ex.a.id, None, 2, 50), line(ex.b.id, None, 1, 0)],
                payments: vec![
                    pay(PaymentMethod::Other, Some(500)),
                    pay(PaymentMethod::Cash, Some(5000)),
                ],
                note: None,
                ticket_id: None,
            },
        )
        .await
        .unwrap();
    let sc = ch.record_sale(&owner_c, sale_of(ex.b.id, 4)).await.unwrap();
    assert!(wait_for(|| ch.sale(sb.id).is_ok(), T).await);
    ch.return_sale(
        &owner_c,
        sb.id,
        NewReturn {
            lines: vec![ReturnLine { line: 0, qty: 1 }],
            refund_method: Some(PaymentMethod::Card),
            reason: None,
        },
    )
    .await
    .unwrap();
    assert!(wait_for(|| bh.sale(sc.id).is_ok(), T).await);
    bh.void_sale(&owner_b, sc.id, VoidSale::default())
        .await
        .unwrap();

    assert!(
        wait_for(
            || bh.bucket_digests().unwrap() == ah.bucket_digests().unwrap()
                && ch.bucket_digests().unwrap() == ah.bucket_digests().unwrap(),
            T
        )
        .await,
        "the three tills converged"
    );
    let expected = all_reports(&ah, range);
    assert_eq!(all_reports(&bh, range), expected, "B");
    assert_eq!(all_reports(&ch, range), expected, "C");
    // And the numbers moved: B's sale (less its return) is in, C's voided sale is not.
    let sales = ah.sales_report(&owner, range, Period::Day).unwrap();
    assert_eq!(sales.totals.count, 4);
    assert_eq!(sales.totals.gross, 14147 + sb.total);
    let staff = ah.staff_report(&owner, range).unwrap();
    let till_c = staff
        .tills
        .iter()
        .find(|t| t.device == ch.device_id())
        .unwrap();
    assert_eq!(
        (
            till_c.name.as_str(),
            till_c.count,
            till_c.total,
            till_c.refunds
        ),
        ("Till 3", 0, 0, 975),
        "C's one sale is voided; it refunded one A of B's sale"
    );

    drop((ah, bh, ch));
    for (_, n) in others {
        n.shutdown().await;
    }
    a.shutdown().await;
}

/// Long windows of top sellers read whole months from the month sums: the same numbers as the
/// days, voids taken out of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_sellers_over_whole_months_count_what_the_days_count() {
    let s = shop().await;
    let h = &s.h;
    let a = h
        .create_product(&s.owner, item("A", "Apple juice", 1000, 2000, "Food"))
        .await
        .unwrap();
    let b = h
        .create_product(&s.owner, item("B", "Bread", 250, 550, "Food"))
        .await
        .unwrap();
    let today = h.shop_today();
    let ago = |n: u64| today.checked_sub_days(Days::new(n)).unwrap();
    let mut sales = Vec::new();
    for (days_ago, p, qty) in [(40, a.id, 1), (70, a.id, 2), (100, b.id, 5), (200, a.id, 3)] {
        let sale = h
            .record_sale_at(&s.owner, sale_of(p, qty), paris_noon(ago(days_ago)))
            .await
            .unwrap();
        sales.push(sale);
    }
    h.void_sale(&s.owner, sales[1].id, VoidSale::default())
        .await
        .unwrap();
    let qty_of = |t: &TopSellers| -> Vec<(String, i64, i64)> {
        t.by_qty
            .iter()
            .map(|x| (x.sku.clone(), x.qty, x.revenue))
            .collect()
    };
    let year = h
        .top_sellers(
            &s.owner,
            DayRange::last_days(today, 366, MAX_TOP_DAYS).unwrap(),
            10,
        )
        .unwrap();
    assert_eq!(
        qty_of(&year),
        vec![("B".into(), 5, 1250), ("A".into(), 4, 4000)]
    );
    // 50 to 109 days ago: the voided sale and B's.
    let mid = h
        .top_sellers(
            &s.owner,
            DayRange::last_days(ago(50), 60, MAX_TOP_DAYS).unwrap(),
            10,
        )
        .unwrap();
    assert_eq!(qty_of(&mid), vec![("B".into(), 5, 1250)]);
    // Every window ending today, one day longer each time, agrees with the sales themselves.
    for days in [1, 39, 41, 69, 71, 99, 101, 199, 201, 366] {
        let t = h
            .top_sellers(
                &s.owner,
                DayRange::last_days(today, days, MAX_TOP_DAYS).unwrap(),
                10,
            )
            .unwrap();
        let mut want: Vec<(String, i64, i64)> = Vec::new();
        for (i, sale) in sales.iter().enumerate() {
            let age =
                (today - NaiveDate::parse_from_str(&sale.day, "%Y-%m-%d").unwrap()).num_days();
            if i == 1 || age >= days {
                continue;
            }
            let l = &sale.lines[0];
            match want.iter_mut().find(|w| w.0 == l.sku) {
                Some(w) => {
                    w.1 += l.qty;
                    w.2 += l.total;
                }
                None => want.push((l.sku.clone(), l.qty, l.total)),
            }
        }
        want.sort_by(|x, y| y.1.cmp(&x.1).then(y.2.cmp(&x.2)));
        assert_eq!(qty_of(&t), want, "{days} days");
    }
    s.node.shutdown().await;
}
