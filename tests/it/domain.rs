//! The node's domain through the embedding API: one shop device end to end.

use crate::common;
use common::*;
use tillmesh::Error;
use tillmesh::domain::model::*;

#[tokio::test]
async fn create_stock_sell_restart_keeps_stock() {
    let dir = tempfile::tempdir().unwrap();
    let pid;
    {
        let node = tillmesh::Node::builder()
            .data_dir(dir.path())
            .start()
            .await
            .unwrap();
        let h = node.handle();
        h.create_shop(new_shop("EUR", TaxMode::Inclusive))
            .await
            .unwrap();
        let owner = h.login_password("olivia", OWNER_PW).await.unwrap();
        let p = h
            .create_product(&owner, product("A1", 250, 2000))
            .await
            .unwrap();
        pid = p.id;
        h.stock_in(&owner, stock_in(pid, 10, 100)).await.unwrap();
        let sale = h.record_sale(&owner, sale_of(pid, 3)).await.unwrap();
        assert_eq!(sale.total, 750);
        assert_eq!(sale.tax, 125); // 750 × 20/120
        assert_eq!(sale.receipt, "T1-000001");
        assert_eq!(on_hand(&h, pid), 7);
        node.shutdown().await;
    }
    let node = tillmesh::Node::builder()
        .data_dir(dir.path())
        .start()
        .await
        .unwrap();
    let h = node.handle();
    assert_eq!(on_hand(&h, pid), 7);
    let owner = h.login_password("olivia", OWNER_PW).await.unwrap();
    let sale = h.record_sale(&owner, sale_of(pid, 1)).await.unwrap();
    assert_eq!(sale.receipt, "T1-000002");
    assert_eq!(on_hand(&h, pid), 6);
    node.shutdown().await;
}

#[tokio::test]
async fn staff_cannot_change_prices_or_remove_stock() {
    let s = shop().await;
    let p =
        s.h.create_product(&s.owner, product("B1", 100, 0))
            .await
            .unwrap();
    s.h.add_person(
        &s.owner,
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
    assert!(matches!(
        s.h.login_pin("sam", "9999").await,
        Err(Error::Unauthorized(_))
    ));
    let staff = s.h.login_pin("sam", "1234").await.unwrap();
    let patch = ProductPatch {
        price: Some(1),
        ..Default::default()
    };
    assert!(matches!(
        s.h.update_product(&staff, p.id, patch).await,
        Err(Error::Forbidden(_))
    ));
    assert_eq!(s.h.product(p.id).unwrap().price, 100);
    // Staff may receive stock and sell.
    s.h.stock_in(&staff, stock_in(p.id, 5, 50)).await.unwrap();
    s.h.record_sale(&staff, sale_of(p.id, 2)).await.unwrap();
    let removal = StockRemove {
        product_id: p.id,
        variant_id: None,
        qty: 1,
        reason: RemovalReason::Damaged,
        note: None,
    };
    assert!(matches!(
        s.h.stock_remove(&staff, removal.clone()).await,
        Err(Error::Forbidden(_))
    ));
    assert_eq!(on_hand(&s.h, p.id), 3);
    s.h.stock_remove(&s.owner, removal).await.unwrap();
    assert_eq!(on_hand(&s.h, p.id), 2);
}

#[tokio::test]
async fn void_and_return_are_new_entries() {
    let s = shop().await;
    let p =
        s.h.create_product(&s.owner, product("C1", 1000, 1000))
            .await
            .unwrap();
    s.h.stock_in(&s.owner, stock_in(p.id, 10, 400))
        .await
        .unwrap();
    let sale = s.h.record_sale(&s.owner, sale_of(p.id, 4)).await.unwrap();
    let day = sale.day.clone();
    let voided =
        s.h.void_sale(&s.owner, sale.id, VoidSale::default())
            .await
            .unwrap();
    assert!(voided.voided_by.is_some());
    assert!(matches!(
        s.h.void_sale(&s.owner, sale.id, VoidSale::default()).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(on_hand(&s.h, p.id), 10);
    let sale2 = s.h.record_sale(&s.owner, sale_of(p.id, 3)).await.unwrap();
    let ret =
        s.h.return_sale(
            &s.owner,
            sale2.id,
            NewReturn {
                lines: vec![ReturnLine { line: 0, qty: 1 }],
                refund_method: None,
                reason: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(ret.refund, 1000);
    assert_eq!(on_hand(&s.h, p.id), 8);
    let daily = s.h.daily_sales(&s.owner, &day, &day).unwrap();
    assert_eq!(daily.len(), 1);
    assert_eq!(daily[0].count, 1);
    assert_eq!(daily[0].total, 3000 - 1000);
    assert_eq!(daily[0].refunds, 1000);
    assert_eq!(s.h.sale(sale2.id).unwrap().returned, vec![1]);
}

#[tokio::test]
async fn oversell_warns_by_default_and_blocks_when_set() {
    let s = shop().await;
    let p =
        s.h.create_product(&s.owner, product("D1", 100, 0))
            .await
            .unwrap();
    let sale = s.h.record_sale(&s.owner, sale_of(p.id, 2)).await.unwrap();
    assert_eq!(sale.warnings.len(), 1);
    assert_eq!(on_hand(&s.h, p.id), -2);
    s.h.update_settings(
        &s.owner,
        SettingsPatch {
            oversell: Some(OversellPolicy::Block),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(matches!(
        s.h.record_sale(&s.owner, sale_of(p.id, 1)).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(on_hand(&s.h, p.id), -2);
}

#[tokio::test]
async fn fifo_value_of_lots_at_different_costs() {
    let s = shop().await;
    let p =
        s.h.create_product(&s.owner, product("F1", 1000, 0))
            .await
            .unwrap();
    s.h.stock_in(&s.owner, stock_in(p.id, 5, 300))
        .await
        .unwrap();
    s.h.stock_in(&s.owner, stock_in(p.id, 5, 420))
        .await
        .unwrap();
    s.h.record_sale(&s.owner, sale_of(p.id, 7)).await.unwrap();
    // 7 sold take all 5 @3.00 and 2 @4.20: 3 left @4.20 = 12.60.
    let level =
        s.h.stock()
            .unwrap()
            .into_iter()
            .find(|l| l.product_id == p.id)
            .unwrap();
    assert_eq!(level.on_hand, 3);
    assert_eq!(level.value_at_cost, 1260);
}

#[tokio::test]
async fn duplicate_sku_and_bad_input_change_nothing() {
    let s = shop().await;
    s.h.create_product(&s.owner, product("E1", 100, 0))
        .await
        .unwrap();
    let before = s.h.products().unwrap();
    assert!(matches!(
        s.h.create_product(&s.owner, product("E1", 100, 0)).await,
        Err(Error::Invalid { .. })
    ));
    let mut bad = product("E2", -5, 0);
    assert!(s.h.create_product(&s.owner, bad.clone()).await.is_err());
    bad.price = 5;
    bad.tax_rate = Some(20_000);
    assert!(s.h.create_product(&s.owner, bad).await.is_err());
    assert_eq!(s.h.products().unwrap(), before);
    let envs = s.h.envelopes().unwrap().len();
    let pid = before[0].id;
    assert!(s.h.record_sale(&s.owner, sale_of(pid, 0)).await.is_err());
    assert!(
        s.h.record_sale(
            &s.owner,
            NewSale {
                lines: vec![],
                payments: vec![],
                note: None,
                ticket_id: None,
            }
        )
        .await
        .is_err()
    );
    assert_eq!(s.h.envelopes().unwrap().len(), envs);
}

#[tokio::test]
async fn reindex_rebuilds_the_same_projections() {
    let dir = tempfile::tempdir().unwrap();
    let node = tillmesh::Node::builder()
        .data_dir(dir.path())
        .start()
        .await
        .unwrap();
    let h = node.handle();
    h.create_shop(new_shop("EUR", TaxMode::Exclusive))
        .await
        .unwrap();
    let owner = h.login_password("olivia", OWNER_PW).await.unwrap();
    let p = h
        .create_product(&owner, product("R1", 1999, 888))
        .await
        .unwrap();
    h.stock_in(&owner, stock_in(p.id, 10, 700)).await.unwrap();
    let s = h.record_sale(&owner, sale_of(p.id, 2)).await.unwrap();
    assert_eq!((s.total, s.tax), (3998 + 355, 355));
    h.record_sale(&owner, sale_of(p.id, 1)).await.unwrap();
    h.void_sale(&owner, s.id, VoidSale::default())
        .await
        .unwrap();
    let before = (
        h.stock().unwrap(),
        h.sales(0, i64::MAX).unwrap(),
        h.daily_sales(&owner, "0", "9").unwrap(),
        h.products().unwrap(),
    );
    drop(h); // the store file closes when the last handle is gone
    node.shutdown().await;

    let store = tillmesh::store::Store::open(&dir.path().join(tillmesh::node::STORE_FILE)).unwrap();
    let report = tillmesh::domain::reindex::reindex(&store).unwrap();
    assert_eq!(report.entries, 4);
    assert_eq!(report.products, 1);
    drop(store);

    let node = tillmesh::Node::builder()
        .data_dir(dir.path())
        .start()
        .await
        .unwrap();
    let h = node.handle();
    let after = (
        h.stock().unwrap(),
        h.sales(0, i64::MAX).unwrap(),
        h.daily_sales(&owner, "0", "9").unwrap(),
        h.products().unwrap(),
    );
    assert_eq!(after, before);
    assert_eq!(after.0[0].on_hand, 9);
    node.shutdown().await;
}

/// A till's ledger rolls over to a new document every `LEDGER_ROLLOVER` entries, so no
/// document grows large; every sale stays listed.
#[tokio::test]
async fn the_ledger_rolls_over_to_a_new_document() {
    let s = shop().await;
    let p =
        s.h.create_product(&s.owner, product("R1", 100, 0))
            .await
            .unwrap();
    let n = tillmesh::docs::LEDGER_ROLLOVER as usize + 5;
    for _ in 0..n {
        s.h.record_sale(&s.owner, sale_of(p.id, 1)).await.unwrap();
    }
    let ledgers: Vec<DocumentInfo> =
        s.h.stored_documents()
            .unwrap()
            .into_iter()
            .filter(|d| d.kind == "ledger")
            .collect();
    assert_eq!(ledgers.len(), 2, "{ledgers:?}");
    assert!(ledgers.iter().any(|d| d.id.ends_with("/0")));
    assert!(ledgers.iter().any(|d| d.id.ends_with("/1")));
    assert_eq!(s.h.sales(0, i64::MAX).unwrap().len(), n);
    s.node.shutdown().await;
}
