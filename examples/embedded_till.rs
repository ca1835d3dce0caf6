//! An embedded till: a POS program that runs a tillmesh node in its own process, records sales
//! through the library and prints what happens in the shop — its own sales and those of a
//! second till that syncs with it.
//!
//! Run with `cargo run --example embedded_till`. Everything stays in memory and on 127.0.0.1;
//! mDNS is off (the second till is found as a static peer).
//!
//! The steps:
//! 1. start a node (in memory, on the mesh over loopback) and create the shop;
//! 2. log the owner in and set up the catalog and stock;
//! 3. watch the node's event stream in a task;
//! 4. invite a second till, which joins and dials this one (in a real shop it is another
//!    device, found by mDNS on the LAN);
//! 5. sell on both tills and print the events this till sees: its own (`local`) and the
//!    peer's, once they are verified and applied here.

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use tillmesh::Node;
use tillmesh::domain::model::*;

const PASSWORD: &str = "a long password";

/// Runs the example, writing what it prints to `out`.
pub async fn run(out: &mut dyn Write) -> anyhow::Result<()> {
    // 1. This till: in memory, listening for its peers on loopback.
    let node = Node::builder()
        .memory()
        .listen("/ip4/127.0.0.1/tcp/0")
        .discovery(false)
        .start()
        .await?;
    let till = node.handle();
    till.create_shop(NewShop {
        shop_name: "Kiosk".into(),
        owner_name: "Kim".into(),
        username: "kim".into(),
        password: PASSWORD.into(),
        currency: Some("EUR".into()),
        timezone: Some("Europe/Berlin".into()),
        tax_mode: Some(TaxMode::Inclusive),
        device_name: Some("Kiosk till".into()),
    })
    .await?;

    // 2. The owner sets up the catalog.
    let kim = till.login_password("kim", PASSWORD).await?;
    let coffee = till
        .create_product(
            &kim,
            NewProduct {
                sku: "COF".into(),
                name: "Coffee".into(),
                price: 280,
                barcode: None,
                category: Some("Drinks".into()),
                unit: None,
                cost: Some(60),
                tax_rate: Some(1900),
                reorder_level: Some(10),
                variants: vec![],
            },
        )
        .await?;
    till.stock_in(
        &kim,
        StockIn {
            product_id: coffee.id,
            variant_id: None,
            qty: 50,
            unit_cost: Some(60),
            note: None,
        },
    )
    .await?;

    // 3. Watch everything applied from now on.
    let mut events = till.events();
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let watcher = tokio::spawn(async move {
        while let Some(item) = events.next().await {
            let line = match item {
                Ok(Event::ChangeApplied { doc, local, .. }) => {
                    let by = if local { "this till" } else { "a peer" };
                    format!("change to {doc} by {by}")
                }
                Ok(Event::SaleRecorded { receipt, total, .. }) => {
                    format!("sale {receipt}: {}.{:02} EUR", total / 100, total % 100)
                }
                Ok(Event::StockChanged { on_hand, .. }) => format!("stock now {on_hand}"),
                Ok(Event::ShopChanged { doc }) => format!("shop changed: {doc}"),
                Ok(other) => format!("{other:?}"),
                Err(lagged) => format!("{lagged}: reload what is shown"),
            };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // 4. A second till joins with an invite and dials this one.
    let invite = till
        .create_invite(
            &kim,
            NewInvite {
                role: DeviceRole::Till,
                name: "Till 2".into(),
                ttl_minutes: None,
            },
        )
        .await?;
    let address = wait_until(|| till.addrs().first().cloned()).await?;
    let dir = tempfile::tempdir()?;
    tillmesh::node::join(dir.path(), &invite.invite, Default::default()).await?;
    let second = Node::builder()
        .data_dir(dir.path())
        .listen("/ip4/127.0.0.1/tcp/0")
        .peer(address)
        .start()
        .await?;
    let till2 = second.handle();

    // 5. A sale here, then one on the second till.
    let sale = till.record_sale(&kim, coffee_sale(coffee.id, 2)).await?;
    writeln!(
        out,
        "sold {} here: total {}, tax {}, change {}",
        sale.receipt, sale.total, sale.tax, sale.change_due
    )?;
    let kim2 = till2.login_password("kim", PASSWORD).await?;
    wait_until(|| till2.product(coffee.id).ok()).await?;
    let sale2 = till2.record_sale(&kim2, coffee_sale(coffee.id, 1)).await?;
    writeln!(out, "sold {} on Till 2", sale2.receipt)?;

    // The peer's sale arrives here as events, like a local one: the signed change to Till 2's
    // ledger document, verified and applied, and the sale it holds.
    let (mut peer_sale, mut peer_change) = (false, false);
    while !(peer_sale && peer_change) {
        let line = tokio::time::timeout(Duration::from_secs(30), seen.recv())
            .await
            .map_err(|_| anyhow::anyhow!("Till 2's sale did not arrive within 30 s"))?
            .ok_or_else(|| anyhow::anyhow!("the event stream ended"))?;
        peer_sale |= line.starts_with(&format!("sale {}", sale2.receipt));
        peer_change |= line.starts_with("change to ledger/") && line.ends_with("by a peer");
        writeln!(out, "event: {line}")?;
    }
    let on_hand = till
        .stock()?
        .into_iter()
        .find(|s| s.product_id == coffee.id)
        .map(|s| s.on_hand);
    writeln!(out, "coffee on hand here: {}", on_hand.unwrap_or_default())?;

    watcher.abort();
    drop((till, till2));
    second.shutdown().await;
    node.shutdown().await;
    Ok(())
}

fn coffee_sale(product_id: uuid::Uuid, qty: i64) -> NewSale {
    NewSale {
        lines: vec![NewSaleLine {
            product_id,
            variant_id: None,
            qty,
            discount: None,
        }],
        payments: vec![NewPayment {
            method: PaymentMethod::Cash,
            amount: Some(1000),
        }],
        note: None,
        ticket_id: None,
    }
}

/// Polls `f` until it gives a value (30 s at most).
async fn wait_until<T>(mut f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[allow(dead_code)] // Not called when the test suite includes this file as a module.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(&mut std::io::stdout()).await
}
