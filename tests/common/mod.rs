//! Shared test helpers: a shop on an in-memory node, logins, products.
#![allow(dead_code)]

use tillmesh::domain::model::*;
use tillmesh::{Node, NodeHandle};

pub const OWNER_PW: &str = "correct horse battery";

pub struct Shop {
    pub node: Node,
    pub h: NodeHandle,
    pub owner: Principal,
    pub recovery_key: String,
}

pub fn new_shop(currency: &str, tax_mode: TaxMode) -> NewShop {
    NewShop {
        shop_name: "Corner Shop".into(),
        owner_name: "Olivia Owner".into(),
        username: "olivia".into(),
        password: OWNER_PW.into(),
        currency: Some(currency.into()),
        timezone: Some("Europe/Paris".into()),
        tax_mode: Some(tax_mode),
        device_name: None,
    }
}

pub async fn shop_with(currency: &str, tax_mode: TaxMode) -> Shop {
    let node = Node::builder().memory().start().await.expect("node starts");
    let h = node.handle();
    let created = h
        .create_shop(new_shop(currency, tax_mode))
        .await
        .expect("shop created");
    let owner = h
        .login_password("olivia", OWNER_PW)
        .await
        .expect("owner logs in");
    Shop {
        node,
        h,
        owner,
        recovery_key: created.recovery_key,
    }
}

pub async fn shop() -> Shop {
    shop_with("EUR", TaxMode::Inclusive).await
}

pub fn product(sku: &str, price: i64, tax_rate: u32) -> NewProduct {
    NewProduct {
        sku: sku.into(),
        name: format!("Product {sku}"),
        price,
        barcode: Some(format!("40000{sku}")),
        category: None,
        unit: None,
        cost: Some(price / 2),
        tax_rate: Some(tax_rate),
        reorder_level: Some(2),
        variants: vec![],
    }
}

pub fn sale_of(product_id: uuid::Uuid, qty: i64) -> NewSale {
    NewSale {
        lines: vec![NewSaleLine {
            product_id,
            variant_id: None,
            qty,
            discount: None,
        }],
        payments: vec![NewPayment {
            method: PaymentMethod::Card,
            amount: None,
        }],
        note: None,
    }
}

pub fn stock_in(product_id: uuid::Uuid, qty: i64, unit_cost: i64) -> StockIn {
    StockIn {
        product_id,
        variant_id: None,
        qty,
        unit_cost: Some(unit_cost),
        note: None,
    }
}

pub fn on_hand(h: &NodeHandle, product_id: uuid::Uuid) -> i64 {
    h.stock()
        .unwrap()
        .into_iter()
        .find(|s| s.product_id == product_id)
        .map(|s| s.on_hand)
        .unwrap()
}

/// Waits for `cond` up to `timeout`, polling.
pub async fn wait_for<F: FnMut() -> bool>(mut cond: F, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    cond()
}
