//! The web UI in a real headless Chromium (the system's `chromium`), against nodes started
//! in-process on 127.0.0.1 port 0 with mDNS off.
//!
//! - A newcomer's first session: create the shop, log in, add a product, receive stock, sell
//!   it by typing its barcode and Enter (as a USB scanner does), check the receipt's total and
//!   the new stock level.
//! - A staff PIN login cannot open People & devices or change a price.
//! - A browser on another device (a non-loopback address, in a private network namespace) is
//!   asked for the node's setup token on the first-start page, and sets the shop up with it.
//! - Two nodes: B joins the shop from its first-start page with an invite made in A's UI; a
//!   sale made in A's UI then appears on B's open Stock screen without a reload.
//! - A price changed on two replicas at once: both values are offered, a manager picks one.
//! - Every screen draws the demo shop (a week of sales) without a script error.
//! - An owner runs the books on two synced tills: a supplier, a purchase order received in
//!   part, a shift with a float, a cash sale, a pay-out, a refund without a receipt and a count
//!   at close; both tills' Books screens show the same profit, low stock and shifts, and the
//!   CSV files download.
//! - Tickets, order closes and a period close: a cart parked on Till 1 is paid on Till 2; an
//!   order cancelled, another closed short; the books closed through yesterday on both tills.
//! - A shop with a relay: the Sync screen shows the relay, connected, when it last synced and
//!   when it took its last encrypted snapshot.
//! - A till revoked while switched off sold since: the owner sees its sales, with their total,
//!   on People & devices and accepts them; they become the shop's sales.
//! - The relay's web UI over HTTPS (self-signed): the owner logs in naming the shop, changes a
//!   price on the Products screen, and the till in the shop gets it.
//!
//! Every screen is saved as a PNG in `target/ui-screenshots/` at desktop, till and phone sizes.
//! Without Chromium these tests fail and say how to install it.

use crate::browser;
use crate::common;

use std::time::Duration;

use browser::{Browser, Page};
use common::*;
use tillmesh::domain::model::*;
use tillmesh::{Node, NodeHandle};

const DESKTOP: (u32, u32) = (1280, 800);
const TILL: (u32, u32) = (1024, 768);
const PHONE: (u32, u32) = (390, 844);

/// A node serving its UI on 127.0.0.1 (port 0); `builder` says the rest.
async fn serve(builder: tillmesh::NodeBuilder) -> (Node, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let node = builder
        .http_listener(listener)
        .start()
        .await
        .expect("the node starts");
    let url = format!("http://{}", node.http_addr().expect("serves HTTP"));
    (node, url)
}

/// Logs in on the login screen: a password for owners and managers, the PIN pad for staff.
async fn log_in(page: &Page<'_>, username: &str, secret: &str, pin: bool) {
    let person = format!(".person-btn[data-username=\"{username}\"]");
    page.click(&person).await;
    if pin {
        page.wait_visible("#pin-box").await;
        // Digits from the keyboard, as on a till with a keyboard; the pad's buttons do the same.
        for d in secret.chars() {
            page.press(&d.to_string()).await;
        }
        page.click("#pin-ok").await;
    } else {
        page.fill("#login-password", secret).await;
        page.press("Enter").await;
    }
    page.wait_visible("#sell-search").await;
}

/// Screenshots of `page` at the three sizes, then back to `back`.
async fn shots(page: &Page<'_>, name: &str, back: (u32, u32)) {
    for (label, (w, h)) in [("desktop", DESKTOP), ("till", TILL), ("phone", PHONE)] {
        page.viewport(w, h).await;
        page.screenshot(&format!("{name}-{label}")).await;
    }
    page.viewport(back.0, back.1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newcomer_creates_a_shop_and_sells_by_barcode() {
    let _serial = browser::one_at_a_time().await;
    let (node, url) = serve(Node::builder().memory()).await;
    let browser = Browser::launch().await;
    let page = browser.new_page(DESKTOP.0, DESKTOP.1).await;

    // First start: no shop yet.
    page.goto(&format!("{url}/")).await;
    page.wait_visible("#create-form").await;
    shots(&page, "01-first-start", DESKTOP).await;
    // Joining with a damaged invite shows the API's error in words. (A full invite, not a
    // short code: a short code is looked up by mDNS, and tests stay off the real network.)
    page.fill("#invite-input", "tillmesh-invite:0000-not-an-invite")
        .await;
    page.click("#join-shop").await;
    page.wait_visible("#join-form .alert-error").await;
    assert!(!page.text("#join-form .alert-error").await.is_empty());
    page.screenshot("01-first-start-join-error-desktop").await;
    page.fill("#create-form [name=shop_name]", "Corner Shop")
        .await;
    page.eval("document.querySelector('#create-form [name=timezone]').value = 'Europe/Paris'")
        .await;
    page.fill("#create-form [name=owner_name]", "Olivia Owner")
        .await;
    assert_eq!(
        page.eval("document.querySelector('#create-form [name=username]').value")
            .await,
        "olivia",
        "the username is suggested from the name"
    );
    page.fill("#create-form [name=password]", OWNER_PW).await;
    page.fill("#create-form [name=password2]", OWNER_PW).await;
    page.click("#create-shop").await;
    page.wait_visible("#recovery-key").await;
    let key = page.text("#recovery-key").await;
    assert!(key.len() > 20, "the recovery key is shown: {key:?}");
    shots(&page, "02-recovery-key", DESKTOP).await;
    assert!(
        truthy(
            &page
                .eval("document.querySelector('#recovery-continue').disabled")
                .await
        ),
        "continuing needs the 'written down' tick"
    );
    page.click("#wrote-it-down").await;
    page.click("#recovery-continue").await;
    page.wait_visible("#sell-search").await;
    assert!(node.handle().status().unwrap().has_shop);

    // Lock, then log in again on the login screen.
    page.click("#logout").await;
    page.wait_visible("#login-people").await;
    page.wait_text(".login-shop h1", "Corner Shop").await;
    page.click(".person-btn[data-username=\"olivia\"]").await;
    page.wait_visible("#login-password").await;
    shots(&page, "03-login-owner", DESKTOP).await;
    page.fill("#login-password", "wrong password!").await;
    page.press("Enter").await;
    page.wait_visible("#login-area .alert-error").await;
    page.fill("#login-password", OWNER_PW).await;
    page.press("Enter").await;
    page.wait_visible("#sell-search").await;
    page.wait_visible("#sell-tiles .empty").await;

    // A product.
    page.goto(&format!("{url}/#/products")).await;
    page.click("#new-product").await;
    page.fill("#p-name", "Apple juice 1 l").await;
    page.fill("#p-sku", "AJ1").await;
    page.fill("#p-barcode", "4006381333931").await;
    page.fill("#p-price", "2.50").await;
    page.fill("#p-tax", "5.5").await;
    page.fill("#p-cost", "1.20").await;
    page.fill("#p-reorder", "3").await;
    page.screenshot("04-product-editor-desktop").await;
    page.click("#save-product").await;
    page.wait_visible("#product-rows tr[data-sku=\"AJ1\"]")
        .await;
    // A second one, so lists and charts have more than one row.
    page.click("#new-product").await;
    page.fill("#p-name", "Sparkling water 0.5 l").await;
    page.fill("#p-sku", "SW5").await;
    page.fill("#p-barcode", "5000112637922").await;
    page.fill("#p-price", "1.10").await;
    page.fill("#p-tax", "5.5").await;
    page.click("#save-product").await;
    page.wait_visible("#product-rows tr[data-sku=\"SW5\"]")
        .await;
    shots(&page, "05-products", DESKTOP).await;

    // Stock in, with a cost.
    page.goto(&format!("{url}/#/stock")).await;
    let row = "#stock-rows tr[data-sku=\"AJ1\"]";
    page.wait_visible(row).await;
    page.click(&format!("{row} [data-action=in]")).await;
    page.fill("#in-qty", "10").await;
    page.fill("#in-cost", "1.20").await;
    page.click("#in-save").await;
    page.wait_text(&format!("{row} .on-hand"), "10").await;
    page.click("#stock-rows tr[data-sku=\"SW5\"] [data-action=in]")
        .await;
    page.fill("#in-qty", "2").await;
    page.click("#in-save").await;
    page.wait_text("#stock-rows tr[data-sku=\"SW5\"] .on-hand", "2")
        .await;

    // Sell: the scanner types the barcode and presses Enter, twice.
    page.goto(&format!("{url}/#/sell")).await;
    page.wait_visible("#sell-tiles .tile").await;
    for _ in 0..2 {
        page.fill("#sell-search", "4006381333931").await;
        page.press("Enter").await;
    }
    page.wait_for(
        "document.querySelector('#cart-lines .line-qty')?.value === '2'",
        "two apple juices in the cart",
    )
    .await;
    assert_eq!(page.text("#cart-total").await, "€5.00");
    // An unknown code says so.
    page.fill("#sell-search", "999").await;
    page.press("Enter").await;
    page.wait_visible("#sell-message .alert-error").await;
    page.fill("#sell-search", "").await;
    shots(&page, "06-sell-cart", DESKTOP).await;

    page.click("#pay").await;
    page.wait_visible("#pay-amount").await;
    page.fill("#pay-amount", "10").await;
    page.wait_visible("#change-due").await;
    assert_eq!(page.text("#change-due").await, "Change due €5.00");
    page.screenshot("07-payment-desktop").await;
    page.click("#complete-sale").await;
    page.wait_visible("#receipt").await;
    assert_eq!(page.text("#receipt-total").await, "€5.00");
    assert_eq!(page.text("#receipt-change").await, "€5.00");
    let receipt = page.text("#receipt").await;
    for part in [
        "Corner Shop",
        "Apple juice 1 l",
        "Till 1",
        "Olivia Owner",
        "Cash",
    ] {
        assert!(
            receipt.contains(part),
            "the receipt shows {part:?}: {receipt}"
        );
    }
    shots(&page, "08-receipt", DESKTOP).await;
    // Printed, only the receipt shows.
    page.print_media(true).await;
    assert_eq!(
        page.eval("getComputedStyle(document.querySelector('#main')).display")
            .await,
        "none"
    );
    page.wait_visible("#receipt").await;
    page.screenshot("08-receipt-printed").await;
    page.print_media(false).await;
    page.click("#new-sale").await;

    // Sale history, and the stock screen's new level.
    page.click("#sales-today").await;
    page.wait_visible("#sales-list table").await;
    page.screenshot("09-sales-today-desktop").await;
    page.press("Escape").await;
    page.goto(&format!("{url}/#/stock")).await;
    page.wait_text(&format!("{row} .on-hand"), "8").await;

    // A return from the sale history puts one back.
    page.goto(&format!("{url}/#/sell")).await;
    page.click("#sales-today").await;
    page.click("#sales-list [data-receipt=\"T1-000001\"]").await;
    page.click("#return-sale").await;
    page.fill("[name=\"lines[0]\"]", "1").await;
    page.screenshot("09-return-desktop").await;
    page.click("#return-submit").await;
    page.wait_visible("#sales-list .badge-low").await;
    page.press("Escape").await;
    page.goto(&format!("{url}/#/stock")).await;
    page.wait_text(&format!("{row} .on-hand"), "9").await;
    shots(&page, "10-stock", DESKTOP).await;
    page.click(&format!("{row} [data-action=history]")).await;
    page.wait_visible("#movements table").await;
    page.screenshot("11-stock-history-desktop").await;
    page.press("Escape").await;

    // The other screens, for the screenshots and to see they draw without errors.
    page.goto(&format!("{url}/#/reports")).await;
    page.wait_visible("#chart-days svg").await;
    page.wait_for(
        "document.querySelector('#kpi-total .k-value')?.textContent === '€2.50'",
        "today's sales after the return on the report",
    )
    .await;
    shots(&page, "12-reports", DESKTOP).await;
    page.goto(&format!("{url}/#/people")).await;
    page.wait_visible("#people-rows tr").await;
    page.click("#invite-device").await;
    page.click("#create-invite").await;
    page.wait_visible("#invite-qr").await;
    page.wait_for(
        "document.querySelector('#invite-qr').naturalWidth > 0",
        "the QR code image loads",
    )
    .await;
    shots(&page, "13-invite", DESKTOP).await;
    page.press("Escape").await;
    shots(&page, "14-people", DESKTOP).await;
    page.fill(
        "#settings-form [name=receipt_text]",
        "Open 8–20 · VAT FR 12 345678901",
    )
    .await;
    page.click("#save-settings").await;
    let h = node.handle();
    assert!(
        wait_for(
            || h.settings().unwrap().receipt_text == "Open 8–20 · VAT FR 12 345678901",
            Duration::from_secs(20)
        )
        .await,
        "the receipt text is saved"
    );
    page.goto(&format!("{url}/#/sync")).await;
    page.wait_visible("#sync-health").await;
    shots(&page, "15-sync", DESKTOP).await;
    page.assert_no_errors().await;

    drop(browser);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_with_a_pin_cannot_manage_people_or_change_prices() {
    let _serial = browser::one_at_a_time().await;
    let (node, url) = serve(Node::builder().memory()).await;
    let h = node.handle();
    h.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = h.login_password("olivia", OWNER_PW).await.unwrap();
    h.add_person(
        &owner,
        NewPerson {
            name: "Sam Staff".into(),
            username: "sam".into(),
            role: Role::Staff,
            password: None,
            pin: Some("2468".into()),
        },
    )
    .await
    .unwrap();
    let p = h
        .create_product(&owner, product("S1", 500, 2000))
        .await
        .unwrap();
    h.stock_in(&owner, stock_in(p.id, 5, 200)).await.unwrap();

    let browser = Browser::launch().await;
    let page = browser.new_page(TILL.0, TILL.1).await;
    page.goto(&format!("{url}/")).await;
    page.wait_visible("#login-people").await;
    page.click(".person-btn[data-username=\"sam\"]").await;
    page.wait_visible("#pin-box").await;
    shots(&page, "20-login-pin", TILL).await;
    // A wrong PIN is refused with a message; the pad's buttons work too.
    for d in ["1", "1", "1", "1"] {
        page.click(&format!(".pinpad [data-digit=\"{d}\"]")).await;
    }
    page.click("#pin-ok").await;
    page.wait_visible("#pin-box .alert-error").await;
    log_in(&page, "sam", "2468", true).await;

    // No People & devices (nor Reports) in the menu, and the screen itself refuses.
    page.wait_visible("#nav-sell").await;
    assert!(
        !page.exists("#nav-people").await,
        "staff see no People & devices"
    );
    assert!(!page.exists("#nav-reports").await, "staff see no Reports");
    page.goto(&format!("{url}/#/people")).await;
    page.wait_visible("main .alert-warn").await;
    assert!(!page.exists("#people-rows").await);
    assert!(!page.exists("#invite-device").await);
    page.screenshot("21-staff-people-refused-till").await;

    // Products are read-only: no "New product", the editor has no Save and its fields are
    // read-only.
    page.goto(&format!("{url}/#/products")).await;
    let row = "#product-rows tr[data-sku=\"S1\"]";
    page.wait_visible(row).await;
    assert!(!page.exists("#new-product").await);
    page.click(&format!("{row} [data-action=edit]")).await;
    page.wait_visible("#p-price").await;
    assert!(!page.exists("#save-product").await, "no Save for staff");
    assert!(
        truthy(
            &page
                .eval("document.querySelector('#p-price').readOnly")
                .await
        ),
        "the price cannot be typed over"
    );
    page.screenshot("22-staff-product-readonly-till").await;
    assert_eq!(
        h.product(p.id).unwrap().price,
        500,
        "the price is unchanged"
    );
    page.press("Escape").await;

    // Staff sell, and may void their own sale from the history.
    page.goto(&format!("{url}/#/sell")).await;
    page.wait_visible("#sell-tiles .tile").await;
    page.fill("#sell-search", "40000S1").await;
    page.press("Enter").await;
    page.click("#pay").await;
    page.click("#method-card").await;
    page.click("#complete-sale").await;
    page.wait_text("#receipt-total", "€5.00").await;
    let receipt = page.text("#receipt-number").await;
    page.click("#new-sale").await;
    page.click("#sales-today").await;
    page.click(&format!("#sales-list [data-receipt=\"{receipt}\"]"))
        .await;
    page.click("#void-sale").await;
    page.click("#confirm-yes").await;
    page.wait_visible("#sales-list .badge-out").await;
    let sales = h.sales(0, i64::MAX).unwrap();
    assert_eq!(sales.len(), 1);
    assert!(sales[0].voided_by.is_some(), "the sale is voided");
    assert_eq!(on_hand(&h, p.id), 5, "the voided item is back in stock");
    page.assert_no_errors().await;

    drop(browser);
    node.shutdown().await;
}

async fn listening(builder: tillmesh::NodeBuilder) -> (Node, String) {
    serve(builder.listen("/ip4/127.0.0.1/tcp/0")).await
}

async fn mesh_addr(h: &NodeHandle) -> String {
    assert!(
        wait_for(|| !h.addrs().is_empty(), Duration::from_secs(20)).await,
        "the mesh listens"
    );
    h.addrs()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_till_joins_in_the_browser_and_sees_till_as_sales_live() {
    let _serial = browser::one_at_a_time().await;
    let dir_a = tempfile::tempdir().unwrap();
    let (a, url_a) = listening(Node::builder().data_dir(dir_a.path())).await;
    let ah = a.handle();
    ah.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = ah.login_password("olivia", OWNER_PW).await.unwrap();
    mesh_addr(&ah).await;
    let p = ah
        .create_product(&owner, product("M1", 300, 2000))
        .await
        .unwrap();
    ah.stock_in(&owner, stock_in(p.id, 20, 150)).await.unwrap();

    // A new device: a node with no shop yet.
    let dir_b = tempfile::tempdir().unwrap();
    let (b, url_b) = listening(Node::builder().data_dir(dir_b.path())).await;
    let bh = b.handle();

    let browser = Browser::launch().await;
    let page_a = browser.new_page(TILL.0, TILL.1).await;
    let page_b = browser.new_page(DESKTOP.0, DESKTOP.1).await;

    // On A, the owner invites a device …
    page_a.goto(&format!("{url_a}/")).await;
    log_in(&page_a, "olivia", OWNER_PW, false).await;
    page_a.goto(&format!("{url_a}/#/people")).await;
    page_a.click("#invite-device").await;
    page_a.fill("#invite-name", "Till 2").await;
    page_a.click("#create-invite").await;
    page_a.wait_visible("#invite-full").await;
    let invite = page_a
        .eval("document.querySelector('#invite-full').value")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert!(invite.starts_with("tillmesh-invite:"), "{invite}");
    page_a.press("Escape").await;

    // … and on B's first-start page the invite is pasted and B joins.
    page_b.goto(&format!("{url_b}/")).await;
    page_b.wait_visible("#join-form").await;
    page_b.fill("#invite-input", &invite).await;
    page_b.click("#join-shop").await;
    page_b.wait_visible("#joined").await;
    page_b.screenshot("29-joined-desktop").await;
    assert!(bh.status().unwrap().has_shop, "B belongs to the shop");
    page_b.click("#go-to-login").await;
    log_in(&page_b, "olivia", OWNER_PW, false).await;
    page_b.goto(&format!("{url_b}/#/stock")).await;
    let row = format!("#stock-rows tr[data-key=\"{}\"]", p.id);
    page_b.wait_text(&format!("{row} .on-hand"), "20").await;
    // Marks this document: a reload would lose the mark.
    page_b.eval("window.__notReloaded = true").await;

    // A sale on A, typed in with the scanner.
    page_a.goto(&format!("{url_a}/#/sell")).await;
    page_a.wait_visible("#sell-tiles .tile").await;
    for _ in 0..3 {
        page_a.fill("#sell-search", "40000M1").await;
        page_a.press("Enter").await;
    }
    page_a
        .wait_for(
            "document.querySelector('#cart-lines .line-qty')?.value === '3'",
            "three in the cart",
        )
        .await;
    page_a.click("#pay").await;
    page_a.click("#method-card").await;
    page_a.click("#complete-sale").await;
    page_a.wait_text("#receipt-total", "€9.00").await;

    // B's open Stock screen shows the new level without a reload.
    page_b.wait_text(&format!("{row} .on-hand"), "17").await;
    assert!(
        truthy(&page_b.eval("window.__notReloaded === true").await),
        "B's page was not reloaded"
    );
    page_b
        .screenshot("30-stock-live-from-other-till-desktop")
        .await;

    // And B's Sync screen says both tills are in sync.
    page_b.goto(&format!("{url_b}/#/sync")).await;
    page_b
        .wait_for(
            "/in sync/.test(document.querySelector('#sync-health')?.textContent || '')",
            "B's Sync screen says the tills are in sync",
        )
        .await;
    page_b.wait_visible("#peer-rows .sync-dot.ok").await;
    shots(&page_b, "31-sync-two-tills", DESKTOP).await;
    page_a.assert_no_errors().await;
    page_b.assert_no_errors().await;

    // An owner revokes B: B's open page says so at once, without a reload.
    ah.revoke_member(&owner, bh.device_id()).await.unwrap();
    page_b.wait_visible("#revoked .alert-error").await;
    page_b
        .wait_for(
            "(document.querySelector('#revoked')?.textContent || '').includes('revoked this device')",
            "B says it was revoked",
        )
        .await;
    assert!(
        truthy(&page_b.eval("window.__notReloaded === true").await),
        "B's page was not reloaded"
    );
    page_b
        .wait_for(
            "(document.querySelector('#sync-health')?.textContent || '').includes('no longer syncs')",
            "B's Sync screen says it no longer syncs",
        )
        .await;
    page_b.screenshot("32-revoked-desktop").await;

    drop(browser);
    b.shutdown().await;
    a.shutdown().await;
}

fn truthy(v: &serde_json::Value) -> bool {
    v.as_bool().unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_accepts_a_revoked_tills_sales_in_the_browser() {
    let _serial = browser::one_at_a_time().await;
    let (a, url) = serve(Node::builder().memory()).await;
    let ah = a.handle();
    ah.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = ah.login_password("olivia", OWNER_PW).await.unwrap();
    let p = ah
        .create_product(&owner, product("R1", 450, 2000))
        .await
        .unwrap();
    ah.stock_in(&owner, stock_in(p.id, 10, 100)).await.unwrap();
    let inv = till_invite(&ah, &owner, "Till 2").await;
    let b = Node::builder().memory().start().await.unwrap();
    let bh = b.handle();
    tillmesh::sync::join(
        &bh,
        &Joinable(ah.clone(), bh.clone()),
        &inv.code,
        &Default::default(),
    )
    .await
    .unwrap();
    // B sells after A revoked it, before it heard of it; A gets the sale from B.
    let owner_b = bh.login_password("olivia", OWNER_PW).await.unwrap();
    ah.revoke_member(&owner, bh.device_id()).await.unwrap();
    let sale = bh.record_sale(&owner_b, sale_of(p.id, 2)).await.unwrap();
    tillmesh::sync::pull(&ah, &Direct(bh.clone()))
        .await
        .unwrap();
    assert!(ah.sale(sale.id).is_err());

    let browser = Browser::launch().await;
    let page = browser.new_page(DESKTOP.0, DESKTOP.1).await;
    page.goto(&format!("{url}/")).await;
    page.wait_visible("#login-people").await;
    log_in(&page, "olivia", OWNER_PW, false).await;
    page.goto(&format!("{url}/#/people")).await;
    let device = format!("#revoked-sales [data-device=\"{}\"]", bh.device_id());
    page.wait_visible(&device).await;
    page.wait_text(
        &format!("{device} [data-sale=\"{}\"] td", sale.id),
        &sale.receipt,
    )
    .await;
    let heading = page.text(&format!("{device} h3")).await;
    assert!(heading.starts_with("Till 2: 1 sale, total"), "{heading}");
    assert!(heading.contains("9.00"), "{heading}");
    shots(&page, "40-revoked-sales", DESKTOP).await;
    page.click(&format!("{device} .accept-all")).await;
    page.wait_for(
        "document.querySelector('#revoked-sales')?.hidden === true",
        "the list empties once accepted",
    )
    .await;
    assert_eq!(ah.sale(sale.id).unwrap().receipt, sale.receipt);
    assert_eq!(on_hand(&ah, p.id), 8);
    page.assert_no_errors().await;
    drop(browser);
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_settles_a_price_changed_on_two_tills_at_once() {
    let _serial = browser::one_at_a_time().await;
    let (a, url) = serve(Node::builder().memory()).await;
    let ah = a.handle();
    ah.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = ah.login_password("olivia", OWNER_PW).await.unwrap();
    let p = ah
        .create_product(&owner, product("C1", 300, 2000))
        .await
        .unwrap();
    // A second replica; both change the price before they hear of each other.
    let b = Node::builder().memory().start().await.unwrap();
    let bh = b.handle();
    bh.import_envelopes(ah.genesis().unwrap(), vec![])
        .await
        .unwrap();
    tillmesh::sync::pull(&bh, &Direct(ah.clone()))
        .await
        .unwrap();
    let owner_b = bh.login_password("olivia", OWNER_PW).await.unwrap();
    let price = |v| ProductPatch {
        price: Some(v),
        ..Default::default()
    };
    ah.update_product(&owner, p.id, price(310)).await.unwrap();
    bh.update_product(&owner_b, p.id, price(320)).await.unwrap();
    tillmesh::sync::pull(&ah, &Direct(bh.clone()))
        .await
        .unwrap();
    assert_eq!(ah.product(p.id).unwrap().conflicts["price"].len(), 2);

    let browser = Browser::launch().await;
    let page = browser.new_page(DESKTOP.0, DESKTOP.1).await;
    page.goto(&format!("{url}/")).await;
    log_in(&page, "olivia", OWNER_PW, false).await;
    page.goto(&format!("{url}/#/products")).await;
    page.wait_visible("#conflicts-banner .alert-warn").await;
    page.click(&format!(
        "#product-rows tr[data-id=\"{}\"] [data-action=edit]",
        p.id
    ))
    .await;
    page.wait_visible("#conflict-picker [data-field=price]")
        .await;
    let choices = page.text("#conflict-picker [data-field=price]").await;
    assert!(
        choices.contains("Keep €3.10") && choices.contains("Keep €3.20"),
        "both prices are offered: {choices}"
    );
    page.screenshot("16-product-conflict-desktop").await;
    page.eval(
        "[...document.querySelectorAll('#conflict-picker [data-field=price] button')]\
         .find(b => b.textContent === 'Keep €3.20').click()",
    )
    .await;
    page.wait_for(
        "!document.querySelector('#conflicts-banner .alert-warn')",
        "the conflict is gone from the list",
    )
    .await;
    let settled = ah.product(p.id).unwrap();
    assert_eq!(settled.price, 320);
    assert!(settled.conflicts.is_empty(), "{settled:?}");
    // The other replica takes the choice.
    tillmesh::sync::pull(&bh, &Direct(ah.clone()))
        .await
        .unwrap();
    let on_b = bh.product(p.id).unwrap();
    assert_eq!(on_b.price, 320);
    assert!(on_b.conflicts.is_empty());
    page.assert_no_errors().await;

    drop(browser);
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_screen_draws_the_demo_shop() {
    let _serial = browser::one_at_a_time().await;
    let (node, url) = serve(Node::builder().memory()).await;
    let (user, password) = tillmesh::handle::demo::populate(&node.handle())
        .await
        .unwrap();

    let browser = Browser::launch().await;
    let page = browser.new_page(DESKTOP.0, DESKTOP.1).await;
    page.goto(&format!("{url}/")).await;
    log_in(&page, user, password, false).await;
    // Each screen with the element that shows it drew its data.
    for (route, ready) in [
        ("sell", "#sell-tiles .tile"),
        ("stock", "#stock-rows tr[data-key]"),
        ("products", "#product-rows tr[data-id]"),
        ("reports", "#chart-top svg"),
        ("people", "#people-rows tr"),
        ("sync", "#sync-health"),
        ("orders", "#po-table"),
        ("books", "#chart-profit svg"),
    ] {
        page.goto(&format!("{url}/#/{route}")).await;
        page.wait_visible(ready).await;
        shots(&page, &format!("40-demo-{route}"), DESKTOP).await;
    }
    // The week of sales is on the chart: more than one day has a bar.
    page.goto(&format!("{url}/#/reports")).await;
    page.wait_for(
        "[...document.querySelectorAll('#chart-days rect.bar')].filter(r => +r.getAttribute('height') > 0).length > 1",
        "several days of sales on the chart",
    )
    .await;
    // Every report panel draws; the toggles redraw without errors.
    for ready in [
        "#sales-totals td",
        "#staff-rows td",
        "#till-rows td",
        "#tax-rows td",
        "#payment-rows td",
        "#value-rows td",
        "#chart-moves svg",
        "#move-rows td",
    ] {
        page.wait_visible(ready).await;
    }
    page.click("#top-rank [data-value=qty]").await;
    page.click("#sales-group [data-value=week]").await;
    page.wait_for(
        "/^Sales per week/.test(document.querySelector('#chart-days').closest('section').querySelector('h2').textContent)",
        "the sales chart regroups by week",
    )
    .await;
    page.viewport(DESKTOP.0, 2900).await;
    page.screenshot("41-demo-reports-all-panels").await;
    page.viewport(DESKTOP.0, DESKTOP.1).await;
    page.assert_no_errors().await;

    drop(browser);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_runs_the_books_on_two_synced_tills() {
    let _serial = browser::one_at_a_time().await;
    let (a, url_a) = listening(Node::builder().memory()).await;
    let ah = a.handle();
    ah.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = ah.login_password("olivia", OWNER_PW).await.unwrap();
    let addr_a = mesh_addr(&ah).await;
    ah.create_product(
        &owner,
        NewProduct {
            reorder_level: Some(20),
            ..product("BK1", 300, 2000)
        },
    )
    .await
    .unwrap();
    let dir_b = common::mesh::joined_dir(&ah, &owner, "Till 2").await;
    let (b, url_b) = listening(Node::builder().data_dir(dir_b.path()).peer(&addr_a)).await;

    let browser = Browser::launch().await;
    let page = browser.new_page(DESKTOP.0, DESKTOP.1).await;
    page.goto(&format!("{url_a}/")).await;
    log_in(&page, "olivia", OWNER_PW, false).await;

    // A supplier and a purchase order for 10, sent, 4 received at 1.60 instead of 1.50.
    page.goto(&format!("{url_a}/#/orders")).await;
    page.click("#suppliers-open").await;
    page.fill("#sup-name", "Bean Co").await;
    page.click("#sup-save").await;
    page.wait_for(
        "document.querySelector('#sup-list').textContent.includes('Bean Co')",
        "the supplier is listed",
    )
    .await;
    page.press("Escape").await;
    page.click("#po-new").await;
    page.fill(".po-qty", "10").await;
    page.click("#po-save").await;
    page.wait_visible("#po-sent").await;
    page.click("#po-sent").await;
    page.wait_visible("#po-receive").await;
    page.click("#po-receive").await;
    page.fill("#dn-number", "DN-1").await;
    page.fill(".dn-qty", "4").await;
    page.fill(".dn-cost", "1.60").await;
    page.click("#dn-save").await;
    page.wait_text("#po-detail-lines tr[data-sku=\"BK1\"] .outstanding", "6")
        .await;
    shots(&page, "50-purchase-order", DESKTOP).await;
    page.press("Escape").await;

    // A shift: float 100.00, two sold for cash (6.00 paid with 10.00), 5.00 paid out, one
    // refunded in cash without a receipt (3.00): 98.00 expected, 97.50 counted.
    page.goto(&format!("{url_a}/#/sell")).await;
    page.click("#shift-open").await;
    page.fill("#shift-float", "100.00").await;
    page.click("#shift-open-save").await;
    page.wait_text("#shift-expected", "€100.00").await;
    page.wait_visible("#sell-tiles .tile").await;
    for _ in 0..2 {
        page.fill("#sell-search", "40000BK1").await;
        page.press("Enter").await;
    }
    page.wait_text("#cart-total", "€6.00").await;
    page.click("#pay").await;
    page.fill("#pay-amount", "10").await;
    page.click("#complete-sale").await;
    page.wait_visible("#receipt").await;
    page.click("#new-sale").await;
    page.wait_text("#shift-expected", "€106.00").await;
    page.click("#shift-pay-out").await;
    page.fill("#cash-amount", "5").await;
    page.fill("#cash-reason", "milk for the staff room").await;
    page.click("#cash-save").await;
    page.wait_text("#shift-expected", "€101.00").await;
    page.click("#refund-open").await;
    page.fill("#refund-reason", "no receipt").await;
    page.click("#refund-save").await;
    page.wait_text("#shift-expected", "€98.00").await;
    page.click("#shift-close").await;
    page.fill("#shift-counted", "97.50").await;
    page.click("#shift-close-save").await;
    page.wait_visible("#shift-report").await;
    assert_eq!(page.text("#rep-expected").await, "€98.00");
    assert_eq!(page.text("#rep-counted").await, "€97.50");
    assert!(
        page.text("#rep-difference").await.contains("0.50"),
        "the difference shows"
    );
    shots(&page, "51-shift-report", DESKTOP).await;
    page.press("Escape").await;

    // Books on A, then the same on B's own UI once it has synced.
    page.goto(&format!("{url_a}/#/books")).await;
    page.wait_visible("#chart-profit svg").await;
    page.wait_visible("#low-rows tr[data-sku=\"BK1\"]").await;
    let figures = "['#books-kpis', '#profit-rows', '#low-rows', '#shift-rows'].map(s => document.querySelector(s).innerText).join('|')";
    let on_a = page.eval(figures).await.as_str().unwrap().to_owned();
    assert!(on_a.contains("On order") || on_a.contains('6'), "{on_a}");
    shots(&page, "52-books", DESKTOP).await;
    let csv = page
        .eval("fetch('/api/v1/export/profit.csv').then(r => r.text())")
        .await;
    assert!(
        csv.as_str()
            .unwrap()
            .starts_with("day,currency,revenue,cost,profit"),
        "{csv}"
    );
    let shifts_csv = page
        .eval("fetch('/api/v1/export/shifts.csv').then(r => r.text())")
        .await;
    assert!(
        shifts_csv.as_str().unwrap().contains(",EUR,10000,"),
        "{shifts_csv}"
    );
    page.assert_no_errors().await;

    let page_b = browser.new_page(DESKTOP.0, DESKTOP.1).await;
    page_b.goto(&format!("{url_b}/")).await;
    log_in(&page_b, "olivia", OWNER_PW, false).await;
    page_b.goto(&format!("{url_b}/#/books")).await;
    page_b.wait_visible("#chart-profit svg").await;
    page_b
        .wait_for(
            &format!("({figures}) === {}", browser::js_str(&on_a)),
            "Till 2 shows the same books as Till 1",
        )
        .await;
    page_b.assert_no_errors().await;

    drop(browser);
    b.shutdown().await;
    a.shutdown().await;
}

/// The rest of the books in the browser: a cart parked on Till 1 is picked up and paid on
/// Till 2 (the ticket closes everywhere); an order is cancelled, another closed short after a
/// partial delivery; an owner closes the period through yesterday and Till 2 knows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_order_closes_and_a_period_close_in_the_browser() {
    const WAIT: Duration = Duration::from_secs(30);
    let _serial = browser::one_at_a_time().await;
    let (a, url_a) = listening(Node::builder().memory()).await;
    let ah = a.handle();
    ah.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = ah.login_password("olivia", OWNER_PW).await.unwrap();
    let addr_a = mesh_addr(&ah).await;
    ah.create_product(&owner, product("TK1", 300, 2000))
        .await
        .unwrap();
    let dir_b = common::mesh::joined_dir(&ah, &owner, "Till 2").await;
    let (b, url_b) = listening(Node::builder().data_dir(dir_b.path()).peer(&addr_a)).await;
    let bh = b.handle();
    assert!(
        wait_for(|| bh.products().is_ok_and(|p| p.len() == 1), WAIT).await,
        "Till 2 has the catalog"
    );

    let browser = Browser::launch().await;
    let page = browser.new_page(DESKTOP.0, DESKTOP.1).await;
    page.goto(&format!("{url_a}/")).await;
    log_in(&page, "olivia", OWNER_PW, false).await;

    // Till 1 parks a cart of two.
    page.goto(&format!("{url_a}/#/sell")).await;
    page.wait_visible("#sell-tiles .tile").await;
    for _ in 0..2 {
        page.fill("#sell-search", "40000TK1").await;
        page.press("Enter").await;
    }
    page.wait_text("#cart-total", "€6.00").await;
    page.click("#cart-park").await;
    page.fill("#ticket-name", "Table 4").await;
    page.click("#ticket-save").await;
    page.wait_for(
        "!document.querySelector('dialog[open]') && !/6\\.00/.test(document.querySelector('#cart-total').textContent)",
        "the cart is parked and emptied",
    )
    .await;
    assert_eq!(ah.tickets(true).unwrap().len(), 1);

    // Till 2 picks it up and takes the payment.
    let page_b = browser.new_page(DESKTOP.0, DESKTOP.1).await;
    page_b.goto(&format!("{url_b}/")).await;
    log_in(&page_b, "olivia", OWNER_PW, false).await;
    page_b.goto(&format!("{url_b}/#/sell")).await;
    page_b.wait_visible("#sell-tiles .tile").await;
    page_b.click("#tickets-open").await;
    page_b
        .wait_for(
            "[...document.querySelectorAll('#ticket-list .ticket-row')].some(r => r.textContent.includes('Table 4'))",
            "Till 2 lists the ticket parked on Till 1",
        )
        .await;
    page_b
        .eval("document.querySelector('#ticket-list .ticket-row .btn-primary').click()")
        .await;
    page_b.wait_text("#cart-total", "€6.00").await;
    page_b.click("#pay").await;
    page_b.click("#complete-sale").await;
    page_b.wait_visible("#receipt").await;
    page_b.click("#new-sale").await;
    assert!(
        wait_for(|| ah.tickets(true).is_ok_and(|t| t.is_empty()), WAIT).await,
        "the ticket is closed on Till 1 too"
    );
    let sold = ah.sales(0, i64::MAX).unwrap();
    assert_eq!(sold.len(), 1);
    assert_eq!(sold[0].device, bh.device_id(), "paid on Till 2");
    page_b.assert_no_errors().await;

    // Orders: one cancelled as a draft, one closed short after 4 of 10 arrived.
    page.goto(&format!("{url_a}/#/orders")).await;
    page.click("#suppliers-open").await;
    page.fill("#sup-name", "Tea Ltd").await;
    page.click("#sup-save").await;
    page.wait_for(
        "document.querySelector('#sup-list').textContent.includes('Tea Ltd')",
        "the supplier is listed",
    )
    .await;
    page.press("Escape").await;
    for _ in 0..2 {
        page.click("#po-new").await;
        page.fill(".po-qty", "10").await;
        page.click("#po-save").await;
        page.wait_visible("#po-detail[data-status=draft]").await;
        page.press("Escape").await;
    }
    let orders = ah.purchase_orders(false).unwrap();
    assert_eq!(orders.len(), 2);
    let open = |n: &str| format!("#po-rows tr[data-number=\"{n}\"] button");
    // Drafts are not waiting for goods: list all orders.
    page.eval(
        "[...document.querySelectorAll('.seg button')].find(b => b.textContent === 'All').click()",
    )
    .await;
    page.wait_visible(&open(&orders[0].number)).await;
    page.click(&open(&orders[0].number)).await;
    page.wait_visible("#po-cancelled").await;
    page.click("#po-cancelled").await;
    page.wait_visible("#po-detail[data-status=cancelled]").await;
    page.press("Escape").await;
    page.wait_visible(&open(&orders[1].number)).await;
    page.click(&open(&orders[1].number)).await;
    page.wait_visible("#po-sent").await;
    page.click("#po-sent").await;
    page.wait_visible("#po-receive").await;
    page.click("#po-receive").await;
    page.fill("#dn-number", "DN-7").await;
    page.fill(".dn-qty", "4").await;
    page.click("#dn-save").await;
    page.wait_text("#po-detail-lines tr[data-sku=\"TK1\"] .outstanding", "6")
        .await;
    page.wait_visible("#po-received").await;
    page.click("#po-received").await;
    page.wait_visible("#po-detail[data-status=received]").await;
    page.press("Escape").await;
    let status = |h: &NodeHandle| {
        let mut s: Vec<String> = h
            .purchase_orders(false)
            .unwrap()
            .iter()
            .map(|o| format!("{:?}", o.status))
            .collect();
        s.sort();
        s
    };
    assert_eq!(status(&ah), ["Cancelled", "Received"]);
    assert!(
        wait_for(
            || bh.purchase_orders(false).is_ok() && status(&bh) == status(&ah),
            WAIT
        )
        .await,
        "Till 2 has both orders' states"
    );
    page.assert_no_errors().await;

    // The owner closes the books through yesterday; both tills know.
    page.goto(&format!("{url_a}/#/books")).await;
    page.wait_visible("#period-close").await;
    page.click("#period-close").await;
    let through = page
        .eval("document.querySelector('#period-through').value")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    page.click("#period-save").await;
    page.wait_for(
        &format!(
            "document.querySelector('#closed-through').textContent.includes({})",
            browser::js_str(&format!("closed through {through}"))
        ),
        "the Books screen says the period is closed",
    )
    .await;
    shots(&page, "53-period-closed", DESKTOP).await;
    assert!(
        wait_for(
            || bh
                .periods(&owner_of(&bh))
                .is_ok_and(|p| p.last().is_some_and(|c| c.through == through)),
            WAIT
        )
        .await,
        "Till 2 has the close"
    );
    page.assert_no_errors().await;

    drop(browser);
    drop(bh);
    b.shutdown().await;
    a.shutdown().await;
}

/// A shop with a relay: the Sync screen shows the relay, connected, and when it last synced
/// each way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_screen_shows_the_relay_and_its_sync_state() {
    let _serial = browser::one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, url) = listening(Node::builder().data_dir(dir.path().join("till"))).await;
    let ah = a.handle();
    ah.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = ah.login_password("olivia", OWNER_PW).await.unwrap();
    mesh_addr(&ah).await;
    let relay_dir = dir.path().join("relay");
    let relay = tillmesh::relay::Relay::start(tillmesh::relay::RelayConfig::new(
        &relay_dir,
        vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
    ))
    .await
    .unwrap();
    common::mesh::enroll_relay(&relay_dir, &ah, &owner, "Cloud relay").await;
    assert!(wait_for(|| relay.shops().len() == 1, Duration::from_secs(30)).await);
    ah.add_peer(&owner, &relay.addrs()[0].to_string())
        .await
        .unwrap();
    let p = ah
        .create_product(&owner, product("RLY", 300, 2000))
        .await
        .unwrap();
    let replica = relay.replica(relay.shops()[0]).unwrap();
    assert!(wait_for(|| replica.product(p.id).is_ok(), Duration::from_secs(30)).await);

    let browser = Browser::launch().await;
    let page = browser.new_page(DESKTOP.0, DESKTOP.1).await;
    page.goto(&format!("{url}/")).await;
    log_in(&page, "olivia", OWNER_PW, false).await;
    page.goto(&format!("{url}/#/sync")).await;
    page.wait_visible("#relay-panel").await;
    page.wait_for(
        "(t => t.includes('Cloud relay') && t.includes('Connected'))(document.querySelector('#relay-panel').textContent)",
        "the Sync screen shows the relay, connected",
    )
    .await;
    page.wait_for(
        "/last change sent just now/.test(document.querySelector('#relay-panel .relay-sync')?.textContent || '')",
        "the Sync screen says when a change was last sent to the relay",
    )
    .await;
    // The relay takes an encrypted snapshot of a shop as soon as it serves it; the till asks
    // after each pull and the screen says when.
    page.wait_for(
        "/Last encrypted snapshot (just now|\\d+ min ago)/.test(document.querySelector('#relay-panel .relay-snapshot')?.textContent || '')",
        "the Sync screen says when the relay took its last snapshot",
    )
    .await;
    shots(&page, "32-sync-relay", DESKTOP).await;
    page.assert_no_errors().await;

    drop(browser);
    drop((ah, replica));
    a.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_changes_a_price_on_the_relay_web_ui() {
    let _serial = browser::one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let till = Node::builder()
        .data_dir(dir.path().join("till"))
        .listen("/ip4/127.0.0.1/tcp/0")
        .start()
        .await
        .unwrap();
    let th = till.handle();
    th.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = th.login_password("olivia", OWNER_PW).await.unwrap();
    mesh_addr(&th).await;
    let p = th
        .create_product(&owner, product("TEA", 300, 2000))
        .await
        .unwrap();
    let relay_dir = dir.path().join("relay");
    let mut cfg = tillmesh::relay::RelayConfig::new(
        &relay_dir,
        vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
    );
    cfg.http = Some("127.0.0.1:0".parse().unwrap());
    let relay = tillmesh::relay::Relay::start(cfg).await.unwrap();
    common::mesh::enroll_relay(&relay_dir, &th, &owner, "Cloud relay").await;
    assert!(wait_for(|| relay.shops().len() == 1, Duration::from_secs(30)).await);
    th.add_peer(&owner, &relay.addrs()[0].to_string())
        .await
        .unwrap();
    let replica = relay.replica(relay.shops()[0]).unwrap();
    assert!(wait_for(|| replica.product(p.id).is_ok(), Duration::from_secs(30)).await);
    let url = format!("https://{}", relay.https_addr().unwrap());

    let browser = Browser::launch_accepting_self_signed().await;
    let page = browser.new_page(DESKTOP.0, DESKTOP.1).await;
    page.goto(&format!("{url}/")).await;
    // The relay's login asks for the shop; it lists nobody.
    page.wait_visible("#login-shop").await;
    assert!(!page.exists(".person-btn").await);
    shots(&page, "33-relay-login", DESKTOP).await;
    page.fill("#login-shop", "Corner Shop").await;
    page.fill("#login-username", "olivia").await;
    page.fill("#login-password", "not the password").await;
    page.press("Enter").await;
    page.wait_for(
        "document.querySelector('#main').textContent.toLowerCase().includes('wrong shop, username or password')",
        "the relay says the login failed",
    )
    .await;
    page.fill("#login-password", OWNER_PW).await;
    page.press("Enter").await;
    page.wait_visible("#sell-search").await;
    page.wait_text("#shop-name", "Corner Shop").await;

    page.goto(&format!("{url}/#/products")).await;
    page.click(&format!(
        "#product-rows tr[data-id=\"{}\"] [data-action=edit]",
        p.id
    ))
    .await;
    page.wait_visible("#p-price").await;
    page.fill("#p-price", "4.50").await;
    page.click("#save-product").await;
    // The owner's change, made on the relay, reaches the till in the shop.
    assert!(
        wait_for(
            || th.product(p.id).is_ok_and(|p| p.price == 450),
            Duration::from_secs(30)
        )
        .await,
        "the till has the price set on the relay"
    );
    page.assert_no_errors().await;

    drop(browser);
    drop((th, replica));
    relay.shutdown().await;
    till.shutdown().await;
}

/// A browser on another device opens a node with no shop (here: the node's non-loopback
/// address, in a private network namespace): the first-start page asks for the setup token,
/// setting up without it fails with a sentence, and with the token the shop is created.
#[test]
fn a_browser_on_another_device_is_asked_for_the_setup_token() {
    in_private_netns(
        "a_browser_on_another_device_is_asked_for_the_setup_token",
        || {
            let out = std::process::Command::new("ip")
                .args(["addr", "add", "10.77.0.1/32", "dev", "lo"])
                .output()
                .expect("iproute2's `ip` runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(setup_token_in_the_browser());
        },
    );
}

async fn setup_token_in_the_browser() {
    let _serial = browser::one_at_a_time().await;
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let node = Node::builder()
        .memory()
        .http_listener(listener)
        .start()
        .await
        .unwrap();
    let h = node.handle();
    // Reached by its LAN address, the node sees another device (source 10.77.0.1).
    let url = format!("http://10.77.0.1:{port}");
    let browser = Browser::launch().await;
    let page = browser.new_page(DESKTOP.0, DESKTOP.1).await;
    page.goto(&format!("{url}/")).await;
    page.wait_visible("#setup-token").await;
    shots(&page, "01-first-start-remote", DESKTOP).await;
    page.fill("#create-form [name=shop_name]", "Corner Shop")
        .await;
    page.fill("#create-form [name=owner_name]", "Olivia Owner")
        .await;
    page.fill("#create-form [name=password]", OWNER_PW).await;
    page.fill("#create-form [name=password2]", OWNER_PW).await;
    page.click("#create-shop").await;
    page.wait_for(
        "(() => { const e = document.querySelector('#create-form .alert-error'); \
         return !!e && e.textContent.includes('setup token'); })()",
        "an error asking for the setup token",
    )
    .await;
    assert!(!h.status().unwrap().has_shop, "no shop without the token");
    let token = h.setup_token().unwrap().to_owned();
    page.fill("#setup-token", &token).await;
    page.click("#create-shop").await;
    page.wait_visible("#recovery-key").await;
    assert!(h.status().unwrap().has_shop, "the shop was created");
    page.assert_no_errors().await;
    drop(page);
    drop(browser);
    node.shutdown().await;
}
