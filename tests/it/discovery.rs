//! LAN discovery over mDNS (`tillmesh::net::discovery`).
//!
//! mDNS traffic must never reach this machine's real interfaces (DESIGN §11). So every test that
//! starts an mDNS daemon runs in a network namespace of its own, where `lo` is the only
//! interface: run the ordinary way (`cargo test`, `cargo test --test discovery`), such a test
//! re-executes its own test binary under `unshare --net` with `lo` up and checks that the run
//! inside passed. It needs root (CAP_SYS_ADMIN), util-linux `unshare` and iproute2 `ip`; without
//! them it FAILS with a message saying so — it never skips. Inside, before starting any daemon,
//! it checks that `lo` is the only interface, and the daemons are limited to `lo` as well.
//! Build before entering a namespace by hand: there is no registry inside one.
//!
//! Restarts (issue 15, bug 2): `a_peer_restarted_within_a_second_is_found_again` (a peer back
//! within its goodbye's second, unchanged, is reported again) and
//! `the_higher_peer_id_dials_when_the_lower_does_not` (the mesh's fallback dial).

use crate::common;
use common::{assert_only_loopback, in_private_netns};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent};
use tillmesh::net::discovery::{
    Discovery, DiscoveryConfig, Found, HTTP_SERVICE_TYPE, SERVICE_TYPE, should_dial,
};
use tokio::sync::mpsc::Receiver;

/// Set for the child processes of the multi-process test: "<peer id>:<peer id to find>".
const CHILD_ENV: &str = "TILLMESH_TEST_MDNS_CHILD";
/// How long discovery may take (it usually takes 1–2 s: probing alone is ~750 ms).
const FIND_TIMEOUT: Duration = Duration::from_secs(30);

const SHOP_A: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const SHOP_B: &str = "0f0e0d0c0b0a09080706050403020100ffeeddccbbaa99887766554433221100";

fn config(peer: &str, shop: &str, addrs: &[&str], ui_port: u16) -> DiscoveryConfig {
    DiscoveryConfig {
        interfaces: vec!["lo".into()],
        instance: peer.into(),
        shop_hash: shop.into(),
        peer_id: peer.into(),
        addrs: addrs.iter().map(|a| a.to_string()).collect(),
        ui_port,
    }
}

/// Receives until `done` holds for everything received so far; checks each `Found` with
/// `check` as it arrives. Panics on timeout.
async fn recv_until(
    who: &str,
    rx: &mut Receiver<Found>,
    log: &mut Vec<Found>,
    mut check: impl FnMut(&Found),
    done: impl Fn(&[Found]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + FIND_TIMEOUT;
    while !done(log) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(found)) => {
                check(&found);
                log.push(found);
            }
            Ok(None) => panic!("{who}: discovery channel closed"),
            Err(_) => panic!("{who}: timed out; found so far: {log:#?}"),
        }
    }
}

/// The latest `Found` for `peer` in `log`.
fn latest<'a>(log: &'a [Found], peer: &str) -> Option<&'a Found> {
    log.iter().rev().find(|f| f.peer_id == peer)
}

/// A plain mdns-sd browser on `lo`, to see what goes on the wire.
fn spy() -> (
    ServiceDaemon,
    mdns_sd::Receiver<ServiceEvent>,
    mdns_sd::Receiver<ServiceEvent>,
) {
    let daemon = ServiceDaemon::new().unwrap();
    daemon.disable_interface(IfKind::All).unwrap();
    daemon.enable_interface("lo").unwrap();
    let nodes = daemon.browse(SERVICE_TYPE).unwrap();
    let http = daemon.browse(HTTP_SERVICE_TYPE).unwrap();
    (daemon, nodes, http)
}

/// Waits until the spy has resolved a service for each of `peers` (by TXT `peer`), returning
/// the latest of each.
fn spy_until(
    events: &mdns_sd::Receiver<ServiceEvent>,
    peers: &[&str],
) -> HashMap<String, Box<mdns_sd::ResolvedService>> {
    let deadline = Instant::now() + FIND_TIMEOUT;
    let mut seen = HashMap::new();
    while !peers.iter().all(|p| seen.contains_key(*p)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(s)) => {
                if let Some(peer) = s.get_property_val_str("peer") {
                    seen.insert(peer.to_string(), s);
                }
            }
            Ok(_) => {}
            Err(e) => panic!("spy: {e}; resolved so far: {:?}", seen.keys()),
        }
    }
    seen
}

#[test]
fn should_dial_is_antisymmetric() {
    let ids = ["12D3KooWA", "12D3KooWB", "12D3KooWa", "QmXyz", "1"];
    for a in ids {
        assert!(!should_dial(a, a), "a peer never dials itself");
        for b in ids {
            if a != b {
                assert_ne!(should_dial(a, b), should_dial(b, a), "{a} vs {b}");
            }
        }
    }
    assert!(should_dial("12D3KooWA", "12D3KooWB"));
}

#[test]
fn bad_configs_are_rejected_before_any_daemon_starts() {
    let mut cfg = config("12D3KooWbad", SHOP_A, &[], 0);
    cfg.shop_hash = "not hex".into();
    assert!(Discovery::start(cfg).is_err());
    let cfg = config("", SHOP_A, &[], 0);
    assert!(Discovery::start(cfg).is_err());
}

#[test]
fn three_peers_of_a_shop_find_each_other_over_loopback() {
    in_private_netns(
        "three_peers_of_a_shop_find_each_other_over_loopback",
        || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(three_peers());
        },
    );
}

async fn three_peers() {
    let (spy_daemon, spy_nodes, spy_http) = spy();

    // Another shop's node, on the same wire.
    let other_id = "12D3KooWotherShop";
    let (other, mut other_rx) =
        Discovery::start(config(other_id, SHOP_B, &["/ip4/127.0.0.1/tcp/4100"], 8100)).unwrap();

    let ids = ["12D3KooWpeerA1", "12D3KooWpeerA2", "12D3KooWpeerA3"];
    let mut nodes = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        // The third listens on 0.0.0.0: it advertises lo's address instead.
        let tcp = if i == 2 {
            "/ip4/0.0.0.0/tcp/4003".to_string()
        } else {
            format!("/ip4/127.0.0.1/tcp/400{i}")
        };
        let quic = format!("/ip4/127.0.0.1/udp/400{i}/quic-v1");
        let (d, rx) =
            Discovery::start(config(id, SHOP_A, &[&tcp, &quic], 8000 + i as u16)).unwrap();
        nodes.push((d, rx, Vec::<Found>::new()));
    }
    let expected_addrs = |i: usize| -> Vec<String> {
        let tcp = if i == 2 {
            "/ip4/127.0.0.1/tcp/4003".to_string()
        } else {
            format!("/ip4/127.0.0.1/tcp/400{i}")
        };
        vec![tcp, format!("/ip4/127.0.0.1/udp/400{i}/quic-v1")]
    };

    // Each finds the other two, with their addresses and UI ports; never itself or shop B.
    for (i, (_, rx, log)) in nodes.iter_mut().enumerate() {
        let me = ids[i];
        recv_until(
            me,
            rx,
            log,
            |f| {
                assert_ne!(f.peer_id, me, "{me} found itself");
                assert_ne!(f.peer_id, other_id, "{me} found another shop's node");
                assert!(ids.contains(&f.peer_id.as_str()), "{me} found {f:?}");
            },
            |log| {
                ids.iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .all(|(j, p)| latest(log, p).is_some_and(|f| f.addrs == expected_addrs(j)))
            },
        )
        .await;
        for (j, peer) in ids.iter().enumerate().filter(|(j, _)| *j != i) {
            let f = latest(log, peer).unwrap();
            assert_eq!(f.addrs, expected_addrs(j), "{me} sees {peer}");
            assert_eq!(f.ui_port, Some(8000 + j as u16));
            // A and AAAA records may come in separate events: lo's v4 or v6 address, or both.
            assert!(
                !f.host_addrs.is_empty() && f.host_addrs.iter().all(|a| a.is_loopback()),
                "{me} sees {peer} at {:?}",
                f.host_addrs
            );
        }
    }

    // On the wire: the TXT records as specified, the UI as _http._tcp, and shop B's node too
    // (so the A nodes did hear it, and ignored it).
    let mut all = ids.to_vec();
    all.push(other_id);
    let wire = spy_until(&spy_nodes, &all);
    for (i, id) in ids.iter().enumerate() {
        let s = &wire[*id];
        assert_eq!(s.get_property_val_str("shop"), Some(SHOP_A));
        assert_eq!(s.get_property_val_str("peer"), Some(*id));
        // The third node's 0.0.0.0 went out as lo's address.
        assert_eq!(
            s.get_property_val_str("addrs"),
            Some(expected_addrs(i).join(",").as_str())
        );
        assert_eq!(
            s.get_property_val_str("ui"),
            Some(format!("{}", 8000 + i).as_str())
        );
        assert!(s.get_fullname().len() <= 63 + SERVICE_TYPE.len() + 1);
    }
    assert_eq!(wire[other_id].get_property_val_str("shop"), Some(SHOP_B));
    let http = spy_until(&spy_http, &ids);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(http[*id].get_port(), 8000 + i as u16);
    }

    // An address update reaches the others; long lists are split over addr0, addr1, …
    let long: Vec<String> = (0..12)
        .map(|k| {
            format!(
                "/ip4/127.0.0.{}/tcp/{}/p2p/{}",
                k + 1,
                5000 + k,
                ids[0].repeat(3)
            )
        })
        .collect();
    nodes[0].0.update_addrs(long.clone()).unwrap();
    for (i, (_, rx, log)) in nodes.iter_mut().enumerate().skip(1) {
        let me = ids[i];
        recv_until(
            me,
            rx,
            log,
            |f| assert_ne!(f.peer_id, other_id),
            |log| latest(log, ids[0]).is_some_and(|f| f.addrs == long),
        )
        .await;
    }

    // Deduplicated: a peer is reported again only when something about it changed.
    for (i, (_, rx, log)) in nodes.iter_mut().enumerate() {
        while let Ok(f) = rx.try_recv() {
            assert_ne!(f.peer_id, other_id);
            assert_ne!(f.peer_id, ids[i]);
            log.push(f);
        }
        let mut last: HashMap<&str, &Found> = HashMap::new();
        for f in log.iter() {
            if let Some(prev) = last.insert(&f.peer_id, f) {
                assert!(
                    prev != f,
                    "{}: {} reported twice unchanged",
                    ids[i],
                    f.peer_id
                );
            }
        }
    }
    // Shop B's node found nobody.
    assert!(other_rx.try_recv().is_err(), "shop B's node found shop A's");

    // Which of two dials: exactly one of each pair.
    for a in ids {
        for b in ids {
            if a != b {
                assert!(should_dial(a, b) ^ should_dial(b, a));
            }
        }
    }

    let started = Instant::now();
    tokio::task::spawn_blocking(move || {
        for (d, _, _) in nodes {
            d.shutdown();
        }
        other.shutdown();
        let _ = spy_daemon.shutdown();
    })
    .await
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// Two nodes in separate processes (the real case: two tills' nodes) find each other over `lo`.
#[test]
fn two_processes_find_each_other() {
    in_private_netns("two_processes_find_each_other", || {
        let exe = std::env::current_exe().unwrap();
        let (a, b) = ("12D3KooWprocA", "12D3KooWprocB");
        let (tx, rx) = std_mpsc::channel::<(usize, String)>();
        let mut children = Vec::new();
        for (n, (me, want)) in [(a, b), (b, a)].into_iter().enumerate() {
            let mut child = Command::new(&exe)
                .args([
                    &common::test_name("mdns_child_process"),
                    "--exact",
                    "--nocapture",
                ])
                .env(CHILD_ENV, format!("{me}:{want}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    println!("child {n}: {line}");
                    let _ = tx.send((n, line));
                }
            });
            children.push(child);
        }
        let deadline = Instant::now() + FIND_TIMEOUT;
        let mut found = [false, false];
        while !found.iter().all(|f| *f) {
            let left = deadline.saturating_duration_since(Instant::now());
            let (n, line) = rx.recv_timeout(left).unwrap_or_else(|_| {
                for c in &mut children {
                    let _ = c.kill();
                }
                panic!("the two processes did not find each other: {found:?}")
            });
            if let Some(addrs) = line.strip_prefix("FOUND ") {
                let (want, port) = if n == 0 { (b, 4201) } else { (a, 4200) };
                assert_eq!(addrs, format!("{want} /ip4/127.0.0.1/tcp/{port}"));
                found[n] = true;
            }
        }
        for mut c in children {
            drop(c.stdin.take()); // Tells the child to stop.
            assert!(c.wait().unwrap().success());
        }
    });
}

/// A child of `two_processes_find_each_other`; does nothing unless started by it.
#[test]
fn mdns_child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    assert_only_loopback();
    let (me, want) = spec.split_once(':').unwrap();
    let port = if me.ends_with('A') { 4200 } else { 4201 };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = format!("/ip4/0.0.0.0/tcp/{port}");
    let (d, mut rx) = Discovery::start(config(me, SHOP_A, &[&addr], 0)).unwrap();
    let mut log = Vec::new();
    rt.block_on(recv_until(
        me,
        &mut rx,
        &mut log,
        |_| {},
        |log| latest(log, want).is_some(),
    ));
    let f = latest(&log, want).unwrap();
    assert_eq!(f.ui_port, None);
    println!("FOUND {} {}", f.peer_id, f.addrs.join(" "));
    std::io::stdout().flush().unwrap();
    // Stay announced until the parent closes stdin (the other process may still be looking).
    let _ = std::io::stdin().lines().count();
    d.shutdown();
}

#[test]
fn instance_names_longer_than_a_label_are_shortened() {
    in_private_netns("instance_names_longer_than_a_label_are_shortened", || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Two names that only differ after the first 63 bytes stay distinct, and work.
        let start = |peer: &str, suffix: &str| {
            let mut cfg = config(peer, SHOP_A, &["/ip4/127.0.0.1/tcp/1"], 0);
            cfg.instance = format!("{}{suffix}", "till-".repeat(30));
            Discovery::start(cfg).unwrap()
        };
        let (d1, mut rx1) = start("12D3KooWlong1", "one");
        let (d2, _rx2) = start("12D3KooWlong2", "two");
        for d in [&d1, &d2] {
            let instance = d.fullname().strip_suffix(SERVICE_TYPE).unwrap();
            assert!(instance.len() <= 64, "{instance}");
        }
        assert_ne!(d1.fullname(), d2.fullname());
        let mut log = Vec::new();
        rt.block_on(recv_until(
            "long1",
            &mut rx1,
            &mut log,
            |_| {},
            |log| latest(log, "12D3KooWlong2").is_some(),
        ));
        d1.shutdown();
        d2.shutdown();
    });
}

/// A peer that stops (sending its goodbyes) and comes back at once under the same name and at
/// the same address — a till restarted within a second, on its fixed port — is reported again,
/// each time, within 5 s (issue 15, bug 2: mdns-sd keeps a goodbye's records for one more
/// second, and an announcement within that second only refreshed them: before the fix the
/// peer was never reported again, and the one peer that may dial it never learnt it was back).
#[test]
fn a_peer_restarted_within_a_second_is_found_again() {
    in_private_netns("a_peer_restarted_within_a_second_is_found_again", || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(restarted_within_a_second());
    });
}

async fn restarted_within_a_second() {
    let (x_id, y_id) = ("12D3KooWrestartX", "12D3KooWrestartY");
    let (x, mut x_rx) =
        Discovery::start(config(x_id, SHOP_A, &["/ip4/127.0.0.1/tcp/4201"], 0)).unwrap();
    // The same address each time, as a till's fixed port.
    let addr = "/ip4/127.0.0.1/tcp/4300";
    for round in 0..3 {
        let started = Instant::now();
        let (y, mut y_rx) = Discovery::start(config(y_id, SHOP_A, &[addr], 0)).unwrap();
        // What X reports from now on: Y, again, at its address.
        let mut x_log = Vec::new();
        recv_until(
            x_id,
            &mut x_rx,
            &mut x_log,
            |f| assert_eq!(f.peer_id, y_id),
            |log| latest(log, y_id).is_some_and(|f| f.addrs == [addr]),
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "round {round}: Y reported again only after {:?}",
            started.elapsed()
        );
        let mut y_log = Vec::new();
        recv_until(
            y_id,
            &mut y_rx,
            &mut y_log,
            |f| assert_eq!(f.peer_id, x_id),
            |log| latest(log, x_id).is_some(),
        )
        .await;
        // Y stops (goodbyes sent) and the next round starts it again at once.
        tokio::task::spawn_blocking(move || y.shutdown())
            .await
            .unwrap();
    }
    tokio::task::spawn_blocking(move || x.shutdown())
        .await
        .unwrap();
}

/// Of two tills that found each other, the one with the higher peer id dials too when the
/// lower one does not (issue 15, bug 2: "only the lower peer id dials", so when the lower one
/// missed the other's announcement the pair stayed apart). The lower till here runs without
/// discovery — it never dials — and is only advertised (as its node would advertise it); the
/// higher till must connect to it within 5 s of its start. Before the fix it never did.
#[test]
fn the_higher_peer_id_dials_when_the_lower_does_not() {
    in_private_netns("the_higher_peer_id_dials_when_the_lower_does_not", || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(higher_dials());
    });
}

async fn higher_dials() {
    use common::mesh::{first_till_on, joined_dir, wait_addr};
    use tillmesh::Node;

    // A shop and two new tills (never started, so neither knows the other's address); the
    // first till has no discovery and stays out of it.
    let dir_a = tempfile::tempdir().unwrap();
    let (a, ah, owner, _) = first_till_on(Node::builder().data_dir(dir_a.path())).await;
    let mut tills = Vec::new();
    for name in ["Till 2", "Till 3"] {
        let dir = joined_dir(&ah, &owner, name).await;
        std::fs::remove_file(dir.path().join(tillmesh::mesh::PEERS_FILE)).unwrap();
        let key = ah
            .devices()
            .unwrap()
            .into_iter()
            .find(|d| d.name == name)
            .expect("a member")
            .public_key;
        let pk: [u8; 32] = hex::decode(key).unwrap().try_into().unwrap();
        let peer = tillmesh::net::peer_id_from_public_key(&pk).unwrap();
        tills.push((dir, peer.to_string()));
    }
    let shop_hash = tillmesh::docs::admission::shop_hash(ah.status().unwrap().shop_id.unwrap());
    tills.sort_by(|x, y| x.1.cmp(&y.1));
    let [(lower_dir, lower_id), (higher_dir, higher_id)] = <[_; 2]>::try_from(tills).unwrap();
    assert!(should_dial(&lower_id, &higher_id));

    // The lower till: on the mesh, no discovery of its own (so it dials nobody), advertised.
    let lower = start_till(lower_dir.path(), false).await;
    let lh = lower.handle();
    let lower_addr = wait_addr(&lh).await;
    let (advert, _found) =
        Discovery::start(config(&lower_id, &shop_hash, &[&lower_addr], 0)).unwrap();
    // The higher till, with discovery.
    let higher = start_till(higher_dir.path(), true).await;
    let started = Instant::now();
    let hh = higher.handle();
    let deadline = started + Duration::from_secs(10);
    let view = loop {
        let peers = hh.peers().await;
        if let Some(p) = peers.iter().find(|p| p.peer_id == lower_id && p.connected) {
            break p.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the higher till never dialed the lower one it found: {peers:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Finding takes well under a second here, the fallback waits 2 s.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "connected only after {:?}",
        started.elapsed()
    );
    assert_eq!(view.found_by, tillmesh::mesh::FoundBy::Mdns, "{view:?}");
    // The lower side counts the connection a moment later.
    let seen = common::mesh::wait_for_async(
        || async {
            lh.peers()
                .await
                .iter()
                .any(|p| p.peer_id == higher_id && p.connected)
        },
        Duration::from_secs(5),
    )
    .await;
    assert!(
        seen,
        "the lower till sees the higher: {:?}",
        lh.peers().await
    );
    tokio::task::spawn_blocking(move || advert.shutdown())
        .await
        .unwrap();
    drop((lh, hh));
    higher.shutdown().await;
    lower.shutdown().await;
    drop(ah);
    a.shutdown().await;
    drop((lower_dir, higher_dir, dir_a));
}

/// A till on `dir`, on the mesh over loopback, with mDNS on `lo` or without discovery.
async fn start_till(dir: &std::path::Path, mdns: bool) -> tillmesh::Node {
    let mut b = tillmesh::Node::builder()
        .data_dir(dir)
        .listen("/ip4/127.0.0.1/tcp/0");
    if mdns {
        b = b.mdns(vec!["lo".into()]);
    }
    b.start().await.unwrap()
}
