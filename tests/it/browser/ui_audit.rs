//! The alerts bell, the Audit screen and the products CSV import in a real headless Chromium
//! (the system's `chromium`), against a node started in-process on 127.0.0.1 port 0 with mDNS
//! off: a manager sees a low-stock alert and dismisses it, an oversold alert arrives live over
//! SSE, the Audit screen filters by kind, and a CSV file is checked (row errors shown), then
//! imported with its progress and summary. Screenshots go to `target/ui-screenshots/`.

use crate::browser;
use crate::common;

use browser::{Browser, js_str};
use common::*;
use tillmesh::Node;
use tillmesh::domain::model::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_works_alerts_audit_and_a_products_import_in_the_browser() {
    let _serial = browser::one_at_a_time().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let node = Node::builder()
        .memory()
        .http_listener(listener)
        .start()
        .await
        .unwrap();
    let url = format!("http://{}", node.http_addr().unwrap());
    let h = node.handle();
    h.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = h.login_password("olivia", OWNER_PW).await.unwrap();
    let low = h
        .create_product(&owner, product("LOW", 200, 2000))
        .await
        .unwrap();
    h.stock_in(&owner, stock_in(low.id, 1, 100)).await.unwrap();
    let last = h
        .create_product(&owner, product("LAST", 300, 2000))
        .await
        .unwrap();
    h.stock_in(&owner, stock_in(last.id, 5, 100)).await.unwrap();
    h.record_sale(&owner, sale_of(last.id, 2)).await.unwrap();
    assert_eq!(h.alerts(false).unwrap().len(), 1, "LOW is low; LAST has 3");

    let browser = Browser::launch().await;
    let page = browser.new_page(1280, 800).await;
    page.goto(&format!("{url}/")).await;
    page.click(".person-btn[data-username=\"olivia\"]").await;
    page.fill("#login-password", OWNER_PW).await;
    page.press("Enter").await;
    page.wait_visible("#sell-search").await;

    // The bell counts one alert; the panel lists it; Dismiss clears it on the node.
    page.wait_text("#alerts-count", "1").await;
    page.click("#alerts-bell").await;
    page.wait_visible("#alerts-list .alert-item[data-kind=low_stock]")
        .await;
    page.screenshot("60-alerts-panel-desktop").await;
    page.click("#alerts-list .alert-item[data-kind=low_stock] .dismiss")
        .await;
    page.wait_for(
        "document.getElementById('alerts-count').hidden",
        "the badge is gone",
    )
    .await;
    assert!(h.alerts(false).unwrap().is_empty());

    // Selling the last items on another till (here: the node's API) streams a new alert.
    h.record_sale(&owner, sale_of(last.id, 4)).await.unwrap();
    page.wait_text("#alerts-count", "1").await;
    page.wait_visible("#alerts-list .alert-item[data-kind=oversold]")
        .await;

    // The Audit screen lists the sales with who made them; the kind filter narrows it.
    page.goto(&format!("{url}/#/audit")).await;
    page.wait_visible("#audit-rows tr[data-kind=sale]").await;
    page.eval(
        "(() => { const k = document.getElementById('audit-kind'); k.value = 'sale'; \
         k.dispatchEvent(new Event('change')); })()",
    )
    .await;
    page.wait_for(
        "(() => { const rows = [...document.querySelectorAll('#audit-rows tr')]; \
         return rows.length === 2 && rows.every(r => r.dataset.kind === 'sale'); })()",
        "only the two sales are listed",
    )
    .await;
    assert!(page.text("#audit-rows").await.contains("Olivia Owner"));
    page.screenshot("61-audit-desktop").await;

    // Import: a file with a bad row shows the row's error and imports nothing …
    let set_file = |csv: &str| {
        format!(
            "(() => {{ const dt = new DataTransfer(); \
             dt.items.add(new File([{}], 'products.csv', {{type: 'text/csv'}})); \
             const i = document.getElementById('import-file'); i.files = dt.files; \
             i.dispatchEvent(new Event('change')); }})()",
            js_str(csv)
        )
    };
    page.goto(&format!("{url}/#/products")).await;
    page.click("#import-products").await;
    page.wait_visible("#import-file").await;
    page.eval(&set_file(
        "sku,name,price\nNEW-1,Apples,1.20\nNEW-2,Pears,one euro\n",
    ))
    .await;
    page.click("#import-check").await;
    page.wait_visible("#import-errors tbody tr").await;
    let errors = page.text("#import-errors tbody").await;
    assert!(errors.contains('3') && errors.contains("price"), "{errors}");
    assert!(
        page.eval("document.getElementById('import-run').disabled")
            .await
            .as_bool()
            .unwrap()
    );
    // … a good one is checked, then imported, with the summary shown.
    let mut good = String::from("sku,name,price,tax_rate\n");
    for i in 0..300 {
        good.push_str(&format!("IMP-{i:03},Imported {i},1.{:02},20\n", i % 100));
    }
    good.push_str("LOW,Low product renamed,2.00,20\n");
    page.eval(&set_file(&good)).await;
    page.click("#import-check").await;
    page.wait_for(
        "document.getElementById('import-result').textContent.includes('300 would be created, 1 would be updated')",
        "the dry run's summary",
    )
    .await;
    assert_eq!(h.products().unwrap().len(), 2, "a check writes nothing");
    page.click("#import-run").await;
    page.wait_for(
        "document.getElementById('import-result').textContent.includes('300 created, 1 updated')",
        "the import's summary",
    )
    .await;
    page.screenshot("62-products-import-desktop").await;
    page.wait_visible("#product-rows tr").await;
    assert_eq!(h.products().unwrap().len(), 302);
    assert_eq!(h.product(low.id).unwrap().name, "Low product renamed");
    page.assert_no_errors().await;

    drop(browser);
    drop(h);
    node.shutdown().await;
}
