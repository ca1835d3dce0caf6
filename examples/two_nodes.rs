//! Two embedded nodes syncing in one program: a back-office node with the catalog on disk and
//! a till that joins it, both on 127.0.0.1 with mDNS off (the till dials the back office as a
//! static peer).
//!
//! Run with `cargo run --example two_nodes`. It shows:
//! - joining a shop with an invite ([`tillmesh::node::join`]) and dialing a static peer;
//! - a catalog edit made on one node and a sale made on the other, each arriving on the other
//!   side verified and applied;
//! - peer status ([`tillmesh::NodeHandle::peers`]) and the two stores converging.

use std::io::Write;
use std::time::Duration;

use tillmesh::Node;
use tillmesh::domain::model::*;

const PASSWORD: &str = "correct horse battery";

/// Runs the example, writing what it prints to `out`.
pub async fn run(out: &mut dyn Write) -> anyhow::Result<()> {
    let back_office_dir = tempfile::tempdir()?;
    let till_dir = tempfile::tempdir()?;

    // The back office: a shop with one product, kept in a data dir.
    let office = Node::builder()
        .data_dir(back_office_dir.path())
        .listen("/ip4/127.0.0.1/tcp/0")
        .discovery(false)
        .start()
        .await?;
    let a = office.handle();
    a.create_shop(NewShop {
        shop_name: "Corner Shop".into(),
        owner_name: "Olivia".into(),
        username: "olivia".into(),
        password: PASSWORD.into(),
        currency: Some("EUR".into()),
        timezone: Some("Europe/Paris".into()),
        tax_mode: Some(TaxMode::Inclusive),
        device_name: Some("Back office".into()),
    })
    .await?;
    let owner = a.login_password("olivia", PASSWORD).await?;
    let bread = a
        .create_product(
            &owner,
            NewProduct {
                sku: "BRD".into(),
                name: "Bread".into(),
                price: 250,
                barcode: Some("2000000000015".into()),
                category: None,
                unit: None,
                cost: Some(90),
                tax_rate: Some(550),
                reorder_level: Some(5),
                variants: vec![],
            },
        )
        .await?;
    a.stock_in(
        &owner,
        StockIn {
            product_id: bread.id,
            variant_id: None,
            qty: 20,
            unit_cost: Some(90),
            note: None,
        },
    )
    .await?;
    let office_addr = wait_until("the back office listens", || a.addrs().first().cloned()).await?;
    writeln!(out, "back office listening at {office_addr}")?;

    // The till joins with an invite, then runs with the back office as a static peer.
    let invite = a
        .create_invite(
            &owner,
            NewInvite {
                role: DeviceRole::Till,
                name: "Till 1".into(),
                ttl_minutes: Some(5),
            },
        )
        .await?;
    let joined = tillmesh::node::join(till_dir.path(), &invite.invite, Default::default()).await?;
    writeln!(
        out,
        "joined {:?} as {:?} (receipts {}-…)",
        joined.shop_name, joined.device_name, joined.receipt_prefix
    )?;
    let till = Node::builder()
        .data_dir(till_dir.path())
        .listen("/ip4/127.0.0.1/tcp/0")
        .peer(office_addr)
        .discovery(false)
        .start()
        .await?;
    let b = till.handle();

    // A price change in the back office reaches the till.
    a.update_product(
        &owner,
        bread.id,
        ProductPatch {
            price: Some(270),
            ..Default::default()
        },
    )
    .await?;
    wait_until("the new price reaches the till", || {
        b.product(bread.id).ok().filter(|p| p.price == 270)
    })
    .await?;
    writeln!(out, "till sees the new price: 270")?;

    // A sale on the till reaches the back office.
    let cashier = b.login_password("olivia", PASSWORD).await?;
    let sale = b
        .record_sale(
            &cashier,
            NewSale {
                lines: vec![NewSaleLine {
                    product_id: bread.id,
                    variant_id: None,
                    qty: 3,
                    discount: None,
                }],
                payments: vec![NewPayment {
                    method: PaymentMethod::Card,
                    amount: None,
                }],
                note: None,
                ticket_id: None,
            },
        )
        .await?;
    writeln!(out, "till sold {}: total {}", sale.receipt, sale.total)?;
    let seen = wait_until("the sale reaches the back office", || a.sale(sale.id).ok()).await?;
    let on_hand = a
        .stock()?
        .into_iter()
        .find(|s| s.product_id == bread.id)
        .map(|s| s.on_hand)
        .unwrap_or_default();
    writeln!(
        out,
        "back office has sale {} ({}), bread on hand {on_hand}",
        seen.receipt, seen.day
    )?;

    for p in a.peers().await {
        writeln!(
            out,
            "back office peer: {} ({}) connected={}",
            p.name.unwrap_or_default(),
            p.role.unwrap_or_default(),
            p.connected
        )?;
    }
    wait_until("both stores hold the same changes", || {
        let (x, y) = (a.bucket_digests().ok()?, b.bucket_digests().ok()?);
        (x == y).then_some(())
    })
    .await?;
    writeln!(out, "in sync: {} documents each", a.status()?.documents)?;

    drop((a, b));
    till.shutdown().await;
    office.shutdown().await;
    Ok(())
}

/// Polls `f` until it gives a value (30 s at most).
async fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[allow(dead_code)] // Not called when the test suite includes this file as a module.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(&mut std::io::stdout()).await
}
