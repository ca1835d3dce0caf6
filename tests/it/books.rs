//! The books beyond the till, on real nodes: FIFO cost and profit worked out by hand, shifts,
//! purchase orders with partial deliveries, one delivery recorded on two devices, refunds
//! without a receipt, open tickets closed on two cut-off tills, a late offline sale that
//! re-allocates FIFO cost, closed periods.

use crate::common;

use common::mesh::*;
use common::*;
use tillmesh::NodeHandle;
use tillmesh::domain::model::*;
use uuid::Uuid;

fn day_of(s: &Sale) -> String {
    s.day.clone()
}

fn cash(amount: i64) -> NewPayment {
    NewPayment {
        method: PaymentMethod::Cash,
        amount: Some(amount),
    }
}

fn sale_paid(product_id: Uuid, qty: i64, payments: Vec<NewPayment>) -> NewSale {
    NewSale {
        payments,
        ..sale_of(product_id, qty)
    }
}

fn return_of(line: usize, qty: i64, method: PaymentMethod) -> NewReturn {
    NewReturn {
        lines: vec![ReturnLine { line, qty }],
        refund_method: Some(method),
        reason: Some("changed mind".into()),
    }
}

/// Stock-ins at 1.00 and 1.30, a sale beyond the known lots waiting for the next lot at 1.50,
/// a return at the cost the goods left with, and what is left on the shelf — every cent by
/// hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_cost_and_profit_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let node = tillmesh::Node::builder()
        .data_dir(dir.path())
        .start()
        .await
        .unwrap();
    let handle = node.handle();
    let h = &handle;
    h.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let o = &h.login_password("olivia", OWNER_PW).await.unwrap();
    // Price 5.00 without tax, so revenue is easy to follow.
    let p = h.create_product(o, product("F1", 500, 0)).await.unwrap();
    h.stock_in(o, stock_in(p.id, 10, 100)).await.unwrap();
    h.stock_in(o, stock_in(p.id, 10, 130)).await.unwrap();

    // 12 sold: 10 × 1.00 + 2 × 1.30 = 12.60.
    let s1 = h.record_sale(o, sale_of(p.id, 12)).await.unwrap();
    assert_eq!(h.sale_profit(o, s1.id).unwrap().cost, 1260);
    // 15 sold with 8 known: 8 × 1.30 + 7 waiting at the last cost 1.30 = 19.50 for now.
    let s2 = h.record_sale(o, sale_of(p.id, 15)).await.unwrap();
    assert_eq!(h.sale_profit(o, s2.id).unwrap().cost, 1950);
    assert_eq!(on_hand(h, p.id), -7);
    // 10 arrive at 1.50: the 7 waiting take them first, so the sale cost 8 × 1.30 + 7 × 1.50.
    h.stock_in(o, stock_in(p.id, 10, 150)).await.unwrap();
    let p2 = h.sale_profit(o, s2.id).unwrap();
    assert_eq!(p2.cost, 2090);
    assert_eq!(p2.revenue, 7500);
    assert_eq!(p2.profit, 5410);
    // 5 of the 15 come back at the cost they left with: 20.90 × 5 / 15 = 6.96 (rounded down).
    h.return_sale(o, s2.id, return_of(0, 5, PaymentMethod::Cash))
        .await
        .unwrap();
    let p2 = h.sale_profit(o, s2.id).unwrap();
    assert_eq!((p2.revenue, p2.cost), (5000, 2090 - 696));
    // On the shelf: 3 × 1.50 + the 5 returned (6.96).
    let level = |h: &NodeHandle| {
        h.stock()
            .unwrap()
            .into_iter()
            .find(|l| l.product_id == p.id)
            .unwrap()
    };
    assert_eq!((level(h).on_hand, level(h).value_at_cost), (8, 450 + 696));
    // 4 sold: the 3 at 1.50, then 1 of the returned lot: 6.96 / 5 = 1.39.
    let s3 = h.record_sale(o, sale_of(p.id, 4)).await.unwrap();
    assert_eq!(h.sale_profit(o, s3.id).unwrap().cost, 450 + 139);
    assert_eq!(level(h).value_at_cost, 696 - 139);

    // The day: revenue 60 + 75 − 25 + 20 = 130.00; cost 12.60 + 20.90 − 6.96 + 5.89 = 32.43.
    let day = day_of(&s1);
    let days = h.profit_days(o, &day, &day).unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!(
        (days[0].revenue, days[0].cost, days[0].profit),
        (13_000, 3243, 13_000 - 3243)
    );
    let by_product = h.profit_by_product(o, &day, &day).unwrap();
    assert_eq!(by_product.len(), 1);
    assert_eq!(
        (by_product[0].qty, by_product[0].revenue, by_product[0].cost),
        (26, 13_000, 3243)
    );
    // A void brings the whole sale back at its cost: the day loses its revenue and cost.
    h.void_sale(o, s3.id, VoidSale::default()).await.unwrap();
    let days = h.profit_days(o, &day, &day).unwrap();
    assert_eq!((days[0].revenue, days[0].cost), (11_000, 3243 - 589));
    assert_eq!(level(h).value_at_cost, 450 + 696);
    assert_eq!(h.sale_profit(o, s3.id).unwrap().profit, 0);

    // Rebuilding every projection (`tillmesh reindex`) gives the same figures.
    let figures = |h: &NodeHandle| {
        (
            h.profit_days(o, &day, &day).unwrap(),
            h.profit_by_product(o, &day, &day).unwrap(),
            h.stock().unwrap(),
            h.sale_profit(o, s2.id).unwrap(),
        )
    };
    let before = figures(h);
    drop(handle);
    node.shutdown().await;
    let store = tillmesh::store::Store::open(&dir.path().join(tillmesh::node::STORE_FILE)).unwrap();
    tillmesh::domain::reindex::reindex(&store).unwrap();
    drop(store);
    let node = tillmesh::Node::builder()
        .data_dir(dir.path())
        .start()
        .await
        .unwrap();
    assert_eq!(figures(&node.handle()), before);
    node.shutdown().await;
}

/// A shift: float, a cash sale with change, a card sale, a pay-in, a pay-out, a cash return;
/// expected and counted to the cent; the report is the same on another till.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shift_report_by_hand_on_two_tills() {
    let two = Three::start_n(2, 100).await;
    let (a, o) = (&two.h[0], &two.owners[0]);
    let p = two.product;
    assert!(a.current_shift().unwrap().is_none());
    // No pay-out without a shift.
    let err = a
        .cash_move(
            o,
            NewCashMove {
                kind: CashMoveKind::PayOut,
                amount: 100,
                reason: "x".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("open one first"), "{err}");

    let shift = a.open_shift(o, OpenShift { float: 10_000 }).await.unwrap();
    assert!(a.open_shift(o, OpenShift { float: 1 }).await.is_err());
    // 4 × 3.00 = 12.00 paid with 20.00 cash: 8.00 change, 12.00 in the drawer.
    let cash_sale = a
        .record_sale(o, sale_paid(p, 4, vec![cash(2000)]))
        .await
        .unwrap();
    assert_eq!((cash_sale.total, cash_sale.change_due), (1200, 800));
    assert_eq!(cash_sale.shift_id, Some(shift.id));
    a.record_sale(o, sale_of(p, 10)).await.unwrap(); // 30.00 by card
    for (kind, amount, reason) in [
        (CashMoveKind::PayIn, 500, "change from the bank"),
        (CashMoveKind::PayOut, 2000, "window cleaner"),
    ] {
        a.cash_move(
            o,
            NewCashMove {
                kind,
                amount,
                reason: reason.into(),
            },
        )
        .await
        .unwrap();
    }
    // 1 of the 4 comes back in cash: 3.00.
    a.return_sale(o, cash_sale.id, return_of(0, 1, PaymentMethod::Cash))
        .await
        .unwrap();
    // A pay-out larger than the drawer is refused.
    assert!(
        a.cash_move(
            o,
            NewCashMove {
                kind: CashMoveKind::PayOut,
                amount: 1_000_000,
                reason: "too much".into(),
            },
        )
        .await
        .is_err()
    );
    let open = a.current_shift().unwrap().unwrap();
    // 100.00 + 12.00 − 3.00 + 5.00 − 20.00 = 94.00.
    assert_eq!(
        (
            open.cash_sales,
            open.card_sales,
            open.cash_refunds,
            open.pay_ins,
            open.pay_outs
        ),
        (1200, 3000, 300, 500, 2000)
    );
    assert_eq!(open.expected, 9400);
    let closed = a
        .close_shift(
            o,
            CloseShift {
                counted: 9350,
                note: Some("short 50 cents".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (closed.expected, closed.counted, closed.difference),
        (9400, Some(9350), Some(-50))
    );
    assert_eq!(closed.sales, 2);
    assert_eq!(closed.moves.len(), 2);
    assert!(a.current_shift().unwrap().is_none());
    // Sales after the close belong to no shift.
    let later = a.record_sale(o, sale_of(p, 1)).await.unwrap();
    assert_eq!(later.shift_id, None);

    // The other till shows the same report.
    let b = &two.h[1];
    assert!(wait_for(|| b.shift(shift.id).ok() == Some(closed.clone()), T).await);
    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(b.shifts(o, 0, now + 1).unwrap(), vec![closed]);
    two.shutdown().await;
}

fn po_line(product_id: Uuid, qty: i64, unit_cost: i64) -> PoLine {
    PoLine {
        product_id,
        variant_id: None,
        qty,
        unit_cost: Some(unit_cost),
    }
}

fn delivered(product_id: Uuid, qty: i64, unit_cost: i64) -> NewDeliveryLine {
    NewDeliveryLine {
        product_id,
        variant_id: None,
        qty,
        unit_cost: Some(unit_cost),
    }
}

async fn supplier(h: &NodeHandle, o: &Principal) -> Supplier {
    h.put_supplier(
        o,
        None,
        NewSupplier {
            name: "Bean Co".into(),
            contact: Some("Sam".into()),
            phone: None,
            email: Some("orders@bean.example".into()),
            note: None,
        },
    )
    .await
    .unwrap()
}

/// A purchase order received in two partial deliveries with price variances; low stock
/// counts what is still on order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchase_order_with_partial_deliveries() {
    let s = shop().await;
    let (h, o) = (&s.h, &s.owner);
    let a = h
        .create_product(
            o,
            NewProduct {
                reorder_level: Some(20),
                ..product("A1", 300, 0)
            },
        )
        .await
        .unwrap();
    let b = h.create_product(o, product("B1", 900, 0)).await.unwrap();
    let sup = supplier(h, o).await;
    assert_eq!(h.suppliers().unwrap(), vec![sup.clone()]);
    let po = h
        .create_purchase_order(
            o,
            NewPurchaseOrder {
                supplier_id: sup.id,
                lines: vec![po_line(a.id, 10, 100), po_line(b.id, 5, 200)],
                expected_on: Some("2026-12-01".into()),
                note: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(po.status, PoStatus::Draft);
    assert_eq!(po.ordered_value, 10 * 100 + 5 * 200);
    assert!(po.number.starts_with("PO-"));
    // A draft receives nothing.
    let dn1 = NewDelivery {
        note_number: "DN-1".into(),
        lines: vec![delivered(a.id, 4, 100), delivered(b.id, 5, 210)],
        note: None,
    };
    let err = h.receive_delivery(o, po.id, dn1.clone()).await.unwrap_err();
    assert!(err.to_string().contains("draft"), "{err}");
    // Low stock before anything is on order: A has 0 of 20, nothing coming.
    let low = |h: &NodeHandle| {
        h.low_stock()
            .unwrap()
            .into_iter()
            .find(|l| l.product_id == a.id)
    };
    assert_eq!(low(h).map(|l| (l.on_order, l.covered)), Some((0, false)));
    let po = h
        .update_purchase_order(
            o,
            po.id,
            PurchaseOrderPatch {
                status: Some(PoStatus::Sent),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(po.status, PoStatus::Sent);
    assert_eq!(low(h).map(|l| (l.on_order, l.covered)), Some((10, false)));
    // Lines can no longer change once sent.
    assert!(
        h.update_purchase_order(
            o,
            po.id,
            PurchaseOrderPatch {
                lines: Some(vec![po_line(a.id, 1, 1)]),
                ..Default::default()
            }
        )
        .await
        .is_err()
    );

    // First delivery: 4 of A, all of B at 2.10 instead of 2.00 (+0.50 variance).
    let d1 = h.receive_delivery(o, po.id, dn1.clone()).await.unwrap();
    assert_eq!(d1.variance, 50);
    assert_eq!(d1.total_cost, 400 + 1050);
    let po = h.purchase_order(po.id).unwrap();
    assert_eq!(po.status, PoStatus::Sent);
    let got: Vec<(i64, i64)> = po
        .lines
        .iter()
        .map(|l| (l.received, l.outstanding))
        .collect();
    assert_eq!(got, vec![(4, 6), (5, 0)]);
    assert_eq!((on_hand(h, a.id), on_hand(h, b.id)), (4, 5));
    assert_eq!(low(h).map(|l| (l.on_hand, l.on_order)), Some((4, 6)));
    // The same note again (any spelling) is refused and changes nothing.
    let again = NewDelivery {
        note_number: " dn-1 ".into(),
        ..dn1
    };
    assert!(h.receive_delivery(o, po.id, again).await.is_err());
    assert_eq!(on_hand(h, a.id), 4);
    // An item that is not on the order is refused.
    let stranger = h.create_product(o, product("C1", 100, 0)).await.unwrap();
    let err = h
        .receive_delivery(
            o,
            po.id,
            NewDelivery {
                note_number: "DN-X".into(),
                lines: vec![delivered(stranger.id, 1, 1)],
                note: None,
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not on"), "{err}");

    // Second delivery: the other 6 of A at 0.95 (−0.30): the order is received.
    let d2 = h
        .receive_delivery(
            o,
            po.id,
            NewDelivery {
                note_number: "DN-2".into(),
                lines: vec![delivered(a.id, 6, 95)],
                note: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(d2.variance, -30);
    let po = h.purchase_order(po.id).unwrap();
    assert_eq!(po.status, PoStatus::Received);
    assert_eq!(po.deliveries.len(), 2);
    assert_eq!(po.received_value, 400 + 1050 + 570);
    assert!(h.purchase_orders(true).unwrap().is_empty());
    assert_eq!(on_hand(h, a.id), 10);
    // Deliveries are FIFO lots at the actual cost: 4 × 1.00 + 6 × 0.95.
    let value = h
        .stock()
        .unwrap()
        .into_iter()
        .find(|l| l.product_id == a.id)
        .unwrap()
        .value_at_cost;
    assert_eq!(value, 400 + 570);
    // A received order cannot be cancelled.
    assert!(
        h.update_purchase_order(
            o,
            po.id,
            PurchaseOrderPatch {
                status: Some(PoStatus::Cancelled),
                ..Default::default()
            }
        )
        .await
        .is_err()
    );
    drop(s.h);
    s.node.shutdown().await;
}

/// Two tills cut off from each other record the same delivery note: once healed, stock counts
/// it once on both, and both name the same entry as the one that counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delivery_recorded_on_two_devices_counts_once() {
    let two = Three::start_n(2, 0).await;
    let (a, b) = (&two.h[0], &two.h[1]);
    let (oa, ob) = (&two.owners[0], &two.owners[1]);
    let p = two.product;
    let sup = supplier(a, oa).await;
    let po = a
        .create_purchase_order(
            oa,
            NewPurchaseOrder {
                supplier_id: sup.id,
                lines: vec![po_line(p, 10, 100)],
                expected_on: None,
                note: None,
            },
        )
        .await
        .unwrap();
    a.update_purchase_order(
        oa,
        po.id,
        PurchaseOrderPatch {
            status: Some(PoStatus::Confirmed),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(
        wait_for(
            || b.purchase_order(po.id)
                .is_ok_and(|p| p.status == PoStatus::Confirmed),
            T
        )
        .await
    );
    let before = on_hand(a, p);
    two.cut(0, 1).await;
    let note = |cost| NewDelivery {
        note_number: "DN-7".into(),
        lines: vec![delivered(p, 10, cost)],
        note: None,
    };
    let da = a.receive_delivery(oa, po.id, note(100)).await.unwrap();
    let db = b.receive_delivery(ob, po.id, note(101)).await.unwrap();
    assert_eq!(
        da.id, db.id,
        "the delivery id comes from the order and the note"
    );
    assert_eq!(on_hand(a, p), before + 10);
    assert_eq!(on_hand(b, p), before + 10);
    two.heal(0, 1).await;
    assert!(two.converged(T).await);
    let winner = if (da.time, da.entry_id) < (db.time, db.entry_id) {
        &da
    } else {
        &db
    };
    for h in [a, b] {
        assert_eq!(on_hand(h, p), before + 10, "counted once");
        let po = h.purchase_order(po.id).unwrap();
        assert_eq!(po.deliveries.len(), 1);
        assert_eq!(po.deliveries[0].entry_id, winner.entry_id);
        assert_eq!(po.deliveries[0].duplicates.len(), 1);
        assert_eq!(po.status, PoStatus::Received);
        assert_eq!(h.movements(p).unwrap().len(), a.movements(p).unwrap().len());
    }
    assert_eq!(a.stock().unwrap(), b.stock().unwrap());
    two.shutdown().await;
}

/// An offline till's sale made before the other till's sale arrives late: FIFO re-allocates it
/// the same way on both tills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_offline_sale_reallocates_fifo_identically() {
    let two = Three::start_n(2, 5).await; // 5 at 1.00 on A, synced to B
    let (a, b) = (&two.h[0], &two.h[1]);
    let (oa, ob) = (&two.owners[0], &two.owners[1]);
    let p = two.product;
    assert!(wait_for(|| on_hand(b, p) == 5, T).await);
    two.cut(0, 1).await;
    // B sells 4 first, offline.
    let sb = b.record_sale(ob, sale_of(p, 4)).await.unwrap();
    // A sells 4 later, not knowing: it takes 4 at 1.00 for now; then 5 arrive at 2.00.
    let sa = a.record_sale(oa, sale_of(p, 4)).await.unwrap();
    assert!(sa.time > sb.time);
    assert_eq!(a.sale_profit(oa, sa.id).unwrap().cost, 400);
    a.stock_in(oa, stock_in(p, 5, 200)).await.unwrap();
    two.heal(0, 1).await;
    assert!(two.converged(T).await);
    // In (time, id) order B's sale took 4 × 1.00; A's the last 1.00 and 3 × 2.00.
    for h in [a, b] {
        assert_eq!(h.sale_profit(oa, sb.id).unwrap().cost, 400);
        assert_eq!(h.sale_profit(oa, sa.id).unwrap().cost, 100 + 600);
        assert_eq!(on_hand(h, p), 2);
    }
    let day = sa.day.clone();
    assert_eq!(
        a.profit_days(oa, &day, &day).unwrap(),
        b.profit_days(ob, &day, &day).unwrap()
    );
    assert_eq!(
        a.profit_by_product(oa, &day, &day).unwrap(),
        b.profit_by_product(ob, &day, &day).unwrap()
    );
    assert_eq!(a.stock().unwrap(), b.stock().unwrap());
    let value = a.stock().unwrap()[0].value_at_cost;
    assert_eq!(value, 2 * 200);
    two.shutdown().await;
}

/// A ticket parked on A is picked up on B; cut off from each other, both tills take payment
/// for it: the earliest close wins on both, and the other sale is flagged for a refund.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_ticket_closed_on_two_cut_off_tills() {
    let two = Three::start_n(2, 50).await;
    let (a, b) = (&two.h[0], &two.h[1]);
    let (oa, ob) = (&two.owners[0], &two.owners[1]);
    let p = two.product;
    let line = |qty| TicketLine {
        product_id: p,
        variant_id: None,
        qty,
        discount: None,
    };
    let t = a
        .park_ticket(
            oa,
            None,
            ParkTicket {
                name: "Table 4".into(),
                lines: vec![line(2)],
            },
        )
        .await
        .unwrap();
    assert_eq!(t.status, TicketStatus::Open);
    // B picks it up and adds to it.
    assert!(wait_for(|| b.tickets(true).unwrap().len() == 1, T).await);
    let t = b
        .park_ticket(
            ob,
            Some(t.id),
            ParkTicket {
                name: "Table 4".into(),
                lines: vec![line(3)],
            },
        )
        .await
        .unwrap();
    assert!(wait_for(|| a.ticket(t.id).is_ok_and(|x| x.lines == vec![line(3)]), T).await);

    let mut events = a.subscribe();
    two.cut(0, 1).await;
    let pay = || NewSale {
        ticket_id: Some(t.id),
        ..sale_of(p, 3)
    };
    let sb = b.record_sale(ob, pay()).await.unwrap();
    let sa = a.record_sale(oa, pay()).await.unwrap();
    // Paying it again on the same till is refused.
    assert!(a.record_sale(oa, pay()).await.is_err());
    two.heal(0, 1).await;
    assert!(two.converged(T).await);
    let (first, second) = if (sb.time, sb.id) < (sa.time, sa.id) {
        (sb.id, sa.id)
    } else {
        (sa.id, sb.id)
    };
    for h in [a, b] {
        let x = h.ticket(t.id).unwrap();
        assert_eq!(x.status, TicketStatus::Closed);
        assert_eq!(x.closed_by, Some(first));
        assert_eq!(x.double_closed_by, vec![second]);
        // Still listed: it needs attention.
        assert_eq!(h.tickets(true).unwrap().len(), 1);
    }
    // A heard about it.
    let deadline = std::time::Instant::now() + T;
    let mut heard = false;
    while std::time::Instant::now() < deadline && !heard {
        if let Ok(Ok(Event::TicketDoubleClosed { to_refund, .. })) =
            tokio::time::timeout(T, events.recv()).await
        {
            heard = to_refund == vec![second];
        }
    }
    assert!(heard, "a double close raises an event");
    // Discarding a closed ticket is refused; a new one can be discarded.
    assert!(a.discard_ticket(oa, t.id).await.is_err());
    let t2 = a
        .park_ticket(
            oa,
            None,
            ParkTicket {
                name: "Mrs Smith".into(),
                lines: vec![line(1)],
            },
        )
        .await
        .unwrap();
    let gone = a.discard_ticket(oa, t2.id).await.unwrap();
    assert_eq!(gone.status, TicketStatus::Discarded);
    two.shutdown().await;
}

/// A refund without the receipt (manager): money by method, goods back on the shelf at the
/// last cost, and staff may not do it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_without_a_receipt() {
    let s = shop().await;
    let (h, o) = (&s.h, &s.owner);
    let p = h
        .create_product(o, product("R1", 1200, 2000))
        .await
        .unwrap();
    h.stock_in(o, stock_in(p.id, 3, 400)).await.unwrap();
    let r = h
        .refund(
            o,
            NewRefund {
                lines: vec![NewRefundLine {
                    product_id: p.id,
                    variant_id: None,
                    qty: 1,
                    amount: None,
                }],
                refund_method: Some(PaymentMethod::Card),
                reason: "lost receipt".into(),
                restock: None,
            },
        )
        .await
        .unwrap();
    // 12.00 including 20 % tax: 2.00 tax.
    assert_eq!((r.refund, r.tax), (1200, 200));
    assert_eq!(on_hand(h, p.id), 4);
    let today = chrono::Utc::now().timestamp_millis();
    assert_eq!(h.refunds(o, 0, today + 1).unwrap(), vec![r.clone()]);
    let daily = h.daily_sales(o, "2000-01-01", "2100-01-01").unwrap();
    assert_eq!((daily[0].refunds, daily[0].total), (1200, -1200));
    // Given an amount: 6.00, tax in proportion.
    let r2 = h
        .refund(
            o,
            NewRefund {
                lines: vec![NewRefundLine {
                    product_id: p.id,
                    variant_id: None,
                    qty: 1,
                    amount: Some(600),
                }],
                refund_method: None,
                reason: "damaged, thrown away".into(),
                restock: Some(false),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (r2.refund, r2.tax, r2.refund_method),
        (600, 100, PaymentMethod::Cash)
    );
    assert_eq!(on_hand(h, p.id), 4, "not restocked");
    // Bad input changes nothing.
    let envelopes = h.envelopes().unwrap().len();
    for bad in [
        NewRefund {
            lines: vec![],
            refund_method: None,
            reason: "x".into(),
            restock: None,
        },
        NewRefund {
            lines: vec![NewRefundLine {
                product_id: p.id,
                variant_id: None,
                qty: 0,
                amount: None,
            }],
            refund_method: None,
            reason: "x".into(),
            restock: None,
        },
        NewRefund {
            lines: vec![NewRefundLine {
                product_id: p.id,
                variant_id: None,
                qty: 1,
                amount: None,
            }],
            refund_method: None,
            reason: "  ".into(),
            restock: None,
        },
    ] {
        assert!(h.refund(o, bad).await.is_err());
    }
    assert_eq!(h.envelopes().unwrap().len(), envelopes);
    drop(s.h);
    s.node.shutdown().await;
}

/// Closing a period freezes its days; a late sale for a closed day posts as an adjustment on
/// the first open day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_period_freezes_and_late_entries_adjust() {
    let s = shop().await;
    let (h, o) = (&s.h, &s.owner);
    let p = h.create_product(o, product("P1", 1000, 0)).await.unwrap();
    h.stock_in(o, stock_in(p.id, 100, 400)).await.unwrap();
    let day_ms = 24 * 3600 * 1000;
    let now = chrono::Utc::now().timestamp_millis();
    // Stock arrived before the sales below: back-date it by re-recording a lot 10 days ago is
    // not possible, so the sales 3 and 2 days ago sell beyond known lots at the last cost (none
    // yet: 0) and take the lot at 4.00 when it is replayed in time order.
    let s3 = h
        .record_sale_at(o, sale_of(p.id, 2), now - 3 * day_ms)
        .await
        .unwrap();
    let s2 = h
        .record_sale_at(o, sale_of(p.id, 1), now - 2 * day_ms)
        .await
        .unwrap();
    let (d3, d2) = (s3.day.clone(), s2.day.clone());
    let live = h.profit_days(o, &d3, &d2).unwrap();
    assert_eq!(live.len(), 2);
    assert_eq!((live[0].revenue, live[0].cost), (2000, 800));
    assert_eq!((live[1].revenue, live[1].cost), (1000, 400));

    // Only an owner closes, only up to yesterday.
    let today = h.record_sale(o, sale_of(p.id, 1)).await.unwrap().day;
    assert!(
        h.close_period(
            o,
            NewPeriodClose {
                through: today.clone()
            }
        )
        .await
        .is_err()
    );
    assert!(
        h.close_period(
            o,
            NewPeriodClose {
                through: "22-11-2026".into()
            }
        )
        .await
        .is_err()
    );
    let close = h
        .close_period(
            o,
            NewPeriodClose {
                through: d2.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(close.days.len(), 2);
    assert_eq!(h.periods(o).unwrap(), vec![close.clone()]);
    assert!(
        h.close_period(
            o,
            NewPeriodClose {
                through: d3.clone()
            }
        )
        .await
        .is_err(),
        "already closed through a later day"
    );

    // A late sale 3 days ago (an offline till's): the closed day keeps its figures.
    h.record_sale_at(o, sale_of(p.id, 5), now - 3 * day_ms + 1000)
        .await
        .unwrap();
    let after = h.profit_days(o, &d3, &d2).unwrap();
    assert_eq!(after, close.days, "closed days are frozen");
    assert!(after.iter().all(|d| d.closed));
    // The first open day carries it: +50.00 revenue, +20.00 cost.
    let first_open = h.profit_days(o, &d2, &today).unwrap();
    let adj = first_open
        .iter()
        .find(|d| !d.closed && d.adjustment_revenue != 0)
        .expect("an adjustment day");
    assert_eq!((adj.adjustment_revenue, adj.adjustment_cost), (5000, 2000));
    drop(s.h);
    s.node.shutdown().await;
}

/// Three tills, cut off from each other for a while, each sell, receive, refund and run a
/// shift; once healed and converged every books report is byte-identical on all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn books_are_byte_identical_on_three_converged_tills() {
    let three = Three::start(30).await;
    let p = three.product;
    let (h, o) = (&three.h, &three.owners);
    let sup = supplier(&h[0], &o[0]).await;
    let po = h[0]
        .create_purchase_order(
            &o[0],
            NewPurchaseOrder {
                supplier_id: sup.id,
                lines: vec![po_line(p, 50, 90)],
                expected_on: None,
                note: None,
            },
        )
        .await
        .unwrap();
    h[0].update_purchase_order(
        &o[0],
        po.id,
        PurchaseOrderPatch {
            status: Some(PoStatus::Sent),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(three.converged(T).await);
    for (i, j) in [(0, 1), (0, 2), (1, 2)] {
        three.cut(i, j).await;
    }
    // Cut off: each till runs a shift and sells; two of them receive the same delivery note,
    // the third another one; one refunds without a receipt.
    for i in 0..3 {
        h[i].open_shift(&o[i], OpenShift { float: 5_000 })
            .await
            .unwrap();
        for qty in [1, 2, 3] {
            h[i].record_sale(&o[i], sale_paid(p, qty, vec![cash(2_000)]))
                .await
                .unwrap();
        }
    }
    for (i, note, qty) in [(0, "DN-1", 20), (1, "DN-1", 20), (2, "DN-2", 10)] {
        h[i].receive_delivery(
            &o[i],
            po.id,
            NewDelivery {
                note_number: note.into(),
                lines: vec![delivered(p, qty, 95)],
                note: None,
            },
        )
        .await
        .unwrap();
    }
    h[2].refund(
        &o[2],
        NewRefund {
            lines: vec![NewRefundLine {
                product_id: p,
                variant_id: None,
                qty: 1,
                amount: None,
            }],
            refund_method: None,
            reason: "no receipt".into(),
            restock: None,
        },
    )
    .await
    .unwrap();
    for i in 0..3 {
        h[i].record_sale(&o[i], sale_of(p, 4)).await.unwrap();
        h[i].close_shift(
            &o[i],
            CloseShift {
                counted: 5_000 + 1_800 * (i as i64 + 1),
                note: None,
            },
        )
        .await
        .unwrap();
    }
    for (i, j) in [(0, 1), (0, 2), (1, 2)] {
        three.heal(i, j).await;
    }
    assert!(three.converged(T).await);
    let day = h[0].sales(0, i64::MAX).unwrap()[0].day.clone();
    let books = |x: &NodeHandle| -> Vec<Vec<u8>> {
        let by = &owner_of(x);
        vec![
            serde_json::to_vec(&x.profit_days(by, "2000-01-01", "2100-01-01").unwrap()).unwrap(),
            serde_json::to_vec(&x.profit_by_product(by, &day, &day).unwrap()).unwrap(),
            serde_json::to_vec(&x.low_stock().unwrap()).unwrap(),
            serde_json::to_vec(&x.purchase_orders(false).unwrap()).unwrap(),
            serde_json::to_vec(&x.shifts(by, 0, i64::MAX).unwrap()).unwrap(),
            serde_json::to_vec(&x.refunds(by, 0, i64::MAX).unwrap()).unwrap(),
            serde_json::to_vec(&x.stock().unwrap()).unwrap(),
            serde_json::to_vec(&x.daily_sales(by, "2000-01-01", "2100-01-01").unwrap()).unwrap(),
        ]
    };
    assert!(
        wait_for(
            || books(&h[1]) == books(&h[0]) && books(&h[2]) == books(&h[0]),
            T
        )
        .await,
        "the same books on every till"
    );
    // And they add up: 30 + 20 (DN-1 once) + 10 (DN-2) − 3 × (1 + 2 + 3 + 4) + 1 refunded.
    assert_eq!(on_hand(&h[0], p), 30 + 20 + 10 - 30 + 1);
    let shifts = h[0].shifts(&o[0], 0, i64::MAX).unwrap();
    assert_eq!(shifts.len(), 3);
    assert!(shifts.iter().all(|s| s.counted.is_some()));
    let po = h[0].purchase_order(po.id).unwrap();
    assert_eq!(po.deliveries.len(), 2);
    assert_eq!(po.lines[0].received, 30);
    three.shutdown().await;
}
