//! Sales: recording, reading, voids and returns, and sales kept aside from revoked devices.

use super::*;

impl NodeHandle {
    /// Sales that tills made after an owner revoked them, per device, for the owners to review
    /// (owners only; see [`crate::domain::revoked_sales`]).
    pub fn revoked_sales(
        &self,
        by: &Principal,
    ) -> Result<Vec<crate::domain::revoked_sales::RevokedDeviceSales>> {
        access::require(by, Access::ReviewRevokedSales)?;
        let quarantine = self.quarantine()?;
        let tx = self.read()?;
        let entries = tx.open_table(crate::store::tables::ENTRIES)?;
        let members = self.inner.store.load_doc("members")?;
        crate::domain::revoked_sales::list(
            &quarantine,
            |id| Ok(entries.get(id.as_u128())?.is_some()),
            &self.view(),
            members.as_ref(),
        )
    }

    /// Accepts revoked tills' sales (owners only): recorded anew, signed by the owner, once.
    pub async fn accept_revoked_sales(
        &self,
        by: &Principal,
        sel: crate::domain::revoked_sales::SelectRevokedSales,
    ) -> Result<crate::domain::revoked_sales::AcceptedRevokedSales> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| crate::domain::revoked_sales::accept(ctx, &by, sel))
            .await
    }

    /// Dismisses revoked tills' sales on this node (owners only); returns how many.
    pub async fn dismiss_revoked_sales(
        &self,
        by: &Principal,
        sel: crate::domain::revoked_sales::SelectRevokedSales,
    ) -> Result<u64> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| crate::domain::revoked_sales::dismiss(ctx, &by, sel))
            .await
    }

    /// Record a sale (staff and up). Returns once it is durable.
    pub async fn record_sale(&self, by: &Principal, sale: NewSale) -> Result<Sale> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::record_sale(ctx, &by, sale, None))
            .await
    }

    /// Records a sale at a given time (demo data and benchmarks that need history). Not part of
    /// the API: a shop's books take the node's own clock.
    #[doc(hidden)]
    pub async fn record_sale_at(&self, by: &Principal, sale: NewSale, time: i64) -> Result<Sale> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::record_sale(ctx, &by, sale, Some(time)))
            .await
    }

    /// Every sale with `from <= time < to` (ms since epoch), oldest first.
    pub fn sales(&self, from: i64, to: i64) -> Result<Vec<Sale>> {
        Ok(queries::sales(&self.read()?, from, to, None, usize::MAX)?.0)
    }

    /// A page of at most `limit` sales with `from <= time < to`, oldest first, starting after
    /// `after`; the cursor of the next page when there are more.
    pub fn sales_page(
        &self,
        from: i64,
        to: i64,
        after: Option<queries::SalesCursor>,
        limit: usize,
    ) -> Result<(Vec<Sale>, Option<queries::SalesCursor>)> {
        queries::sales(&self.read()?, from, to, after, limit)
    }

    /// One sale.
    pub fn sale(&self, id: Uuid) -> Result<Sale> {
        commands::read_sale(&self.read()?, id)
    }

    /// Void a sale (staff: their own within 30 minutes; manager: any).
    pub async fn void_sale(&self, by: &Principal, id: Uuid, cmd: VoidSale) -> Result<Sale> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::void_sale(ctx, &by, id, cmd))
            .await
    }

    /// Return lines of a sale (manager).
    pub async fn return_sale(
        &self,
        by: &Principal,
        id: Uuid,
        cmd: NewReturn,
    ) -> Result<SaleReturn> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::return_sale(ctx, &by, id, cmd))
            .await
    }
}
