//! Anti-entropy between replicas, over an in-memory transport (the protocol is transport-free).

use crate::common;
use common::*;
use tillmesh::Node;
use tillmesh::sync::{self, SyncPeer, SyncRequest, SyncResponse};

#[tokio::test]
async fn late_joiner_pulls_everything_and_converges() {
    let a = shop().await;
    let p =
        a.h.create_product(&a.owner, product("L1", 300, 2000))
            .await
            .unwrap();
    a.h.stock_in(&a.owner, stock_in(p.id, 5000, 100))
        .await
        .unwrap();
    let sales = 600;
    let mut tasks = Vec::new();
    for _ in 0..sales {
        let h = a.h.clone();
        let owner = a.owner.clone();
        tasks.push(tokio::spawn(async move {
            h.record_sale(&owner, sale_of(p.id, 1)).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let b = Node::builder().memory().start().await.unwrap();
    let bh = b.handle();
    bh.import_envelopes(a.h.genesis().unwrap(), vec![])
        .await
        .unwrap();
    let report = sync::pull(&bh, &Direct(a.h.clone())).await.unwrap();
    assert_eq!(report.rejected, 0);
    assert_eq!(report.applied, a.h.envelopes().unwrap().len());
    assert_eq!(on_hand(&bh, p.id), 5000 - sales);
    assert_eq!(bh.sales(0, i64::MAX).unwrap().len(), sales as usize);
    assert_eq!(bh.bucket_digests().unwrap(), a.h.bucket_digests().unwrap());

    // A second pull finds nothing to do; a pull the other way too.
    assert_eq!(
        sync::pull(&bh, &Direct(a.h.clone())).await.unwrap().fetched,
        0
    );
    assert_eq!(
        sync::pull(&a.h, &Direct(bh.clone())).await.unwrap().fetched,
        0
    );
}

#[tokio::test]
async fn both_sides_edit_then_pull_each_other() {
    let a = shop().await;
    let p =
        a.h.create_product(&a.owner, product("M1", 300, 0))
            .await
            .unwrap();
    let b = Node::builder().memory().start().await.unwrap();
    let bh = b.handle();
    bh.import_envelopes(a.h.genesis().unwrap(), vec![])
        .await
        .unwrap();
    sync::pull(&bh, &Direct(a.h.clone())).await.unwrap();
    let owner_b = bh.login_password("olivia", OWNER_PW).await.unwrap();
    let price = |v| tillmesh::domain::model::ProductPatch {
        price: Some(v),
        ..Default::default()
    };
    a.h.update_product(&a.owner, p.id, price(310))
        .await
        .unwrap();
    bh.update_product(&owner_b, p.id, price(320)).await.unwrap();
    sync::pull(&bh, &Direct(a.h.clone())).await.unwrap();
    sync::pull(&a.h, &Direct(bh.clone())).await.unwrap();
    let pa = a.h.product(p.id).unwrap();
    let pb = bh.product(p.id).unwrap();
    assert_eq!(pa, pb);
    assert_eq!(pa.conflicts["price"].len(), 2, "{pa:?}");
    assert_eq!(a.h.bucket_digests().unwrap(), bh.bucket_digests().unwrap());
}

#[tokio::test]
async fn garbage_requests_get_errors_not_crashes() {
    let a = shop().await;
    assert!(SyncRequest::from_bytes(&[0xff, 0xff, 0xff]).is_err());
    let too_many = SyncRequest::Envelopes(vec![[0; 32]; sync::ENVELOPE_BATCH + 1]);
    assert!(matches!(
        a.h.answer_sync(too_many),
        SyncResponse::Refused(r) if r.kind == sync::RefusalKind::Invalid
    ));
    let unknown = a.h.answer_sync(SyncRequest::Envelopes(vec![[7; 32]]));
    assert_eq!(unknown, SyncResponse::Envelopes(vec![]));
}

/// A peer that also redeems invites (as the mesh's request handler does) for the joining
/// device `.1` (the mesh takes its key from the authenticated connection).

#[tokio::test]
async fn invite_join_sell_and_sync_back() {
    let a = shop().await;
    let p =
        a.h.create_product(&a.owner, product("J1", 400, 0))
            .await
            .unwrap();
    let inv = till_invite(&a.h, &a.owner, "Till 2").await;
    assert_eq!(inv.receipt_prefix, "T2");

    let b = Node::builder().memory().start().await.unwrap();
    let bh = b.handle();
    // A wrong code is refused clearly and changes nothing.
    let err = sync::join(
        &bh,
        &Joinable(a.h.clone(), bh.clone()),
        "AAAAA-BBBBB",
        &Default::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("unknown invite"), "{err}");
    assert!(!bh.status().unwrap().has_shop);

    let invite = sync::join(
        &bh,
        &Joinable(a.h.clone(), bh.clone()),
        &inv.code.to_lowercase(),
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(invite.cert().name, "Till 2");
    let me = bh.status().unwrap().device.expect("B is a member now");
    assert_eq!(me.receipt_prefix, "T2");
    // The same code again: used.
    let c = Node::builder().memory().start().await.unwrap();
    let err = sync::join(
        &c.handle(),
        &Joinable(a.h.clone(), c.handle()),
        &inv.code,
        &Default::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("already used"), "{err}");

    // A learns of B, then B sells and A pulls the sale.
    sync::pull(&a.h, &Direct(bh.clone())).await.unwrap();
    assert_eq!(a.h.devices().unwrap().len(), 2);
    let owner_b = bh.login_password("olivia", OWNER_PW).await.unwrap();
    let sale = bh.record_sale(&owner_b, sale_of(p.id, 1)).await.unwrap();
    assert_eq!(sale.receipt, "T2-000001");
    let r = sync::pull(&a.h, &Direct(bh.clone())).await.unwrap();
    assert_eq!(r.rejected, 0);
    assert_eq!(a.h.sale(sale.id).unwrap().receipt, "T2-000001");
    assert_eq!(on_hand(&a.h, p.id), -1);
}

#[tokio::test]
async fn a_forged_admission_is_refused() {
    use tillmesh::domain::model::*;
    let a = shop().await;
    let b = Node::builder().memory().start().await.unwrap();
    let bh = b.handle();
    let inv = till_invite(&a.h, &a.owner, "T").await;
    // A redeemed for another key (someone who saw the code first, say).
    let elsewhere = tillmesh::identity::new_signing_key()
        .verifying_key()
        .to_bytes();
    let for_other = a.h.redeem_invite(&inv.code, elsewhere).await.unwrap();
    bh.adopt_shop(automerge::ChangeHash(for_other.genesis), vec![])
        .await
        .unwrap();
    sync::pull(&bh, &Direct(a.h.clone())).await.unwrap();
    // Claiming it for B's key: the countersignature names the other key.
    let mut stolen = for_other.clone();
    stolen.admitted.device = bh.device_public_key();
    assert!(matches!(
        bh.admit_self(stolen).await,
        Err(tillmesh::Error::Rejected(_))
    ));
    // B's own invite, with the relay role claimed: breaks the issuer's signature.
    let inv = till_invite(&a.h, &a.owner, "T").await;
    let invite =
        a.h.redeem_invite(&inv.code, bh.device_public_key())
            .await
            .unwrap();
    let mut forged = invite.clone();
    forged.admitted.cert.role = DeviceRole::Relay;
    assert!(matches!(
        bh.admit_self(forged).await,
        Err(tillmesh::Error::Rejected(_))
    ));
    // Countersigned by a device the certificate does not name (B itself).
    let mut self_signed = invite.clone();
    self_signed.admitted = invite.cert().countersign(
        &bh.device_public_key(),
        &tillmesh::identity::new_signing_key(),
    );
    assert!(matches!(
        bh.admit_self(self_signed).await,
        Err(tillmesh::Error::Rejected(_))
    ));
    assert!(bh.status().unwrap().device.is_none());
    // The genuine one admits B.
    bh.admit_self(invite).await.unwrap();
    assert!(bh.status().unwrap().device.is_some());
}

#[tokio::test]
async fn revocation_drops_later_changes_everywhere() {
    use tillmesh::domain::model::*;
    let a = shop().await;
    let p =
        a.h.create_product(&a.owner, product("V1", 100, 0))
            .await
            .unwrap();
    a.h.stock_in(&a.owner, stock_in(p.id, 50, 10))
        .await
        .unwrap();
    let inv = till_invite(&a.h, &a.owner, "Till 2").await;
    let b = Node::builder().memory().start().await.unwrap();
    let bh = b.handle();
    sync::join(
        &bh,
        &Joinable(a.h.clone(), bh.clone()),
        &inv.code,
        &Default::default(),
    )
    .await
    .unwrap();
    let owner_b = bh.login_password("olivia", OWNER_PW).await.unwrap();
    let s1 = bh.record_sale(&owner_b, sale_of(p.id, 1)).await.unwrap();
    sync::pull(&a.h, &Direct(bh.clone())).await.unwrap();
    assert!(a.h.sale(s1.id).is_ok());

    // B keeps selling while A revokes it; C got B's later sale before the revocation.
    let s2 = bh.record_sale(&owner_b, sale_of(p.id, 2)).await.unwrap();
    let c = Node::builder().memory().start().await.unwrap();
    let ch = c.handle();
    ch.import_envelopes(a.h.genesis().unwrap(), vec![])
        .await
        .unwrap();
    sync::pull(&ch, &Direct(bh.clone())).await.unwrap();
    assert!(ch.sale(s2.id).is_ok());
    assert_eq!(on_hand(&ch, p.id), 47);

    let device_b = bh.status().unwrap().device.unwrap().id;
    a.h.revoke_member(&a.owner, &device_b).await.unwrap();
    let mut events = ch.subscribe();
    sync::pull(&ch, &Direct(a.h.clone())).await.unwrap();
    // C dropped S2 (signed by B after the cut-off) and kept S1.
    assert!(ch.sale(s2.id).is_err());
    assert!(ch.sale(s1.id).is_ok());
    assert_eq!(on_hand(&ch, p.id), 49);
    let mut dropped = false;
    while let Ok(ev) = events.try_recv() {
        dropped |= matches!(ev, Event::ChangesDropped { .. });
    }
    assert!(dropped, "C reports what it dropped");
    // A refuses S2 when B offers it.
    let r = sync::pull(&a.h, &Direct(bh.clone())).await.unwrap();
    assert!(r.rejected >= 1, "{r:?}");
    assert!(a.h.sale(s2.id).is_err());
    assert_eq!(a.h.bucket_digests().unwrap(), ch.bucket_digests().unwrap());
}

#[tokio::test]
async fn a_sale_arriving_before_its_devices_admission_is_held_then_applied() {
    use tillmesh::replica::Applied;
    let a = shop().await;
    let p =
        a.h.create_product(&a.owner, product("H1", 100, 0))
            .await
            .unwrap();
    let inv = till_invite(&a.h, &a.owner, "Till 2").await;
    // C: a replica that has the shop from before B joined.
    let c = Node::builder().memory().start().await.unwrap();
    let ch = c.handle();
    ch.import_envelopes(a.h.genesis().unwrap(), vec![])
        .await
        .unwrap();
    sync::pull(&ch, &Direct(a.h.clone())).await.unwrap();
    let b = Node::builder().memory().start().await.unwrap();
    let bh = b.handle();
    sync::join(
        &bh,
        &Joinable(a.h.clone(), bh.clone()),
        &inv.code,
        &Default::default(),
    )
    .await
    .unwrap();
    let owner_b = bh.login_password("olivia", OWNER_PW).await.unwrap();
    let sale = bh.record_sale(&owner_b, sale_of(p.id, 1)).await.unwrap();

    // C gets B's sale first: its signer's admission has not arrived, so it is held.
    let envs = bh.envelopes().unwrap();
    let ledger: Vec<_> = envs
        .iter()
        .filter(|e| e.doc.starts_with("ledger/"))
        .cloned()
        .collect();
    let r = ch.import_envelopes(None, ledger).await.unwrap();
    assert!(matches!(r[0], Ok(Applied::Held(..))), "{r:?}");
    assert!(ch.sale(sale.id).is_err());
    // Then the admission: the held sale is applied, nothing lost.
    let members: Vec<_> = envs
        .iter()
        .filter(|e| e.doc == "members")
        .cloned()
        .collect();
    ch.import_envelopes(None, members).await.unwrap();
    assert_eq!(ch.sale(sale.id).unwrap().receipt, "T2-000001");
}

fn refused_everywhere(results: &[Vec<tillmesh::Result<tillmesh::replica::Applied>>]) {
    for r in results {
        assert!(
            matches!(r.as_slice(), [Err(tillmesh::Error::Rejected(_))]),
            "{r:?}"
        );
    }
}

/// Issue 14 (2): what a copied disk or backup holds (`members` with every device's admission)
/// admits nobody: a certificate countersigned for one key cannot admit another, a revoked
/// device cannot re-admit itself on a branch from before its admission, a protocol-1 record
/// (it carried the invite's secret) admits no new key, and nobody but a device itself (or an
/// owner) can touch its entry — so a live till cannot be locked out. Checked on two replicas.
#[tokio::test]
async fn replayed_admissions_are_refused_everywhere() {
    use automerge::transaction::Transactable;
    let a = shop().await;
    let p =
        a.h.create_product(&a.owner, product("R1", 100, 0))
            .await
            .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let b = Node::builder()
        .data_dir(tmp.path().join("b"))
        .start()
        .await
        .unwrap();
    let bh = b.handle();
    let inv = till_invite(&a.h, &a.owner, "Till 2").await;
    sync::join(
        &bh,
        &Joinable(a.h.clone(), bh.clone()),
        &inv.code,
        &Default::default(),
    )
    .await
    .unwrap();
    let d = Node::builder().memory().start().await.unwrap();
    let dh = d.handle();
    let inv = till_invite(&a.h, &a.owner, "Till 3").await;
    sync::join(
        &dh,
        &Joinable(a.h.clone(), dh.clone()),
        &inv.code,
        &Default::default(),
    )
    .await
    .unwrap();
    // C: another replica with everything.
    let c = Node::builder().memory().start().await.unwrap();
    let ch = c.handle();
    ch.adopt_shop(a.h.genesis().unwrap().unwrap(), vec![])
        .await
        .unwrap();
    sync::pull(&ch, &Direct(a.h.clone())).await.unwrap();
    assert_eq!(ch.devices().unwrap().len(), 3);

    let b_key = ed25519_dalek::SigningKey::from_bytes(
        &std::fs::read(tmp.path().join("b").join(tillmesh::node::DEVICE_KEY_FILE))
            .unwrap()
            .try_into()
            .unwrap(),
    );
    let b_pk = b_key.verifying_key().to_bytes();
    let b_id = tillmesh::identity::device_id(&b_key.verifying_key());
    let mut members =
        automerge::AutoCommit::load(&a.h.document_bytes(&a.owner, "members").unwrap()).unwrap();
    let certificate = {
        let obj =
            tillmesh::docs::am::map(&members, &automerge::ROOT, &format!("device:{b_id}"), None)
                .unwrap();
        tillmesh::docs::am::string(&members, &obj, "certificate", None).unwrap()
    };
    let now = members.get_heads();
    let import = |env: tillmesh::docs::Envelope| {
        let (a, c) = (a.h.clone(), ch.clone());
        async move {
            vec![
                a.import_envelopes(None, vec![env.clone()]).await.unwrap(),
                c.import_envelopes(None, vec![env]).await.unwrap(),
            ]
        }
    };

    // 1. A fresh key with B's certificate (copied from members).
    let fresh = tillmesh::identity::new_signing_key();
    let fresh_pk = fresh.verifying_key().to_bytes();
    let env = members_change(&mut members, &now, &fresh, |doc| {
        put_device_entry(doc, &fresh_pk, "T2", Some(&certificate));
    });
    refused_everywhere(&import(env).await);

    // 2. A protocol-1 record (certificate and secret in `admission:<id>`) for a fresh key.
    let env = members_change(&mut members, &now, &fresh, |doc| {
        let id = put_device_entry(doc, &fresh_pk, "T2", None);
        let obj =
            tillmesh::docs::am::map(doc, &automerge::ROOT, &format!("device:{id}"), None).unwrap();
        let cert_id = uuid::Uuid::new_v4().to_string();
        doc.put(&obj, "admission", cert_id.as_str()).unwrap();
        doc.put(
            automerge::ROOT,
            format!("admission:{cert_id}"),
            r#"{"secret":"00","device_id":"x"}"#,
        )
        .unwrap();
    });
    refused_everywhere(&import(env).await);

    // 3. B is revoked; with its own key (its disk) it re-admits itself on a branch from
    //    before its admission.
    a.h.revoke_member(&a.owner, &b_id).await.unwrap();
    sync::pull(&ch, &Direct(a.h.clone())).await.unwrap();
    let admission =
        a.h.envelopes()
            .unwrap()
            .into_iter()
            .find(|e| e.doc == "members" && e.signer == b_pk)
            .unwrap();
    let before = automerge::Change::from_bytes(admission.change.clone())
        .unwrap()
        .deps()
        .to_vec();
    let env = members_change(&mut members, &before, &b_key, |doc| {
        put_device_entry(doc, &b_pk, "T2", Some(&certificate));
    });
    refused_everywhere(&import(env).await);
    for h in [&a.h, &ch] {
        let b = h
            .devices()
            .unwrap()
            .into_iter()
            .find(|x| x.id == b_id)
            .unwrap();
        assert!(b.revoked, "B stays revoked");
    }

    // 4. B (revoked, with its key) marks the live Till 3 revoked, or replaces its entry.
    let d_id = dh.device_id().to_string();
    let env = members_change(&mut members, &now, &b_key, |doc| {
        let obj = tillmesh::docs::am::map(doc, &automerge::ROOT, &format!("device:{d_id}"), None)
            .unwrap();
        doc.put(&obj, "revoked", true).unwrap();
    });
    refused_everywhere(&import(env).await);
    let env = members_change(&mut members, &now, &b_key, |doc| {
        let k = tillmesh::identity::new_signing_key()
            .verifying_key()
            .to_bytes();
        let obj = doc
            .put_object(
                automerge::ROOT,
                format!("device:{d_id}"),
                automerge::ObjType::Map,
            )
            .unwrap();
        doc.put(&obj, "public_key", hex::encode(k)).unwrap();
    });
    refused_everywhere(&import(env).await);
    // Till 3 still sells, and its sale is accepted everywhere.
    sync::pull(&dh, &Direct(a.h.clone())).await.unwrap();
    let owner_d = dh.login_password("olivia", OWNER_PW).await.unwrap();
    let sale = dh.record_sale(&owner_d, sale_of(p.id, 1)).await.unwrap();
    for h in [&a.h, &ch] {
        let r = sync::pull(h, &Direct(dh.clone())).await.unwrap();
        assert_eq!(r.rejected, 0, "{r:?}");
        assert!(h.sale(sale.id).is_ok());
        assert!(
            h.devices()
                .unwrap()
                .iter()
                .any(|x| x.id == d_id && !x.revoked)
        );
    }
    assert_eq!(a.h.devices().unwrap().len(), 3, "nobody new was admitted");
}

/// Issue 14 (5): every key-exchange run started against an invite and not finished with its
/// code counts against it — a wrong code, a run left hanging, a made-up confirmation — and
/// after `MAX_FAILED_RUNS` the invite is burned: the right code is then refused, clearly.
/// Runs before that do not stop the right code.
#[tokio::test]
async fn failed_runs_burn_an_invite() {
    use tillmesh::redeem::{JoinerRun, MAX_FAILED_RUNS};
    let a = shop().await;
    let inv = till_invite(&a.h, &a.owner, "Till 2").await;
    let b = Node::builder().memory().start().await.unwrap();
    let bh = b.handle();
    let peer = Joinable(a.h.clone(), bh.clone());
    let wrong = |code: &str| {
        let last = if code.ends_with('A') { "B" } else { "A" };
        format!("{}{last}", &code[..code.len() - 1])
    };
    assert_eq!(MAX_FAILED_RUNS, 5);
    // Three wrong codes.
    for _ in 0..3 {
        let err = sync::join(&bh, &peer, &wrong(&inv.code), &Default::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("unknown invite"), "{err}");
    }
    // A run started with the right code and left hanging (as by a rogue relaying it).
    let run = JoinerRun::start(&inv.code, bh.device_public_key(), a.h.device_public_key()).unwrap();
    let start = SyncRequest::RedeemStart {
        pake: run.message(),
    };
    assert!(matches!(
        peer.request(start.clone()).await.unwrap(),
        SyncResponse::RedeemOffers { .. }
    ));
    // A run finished with a made-up confirmation: refused, nothing redeemed.
    let SyncResponse::RedeemOffers { run, .. } = peer.request(start).await.unwrap() else {
        panic!("offers")
    };
    let finish = SyncRequest::RedeemFinish {
        run,
        offer: 0,
        confirm: [7; 32],
    };
    assert!(matches!(
        peer.request(finish).await.unwrap(),
        SyncResponse::Refused(r) if r.kind == sync::RefusalKind::Invalid
    ));
    // Five failed runs: the right code now gets why it no longer works.
    let err = sync::join(&bh, &peer, &inv.code, &Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("burned"), "{err}");
    assert!(err.to_string().contains("ask for a new one"), "{err}");
    assert!(!bh.status().unwrap().has_shop, "nothing changed");
    assert_eq!(a.h.devices().unwrap().len(), 1);

    // A new invite: four failed runs, then the right code still joins.
    let inv = till_invite(&a.h, &a.owner, "Till 2").await;
    for _ in 0..MAX_FAILED_RUNS - 1 {
        let err = sync::join(&bh, &peer, &wrong(&inv.code), &Default::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("unknown invite"), "{err}");
    }
    let invite = sync::join(&bh, &peer, &inv.code, &Default::default())
        .await
        .unwrap();
    assert_eq!(invite.admitted.device, bh.device_public_key());
    assert_eq!(a.h.devices().unwrap().len(), 2);
}

/// A shop made before gossip keys rotated (no `gossip:` record: its gossip key comes from the
/// shop secret, which every old backup holds) gets a fresh key once, when an owner next signs
/// in — and only once; the shop's sales still apply everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_from_before_rotations_rotates_once_at_the_first_owner_sign_in() {
    use automerge::transaction::Transactable;
    let a = shop().await;
    let created =
        a.h.gossip_key()
            .unwrap()
            .expect("a new shop has a gossip key");
    // Take the shop back to how an older version made it: no rotation record.
    let mut members =
        automerge::AutoCommit::load(&a.h.document_bytes(&a.owner, "members").unwrap()).unwrap();
    let records: Vec<String> = tillmesh::docs::am::keys(&members, &automerge::ROOT, None)
        .into_iter()
        .filter(|k| k.starts_with("gossip:"))
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let now = members.get_heads();
    let key = a.owner.key.clone().unwrap();
    let env = members_change(&mut members, &now, &key, |doc| {
        doc.delete(automerge::ROOT, records[0].as_str()).unwrap();
    });
    let r = a.h.import_envelopes(None, vec![env]).await.unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let legacy = a.h.gossip_key().unwrap().unwrap();
    assert_ne!(legacy, created, "without a record, the legacy key");

    let owner = a.h.login_password("olivia", OWNER_PW).await.unwrap();
    let rotated = a.h.gossip_key().unwrap().unwrap();
    assert_ne!(
        rotated, legacy,
        "the first owner sign-in rotates the legacy key"
    );
    assert_ne!(rotated, created);
    let _ = a.h.login_password("olivia", OWNER_PW).await.unwrap();
    assert_eq!(a.h.gossip_key().unwrap().unwrap(), rotated, "once only");
    let members =
        automerge::AutoCommit::load(&a.h.document_bytes(&owner, "members").unwrap()).unwrap();
    let upgrade: Vec<String> = tillmesh::docs::am::keys(&members, &automerge::ROOT, None)
        .into_iter()
        .filter(|k| k.starts_with("gossip:"))
        .filter_map(|k| tillmesh::docs::am::string(&members, &automerge::ROOT, &k, None))
        .collect();
    assert_eq!(upgrade.len(), 1);
    assert!(
        upgrade[0].contains("\"reason\":\"upgrade\""),
        "{}",
        upgrade[0]
    );
}

/// The gossip key is handed to unrevoked tills of the shop only: with its invite, and when a
/// till asks (one admitted while a rotation was made elsewhere) it gets the keys it needs (they
/// derive the shop's key); a stranger does not, even if the network gate let it through; the
/// till once revoked does not.
#[tokio::test]
async fn gossip_keys_go_to_unrevoked_tills_only() {
    use tillmesh::docs::gossip_keys;
    let a = shop().await;
    let tmp = tempfile::tempdir().unwrap();
    let b = Node::builder()
        .data_dir(tmp.path().join("b"))
        .start()
        .await
        .unwrap();
    let bh = b.handle();
    let inv = till_invite(&a.h, &a.owner, "Till 2").await;
    sync::join(
        &bh,
        &Joinable(a.h.clone(), bh.clone()),
        &inv.code,
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        bh.gossip_key().unwrap(),
        a.h.gossip_key().unwrap(),
        "the invite handed B the key of the rotation made before it"
    );
    let ours = a.h.genesis().unwrap().map(|g| g.0);
    let ask = |from: [u8; 32], member: bool| {
        let h = a.h.clone();
        async move {
            h.answer_framed(ours, &from, member, (ours, SyncRequest::GossipKeys))
                .await
        }
    };
    let shop_id = a.h.status().unwrap().shop_id.unwrap();
    let key = a.h.gossip_key().unwrap().unwrap().key;
    match ask(bh.device_public_key(), true).await {
        SyncResponse::GossipKeys(keys) => {
            assert_eq!(gossip_keys::effective_key(shop_id, &keys), key)
        }
        other => panic!("B gets the keys: {other:?}"),
    }
    let stranger = tillmesh::identity::new_signing_key()
        .verifying_key()
        .to_bytes();
    for member in [false, true] {
        let answer = ask(stranger, member).await;
        assert!(
            matches!(&answer, SyncResponse::Refused(r) if r.kind == sync::RefusalKind::Forbidden),
            "{answer:?}"
        );
    }
    a.h.revoke_member(&a.owner, bh.device_id()).await.unwrap();
    let answer = ask(bh.device_public_key(), true).await;
    assert!(
        matches!(&answer, SyncResponse::Refused(r) if r.kind == sync::RefusalKind::Forbidden),
        "{answer:?}"
    );
}

/// A peer that takes a request and never answers (gone without a goodbye, or a black hole);
/// it says when a request reached it.
struct BlackHole(std::sync::Arc<tokio::sync::Notify>);

impl SyncPeer for BlackHole {
    async fn request(&self, _req: SyncRequest) -> tillmesh::Result<SyncResponse> {
        self.0.notify_one();
        std::future::pending().await
    }
}

/// Shop A with a product, and node B pinned to A's shop and empty; `stuck(a)` is a peer B
/// starts pulling from, which says (through the `Notify`) when it stopped answering. Checks that
/// a pull from A goes on beside the stuck one within `within`, and fetches A's changes.
async fn a_pull_goes_on_beside<P: SyncPeer + Send + Sync + 'static>(
    stuck: impl FnOnce(tillmesh::NodeHandle, std::sync::Arc<tokio::sync::Notify>) -> P,
    within: std::time::Duration,
) {
    let a = shop().await;
    a.h.create_product(&a.owner, product("P1", 500, 2000))
        .await
        .unwrap();
    let b = Node::builder().memory().start().await.unwrap();
    let bh = b.handle();
    bh.import_envelopes(a.h.genesis().unwrap(), vec![])
        .await
        .unwrap();
    let stopped = std::sync::Arc::new(tokio::sync::Notify::new());
    let peer = stuck(a.h.clone(), stopped.clone());
    let stuck = {
        let bh = bh.clone();
        tokio::spawn(async move { bh.pull_from(&peer).await })
    };
    // The stuck pull has sent a request it will never get an answer to.
    stopped.notified().await;
    let pulled = tokio::time::timeout(within, bh.pull_from(&Direct(a.h.clone())))
        .await
        .expect("a pull from another peer goes on while one peer is stuck")
        .unwrap();
    assert!(pulled.applied > 0, "{pulled:?}");
    assert_eq!(bh.bucket_digests().unwrap(), a.h.bucket_digests().unwrap());
    assert!(!stuck.is_finished(), "the stuck peer never answered");
    stuck.abort();
    b.shutdown().await;
}

/// A pull from a peer that never answers holds up no other pull (issue "The core on seams": a
/// black-holed peer held the node-wide pull turn for its 30 s request timeout, and every other
/// peer's pull waited behind it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_holds_up_no_other_pull() {
    a_pull_goes_on_beside(
        |_, asked| BlackHole(asked),
        std::time::Duration::from_secs(10),
    )
    .await;
}

/// A peer that answers a pull's first request, then never again (it stalls mid-pull).
struct StallsAfterFirst {
    peer: Direct,
    answered: std::sync::atomic::AtomicBool,
    stalled: std::sync::Arc<tokio::sync::Notify>,
}

impl SyncPeer for StallsAfterFirst {
    async fn request(&self, req: SyncRequest) -> tillmesh::Result<SyncResponse> {
        if !self
            .answered
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return self.peer.request(req).await;
        }
        self.stalled.notify_one();
        std::future::pending().await
    }
}

/// A peer that stalls in the middle of a pull holds up another peer's pull only briefly (issue
/// "The core on seams": the node-wide pull turn was held for as long as the stalled pull
/// waited — over the network, each request's 30 s timeout; the turn is now waited for at most
/// `sync::PULL_TURN_WAIT`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stalls_mid_pull_holds_up_no_other_pull_for_long() {
    a_pull_goes_on_beside(
        |a, stalled| StallsAfterFirst {
            peer: Direct(a),
            answered: Default::default(),
            stalled,
        },
        sync::PULL_TURN_WAIT + std::time::Duration::from_secs(8),
    )
    .await;
}
