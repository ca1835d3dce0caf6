//! Stock: levels, movements, stock-in, removals and counts.

use super::*;

impl NodeHandle {
    /// Stock on hand of every product and variant.
    pub fn stock(&self) -> Result<Vec<StockLevel>> {
        let low = self
            .view()
            .settings
            .as_ref()
            .map(|s| s.low_stock_default)
            .unwrap_or(0);
        queries::stock(&self.read()?, low)
    }

    /// Movements of one product, oldest first.
    pub fn movements(&self, product_id: Uuid) -> Result<Vec<Movement>> {
        let tx = self.read()?;
        queries::product(&tx, product_id)?;
        queries::movements(&tx, product_id)
    }

    /// Every movement with `from <= time < to` (ms), oldest first.
    pub fn movements_between(&self, from: i64, to: i64) -> Result<Vec<Movement>> {
        queries::movements_between(&self.read()?, from, to)
    }

    /// Receive stock (staff and up).
    pub async fn stock_in(&self, by: &Principal, cmd: StockIn) -> Result<Movement> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::stock_in(ctx, &by, cmd, None))
            .await
    }

    /// Receives stock at a given time (demo data and benchmarks that need history, like
    /// [`Self::record_sale_at`]). Not part of the API.
    #[doc(hidden)]
    pub async fn stock_in_at(&self, by: &Principal, cmd: StockIn, time: i64) -> Result<Movement> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::stock_in(ctx, &by, cmd, Some(time)))
            .await
    }

    /// Remove stock with a reason (manager).
    pub async fn stock_remove(&self, by: &Principal, cmd: StockRemove) -> Result<Movement> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::stock_remove(ctx, &by, cmd))
            .await
    }

    /// Record a stock count (manager).
    pub async fn stock_adjust(&self, by: &Principal, cmd: StockAdjust) -> Result<Movement> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::stock_adjust(ctx, &by, cmd))
            .await
    }
}
