//! A simulated shop: N replicas — each the real writer, verify-and-apply path and projections
//! over an in-memory store, no node, no network stack — on a seeded network that drops,
//! duplicates, delays and reorders gossip, drops sync requests, and partitions links. A
//! property test runs random days of edits (prices, sales, stock) through it and checks that,
//! once the links heal and every replica pulled from every other once, all replicas hold the
//! same envelopes and show the same documents, products (with their conflicts), stock, sales
//! and alert ids, and that no acknowledged sale was lost.
//!
//! It drives [`PullSession`] directly (a dropped request ends the pull, as a timeout would),
//! answers with [`answer`] from the peer's read snapshot, and gossips what each edit committed
//! (the writer's outbox) the way the mesh would.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use redb::ReadableTable;
use uuid::Uuid;

use super::{PullSession, ReplicaRead, Step, SyncResponse, answer};
use crate::docs::Envelope;
use crate::domain::{alerts, commands, queries};
use crate::error::Result;
use crate::model::*;
use crate::replica::{Applied, Ctx, Engine, Shared, Writer};
use crate::store::Store;

/// Most replicas in a case.
const MAX_REPLICAS: usize = 4;
/// Products in the shop.
const PRODUCTS: usize = 2;

/// A shop made once per test process: the device keys it admitted, the owner, and for each
/// device the image of a store holding the shop (a case copies it instead of applying the
/// shop's envelopes again: most of a case's time otherwise).
struct Template {
    devices: Vec<SigningKey>,
    images: Vec<Vec<u8>>,
    owner: Principal,
    products: Vec<Uuid>,
}

/// An in-memory redb backend shared with the test, to copy its bytes once the store closed.
#[derive(Debug, Clone)]
struct Image(Arc<redb::backends::InMemoryBackend>);

impl redb::StorageBackend for Image {
    fn len(&self) -> std::io::Result<u64> {
        redb::StorageBackend::len(&*self.0)
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        redb::StorageBackend::read(&*self.0, offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        redb::StorageBackend::set_len(&*self.0, len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        redb::StorageBackend::sync_data(&*self.0)
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        redb::StorageBackend::write(&*self.0, offset, data)
    }
}

impl Image {
    fn bytes(&self) -> Vec<u8> {
        use redb::StorageBackend;
        let mut out = vec![0; self.len().expect("a length") as usize];
        StorageBackend::read(self, 0, &mut out).expect("the image reads");
        out
    }

    fn from_bytes(bytes: &[u8]) -> Image {
        use redb::StorageBackend;
        let image = Image(Arc::new(redb::backends::InMemoryBackend::new()));
        image.set_len(bytes.len() as u64).expect("memory");
        StorageBackend::write(&image, 0, bytes).expect("memory");
        image
    }
}

/// One replica: a writer thread over an in-memory store.
struct Replica {
    store: Store,
    shared: Arc<Shared>,
    writer: Option<Writer>,
    thread: Option<std::thread::JoinHandle<()>>,
    outbox: tokio::sync::broadcast::Receiver<Arc<Vec<u8>>>,
}

impl Replica {
    fn new(key: SigningKey) -> Replica {
        Replica::on(key, Store::memory().expect("an in-memory store"))
    }

    fn on(key: SigningKey, store: Store) -> Replica {
        let shared = Arc::new(Shared::new(Default::default()));
        let mut engine = Engine::new(
            store.clone(),
            shared.clone(),
            key,
            Arc::new(crate::domain::reindex::Projections),
        )
        .expect("an engine");
        engine.warm_up().expect("warm up");
        let (writer, thread) = Writer::spawn(engine);
        let outbox = shared.outbox.subscribe();
        Replica {
            store,
            shared,
            writer: Some(writer),
            thread: Some(thread),
            outbox,
        }
    }

    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Ctx<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        futures::executor::block_on(self.writer.as_ref().expect("running").write(f))
    }

    fn import(&self, from: &str, envelopes: Vec<Envelope>) -> Vec<Result<Applied>> {
        let from = from.to_string();
        self.write(move |ctx| {
            ctx.forwarded_by(&from);
            ctx.relaxed();
            ctx.apply_all(envelopes)
        })
        .expect("the batch commits")
    }

    fn read(&self) -> redb::ReadTransaction {
        self.store.read().expect("a read transaction")
    }

    /// What this replica committed since the last call (what the mesh would publish).
    fn published(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Ok(bytes) = self.outbox.try_recv() {
            out.push(bytes.to_vec());
        }
        out
    }

    /// Everything a user or a peer could see of this replica.
    fn shown(&self) -> Shown {
        let tx = self.read();
        let docs = self
            .store
            .docs()
            .expect("documents")
            .into_iter()
            .map(|(id, m)| {
                let mut heads = m.heads;
                heads.sort();
                (id, heads)
            })
            .collect();
        let settings = self.shared.shop.read().expect("shop view").settings.clone();
        Shown {
            buckets: tx.bucket_digests().expect("digests"),
            docs,
            products: queries::products(&tx).expect("products"),
            stock: queries::stock(&tx, 0).expect("stock"),
            sales: queries::sales(&tx, 0, i64::MAX, None, usize::MAX)
                .expect("sales")
                .0,
            alerts: alerts::list(&tx, settings.as_ref(), true)
                .expect("alerts")
                .into_iter()
                .map(|a| a.id)
                .collect(),
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.writer = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug, PartialEq)]
struct Shown {
    buckets: Vec<(String, [u8; 32])>,
    docs: BTreeMap<String, Vec<[u8; 32]>>,
    products: Vec<Product>,
    stock: Vec<StockLevel>,
    sales: Vec<Sale>,
    alerts: Vec<String>,
}

fn every_envelope(r: &Replica) -> Vec<Envelope> {
    let tx = r.read();
    let t = tx
        .open_table(crate::store::tables::ENVELOPES)
        .expect("envelopes");
    t.iter()
        .expect("envelopes")
        .map(|row| Envelope::from_bytes(row.expect("a row").1.value()).expect("an envelope"))
        .collect()
}

fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let devices: Vec<SigningKey> = (0..MAX_REPLICAS)
            .map(|_| crate::identity::new_signing_key())
            .collect();
        let first = Replica::new(devices[0].clone());
        let owner_key = crate::identity::new_signing_key();
        // Cheap key sealing: nobody logs in here, the owner's key is used directly.
        let owner_sealed = crate::identity::seal_key(
            &owner_key,
            "a long password",
            crate::identity::KdfParams::PIN,
        )
        .expect("sealing");
        let owner = Person {
            id: Uuid::new_v4(),
            name: "Olivia".into(),
            username: "olivia".into(),
            role: Role::Owner,
            public_key: Some(hex::encode(owner_key.verifying_key().as_bytes())),
            revoked: false,
        };
        let principal = Principal {
            person_id: owner.id,
            name: owner.name.clone(),
            username: owner.username.clone(),
            role: Role::Owner,
            key: Some(owner_key.clone()),
        };
        let genesis = commands::ShopGenesis {
            shop_id: Uuid::new_v4(),
            settings: Settings {
                shop_name: "Sim Shop".into(),
                currency: "EUR".into(),
                currency_exponent: 2,
                timezone: "UTC".into(),
                tax_mode: TaxMode::Inclusive,
                rounding: Rounding::HalfUp,
                cash_rounding: 1,
                receipt_text: String::new(),
                low_stock_default: 0,
                oversell: OversellPolicy::Warn,
                max_staff: 5,
            },
            owner,
            owner_key,
            owner_sealed,
            recovery_public: hex::encode(
                crate::identity::new_signing_key()
                    .verifying_key()
                    .as_bytes(),
            ),
            device_name: "Till 1".into(),
        };
        first
            .write(move |ctx| commands::create_shop(ctx, genesis))
            .expect("a shop");
        let mut products = Vec::new();
        for i in 0..PRODUCTS {
            let by = principal.clone();
            let p = first
                .write(move |ctx| {
                    commands::create_product(
                        ctx,
                        &by,
                        NewProduct {
                            sku: format!("SKU{i}"),
                            name: format!("Product {i}"),
                            price: 500,
                            barcode: None,
                            category: None,
                            unit: None,
                            cost: Some(200),
                            tax_rate: Some(1000),
                            reorder_level: Some(2),
                            variants: vec![],
                        },
                    )
                })
                .expect("a product");
            products.push(p.id);
        }
        let genesis = first.shared.shop.read().unwrap().genesis.expect("genesis");
        // Every other device redeems an invite on the first and admits itself.
        for (i, key) in devices.iter().enumerate().skip(1) {
            let by = principal.clone();
            let device = key.verifying_key().to_bytes();
            let invite = first
                .write(move |ctx| {
                    let (code, _) = commands::create_invite(
                        ctx,
                        &by,
                        DeviceRole::Till,
                        &format!("Till {}", i + 1),
                        3_600_000,
                    )?;
                    commands::redeem_invite(ctx, &code, &device)
                })
                .expect("an invite");
            let joiner = Replica::new(key.clone());
            let envs = every_envelope(&first);
            joiner
                .write(move |ctx| {
                    ctx.adopt_genesis(genesis, None)?;
                    ctx.apply_all(envs)
                })
                .expect("the shop imports");
            joiner
                .write(move |ctx| commands::admit_self(ctx, &invite))
                .expect("admitted");
            for r in first.import("", every_envelope(&joiner)) {
                r.expect("the admission applies");
            }
        }
        let envelopes = every_envelope(&first);
        let images = devices
            .iter()
            .map(|key| {
                let image = Image(Arc::new(redb::backends::InMemoryBackend::new()));
                let r = Replica::on(
                    key.clone(),
                    Store::with_backend(image.clone()).expect("a store"),
                );
                let envs = envelopes.clone();
                r.write(move |ctx| {
                    ctx.adopt_genesis(genesis, None)?;
                    ctx.apply_all(envs)
                })
                .expect("the shop imports");
                drop(r);
                image.bytes()
            })
            .collect();
        Template {
            devices,
            images,
            owner: principal,
            products,
        }
    })
}

/// splitmix64: the network's fate, from the case's seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// An owner on replica `at` sets a product's price.
    Price {
        at: usize,
        product: usize,
        price: i64,
    },
    /// A sale on replica `at`.
    Sell { at: usize, product: usize, qty: i64 },
    /// Stock received on replica `at`.
    StockIn { at: usize, product: usize, qty: i64 },
    /// The link between two replicas goes down (what is in flight on it is lost).
    Cut { a: usize, b: usize },
    /// The link comes back.
    Heal { a: usize, b: usize },
    /// Replica `at` pulls from replica `from` (if their link is up).
    Pull { at: usize, from: usize },
    /// Time passes: gossip that is due arrives, in random order.
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    let r = 0..MAX_REPLICAS;
    let p = 0..PRODUCTS;
    prop_oneof![
        3 => (r.clone(), p.clone(), 400i64..600).prop_map(|(at, product, price)| Op::Price { at, product, price }),
        3 => (r.clone(), p.clone(), 1i64..4).prop_map(|(at, product, qty)| Op::Sell { at, product, qty }),
        1 => (r.clone(), p, 1i64..10).prop_map(|(at, product, qty)| Op::StockIn { at, product, qty }),
        1 => (r.clone(), r.clone()).prop_map(|(a, b)| Op::Cut { a, b }),
        1 => (r.clone(), r.clone()).prop_map(|(a, b)| Op::Heal { a, b }),
        2 => (r.clone(), r).prop_map(|(at, from)| Op::Pull { at, from }),
        3 => Just(Op::Tick),
    ]
}

/// A gossip message on its way.
struct InFlight {
    due: u64,
    from: usize,
    to: usize,
    bytes: Vec<u8>,
}

struct Net {
    replicas: Vec<Replica>,
    up: Vec<Vec<bool>>,
    flight: Vec<InFlight>,
    now: u64,
    rng: Rng,
    /// Every sale a replica acknowledged.
    acknowledged: Vec<Uuid>,
}

impl Net {
    fn new(n: usize, seed: u64) -> Net {
        let t = template();
        let replicas: Vec<Replica> = (0..n)
            .map(|i| {
                let store = Store::with_backend(Image::from_bytes(&t.images[i])).expect("a store");
                Replica::on(t.devices[i].clone(), store)
            })
            .collect();
        let mut net = Net {
            up: vec![vec![true; n]; n],
            replicas,
            flight: Vec::new(),
            now: 0,
            rng: Rng(seed),
            acknowledged: Vec::new(),
        };
        for i in 0..n {
            net.replicas[i].published();
        }
        net
    }

    fn n(&self) -> usize {
        self.replicas.len()
    }

    fn run(&mut self, op: Op) {
        let n = self.n();
        let t = template();
        match op {
            Op::Price { at, product, price } => {
                let (by, id) = (t.owner.clone(), t.products[product]);
                let patch = ProductPatch {
                    price: Some(price),
                    ..Default::default()
                };
                // A price equal to the current one changes nothing and is refused: fine.
                let _ = self.replicas[at % n]
                    .write(move |ctx| commands::update_product(ctx, &by, id, patch));
                self.gossip(at % n);
            }
            Op::Sell { at, product, qty } => {
                let (by, id) = (t.owner.clone(), t.products[product]);
                let sale = NewSale {
                    lines: vec![NewSaleLine {
                        product_id: id,
                        variant_id: None,
                        qty,
                        discount: None,
                    }],
                    payments: vec![NewPayment {
                        method: PaymentMethod::Card,
                        amount: None,
                    }],
                    note: None,
                    ticket_id: None,
                };
                let sold = self.replicas[at % n]
                    .write(move |ctx| commands::record_sale(ctx, &by, sale, None))
                    .expect("a sale is recorded");
                self.acknowledged.push(sold.id);
                self.gossip(at % n);
            }
            Op::StockIn { at, product, qty } => {
                let (by, id) = (t.owner.clone(), t.products[product]);
                let c = StockIn {
                    product_id: id,
                    variant_id: None,
                    qty,
                    unit_cost: Some(200),
                    note: None,
                };
                self.replicas[at % n]
                    .write(move |ctx| commands::stock_in(ctx, &by, c, None))
                    .expect("stock is received");
                self.gossip(at % n);
            }
            Op::Cut { a, b } => self.link(a % n, b % n, false),
            Op::Heal { a, b } => self.link(a % n, b % n, true),
            Op::Pull { at, from } => {
                let (at, from) = (at % n, from % n);
                if at != from && self.up[at][from] {
                    // A pull cut short by a dropped request is what a timeout leaves.
                    let _ = self.pull(at, from, 10);
                }
            }
            Op::Tick => self.tick(),
        }
    }

    fn link(&mut self, a: usize, b: usize, up: bool) {
        self.up[a][b] = up;
        self.up[b][a] = up;
        if !up {
            self.flight
                .retain(|m| !((m.from == a && m.to == b) || (m.from == b && m.to == a)));
        }
    }

    /// Sends what replica `from` committed to every replica it is linked to: each message may
    /// be dropped, duplicated, and delayed (which reorders it).
    fn gossip(&mut self, from: usize) {
        for bytes in self.replicas[from].published() {
            for to in 0..self.n() {
                if to == from || !self.up[from][to] {
                    continue;
                }
                let copies = match self.rng.below(10) {
                    0..=1 => 0,
                    2 => 2,
                    _ => 1,
                };
                for _ in 0..copies {
                    let due = self.now + self.rng.below(4);
                    self.flight.push(InFlight {
                        due,
                        from,
                        to,
                        bytes: bytes.clone(),
                    });
                }
            }
        }
    }

    fn tick(&mut self) {
        self.now += 1;
        let (mut due, rest): (Vec<InFlight>, Vec<InFlight>) = std::mem::take(&mut self.flight)
            .into_iter()
            .partition(|m| m.due <= self.now);
        self.flight = rest;
        // Random order of arrival.
        for i in (1..due.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            due.swap(i, j);
        }
        // As the mesh does: what arrived together from one peer is imported at once.
        let mut batches: Vec<((usize, usize), Vec<Envelope>)> = Vec::new();
        for m in due {
            let env = Envelope::from_bytes(&m.bytes).expect("an envelope");
            match batches.iter_mut().find(|(k, _)| *k == (m.to, m.from)) {
                Some((_, envs)) => envs.push(env),
                None => batches.push(((m.to, m.from), vec![env])),
            }
        }
        for ((to, from), envs) in batches {
            for r in self.replicas[to].import(&format!("r{from}"), envs) {
                r.expect("gossip from a member applies or waits");
            }
        }
    }

    /// One pull of `at` from `from`, each request dropped with probability `drop_pct` %.
    fn pull(&mut self, at: usize, from: usize, drop_pct: u64) -> std::result::Result<(), ()> {
        let (mut session, first) = PullSession::start();
        let mut request = Some(first);
        let mut step;
        loop {
            let Some(req) = request.take() else {
                return Ok(());
            };
            if self.rng.below(100) < drop_pct {
                return Err(());
            }
            let answer: SyncResponse = wire(answer(wire(req), &self.replicas[from].read()));
            step = session
                .on_answer(answer, &self.replicas[at].read())
                .expect("an honest peer's answer");
            loop {
                match step {
                    Step::Ask(req) => {
                        request = Some(req);
                        break;
                    }
                    Step::Apply {
                        envelopes,
                        malformed,
                        next,
                    } => {
                        assert_eq!(malformed, 0, "an honest peer sends whole envelopes");
                        let results = self.replicas[at].import(&format!("r{from}"), envelopes);
                        for r in &results {
                            assert!(r.is_ok(), "an honest peer's envelope: {r:?}");
                        }
                        session.applied(&results);
                        match next {
                            Some(req) => {
                                request = Some(req);
                                break;
                            }
                            None => step = session.resume(),
                        }
                    }
                    Step::Done(_) => return Ok(()),
                }
            }
        }
    }

    /// Heals every link and lets every replica pull from every other once, nothing dropped.
    fn settle(&mut self) {
        let n = self.n();
        for a in 0..n {
            for b in 0..n {
                self.up[a][b] = true;
            }
        }
        for at in 0..n {
            for from in 0..n {
                if at != from {
                    self.pull(at, from, 0).expect("nothing is dropped");
                }
            }
        }
    }
}

/// Through the wire encoding, as the network carries it.
fn wire<T: serde::Serialize + serde::de::DeserializeOwned>(v: T) -> T {
    postcard::from_bytes(&postcard::to_allocvec(&v).expect("encodes")).expect("decodes")
}

fn check(n: usize, seed: u64, ops: Vec<Op>) -> std::result::Result<(), TestCaseError> {
    let mut net = Net::new(n, seed);
    for op in ops {
        net.run(op);
    }
    net.settle();
    let first = net.replicas[0].shown();
    for sale in &net.acknowledged {
        prop_assert!(
            first.sales.iter().any(|s| s.id == *sale),
            "an acknowledged sale was lost"
        );
    }
    for (i, r) in net.replicas.iter().enumerate().skip(1) {
        let shown = r.shown();
        prop_assert_eq!(
            &shown.buckets,
            &first.buckets,
            "replica {} holds other envelopes",
            i
        );
        prop_assert_eq!(&shown.docs, &first.docs, "replica {}'s documents differ", i);
        prop_assert_eq!(
            &shown.products,
            &first.products,
            "replica {}'s products differ",
            i
        );
        prop_assert_eq!(&shown.stock, &first.stock, "replica {}'s stock differs", i);
        prop_assert_eq!(&shown.sales, &first.sales, "replica {}'s sales differ", i);
        prop_assert_eq!(
            &shown.alerts,
            &first.alerts,
            "replica {}'s alerts differ",
            i
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        ..ProptestConfig::default()
    })]

    /// Replicas that edit while the network drops, duplicates, delays, reorders and
    /// partitions converge to the same state once it heals, and lose nothing acknowledged.
    #[test]
    fn replicas_converge_whatever_the_network_does(
        n in 2..=MAX_REPLICAS,
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..16),
    ) {
        check(n, seed, ops)?;
    }
}

/// The simulator finds the projection bug of the issue "The core on seams": three replicas
/// cut off from each other each set a price, then merge one by one.
#[test]
fn three_cut_off_price_edits_converge() {
    let mut ops = vec![];
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        ops.push(Op::Cut { a, b });
    }
    for at in 0..3 {
        ops.push(Op::Price {
            at,
            product: 0,
            price: 510 + at as i64,
        });
    }
    ops.push(Op::Heal { a: 0, b: 1 });
    ops.push(Op::Pull { at: 0, from: 1 });
    ops.push(Op::Heal { a: 0, b: 2 });
    ops.push(Op::Pull { at: 0, from: 2 });
    check(3, 7, ops).expect("converges");
}
