//! The running node: [`Node::builder`] opens the store, starts the writer and the HTTP server,
//! and hands out a cloneable [`NodeHandle`] with the shop's typed commands and queries.

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::model::*;
use crate::error::Result;

/// Builds a [`Node`].
#[derive(Debug, Default)]
#[must_use]
pub struct NodeBuilder {
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) http: Option<HttpBind>,
}

#[derive(Debug)]
pub(crate) enum HttpBind {
    Addr(SocketAddr),
    Listener(std::net::TcpListener),
}

impl NodeBuilder {
    /// Keep everything in this directory (created if missing). Without it the node is in memory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }
    /// Keep everything in memory (tests, demos).
    pub fn memory(mut self) -> Self {
        self.data_dir = None;
        self
    }
    /// Serve the web UI and API on this address.
    pub fn http(mut self, addr: SocketAddr) -> Self {
        self.http = Some(HttpBind::Addr(addr));
        self
    }
    /// Serve the web UI and API on an already-bound listener (tests bind port 0).
    pub fn http_listener(mut self, listener: std::net::TcpListener) -> Self {
        self.http = Some(HttpBind::Listener(listener));
        self
    }
    /// Start the node.
    pub async fn start(self) -> Result<Node> {
        todo!()
    }
}

/// A running node. Dropping it without [`Node::shutdown`] aborts its tasks.
#[must_use = "a node stops when dropped; call shutdown().await"]
pub struct Node {
    handle: NodeHandle,
    http_addr: Option<SocketAddr>,
}

impl Node {
    /// Start building a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }
    /// A cloneable handle to the shop's commands and queries.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }
    /// Where the HTTP server listens, if it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }
    /// Stop serving, finish pending commits, close the store.
    pub async fn shutdown(self) {
        todo!()
    }
}

/// Cloneable access to a running node's shop.
#[derive(Clone)]
pub struct NodeHandle {}

#[allow(unused_variables)]
impl NodeHandle {
    /// Shop, device and store facts.
    pub fn status(&self) -> Result<Status> {
        todo!()
    }
    /// Create the shop on a node that has none (first start / `tillmesh init`).
    pub async fn create_shop(&self, shop: NewShop) -> Result<ShopCreated> {
        todo!()
    }
    /// Check an owner's or manager's password and unlock their person key.
    pub async fn login_password(&self, username: &str, password: &str) -> Result<Principal> {
        todo!()
    }
    /// Check a staff PIN.
    pub async fn login_pin(&self, username: &str, pin: &str) -> Result<Principal> {
        todo!()
    }
    /// Look up a principal again (for sessions): fails if the person was revoked.
    pub fn refresh_principal(&self, p: &Principal) -> Result<()> {
        todo!()
    }
    /// The shop's settings.
    pub fn settings(&self) -> Result<Settings> {
        todo!()
    }
    /// Change settings (owner).
    pub async fn update_settings(&self, by: &Principal, patch: SettingsPatch) -> Result<Settings> {
        todo!()
    }
    /// People of the shop (manager and owner).
    pub fn people(&self, by: &Principal) -> Result<Vec<Person>> {
        todo!()
    }
    /// Add a person (owner: anyone; manager: staff).
    pub async fn add_person(&self, by: &Principal, person: NewPerson) -> Result<Person> {
        todo!()
    }
    /// Revoke a person or a device by id (owner).
    pub async fn revoke_member(&self, by: &Principal, id: &str) -> Result<()> {
        todo!()
    }
    /// Devices of the shop.
    pub fn devices(&self) -> Result<Vec<Device>> {
        todo!()
    }
    /// All products, archived included.
    pub fn products(&self) -> Result<Vec<Product>> {
        todo!()
    }
    /// One product.
    pub fn product(&self, id: Uuid) -> Result<Product> {
        todo!()
    }
    /// Create a product (manager).
    pub async fn create_product(&self, by: &Principal, p: NewProduct) -> Result<Product> {
        todo!()
    }
    /// Edit or archive a product (manager).
    pub async fn update_product(
        &self,
        by: &Principal,
        id: Uuid,
        patch: ProductPatch,
    ) -> Result<Product> {
        todo!()
    }
    /// Stock on hand of every product and variant.
    pub fn stock(&self) -> Result<Vec<StockLevel>> {
        todo!()
    }
    /// Movements of one product, oldest first.
    pub fn movements(&self, product_id: Uuid) -> Result<Vec<Movement>> {
        todo!()
    }
    /// Every movement with `from <= time < to` (ms), oldest first.
    pub fn movements_between(&self, from: i64, to: i64) -> Result<Vec<Movement>> {
        todo!()
    }
    /// Receive stock (staff and up).
    pub async fn stock_in(&self, by: &Principal, cmd: StockIn) -> Result<Movement> {
        todo!()
    }
    /// Remove stock with a reason (manager).
    pub async fn stock_remove(&self, by: &Principal, cmd: StockRemove) -> Result<Movement> {
        todo!()
    }
    /// Record a stock count (manager).
    pub async fn stock_adjust(&self, by: &Principal, cmd: StockAdjust) -> Result<Movement> {
        todo!()
    }
    /// Record a sale (staff and up). Returns once it is durable.
    pub async fn record_sale(&self, by: &Principal, sale: NewSale) -> Result<Sale> {
        todo!()
    }
    /// Sales with `from <= time < to` (ms since epoch), oldest first.
    pub fn sales(&self, from: i64, to: i64) -> Result<Vec<Sale>> {
        todo!()
    }
    /// One sale.
    pub fn sale(&self, id: Uuid) -> Result<Sale> {
        todo!()
    }
    /// Void a sale (staff: their own within 30 minutes; manager: any).
    pub async fn void_sale(&self, by: &Principal, id: Uuid, cmd: VoidSale) -> Result<Sale> {
        todo!()
    }
    /// Return lines of a sale (manager).
    pub async fn return_sale(&self, by: &Principal, id: Uuid, cmd: NewReturn) -> Result<SaleReturn> {
        todo!()
    }
    /// Totals per shop-local day, `from_day..=to_day` (`YYYY-MM-DD`).
    pub fn daily_sales(&self, from_day: &str, to_day: &str) -> Result<Vec<DailySales>> {
        todo!()
    }
    /// Documents this node stores (`vault` included; the API hides it).
    pub fn documents(&self) -> Result<Vec<DocumentInfo>> {
        todo!()
    }
    /// A document saved as Automerge bytes (`vault` refused).
    pub fn document_bytes(&self, by: &Principal, id: &str) -> Result<Vec<u8>> {
        todo!()
    }
    /// Everything applied from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        todo!()
    }
}
