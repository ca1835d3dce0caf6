//! A peer that sends junk: what reaches a node through anti-entropy (the sync protocol, wire
//! encoded, over an in-memory transport) is checked before anything is kept. Envelopes waiting
//! for changes the node lacks are held only once their signature verifies, within caps per
//! forwarding peer, per document and in all, for a limited time, never in backups; they are
//! applied when what they wait for arrives; a compressed change inflating past its cap is
//! refused before Automerge sees it.

use crate::common;
use std::collections::HashMap;

use automerge::{Author, AutoCommit, ChangeHash, ROOT, transaction::Transactable};
use common::*;
use tillmesh::docs::Envelope;
use tillmesh::replica::{self, Applied};
use tillmesh::sync::{self, SyncPeer, SyncRequest, SyncResponse};
use tillmesh::{Node, NodeHandle};

/// Envelope bytes a hostile peer offers, by document, each under the hash it announces.
type Offered = HashMap<String, Vec<([u8; 32], Vec<u8>)>>;

/// A hostile peer with its own peer id: it claims to have `envs` (any bytes, by document) and
/// hands them over through the sync protocol, wire encoded.
struct Hostile {
    id: String,
    docs: Offered,
}

impl Hostile {
    fn new(id: &str, envs: Vec<(String, Vec<u8>)>) -> Hostile {
        let mut docs = Offered::new();
        for (n, (doc, bytes)) in envs.into_iter().enumerate() {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(n as u64).to_le_bytes());
            key[8..16].copy_from_slice(&id.len().to_le_bytes());
            key[16..].copy_from_slice(&tillmesh::identity::random_bytes::<16>());
            docs.entry(doc).or_default().push((key, bytes));
        }
        Hostile {
            id: id.to_string(),
            docs,
        }
    }

    fn answer(&self, req: SyncRequest) -> SyncResponse {
        let junk = tillmesh::identity::random_bytes::<32>();
        match req {
            SyncRequest::Buckets => SyncResponse::Buckets(
                self.docs
                    .keys()
                    .map(|d| (tillmesh::store::bucket_of(d), junk))
                    .collect(),
            ),
            SyncRequest::Docs(_) => {
                SyncResponse::Docs(self.docs.keys().map(|d| (d.clone(), junk)).collect())
            }
            SyncRequest::Hashes(docs) => SyncResponse::Hashes(
                docs.iter()
                    .filter_map(|d| {
                        let envs = self.docs.get(d)?;
                        Some((d.clone(), envs.iter().map(|(k, _)| *k).collect()))
                    })
                    .collect(),
            ),
            SyncRequest::Envelopes(keys) => {
                let all: HashMap<&[u8; 32], &Vec<u8>> =
                    self.docs.values().flatten().map(|(k, b)| (k, b)).collect();
                SyncResponse::Envelopes(
                    keys.iter()
                        .filter_map(|k| all.get(k).map(|b| (*b).clone()))
                        .collect(),
                )
            }
            _ => SyncResponse::Refused(sync::Refusal::new(sync::RefusalKind::Invalid, "no")),
        }
    }
}

impl SyncPeer for Hostile {
    async fn request(&self, req: SyncRequest) -> tillmesh::Result<SyncResponse> {
        let req = SyncRequest::from_bytes(&req.to_bytes())?;
        SyncResponse::from_bytes(&self.answer(req).to_bytes())
    }

    fn id(&self) -> String {
        self.id.clone()
    }
}

fn members_heads(h: &NodeHandle) -> Vec<ChangeHash> {
    h.stored_documents()
        .unwrap()
        .into_iter()
        .find(|d| d.id == "members")
        .unwrap()
        .heads
        .iter()
        .map(|h| h.parse().unwrap())
        .collect()
}

/// `n` changes by one fresh key, each after the last, all of them but the first signed and
/// returned: every one waits for an earlier change that never comes. Signed with real
/// signatures, naming `heads` as the members heads.
fn chain_missing_its_start(
    n: usize,
    doc: impl Fn(usize) -> String,
    heads: &[ChangeHash],
) -> Vec<(String, Vec<u8>)> {
    let key = tillmesh::identity::new_signing_key();
    let mut am = AutoCommit::new();
    am.set_author(Some(Author::from(key.verifying_key().to_bytes().to_vec())));
    am.put(ROOT, "start", 0).unwrap();
    am.commit();
    (0..n)
        .map(|i| {
            am.put(ROOT, format!("k{i}"), i as i64).unwrap();
            am.commit();
            let change = am.get_last_local_change().unwrap();
            let doc = doc(i);
            let env = Envelope::sign(&key, &doc, &change, 1, heads);
            (doc, env.to_bytes())
        })
        .collect()
}

fn random_heads() -> Vec<ChangeHash> {
    vec![ChangeHash(tillmesh::identity::random_bytes::<32>())]
}

fn ledger_doc(i: usize) -> String {
    format!("ledger/2026-01-01/0123456789abcdef/{i}")
}

/// Envelopes that fail the checks an envelope must pass before it may be held are refused and
/// never stored: a bad signature, a signer that is no member at the members heads it names, a
/// change whose author is not its signer, a change naming no members heads.
#[tokio::test]
async fn forged_and_unsigned_envelopes_are_never_held() {
    let a = shop().await;
    let heads = members_heads(&a.h);
    let mut junk = Vec::new();
    // Bad signatures, on changes that wait for an earlier change (held before the fix).
    for (doc, bytes) in chain_missing_its_start(20, ledger_doc, &random_heads()) {
        let mut env = Envelope::from_bytes(&bytes).unwrap();
        env.signature[0] ^= 1;
        junk.push((doc, env.to_bytes()));
    }
    // Validly signed by strangers naming the shop's real members heads.
    junk.extend(chain_missing_its_start(20, ledger_doc, &heads));
    junk.extend(chain_missing_its_start(5, |_| "catalog".into(), &heads));
    // Signed by a key that is not the change's author (the first change of an actor names it).
    {
        let signer = tillmesh::identity::new_signing_key();
        let mut am = AutoCommit::new();
        am.set_author(Some(Author::from(vec![7u8; 32])));
        am.put(ROOT, "x", 1).unwrap();
        am.commit();
        let change = am.get_last_local_change().unwrap();
        let env = Envelope::sign(&signer, "catalog", &change, 1, &random_heads());
        junk.push(("catalog".into(), env.to_bytes()));
    }
    // Naming no members heads (only the genesis may).
    junk.extend(chain_missing_its_start(5, ledger_doc, &[]));
    let evil = Hostile::new("evil", junk);
    let report = sync::pull(&a.h, &evil).await.unwrap();
    assert_eq!(report.fetched, 51, "{report:?}");
    assert_eq!(report.rejected, 51, "{report:?}");
    assert_eq!(report.held, 0, "{report:?}");
    assert_eq!(a.h.held_count().unwrap(), 0);
    assert!(a.h.held_by_peer().unwrap().is_empty());
}

/// Flooding peers with envelopes that validly sign changes waiting for what never comes (fresh
/// keys, members heads the node lacks, missing dependencies): what is held stays under the caps
/// per peer, per document and in all, and the till's own sale still goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_flood_stays_under_its_caps_and_sales_go_on() {
    let a = shop().await;
    let p =
        a.h.create_product(&a.owner, product("F1", 100, 0))
            .await
            .unwrap();
    a.h.stock_in(&a.owner, stock_in(p.id, 100, 50))
        .await
        .unwrap();

    // One peer over its own cap, across many documents.
    let over = replica::MAX_HELD_PER_PEER + 300;
    let wide = Hostile::new(
        "wide",
        chain_missing_its_start(over, |i| ledger_doc(i % 50), &random_heads()),
    );
    let r = sync::pull(&a.h, &wide).await.unwrap();
    assert_eq!(r.fetched, over);
    assert_eq!(r.rejected, 0, "validly signed, so held or not kept: {r:?}");
    let by_peer = a.h.held_by_peer().unwrap();
    assert_eq!(
        by_peer.get("wide"),
        Some(&(replica::MAX_HELD_PER_PEER as u64))
    );

    // Another peer, all on one document: held up to the document's cap.
    let one_doc = replica::MAX_HELD_PER_DOC + 200;
    let deep = Hostile::new(
        "deep",
        chain_missing_its_start(one_doc, |_| "orders".into(), &random_heads()),
    );
    sync::pull(&a.h, &deep).await.unwrap();
    let by_peer = a.h.held_by_peer().unwrap();
    assert_eq!(
        by_peer.get("deep"),
        Some(&(replica::MAX_HELD_PER_DOC as u64))
    );

    // Many more peers (peer ids and keys cost nothing): the global cap holds.
    let mut tasks = Vec::new();
    for n in 0..(replica::MAX_HELD / replica::MAX_HELD_PER_PEER) {
        let h = a.h.clone();
        tasks.push(tokio::spawn(async move {
            let envs = chain_missing_its_start(
                replica::MAX_HELD_PER_PEER,
                move |i| ledger_doc(1000 + n * 100 + i % 100),
                &random_heads(),
            );
            let peer = Hostile::new(&format!("sybil-{n}"), envs);
            sync::pull(&h, &peer).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let held = a.h.held_count().unwrap();
    assert_eq!(held, replica::MAX_HELD as u64, "held exactly up to the cap");
    let by_peer = a.h.held_by_peer().unwrap();
    assert!(
        by_peer
            .values()
            .all(|n| *n <= replica::MAX_HELD_PER_PEER as u64),
        "{by_peer:?}"
    );

    // The till sells, while one more peer floods.
    let more = Hostile::new(
        "late",
        chain_missing_its_start(500, ledger_doc, &random_heads()),
    );
    let (flood, sale) = tokio::join!(
        sync::pull(&a.h, &more),
        a.h.record_sale(&a.owner, sale_of(p.id, 1))
    );
    flood.unwrap();
    let sale = sale.unwrap();
    assert_eq!(a.h.sale(sale.id).unwrap().id, sale.id);
    assert_eq!(on_hand(&a.h, p.id), 99);
    assert_eq!(a.h.held_count().unwrap(), replica::MAX_HELD as u64);
}

/// A signed envelope whose change is a small compressed chunk inflating to far more than the
/// cap: refused before Automerge inflates it (the process's peak memory barely moves), nothing
/// is kept, and the node goes on selling.
#[tokio::test]
async fn a_compressed_bomb_is_refused_with_memory_bounded() {
    use std::io::Write;
    let a = shop().await;
    let p =
        a.h.create_product(&a.owner, product("B1", 100, 0))
            .await
            .unwrap();
    a.h.stock_in(&a.owner, stock_in(p.id, 10, 50))
        .await
        .unwrap();

    // 768 MiB of zeros as raw DEFLATE, inside a compressed-change chunk (type 2).
    let inflated: usize = 768 << 20;
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(inflated >> 20) {
        enc.write_all(&zeros).unwrap();
    }
    let data = enc.finish().unwrap();
    let key = tillmesh::identity::new_signing_key();
    let mut am = AutoCommit::new();
    am.set_author(Some(Author::from(key.verifying_key().to_bytes().to_vec())));
    am.put(ROOT, "x", 1).unwrap();
    am.commit();
    let change = am.get_last_local_change().unwrap();
    let mut chunk = change.raw_bytes()[..8].to_vec();
    chunk.push(2);
    let mut len = data.len() as u64;
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            chunk.push(b);
            break;
        }
        chunk.push(b | 0x80);
    }
    chunk.extend_from_slice(&data);
    assert!(chunk.len() < tillmesh::docs::envelope::MAX_CHANGE_BYTES);
    let mut env = Envelope::sign(&key, "catalog", &change, 1, &members_heads(&a.h));
    env.change = chunk;
    drop(zeros);

    let before = peak_rss_kib();
    let evil = Hostile::new("bomber", vec![("catalog".into(), env.to_bytes())]);
    let report = sync::pull(&a.h, &evil).await.unwrap();
    let grew_mib = (peak_rss_kib() - before) / 1024;
    assert_eq!((report.fetched, report.rejected), (1, 1), "{report:?}");
    assert!(
        grew_mib < 128,
        "peak memory grew by {grew_mib} MiB on a {} KiB change",
        env.change.len() >> 10
    );
    assert_eq!(a.h.held_count().unwrap(), 0);
    let sale = a.h.record_sale(&a.owner, sale_of(p.id, 1)).await.unwrap();
    assert!(a.h.sale(sale.id).is_ok());
}

/// The process's peak resident memory (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// A replica `c` of shop `a` (pulled in full), and the envelopes of two sales `a` makes next,
/// in the order they were made (the second depends on the first).
async fn replica_and_two_sales(a: &Shop) -> (Node, Vec<Envelope>, Vec<uuid::Uuid>) {
    let p =
        a.h.create_product(&a.owner, product("D1", 100, 0))
            .await
            .unwrap();
    a.h.stock_in(&a.owner, stock_in(p.id, 10, 50))
        .await
        .unwrap();
    let c = Node::builder().memory().start().await.unwrap();
    c.handle()
        .import_envelopes(a.h.genesis().unwrap(), vec![])
        .await
        .unwrap();
    sync::pull(&c.handle(), &Direct(a.h.clone())).await.unwrap();
    // `envelopes()` is in no particular order: note what each sale added, in turn.
    let mut seen: Vec<Vec<u8>> =
        a.h.envelopes()
            .unwrap()
            .iter()
            .map(|e| e.to_bytes())
            .collect();
    let mut sales = Vec::new();
    let mut new = Vec::new();
    for _ in 0..2 {
        sales.push(
            a.h.record_sale(&a.owner, sale_of(p.id, 1))
                .await
                .unwrap()
                .id,
        );
        for e in a.h.envelopes().unwrap() {
            if !seen.contains(&e.to_bytes()) {
                seen.push(e.to_bytes());
                new.push(e);
            }
        }
    }
    assert_eq!(new.len(), 2, "one change per sale: {new:?}");
    assert!(new.iter().all(|e| e.doc == new[0].doc), "{new:?}");
    (c, new, sales)
}

/// An out-of-order change is held and applied as soon as the change it waits for arrives —
/// found by what it waits for: an unrelated envelope held on the same document stays held.
#[tokio::test]
async fn a_held_change_is_applied_when_its_dependency_arrives() {
    let a = shop().await;
    let (c, new, sales) = replica_and_two_sales(&a).await;
    let ch = c.handle();
    let doc = new[0].doc.clone();
    // Something else waiting on the same document, for a change that never comes.
    let other = Hostile::new(
        "other",
        chain_missing_its_start(1, |_| doc.clone(), &random_heads()),
    );
    sync::pull(&ch, &other).await.unwrap();
    assert_eq!(ch.held_count().unwrap(), 1);

    let (first, rest) = new.split_first().unwrap();
    let r = ch
        .import_envelopes_from("peer-a", None, rest.iter().rev().cloned().collect())
        .await
        .unwrap();
    assert!(
        r.iter().all(|r| matches!(r, Ok(Applied::Held(..)))),
        "{r:?}"
    );
    assert_eq!(ch.held_count().unwrap(), 1 + rest.len() as u64);
    assert!(ch.sale(sales[1]).is_err());

    let r = ch
        .import_envelopes_from("peer-a", None, vec![first.clone()])
        .await
        .unwrap();
    assert!(matches!(r[0], Ok(Applied::New(_))), "{r:?}");
    for id in &sales {
        assert!(ch.sale(*id).is_ok(), "sale {id} applied");
    }
    assert_eq!(
        ch.held_by_peer().unwrap().into_iter().collect::<Vec<_>>(),
        [("other".to_string(), 1)]
    );
    assert_eq!(a.h.bucket_digests().unwrap(), ch.bucket_digests().unwrap());
}

/// Held envelopes expire; one that was real is fetched again by the next pull.
#[tokio::test]
async fn held_envelopes_expire_and_real_ones_come_back() {
    let a = shop().await;
    let (c, new, sales) = replica_and_two_sales(&a).await;
    let ch = c.handle();
    let last = new.last().unwrap().clone();
    let r = ch
        .import_envelopes_from("peer-a", None, vec![last])
        .await
        .unwrap();
    assert!(matches!(r[0], Ok(Applied::Held(..))), "{r:?}");
    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(ch.expire_held(now).await.unwrap(), 0, "not yet");
    assert_eq!(ch.held_count().unwrap(), 1);
    assert_eq!(
        ch.expire_held(now + replica::HELD_TTL_MS + 60_000)
            .await
            .unwrap(),
        1
    );
    assert_eq!(ch.held_count().unwrap(), 0);
    assert!(ch.held_by_peer().unwrap().is_empty());
    // Nothing lost: anti-entropy brings it (and what it waited for).
    sync::pull(&ch, &Direct(a.h.clone())).await.unwrap();
    for id in &sales {
        assert!(ch.sale(*id).is_ok());
    }
    assert_eq!(ch.held_count().unwrap(), 0);
}

/// A backup holds only verified, applied envelopes: what is held stays out. An older backup
/// whose `held` section has records still restores (they go through the same checks, and are
/// held again).
#[tokio::test]
async fn a_backup_has_no_held_envelopes_and_an_old_held_section_restores() {
    let a = shop().await;
    let waiting = chain_missing_its_start(3, ledger_doc, &random_heads());
    let evil = Hostile::new("evil", waiting.clone());
    sync::pull(&a.h, &evil).await.unwrap();
    assert_eq!(a.h.held_count().unwrap(), 3);

    let mut sealed = Vec::new();
    let header = a.h.write_backup(&a.owner, &mut sealed, |_| {}).unwrap();
    assert_eq!(header.records("held"), 0);
    // The plain backup inside the encrypted file.
    let recovery = tillmesh::sealed::Unlock::Key(
        tillmesh::identity::parse_recovery_key(&a.recovery_key).unwrap(),
    );
    let mut file = Vec::new();
    tillmesh::sealed::decrypt(sealed.as_slice(), &recovery, &mut file).unwrap();
    for (_, bytes) in &waiting {
        let sig = &Envelope::from_bytes(bytes).unwrap().signature;
        assert!(
            !file.windows(sig.len()).any(|w| w == sig.as_slice()),
            "a held envelope is in the backup"
        );
    }

    // A plain file as an older tillmesh wrote it: one record in its held section.
    let held_record = waiting[0].1.clone();
    let old = with_held_record(&file, &held_record);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.tmbackup");
    std::fs::write(&path, &old).unwrap();
    let report = tillmesh::backup::restore(&path, None, &dir.path().join("restored"), |_| {})
        .await
        .unwrap();
    assert_eq!(report.held, 1, "{report:?}");
}

/// `file` (a backup with an empty `held` section) with `rec` in its held section, header and
/// checksum rewritten: a backup as tillmesh wrote them before held envelopes were left out.
fn with_held_record(file: &[u8], rec: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let body = &file[..file.len() - 4 - 32];
    let header_len = u32::from_le_bytes(body[20..24].try_into().unwrap()) as usize;
    let mut header: tillmesh::backup::BackupHeader =
        serde_json::from_slice(&body[24..24 + header_len]).unwrap();
    let held = header
        .sections
        .iter_mut()
        .find(|s| s.name == "held")
        .unwrap();
    held.records = 1;
    held.bytes = 4 + rec.len() as u64;
    let json = serde_json::to_vec(&header).unwrap();
    let mut out = body[..20].to_vec();
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&body[24 + header_len..]);
    out.extend_from_slice(&(rec.len() as u32).to_le_bytes());
    out.extend_from_slice(rec);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(b"END!");
    out.extend_from_slice(&digest);
    out
}
