//! The catalog: products.

use super::*;

impl NodeHandle {
    /// All products, archived included.
    pub fn products(&self) -> Result<Vec<Product>> {
        queries::products(&self.read()?)
    }

    /// One product.
    pub fn product(&self, id: Uuid) -> Result<Product> {
        queries::product(&self.read()?, id)
    }

    /// Create a product (manager).
    pub async fn create_product(&self, by: &Principal, p: NewProduct) -> Result<Product> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::create_product(ctx, &by, p))
            .await
    }

    /// Edit or archive a product (manager).
    pub async fn update_product(
        &self,
        by: &Principal,
        id: Uuid,
        patch: ProductPatch,
    ) -> Result<Product> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::update_product(ctx, &by, id, patch))
            .await
    }
}
