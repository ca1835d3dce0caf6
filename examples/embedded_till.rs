//! An embedded till: start an in-memory node, create a shop, sell, and print the events.
//!
//! Run with `cargo run --example embedded_till`.

use tillmesh::Node;
use tillmesh::domain::model::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let node = Node::builder().memory().start().await?;
    let h = node.handle();
    let mut events = h.subscribe();
    h.create_shop(NewShop {
        shop_name: "Kiosk".into(),
        owner_name: "Kim".into(),
        username: "kim".into(),
        password: "a long password".into(),
        currency: Some("EUR".into()),
        timezone: Some("Europe/Berlin".into()),
        tax_mode: Some(TaxMode::Inclusive),
        device_name: Some("Kiosk till".into()),
    })
    .await?;
    let owner = h.login_password("kim", "a long password").await?;
    let coffee = h
        .create_product(
            &owner,
            NewProduct {
                sku: "COF".into(),
                name: "Coffee".into(),
                price: 280,
                barcode: None,
                category: None,
                unit: None,
                cost: Some(60),
                tax_rate: Some(1900),
                reorder_level: Some(10),
                variants: vec![],
            },
        )
        .await?;
    h.stock_in(
        &owner,
        StockIn {
            product_id: coffee.id,
            variant_id: None,
            qty: 50,
            unit_cost: None,
            note: None,
        },
    )
    .await?;
    let sale = h
        .record_sale(
            &owner,
            NewSale {
                lines: vec![NewSaleLine {
                    product_id: coffee.id,
                    variant_id: None,
                    qty: 2,
                    discount: None,
                }],
                payments: vec![NewPayment {
                    method: PaymentMethod::Cash,
                    amount: Some(1000),
                }],
                note: None,
                ticket_id: None,
            },
        )
        .await?;
    println!(
        "sold {} for {} (tax {}), change {}",
        sale.receipt, sale.total, sale.tax, sale.change_due
    );
    while let Ok(event) = events.try_recv() {
        println!("event: {}", serde_json::to_string(&event)?);
    }
    let stock = h.stock()?;
    println!("coffee on hand: {}", stock[0].on_hand);
    node.shutdown().await;
    Ok(())
}
