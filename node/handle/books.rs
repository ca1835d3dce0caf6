//! [`NodeHandle`] methods for the books beyond the till: suppliers and purchase orders,
//! deliveries, shifts, refunds without a receipt, open tickets, profit and closed periods.

use uuid::Uuid;

use super::NodeHandle;
use crate::domain::access::{self, Access};
use crate::domain::{commands, orders, profit, shifts, tickets};
use crate::error::{Error, Result};
use crate::model::*;

impl NodeHandle {
    /// Every supplier, by name.
    pub fn suppliers(&self) -> Result<Vec<Supplier>> {
        orders::suppliers(&self.read()?)
    }

    /// Add a supplier (`id` None) or replace one's details (manager).
    pub async fn put_supplier(
        &self,
        by: &Principal,
        id: Option<Uuid>,
        s: NewSupplier,
    ) -> Result<Supplier> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| orders::put_supplier(ctx, &by, id, s))
            .await
    }

    /// Purchase orders, newest first (only those still waiting for goods with `open_only`).
    pub fn purchase_orders(&self, open_only: bool) -> Result<Vec<PurchaseOrder>> {
        orders::purchase_orders(&self.read()?, open_only)
    }

    /// One purchase order with its deliveries.
    pub fn purchase_order(&self, id: Uuid) -> Result<PurchaseOrder> {
        orders::purchase_order(&self.read()?, id)
    }

    /// Create a draft purchase order (manager).
    pub async fn create_purchase_order(
        &self,
        by: &Principal,
        po: NewPurchaseOrder,
    ) -> Result<PurchaseOrder> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| orders::create_po(ctx, &by, po))
            .await
    }

    /// Change a purchase order's lines (drafts), status, expected day or note (manager).
    pub async fn update_purchase_order(
        &self,
        by: &Principal,
        id: Uuid,
        patch: PurchaseOrderPatch,
    ) -> Result<PurchaseOrder> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| orders::update_po(ctx, &by, id, patch))
            .await
    }

    /// Receive a (partial) delivery on a purchase order (staff and up).
    pub async fn receive_delivery(
        &self,
        by: &Principal,
        po_id: Uuid,
        d: NewDelivery,
    ) -> Result<Delivery> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| orders::receive(ctx, &by, po_id, d))
            .await
    }

    /// Open a cash-drawer shift on this till (staff and up).
    pub async fn open_shift(&self, by: &Principal, o: OpenShift) -> Result<Shift> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| shifts::open(ctx, &by, o))
            .await
    }

    /// Pay cash into or out of the open shift's drawer (staff and up).
    pub async fn cash_move(&self, by: &Principal, m: NewCashMove) -> Result<Shift> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| shifts::cash_move(ctx, &by, m))
            .await
    }

    /// Close the open shift with the counted cash (staff and up).
    pub async fn close_shift(&self, by: &Principal, c: CloseShift) -> Result<Shift> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| shifts::close(ctx, &by, c))
            .await
    }

    /// The shift open on this till, if any.
    pub fn current_shift(&self) -> Result<Option<Shift>> {
        let tx = self.read()?;
        let id = {
            let t = tx.open_table(crate::store::tables::META)?;
            t.get(shifts::OPEN_SHIFT)?
                .and_then(|v| <[u8; 16]>::try_from(v.value()).ok())
                .map(Uuid::from_bytes)
        };
        id.map(|id| shifts::read(&tx, id)).transpose()
    }

    /// One shift and its report.
    pub fn shift(&self, id: Uuid) -> Result<Shift> {
        shifts::read(&self.read()?, id)
    }

    /// Shifts opened with `from <= time < to` (ms), on every till, oldest first (managers and
    /// owners).
    pub fn shifts(&self, by: &Principal, from: i64, to: i64) -> Result<Vec<Shift>> {
        access::require(by, Access::Shifts)?;
        shifts::between(&self.read()?, from, to)
    }

    /// Refund goods without the original sale (manager).
    pub async fn refund(&self, by: &Principal, r: NewRefund) -> Result<Refund> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::refund(ctx, &by, r))
            .await
    }

    /// Park a cart as a new ticket (`id` None) or update a parked one (staff and up).
    pub async fn park_ticket(
        &self,
        by: &Principal,
        id: Option<Uuid>,
        t: ParkTicket,
    ) -> Result<Ticket> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| tickets::park(ctx, &by, id, t))
            .await
    }

    /// Throw a parked ticket away (staff and up).
    pub async fn discard_ticket(&self, by: &Principal, id: Uuid) -> Result<Ticket> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| tickets::discard(ctx, &by, id))
            .await
    }

    /// Tickets: the open ones (and those closed twice) with `open_only`, else all.
    pub fn tickets(&self, open_only: bool) -> Result<Vec<Ticket>> {
        tickets::list(&self.read()?, open_only)
    }

    /// One ticket.
    pub fn ticket(&self, id: Uuid) -> Result<Ticket> {
        tickets::read(&self.read()?, id)
    }

    /// Profit per shop-local day, `from_day..=to_day` (closed days frozen; managers and owners).
    pub fn profit_days(
        &self,
        by: &Principal,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<DayProfit>> {
        access::require(by, Access::Profit)?;
        profit::profit_days(&self.read()?, from_day, to_day)
    }

    /// Profit per product over `from_day..=to_day`, most profitable first (managers and owners).
    pub fn profit_by_product(
        &self,
        by: &Principal,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<ProductProfit>> {
        access::require(by, Access::Profit)?;
        profit::profit_by_product(&self.read()?, from_day, to_day)
    }

    /// The profit of one sale (managers and owners).
    pub fn sale_profit(&self, by: &Principal, id: Uuid) -> Result<SaleProfit> {
        access::require(by, Access::Profit)?;
        let tx = self.read()?;
        let sale = commands::read_sale(&tx, id)?;
        profit::sale_profit(&tx, &sale)
    }

    /// Close the books through a day (owner): its figures freeze.
    pub async fn close_period(&self, by: &Principal, c: NewPeriodClose) -> Result<PeriodClose> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| profit::close_period(ctx, &by, c))
            .await
    }

    /// Closed periods, oldest first (managers and owners).
    pub fn periods(&self, by: &Principal) -> Result<Vec<PeriodClose>> {
        access::require(by, Access::Profit)?;
        profit::periods(&self.read()?)
    }

    /// Products at or below their reorder level, with what is on order.
    pub fn low_stock(&self) -> Result<Vec<LowStock>> {
        let levels = self.stock()?;
        profit::low_stock(&self.read()?, levels)
    }

    /// Refunds without a receipt with `from <= time < to` (ms), oldest first (managers and
    /// owners).
    pub fn refunds(&self, by: &Principal, from: i64, to: i64) -> Result<Vec<Refund>> {
        access::require(by, Access::Refunds)?;
        let tx = self.read()?;
        let by_time = tx.open_table(crate::store::tables::REFUNDS_BY_TIME)?;
        let rows = tx.open_table(crate::store::tables::REFUNDS)?;
        let mut out = Vec::new();
        for row in by_time.range((from, 0)..(to, 0))? {
            let (_, id) = row?.0.value();
            if let Some(v) = rows.get(id)? {
                out.push(
                    serde_json::from_str(v.value()).map_err(|e| Error::Internal(e.to_string()))?,
                );
            }
        }
        Ok(out)
    }
}
