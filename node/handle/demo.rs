//! `tillmesh demo`: a shop with products, stock and a week of sales, for trying things out.

use crate::NodeHandle;
use crate::error::Result;
use crate::model::*;

/// Demo owner login.
pub const DEMO_USER: &str = "owner";
/// Demo owner password.
pub const DEMO_PASSWORD: &str = "demo-password";

/// Creates the demo shop on a node without one; returns the owner's username and password.
pub async fn populate(h: &NodeHandle) -> Result<(&'static str, &'static str)> {
    h.create_shop(NewShop {
        shop_name: "Demo Corner Shop".into(),
        owner_name: "Demo Owner".into(),
        username: DEMO_USER.into(),
        password: DEMO_PASSWORD.into(),
        currency: Some("EUR".into()),
        timezone: Some("Europe/Paris".into()),
        tax_mode: Some(TaxMode::Inclusive),
        device_name: Some("Till 1".into()),
    })
    .await?;
    let owner = h.login_password(DEMO_USER, DEMO_PASSWORD).await?;
    let items: [(&str, &str, &str, i64, i64, u32); 10] = [
        ("COF-250", "Coffee beans 250 g", "Grocery", 799, 420, 550),
        ("TEA-GRN", "Green tea 20 bags", "Grocery", 349, 150, 550),
        ("CHO-70", "Dark chocolate 70 %", "Grocery", 249, 110, 550),
        ("MLK-1L", "Oat milk 1 l", "Grocery", 229, 120, 550),
        ("BRD-SD", "Sourdough loaf", "Bakery", 450, 180, 550),
        ("CRS-BT", "Butter croissant", "Bakery", 140, 45, 550),
        ("MUG-WH", "White mug", "Home", 1200, 400, 2000),
        ("CAN-SOY", "Soy candle", "Home", 1850, 600, 2000),
        ("NTB-A5", "Notebook A5", "Stationery", 650, 210, 2000),
        ("PEN-BLK", "Black pen", "Stationery", 180, 40, 2000),
    ];
    let mut products = Vec::new();
    for (sku, name, category, price, cost, tax) in items {
        let p = h
            .create_product(
                &owner,
                NewProduct {
                    sku: sku.into(),
                    name: name.into(),
                    price,
                    barcode: None,
                    category: Some(category.into()),
                    unit: None,
                    cost: Some(cost),
                    tax_rate: Some(tax),
                    reorder_level: Some(5),
                    variants: vec![],
                },
            )
            .await?;
        h.stock_in(
            &owner,
            StockIn {
                product_id: p.id,
                variant_id: None,
                qty: 80,
                unit_cost: Some(cost),
                note: Some("opening stock".into()),
            },
        )
        .await?;
        products.push(p);
    }
    // A week of sales: a deterministic spread over opening hours.
    let now = chrono::Utc::now().timestamp_millis();
    let day_ms = 24 * 3600 * 1000;
    for day in (1..=7).rev() {
        for k in 0..(6 + day % 4) {
            let a = &products[(day as usize * 3 + k as usize) % products.len()];
            let b = &products[(day as usize + k as usize * 7) % products.len()];
            let time = now - day * day_ms + (9 * 3600 + k * 2400) * 1000;
            let mut lines = vec![NewSaleLine {
                product_id: a.id,
                variant_id: None,
                qty: 1 + k % 3,
                discount: None,
            }];
            if b.id != a.id {
                lines.push(NewSaleLine {
                    product_id: b.id,
                    variant_id: None,
                    qty: 1,
                    discount: None,
                });
            }
            let method = if k % 2 == 0 {
                PaymentMethod::Card
            } else {
                PaymentMethod::Cash
            };
            h.record_sale_at(
                &owner,
                NewSale {
                    lines,
                    payments: vec![NewPayment {
                        method,
                        amount: None,
                    }],
                    note: None,
                    ticket_id: None,
                },
                time,
            )
            .await?;
        }
    }
    // A supplier, an order received in part, and today's shift with a cash sale and a pay-out.
    let supplier = h
        .put_supplier(
            &owner,
            None,
            NewSupplier {
                name: "Roastery Brothers".into(),
                contact: Some("Ana".into()),
                phone: Some("+33 1 40 00 00 00".into()),
                email: Some("orders@roastery.example".into()),
                note: None,
            },
        )
        .await?;
    let po = h
        .create_purchase_order(
            &owner,
            NewPurchaseOrder {
                supplier_id: supplier.id,
                lines: vec![
                    PoLine {
                        product_id: products[0].id,
                        variant_id: None,
                        qty: 40,
                        unit_cost: Some(420),
                    },
                    PoLine {
                        product_id: products[1].id,
                        variant_id: None,
                        qty: 30,
                        unit_cost: Some(150),
                    },
                ],
                expected_on: None,
                note: Some("Weekly coffee and tea".into()),
            },
        )
        .await?;
    h.update_purchase_order(
        &owner,
        po.id,
        PurchaseOrderPatch {
            status: Some(PoStatus::Sent),
            ..Default::default()
        },
    )
    .await?;
    h.receive_delivery(
        &owner,
        po.id,
        NewDelivery {
            note_number: "RB-1001".into(),
            lines: vec![NewDeliveryLine {
                product_id: products[0].id,
                variant_id: None,
                qty: 24,
                unit_cost: Some(435),
            }],
            note: None,
        },
    )
    .await?;
    h.open_shift(&owner, OpenShift { float: 15_000 }).await?;
    h.record_sale(
        &owner,
        NewSale {
            lines: vec![NewSaleLine {
                product_id: products[5].id,
                variant_id: None,
                qty: 3,
                discount: None,
            }],
            payments: vec![NewPayment {
                method: PaymentMethod::Cash,
                amount: Some(500),
            }],
            note: None,
            ticket_id: None,
        },
    )
    .await?;
    h.cash_move(
        &owner,
        NewCashMove {
            kind: CashMoveKind::PayOut,
            amount: 1_000,
            reason: "Window cleaner".into(),
        },
    )
    .await?;
    Ok((DEMO_USER, DEMO_PASSWORD))
}
