//! CRDT properties: any order, duplication and interleaving of the same envelopes gives
//! identical documents and identical projections on every replica; forged or under-privileged
//! envelopes are refused.

use crate::common;
use std::sync::OnceLock;

use common::*;
use proptest::prelude::*;
use tillmesh::docs::Envelope;
use tillmesh::domain::model::*;
use tillmesh::replica::Applied;
use tillmesh::{Error, Node, NodeHandle};

/// Everything a replica shows, for comparison.
#[derive(Debug, PartialEq)]
struct Snapshot {
    docs: Vec<(String, Vec<String>)>,
    products: Vec<Product>,
    stock: Vec<StockLevel>,
    sales: Vec<Sale>,
    daily: Vec<DailySales>,
    /// Every report of the last 30 days, as JSON.
    reports: Vec<String>,
}

fn snapshot(h: &NodeHandle) -> Snapshot {
    let by = &owner_of(h);
    let mut docs: Vec<(String, Vec<String>)> = h
        .stored_documents()
        .unwrap()
        .into_iter()
        .map(|d| {
            let mut heads = d.heads;
            heads.sort();
            (d.id, heads)
        })
        .collect();
    docs.sort();
    Snapshot {
        docs,
        products: h.products().unwrap(),
        stock: h.stock().unwrap(),
        sales: h.sales(0, i64::MAX).unwrap(),
        daily: h.daily_sales(by, "0000-00-00", "9999-99-99").unwrap(),
        reports: reports(h),
    }
}

fn reports(h: &NodeHandle) -> Vec<String> {
    use tillmesh::domain::reports::{DayRange, MAX_TOP_DAYS, Period};
    let range = DayRange::last_days(h.shop_today(), 30, MAX_TOP_DAYS).unwrap();
    let json = |v: serde_json::Result<String>| v.unwrap();
    let by = &owner_of(h);
    vec![
        json(serde_json::to_string(
            &h.sales_report(by, range, Period::Day).unwrap(),
        )),
        json(serde_json::to_string(
            &h.top_sellers(by, range, 100).unwrap(),
        )),
        json(serde_json::to_string(&h.staff_report(by, range).unwrap())),
        json(serde_json::to_string(&h.tax_report(by, range).unwrap())),
        json(serde_json::to_string(
            &h.payments_report(by, range).unwrap(),
        )),
        json(serde_json::to_string(&h.inventory_value(by).unwrap())),
        json(serde_json::to_string(&h.movement_trend(by, range).unwrap())),
    ]
}

struct History {
    genesis: automerge::ChangeHash,
    envelopes: Vec<Envelope>,
    merged: Snapshot,
}

/// A shop's history with concurrent catalog edits on two replicas (A and B), sales, a void
/// and stock movements; `merged` is A after importing B's changes.
fn history() -> &'static History {
    static H: OnceLock<History> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let a = shop().await;
            let p1 =
                a.h.create_product(&a.owner, product("P1", 500, 2000))
                    .await
                    .unwrap();
            let p2 =
                a.h.create_product(&a.owner, product("P2", 1250, 550))
                    .await
                    .unwrap();
            a.h.stock_in(&a.owner, stock_in(p1.id, 20, 200))
                .await
                .unwrap();
            let genesis = a.h.genesis().unwrap().unwrap();

            // B: a second replica with the same history, where the owner logs in too.
            let b = Node::builder().memory().start().await.unwrap();
            let bh = b.handle();
            bh.import_envelopes(Some(genesis), a.h.envelopes().unwrap())
                .await
                .unwrap();
            let owner_b = bh.login_password("olivia", OWNER_PW).await.unwrap();

            // Concurrent edits: the same field on both sides, and different fields.
            let price = |p| ProductPatch {
                price: Some(p),
                ..Default::default()
            };
            a.h.update_product(&a.owner, p1.id, price(520))
                .await
                .unwrap();
            bh.update_product(&owner_b, p1.id, price(525))
                .await
                .unwrap();
            bh.update_product(
                &owner_b,
                p2.id,
                ProductPatch {
                    name: Some("Renamed".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            a.h.update_product(
                &a.owner,
                p2.id,
                ProductPatch {
                    cost: Some(700),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            // Sales, a void, a removal and a stock-in on A.
            for q in 1..=4 {
                a.h.record_sale(&a.owner, sale_of(p1.id, q)).await.unwrap();
            }
            let s = a.h.record_sale(&a.owner, sale_of(p2.id, 2)).await.unwrap();
            a.h.void_sale(&a.owner, s.id, VoidSale::default())
                .await
                .unwrap();
            a.h.stock_in(&a.owner, stock_in(p2.id, 7, 650))
                .await
                .unwrap();
            a.h.stock_remove(
                &a.owner,
                StockRemove {
                    product_id: p1.id,
                    variant_id: None,
                    qty: 1,
                    reason: RemovalReason::Damaged,
                    note: None,
                },
            )
            .await
            .unwrap();

            let mut envelopes = a.h.envelopes().unwrap();
            for e in bh.envelopes().unwrap() {
                if !envelopes.contains(&e) {
                    envelopes.push(e);
                }
            }
            a.h.import_envelopes(None, bh.envelopes().unwrap())
                .await
                .unwrap();
            let merged = snapshot(&a.h);
            assert_eq!(
                merged
                    .products
                    .iter()
                    .find(|p| p.id == p1.id)
                    .unwrap()
                    .conflicts["price"]
                    .len(),
                2
            );
            History {
                genesis,
                envelopes,
                merged,
            }
        })
    })
}

async fn replay(order: &[usize], chunk: usize) -> Snapshot {
    let h = history();
    let node = Node::builder().memory().start().await.unwrap();
    let n = node.handle();
    let envs: Vec<Envelope> = order.iter().map(|&i| h.envelopes[i].clone()).collect();
    for part in envs.chunks(chunk.max(1)) {
        for r in n
            .import_envelopes(Some(h.genesis), part.to_vec())
            .await
            .unwrap()
        {
            r.unwrap();
        }
    }
    let snap = snapshot(&n);
    node.shutdown().await;
    snap
}

fn order_strategy() -> impl Strategy<Value = (Vec<usize>, usize)> {
    let n = history().envelopes.len();
    (
        Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
        proptest::collection::vec(0..n, 0..8),
        1usize..12,
    )
        .prop_map(|(mut order, dups, chunk)| {
            // Duplicates land anywhere in the stream.
            for (k, d) in dups.into_iter().enumerate() {
                let at = (k * 7) % (order.len() + 1);
                order.insert(at, d);
            }
            (order, chunk)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_order_and_duplication_converges((order, chunk) in order_strategy()) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let snap = rt.block_on(replay(&order, chunk));
        prop_assert_eq!(&snap, &history().merged);
    }
}

#[test]
fn forged_and_underprivileged_envelopes_are_refused() {
    let h = history();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(refuse_forgeries(h));
}

async fn refuse_forgeries(h: &History) {
    let node = Node::builder().memory().start().await.unwrap();
    let n = node.handle();
    n.import_envelopes(Some(h.genesis), h.envelopes.clone())
        .await
        .unwrap();
    let before = snapshot(&n);

    // A catalog change signed by a till's device key: a device may not write the catalog.
    let till_key = tillmesh::identity::new_signing_key();
    let catalog_change = {
        let mut doc = automerge::AutoCommit::new();
        doc.set_author(Some(automerge::Author::from(
            till_key.verifying_key().to_bytes().to_vec(),
        )));
        use automerge::transaction::Transactable;
        doc.put(
            automerge::ROOT,
            "product:00000000-0000-0000-0000-000000000001",
            "x",
        )
        .unwrap();
        doc.commit();
        doc.get_last_local_change().unwrap()
    };
    let members = h.envelopes.iter().find(|e| e.doc == "members").unwrap();
    let by_till = Envelope::sign(
        &till_key,
        "catalog",
        &catalog_change,
        1,
        &members.members_heads(),
    );
    let results = n.import_envelopes(None, vec![by_till]).await.unwrap();
    assert!(
        matches!(&results[0], Err(Error::Rejected(_))),
        "{results:?}"
    );

    // A change claiming the owner as author and signer, but signed by another key.
    let owner_pk = members.signer;
    let owner_change = {
        let mut doc = automerge::AutoCommit::new();
        doc.set_author(Some(automerge::Author::from(owner_pk.to_vec())));
        use automerge::transaction::Transactable;
        doc.put(
            automerge::ROOT,
            "product:00000000-0000-0000-0000-000000000002",
            "x",
        )
        .unwrap();
        doc.commit();
        doc.get_last_local_change().unwrap()
    };
    let mut forged = Envelope::sign(
        &till_key,
        "catalog",
        &owner_change,
        1,
        &members.members_heads(),
    );
    forged.signer = owner_pk;
    let mut changed = forged.clone();
    let last = changed.change.len() - 1;
    changed.change[last] ^= 1;
    let results = n
        .import_envelopes(None, vec![forged, changed])
        .await
        .unwrap();
    assert!(
        matches!(&results[0], Err(Error::Rejected(m)) if m.contains("signature")),
        "{results:?}"
    );
    assert!(results[1].is_err());

    // Garbage never applies.
    let results = n
        .import_envelopes(
            None,
            vec![Envelope {
                doc: "catalog".into(),
                change: vec![1, 2, 3],
                signer: [0; 32],
                signature: vec![],
                schema: 1,
                members_heads: vec![],
            }],
        )
        .await
        .unwrap();
    assert!(results[0].is_err());
    assert_eq!(snapshot(&n), before);

    // A duplicate is harmless.
    let again = n
        .import_envelopes(None, h.envelopes[..3].to_vec())
        .await
        .unwrap();
    assert!(again.iter().all(|r| matches!(r, Ok(Applied::Duplicate(_)))));
    node.shutdown().await;
}

/// Three replicas cut off from each other each set a different price on one product, then
/// merge in different orders (issue "The core on seams", bug 1). The documents end identical,
/// so must what each shows: the product's `conflicts` and the conflict alert's id. Automerge
/// emits no patch when an already-conflicted field gains a value while its winner stays, so a
/// projection driven by the diff's patches left the third value out on some replicas.
#[test]
fn three_way_price_conflicts_project_the_same_everywhere() {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(three_way_price_conflict());
}

async fn three_way_price_conflict() {
    let a = shop().await;
    let p =
        a.h.create_product(&a.owner, product("P3", 500, 2000))
            .await
            .unwrap();
    let genesis = a.h.genesis().unwrap().unwrap();
    let mut nodes = vec![];
    for _ in 0..2 {
        let n = Node::builder().memory().start().await.unwrap();
        n.handle()
            .import_envelopes(Some(genesis), a.h.envelopes().unwrap())
            .await
            .unwrap();
        nodes.push(n);
    }
    let handles = [a.h.clone(), nodes[0].handle(), nodes[1].handle()];
    let mut edits = vec![];
    for (i, h) in handles.iter().enumerate() {
        let owner = h.login_password("olivia", OWNER_PW).await.unwrap();
        let before: std::collections::HashSet<Vec<u8>> = h
            .envelopes()
            .unwrap()
            .iter()
            .map(Envelope::to_bytes)
            .collect();
        let patch = ProductPatch {
            price: Some(510 + i as i64),
            ..Default::default()
        };
        h.update_product(&owner, p.id, patch).await.unwrap();
        let made: Vec<Envelope> = h
            .envelopes()
            .unwrap()
            .into_iter()
            .filter(|e| e.doc == "catalog" && !before.contains(&e.to_bytes()))
            .collect();
        assert_eq!(made.len(), 1, "one catalog change per price edit");
        edits.push(made);
    }
    // Each replica takes the other two's edits one at a time, in a different order.
    for (i, h) in handles.iter().enumerate() {
        for k in [(i + 1) % 3, (i + 2) % 3] {
            for r in h.import_envelopes(None, edits[k].clone()).await.unwrap() {
                assert!(matches!(r, Ok(Applied::New(_))), "{r:?}");
            }
        }
    }
    let shown = |h: &NodeHandle| {
        let product = h.product(p.id).unwrap();
        let alerts: Vec<String> = h
            .alerts(false)
            .unwrap()
            .into_iter()
            .filter(|a| a.id.contains("conflict"))
            .map(|a| a.id)
            .collect();
        (product.price, product.conflicts, alerts)
    };
    let first = shown(&handles[0]);
    assert_eq!(
        first.1["price"].len(),
        3,
        "three concurrent prices: {first:?}"
    );
    assert_eq!(first.2.len(), 1, "one conflict alert: {first:?}");
    for h in &handles[1..] {
        assert_eq!(shown(h), first);
    }
    for n in nodes {
        n.shutdown().await;
    }
    a.node.shutdown().await;
}
