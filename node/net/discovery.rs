//! LAN discovery over mDNS (DESIGN §5): advertise this node as `_tillmesh._udp.local.` (and its
//! web UI as `_http._tcp.local.`), browse for other nodes of the same shop, and hand what is found
//! to the caller, who dials it (libp2p). Built on the `mdns-sd` crate, which — unlike libp2p's own
//! mdns behaviour — also works over loopback, so it can be tested on one machine (DESIGN §11).
//!
//! ## What is advertised
//! One `_tillmesh._udp` service instance per node, named [`DiscoveryConfig::instance`] (cut to
//! 63 bytes), on host `tm-<16 hex of sha256(peer id)>.local.` whose A/AAAA records mdns-sd fills
//! from the selected interfaces. Its SRV port is the first TCP/UDP port among the advertised
//! multiaddrs (else the UI port). Its TXT record holds:
//! - `shop=<shop hash>`: peers with another (or no) shop hash are ignored;
//! - `peer=<libp2p peer id>`;
//! - `addrs=<multiaddr>,<multiaddr>,…` — or, when that would not fit the 255 bytes a TXT string
//!   may hold, `addr0=…`, `addr1=…`, … each a comma-separated share of the list (a receiver
//!   reads `addrs` and then `addr0`, `addr1`, … up to the first missing one);
//! - `ui=<port>` when the UI port is known (non-zero);
//! - `run=<16 hex>`: random, new at each [`Discovery::start`] (see "Restarts" below).
//!
//! The UI is also advertised as `_http._tcp` (same host, port = UI port, TXT `shop`, `peer`,
//! `path=/`) when [`DiscoveryConfig::ui_port`] is non-zero.
//!
//! ## Unspecified addresses
//! A multiaddr whose IP is unspecified (`/ip4/0.0.0.0/…`, `/ip6/::/…`) is expanded by the
//! **advertiser**, here: it is replaced by one multiaddr per address of that family on the
//! selected interfaces (read when [`Discovery::start`] / [`Discovery::update_addrs`] run; IPv6
//! link-local ones skipped, since a multiaddr cannot carry their scope; none of that family →
//! left out). So a caller may pass its listen addresses straight from the listener, and should
//! call `update_addrs` again when the machine's addresses change. As a fallback, a receiver
//! expands an unspecified address it still gets with the host addresses mDNS resolved for that
//! peer. Found addresses are not otherwise checked: they are hints to dial, and the dialled
//! connection authenticates the peer id.
//!
//! ## Interfaces
//! [`DiscoveryConfig::interfaces`] names the interfaces mDNS may use; empty means every
//! non-loopback interface. Caveat of mdns-sd 0.21: its daemon thread joins the mDNS multicast
//! group on *every* interface when it starts (so the kernel sends IGMP/MLD membership reports
//! there), and only then applies our selection — still before any mDNS packet is sent, since
//! the selection commands are queued ahead of registering and browsing. So tests run inside a
//! network namespace of their own (`unshare --net`), where only `lo` exists.
//!
//! ## Restarts
//! mdns-sd follows RFC 6762 §10.1: a goodbye (TTL 0) is cached with a TTL of 1 s rather than
//! dropped, and an announcement of the same records within that second only refreshes the
//! cached ones — no `ServiceRemoved`, no new `ServiceResolved`. A node killed without goodbyes
//! (SIGKILL, power cut) that comes back at the same addresses sends the same records again,
//! which may likewise only refresh what peers cached. So a node restarted at the same
//! addresses (a till's fixed port) would look unchanged and never be reported again, and a
//! peer that lost its connection to it would not learn it is back. Hence the `run` TXT value: each start advertises a fresh one, the restarted node's TXT record
//! differs from the cached one, mdns-sd resolves it again, and the forwarder, which keys its
//! deduplication on the run too, reports the peer again.
//!
//! ## Who dials
//! Two peers that found each other would both dial; [`should_dial`] picks one (the lower peer
//! id). The other one is the caller's fallback (the mesh dials after a short wait if still not
//! connected). Duplicate connections that still happen are for the caller to close.
//!
//! The address list (what is valid, unspecified addresses expanded, the TXT chunks) is in
//! `addrs`.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

mod addrs;

use addrs::{advertised_addrs, decode_addrs, encode_addrs, expand_unspecified, first_port};

/// Shop hash of a device that is joining and looks for any shop on the LAN.
pub const ANY_SHOP: &str = "*";

/// The service type every tillmesh node advertises and browses for.
pub const SERVICE_TYPE: &str = "_tillmesh._udp.local.";
/// The service type the web UI is advertised as.
pub const HTTP_SERVICE_TYPE: &str = "_http._tcp.local.";

/// A DNS label (the instance name) holds at most 63 bytes.
const MAX_INSTANCE_LEN: usize = 63;
/// A TXT string (`key=value`) holds at most 255 bytes.
const MAX_TXT_STRING: usize = 255;
/// Longest multiaddr we advertise or accept.
const MAX_ADDR_LEN: usize = 240;
/// Most addresses advertised or accepted per peer.
const MAX_ADDRS: usize = 32;
/// Budget for all address bytes in our TXT record, so the record stays well inside one packet.
const MAX_ADDR_BYTES: usize = 900;
/// Most `addrN` keys read.
const MAX_ADDR_CHUNKS: usize = 8;
/// Longest peer id / shop hash accepted.
const MAX_ID_LEN: usize = 128;
/// Capacity of the channel of [`Found`] peers.
const FOUND_CHANNEL: usize = 256;
/// Longest `run` TXT value accepted (ours are 16 hex digits).
const MAX_RUN_LEN: usize = 32;

/// How discovery is set up.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Which interfaces mDNS uses: names like "lo", "eth0"; empty = all non-loopback
    /// interfaces (production default). Tests pass `["lo"]` (loopback).
    pub interfaces: Vec<String>,
    /// Instance name advertised (the node's peer id string is fine). Empty means the peer id.
    /// Longer than 63 bytes, it is cut and suffixed with a hash of the whole name.
    pub instance: String,
    /// Hex of a hash of the shop id: peers of other shops are ignored.
    pub shop_hash: String,
    /// This node's libp2p peer id (string form), advertised in TXT.
    pub peer_id: String,
    /// Listen addresses (multiaddr strings, e.g. "/ip4/127.0.0.1/tcp/4001"), advertised in TXT.
    /// Unspecified IPs are replaced by the selected interfaces' addresses (see the module docs);
    /// malformed or over-long ones are left out.
    pub addrs: Vec<String>,
    /// The web UI port, advertised in TXT and as an `_http._tcp` service (0 = not advertised).
    pub ui_port: u16,
}

/// A peer of our shop found on the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its libp2p peer id (string form; only checked to look like one).
    pub peer_id: String,
    /// Its advertised multiaddrs, unspecified IPs expanded with [`Found::host_addrs`].
    pub addrs: Vec<String>,
    /// Its web UI port, if it advertised one.
    pub ui_port: Option<u16>,
    /// The addresses mDNS resolved for its host (A/AAAA records), sorted; all seen since the
    /// instance appeared (mdns-sd may report the A and AAAA records in separate events).
    pub host_addrs: Vec<IpAddr>,
}

/// Why discovery could not start or update.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The configuration is invalid (peer id, instance name, interfaces …).
    #[error("discovery config: {0}")]
    Config(String),
    /// The mDNS daemon failed.
    #[error("mdns: {0}")]
    Mdns(#[from] mdns_sd::Error),
    /// The discovery thread could not start.
    #[error("discovery thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Of two peers that found each other, only one dials: the one whose peer id string is lower.
pub fn should_dial(local_peer_id: &str, remote_peer_id: &str) -> bool {
    local_peer_id < remote_peer_id
}

/// What we advertise; kept so addresses can be updated.
#[derive(Debug, Clone)]
struct Advert {
    instance: String,
    host: String,
    shop_hash: String,
    peer_id: String,
    addrs: Vec<String>,
    ui_port: u16,
    interfaces: Vec<String>,
    /// This start's `run` TXT value (see the module docs, "Restarts").
    run: String,
}

impl Advert {
    fn node_service(&self) -> Result<ServiceInfo, DiscoveryError> {
        let mut txt = vec![
            ("shop".to_string(), self.shop_hash.clone()),
            ("peer".to_string(), self.peer_id.clone()),
        ];
        txt.extend(encode_addrs(&self.addrs));
        if self.ui_port != 0 {
            txt.push(("ui".to_string(), self.ui_port.to_string()));
        }
        txt.push(("run".to_string(), self.run.clone()));
        let port = first_port(&self.addrs).unwrap_or(self.ui_port);
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            &self.instance,
            &self.host,
            (),
            port,
            txt.as_slice(),
        )?;
        Ok(self.restrict(info.enable_addr_auto()))
    }

    fn http_service(&self) -> Result<Option<ServiceInfo>, DiscoveryError> {
        if self.ui_port == 0 {
            return Ok(None);
        }
        let txt = [
            ("shop", self.shop_hash.as_str()),
            ("peer", self.peer_id.as_str()),
            ("path", "/"),
        ];
        let info = ServiceInfo::new(
            HTTP_SERVICE_TYPE,
            &self.instance,
            &self.host,
            (),
            self.ui_port,
            &txt[..],
        )?;
        Ok(Some(self.restrict(info.enable_addr_auto())))
    }

    /// With named interfaces, also limit the service itself to them (the daemon is limited too).
    fn restrict(&self, mut info: ServiceInfo) -> ServiceInfo {
        if !self.interfaces.is_empty() {
            info.set_interfaces(self.interfaces.iter().map(IfKind::from).collect());
        }
        info
    }
}

/// A running discovery: owns the mdns-sd daemon (its own thread) and a thread forwarding what it
/// finds. Dropping it stops the daemon without waiting; [`Discovery::shutdown`] also sends the
/// goodbyes and waits (briefly) for them.
pub struct Discovery {
    daemon: ServiceDaemon,
    advert: Mutex<Advert>,
    node_fullname: String,
    http_fullname: Option<String>,
    forwarder: Option<JoinHandle<()>>,
    stopped: bool,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("node_fullname", &self.node_fullname)
            .field("http_fullname", &self.http_fullname)
            .finish_non_exhaustive()
    }
}

impl Discovery {
    /// Registers our service (and the `_http._tcp` one) and starts browsing; found same-shop
    /// peers (not ourselves) arrive on the channel, deduplicated: a peer is sent again only when
    /// something in its [`Found`] changed (advertised addresses, UI port, or the host addresses
    /// mDNS resolved — the A and AAAA records often arrive in separate packets, so expect a
    /// peer once or twice at first), after it went away and came back, or after it restarted
    /// (even unchanged and within a second: see the module docs, "Restarts").
    ///
    /// Binds UDP port 5353 (shared, `SO_REUSEPORT`) in a thread of mdns-sd's. Need not be called
    /// inside a tokio runtime.
    pub fn start(
        cfg: DiscoveryConfig,
    ) -> Result<(Discovery, mpsc::Receiver<Found>), DiscoveryError> {
        let advert = check_config(cfg)?;
        let daemon = ServiceDaemon::new()?;
        match Self::start_on(&daemon, advert) {
            Ok(started) => Ok(started),
            Err(e) => {
                let _ = daemon.shutdown();
                Err(e)
            }
        }
    }

    fn start_on(
        daemon: &ServiceDaemon,
        advert: Advert,
    ) -> Result<(Discovery, mpsc::Receiver<Found>), DiscoveryError> {
        // Interface selection first: the daemon handles commands in order, so nothing is
        // announced or queried on an interface we did not select.
        if advert.interfaces.is_empty() {
            daemon.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])?;
        } else {
            daemon.disable_interface(IfKind::All)?;
            daemon.enable_interface(
                advert
                    .interfaces
                    .iter()
                    .map(IfKind::from)
                    .collect::<Vec<_>>(),
            )?;
        }

        let node = advert.node_service()?;
        let node_fullname = node.get_fullname().to_string();
        daemon.register(node)?;
        let http_fullname = match advert.http_service()? {
            Some(http) => {
                let name = http.get_fullname().to_string();
                daemon.register(http)?;
                Some(name)
            }
            None => None,
        };

        let events = daemon.browse(SERVICE_TYPE)?;
        let (tx, rx) = mpsc::channel(FOUND_CHANNEL);
        let own = Own {
            peer_id: advert.peer_id.clone(),
            shop_hash: advert.shop_hash.clone(),
            fullname: node_fullname.to_lowercase(),
        };
        let forwarder = std::thread::Builder::new()
            .name("tillmesh-mdns".into())
            .spawn(move || forward(events, tx, own))?;

        Ok((
            Discovery {
                daemon: daemon.clone(),
                advert: Mutex::new(advert),
                node_fullname,
                http_fullname,
                forwarder: Some(forwarder),
                stopped: false,
            },
            rx,
        ))
    }

    /// Updates the advertised addresses (e.g. after listening on port 0 resolved, or after the
    /// machine's addresses changed: unspecified IPs are expanded again). Registers the service
    /// again under the same name; peers get the new TXT record and report the peer again. Does
    /// nothing if the resulting list is unchanged.
    pub fn update_addrs(&self, addrs: Vec<String>) -> Result<(), DiscoveryError> {
        let mut advert = self.advert.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = advert.clone();
        next.addrs = advertised_addrs(addrs, &next.interfaces);
        if next.addrs == advert.addrs {
            return Ok(());
        }
        let mut info = next.node_service()?;
        // The name is ours already (probed when first registered).
        info.set_requires_probe(false);
        self.daemon.register(info)?;
        *advert = next;
        Ok(())
    }

    /// The full mDNS name of our `_tillmesh._udp` service instance.
    pub fn fullname(&self) -> &str {
        &self.node_fullname
    }

    /// Unregisters (sending goodbyes) and stops the daemon. Blocks for up to a few seconds: in
    /// async code call it from `spawn_blocking`.
    pub fn shutdown(mut self) {
        self.stop(true);
    }

    fn stop(&mut self, wait: bool) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let _ = self.daemon.stop_browse(SERVICE_TYPE);
        let names = std::iter::once(&self.node_fullname).chain(self.http_fullname.as_ref());
        let mut pending = Vec::new();
        for name in names {
            match self.daemon.unregister(name) {
                Ok(rx) => pending.push(rx),
                Err(e) => tracing::debug!(%name, "mdns unregister: {e}"),
            }
        }
        if wait {
            for rx in pending {
                let _ = rx.recv_timeout(Duration::from_secs(2));
            }
        }
        match self.daemon.shutdown() {
            Ok(rx) if wait => {
                let _ = rx.recv_timeout(Duration::from_secs(2));
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("mdns shutdown: {e}"),
        }
        if let Some(handle) = self.forwarder.take()
            && wait
        {
            // The forwarder ends once the daemon drops its side of the browse channel;
            // don't hang on a caller that stopped reading the found channel.
            let deadline = Instant::now() + Duration::from_secs(1);
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.stop(false);
    }
}

/// What identifies us (and our shop) to the forwarder.
struct Own {
    peer_id: String,
    shop_hash: String,
    fullname: String,
}

/// Forwards resolved same-shop peers from mdns-sd's channel to the tokio one, deduplicated.
fn forward(events: mdns_sd::Receiver<ServiceEvent>, tx: mpsc::Sender<Found>, own: Own) {
    // peer id → what was last sent for it, with the run it advertised then: a new run is a
    // restart, sent again even if nothing else changed (module docs, "Restarts").
    let mut sent: HashMap<String, (Found, Option<String>)> = HashMap::new();
    // fullname → (peer id, host addresses seen so far). mdns-sd resolves an instance with the
    // address records at hand, so one event may carry only the A records and the next only the
    // AAAA ones: keep the union until the instance goes away.
    let mut instances: HashMap<String, (String, BTreeSet<IpAddr>)> = HashMap::new();
    while let Ok(event) = events.recv() {
        match event {
            ServiceEvent::ServiceResolved(service) => {
                let fullname = service.get_fullname().to_lowercase();
                if fullname == own.fullname {
                    continue;
                }
                let known = instances.get(&fullname).map(|(_, hosts)| hosts);
                let Some(found) = decode_service(&service, &own.shop_hash, known) else {
                    continue;
                };
                if found.peer_id == own.peer_id {
                    continue;
                }
                let hosts = found.host_addrs.iter().copied().collect();
                instances.insert(fullname, (found.peer_id.clone(), hosts));
                let run = txt_val(&service, "run")
                    .filter(|r| r.len() <= MAX_RUN_LEN)
                    .map(str::to_string);
                if sent
                    .get(&found.peer_id)
                    .is_some_and(|(f, r)| *f == found && *r == run)
                {
                    continue;
                }
                sent.insert(found.peer_id.clone(), (found.clone(), run.clone()));
                tracing::debug!(peer = %found.peer_id, addrs = ?found.addrs, ?run, "mdns: found peer");
                if tx.blocking_send(found).is_err() {
                    return; // Nobody listens any more.
                }
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                if let Some((peer, _)) = instances.remove(&fullname.to_lowercase())
                    && !instances.values().any(|(p, _)| *p == peer)
                {
                    sent.remove(&peer);
                }
            }
            _ => {}
        }
    }
}

/// Reads a resolved `_tillmesh._udp` service; `None` if it is malformed or of another shop.
/// `known_hosts`: host addresses seen for this instance before.
fn decode_service(
    service: &ResolvedService,
    shop_hash: &str,
    known_hosts: Option<&BTreeSet<IpAddr>>,
) -> Option<Found> {
    let txt = |key: &str| txt_val(service, key);
    let shop = txt("shop")?;
    // A device joining with a short code browses every shop ([`ANY_SHOP`]); shops never list
    // it, since its advertised hash matches none.
    if shop_hash != ANY_SHOP && (shop == ANY_SHOP || !shop.eq_ignore_ascii_case(shop_hash)) {
        return None;
    }
    let peer_id = txt("peer")?;
    if !valid_peer_id(peer_id) {
        return None;
    }
    let ui_port = txt("ui")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p != 0);
    let mut hosts: BTreeSet<IpAddr> = known_hosts.cloned().unwrap_or_default();
    for addr in service.get_addresses() {
        if hosts.len() >= MAX_ADDRS {
            break;
        }
        hosts.insert(addr.to_ip_addr());
    }
    let host_addrs: Vec<IpAddr> = hosts.into_iter().collect();
    let advertised = decode_addrs(txt);
    let addrs = expand_unspecified(&advertised, &host_addrs);
    Some(Found {
        peer_id: peer_id.to_string(),
        addrs,
        ui_port,
        host_addrs,
    })
}

/// A TXT value as UTF-8; `None` if absent, valueless or not UTF-8.
fn txt_val<'a>(service: &'a ResolvedService, key: &str) -> Option<&'a str> {
    std::str::from_utf8(service.get_property_val(key)??).ok()
}

/// Validates the config and derives what is advertised.
fn check_config(cfg: DiscoveryConfig) -> Result<Advert, DiscoveryError> {
    if !valid_peer_id(&cfg.peer_id) {
        return Err(DiscoveryError::Config(format!(
            "peer id must be 1–{MAX_ID_LEN} ASCII letters/digits: {:?}",
            cfg.peer_id
        )));
    }
    if cfg.shop_hash != ANY_SHOP
        && (cfg.shop_hash.is_empty()
            || cfg.shop_hash.len() > MAX_ID_LEN
            || !cfg.shop_hash.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(DiscoveryError::Config(format!(
            "shop hash must be 1–{MAX_ID_LEN} hex digits"
        )));
    }
    if let Some(bad) = cfg
        .interfaces
        .iter()
        .find(|i| i.is_empty() || i.len() > 64 || i.chars().any(|c| c.is_whitespace()))
    {
        return Err(DiscoveryError::Config(format!(
            "bad interface name {bad:?}"
        )));
    }
    let instance = if cfg.instance.is_empty() {
        cfg.peer_id.clone()
    } else {
        cfg.instance.clone()
    };
    Ok(Advert {
        instance: instance_name(&instance),
        host: format!("{}.", mdns_host_name(&cfg.peer_id)),
        shop_hash: cfg.shop_hash.to_ascii_lowercase(),
        peer_id: cfg.peer_id,
        addrs: advertised_addrs(cfg.addrs, &cfg.interfaces),
        ui_port: cfg.ui_port,
        interfaces: cfg.interfaces,
        run: new_run(),
    })
}

/// A fresh `run` TXT value: 16 hex digits of randomness, so a restart is never mistaken for
/// the same run (module docs, "Restarts"). Not a secret: it only has to differ.
fn new_run() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No randomness: the time still differs from one start to the next.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b = (nanos as u64 ^ u64::from(std::process::id())).to_le_bytes();
    }
    hex::encode(b)
}

fn valid_peer_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// 16 hex digits of SHA-256.
/// The host name a node advertises by mDNS (`tm-<16 hex>.local`, without the final dot); the
/// web UI answers to it (see `api::guard`).
pub fn mdns_host_name(peer_id: &str) -> String {
    format!("tm-{}.local", short_hash(peer_id))
}

fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..8])
}

/// `name` if it fits a DNS label, else its first bytes, `-` and a hash of it (≤ 63 bytes).
fn instance_name(name: &str) -> String {
    if name.len() <= MAX_INSTANCE_LEN {
        return name.to_string();
    }
    let mut cut = MAX_INSTANCE_LEN - 17;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{}", &name[..cut], short_hash(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_fit_a_label() {
        assert_eq!(instance_name("12D3KooWabc"), "12D3KooWabc");
        let long = "é".repeat(40);
        let cut = instance_name(&long);
        assert!(cut.len() <= MAX_INSTANCE_LEN);
        assert_ne!(
            instance_name(&format!("{long}a")),
            instance_name(&format!("{long}b"))
        );
    }

    #[test]
    fn ports_and_config_checks() {
        assert_eq!(first_port(&["/ip4/1.2.3.4/udp/9/quic-v1".into()]), Some(9));
        assert_eq!(first_port(&["/dns4/x/tcp/80".into()]), Some(80));
        assert_eq!(first_port(&[]), None);
        let cfg = |peer: &str, shop: &str| DiscoveryConfig {
            interfaces: vec!["lo".into()],
            instance: String::new(),
            shop_hash: shop.into(),
            peer_id: peer.into(),
            addrs: vec![],
            ui_port: 0,
        };
        assert!(check_config(cfg("12D3KooWx", "ab01")).is_ok());
        assert!(check_config(cfg("", "ab01")).is_err());
        assert!(check_config(cfg("a b", "ab01")).is_err());
        assert!(check_config(cfg("p", "xyz")).is_err());
        assert!(check_config(cfg("p", "")).is_err());
    }
}
