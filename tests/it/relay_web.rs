//! The relay's web UI and API (issue 6: remote owners), over real HTTPS on 127.0.0.1.
//!
//! - `an_owner_changes_a_price_through_the_relay`: two shops enrolled on one relay. Over
//!   https (trusting exactly the relay's self-signed certificate) the owner of shop A logs in
//!   naming the shop; a price changed through the relay reaches shop A's till, signed by the
//!   owner's person key on the relay's replica (the till's audit trail says so); the token sees
//!   shop A only; B's shop name with A's owner's password, an unknown shop and a wrong password
//!   get the very same 401; a staff PIN login is refused; a sale through the relay is refused
//!   with a clear error and writes nothing; plain HTTP on the port gets no HTTP answer.

use crate::common;

use std::time::Duration;

use common::mesh::enroll_relay;
use common::*;
use serde_json::{Value, json};
use tillmesh::domain::model::*;
use tillmesh::relay::{Relay, RelayConfig};
use tillmesh::{Node, NodeHandle};

const T: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A shop's first till on loopback (in a data dir), and its owner.
async fn first_till(
    dir: &std::path::Path,
    shop_name: &str,
    username: &str,
    password: &str,
) -> (Node, NodeHandle, Principal) {
    let n = Node::builder()
        .data_dir(dir)
        .listen("/ip4/127.0.0.1/tcp/0")
        .start()
        .await
        .unwrap();
    let h = n.handle();
    h.create_shop(NewShop {
        shop_name: shop_name.into(),
        owner_name: format!("Owner of {shop_name}"),
        username: username.into(),
        password: password.into(),
        ..new_shop("EUR", TaxMode::Inclusive)
    })
    .await
    .unwrap();
    let owner = h.login_password(username, password).await.unwrap();
    (n, h, owner)
}

/// An https client that trusts exactly the relay's certificate.
fn client(relay: &Relay) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = relay
        .tls()
        .expect("the relay serves https")
        .cert_pem
        .clone();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()])
        .timeout(T)
        .build()
        .unwrap()
}

/// Status and body of a request.
async fn answer(req: reqwest::RequestBuilder) -> (u16, String) {
    let res = req.send().await.expect("the relay answers over https");
    let status = res.status().as_u16();
    (status, res.text().await.unwrap())
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_changes_a_price_through_the_relay() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port())
        .parse()
        .unwrap();
    let mut cfg = RelayConfig::new(d("relay"), vec![listen]);
    cfg.http = Some("127.0.0.1:0".parse().unwrap());
    let relay = Relay::start(cfg).await.unwrap();
    let relay_addr = relay.addrs()[0].to_string();
    let https = relay.https_addr().unwrap();
    let tls = relay.tls().unwrap();
    assert!(tls.generated);
    assert_eq!(tls.fingerprint.len(), 95, "{}", tls.fingerprint);
    assert!(d("relay").join("tls").join("cert.pem").exists());

    let bakery_pw = "rye bread every morning";
    let (a1, ha, owner_a) = first_till(&d("a1"), "Corner Shop", "olivia", OWNER_PW).await;
    let (b1, hb, owner_b) = first_till(&d("b1"), "Bakery", "bruno", bakery_pw).await;
    let pa = ha
        .create_product(&owner_a, product("SHOP-A", 100, 0))
        .await
        .unwrap();
    let pb = hb
        .create_product(&owner_b, product("SHOP-B", 200, 0))
        .await
        .unwrap();
    ha.add_person(
        &owner_a,
        NewPerson {
            name: "Sam Staff".into(),
            username: "sam".into(),
            role: Role::Staff,
            password: None,
            pin: Some("1234".into()),
        },
    )
    .await
    .unwrap();
    let shop_a = enroll_relay(&d("relay"), &ha, &owner_a, "Cloud").await;
    let shop_b = enroll_relay(&d("relay"), &hb, &owner_b, "Cloud").await;
    assert!(wait_for(|| relay.shops().len() == 2, T).await);
    ha.add_peer(&owner_a, &relay_addr).await.unwrap();
    hb.add_peer(&owner_b, &relay_addr).await.unwrap();
    let ra = relay.replica(shop_a).unwrap();
    let rb = relay.replica(shop_b).unwrap();
    assert!(wait_for(|| ra.login_people().iter().any(|p| p.username == "sam"), T).await);
    assert!(wait_for(|| rb.product(pb.id).is_ok(), T).await);

    let http = client(&relay);
    let base = format!("https://{https}/api/v1");

    // The relay says what it is; without a session it answers nothing about any shop.
    let (s, body) = answer(http.get(format!("{base}/server"))).await;
    assert_eq!((s, json_of(&body)), (200, json!({"kind": "relay"})));
    for path in ["products", "status", "login/people", "me"] {
        let (s, body) = answer(http.get(format!("{base}/{path}"))).await;
        assert_eq!(s, 401, "GET /{path} without a session: {body}");
    }
    let (s, page) = answer(http.get(format!("https://{https}/"))).await;
    assert_eq!(s, 200);
    assert!(page.contains("app.js"), "the web UI is served: {page}");

    // Logging in names the shop.
    let login = |body: Value| http.post(format!("{base}/login")).json(&body);
    let (s, body) = answer(login(json!({
        "shop": "corner shop", "username": "olivia", "password": OWNER_PW
    })))
    .await;
    assert_eq!(s, 200, "{body}");
    let session = json_of(&body);
    assert_eq!(session["person"]["role"], "owner");
    let token = session["token"].as_str().unwrap().to_string();
    let as_a = |req: reqwest::RequestBuilder| req.bearer_auth(&token);

    // The session covers shop A only.
    let (s, body) = answer(as_a(http.get(format!("{base}/status")))).await;
    assert_eq!(s, 200);
    assert_eq!(json_of(&body)["shop_id"], shop_a.to_string());
    let (s, body) = answer(as_a(http.get(format!("{base}/products")))).await;
    assert_eq!(s, 200);
    let skus: Vec<String> = json_of(&body)
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sku"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(skus, vec!["SHOP-A".to_string()]);
    let (s, body) = answer(as_a(http.get(format!("{base}/products/{}", pb.id)))).await;
    assert_eq!(s, 404, "shop B's product through shop A's session: {body}");

    // A price changed through the relay reaches the till, signed by the owner's person key.
    let (s, body) = answer(as_a(
        http.patch(format!("{base}/products/{}", pa.id))
            .json(&json!({"price": 250})),
    ))
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(
        wait_for(|| ha.product(pa.id).is_ok_and(|p| p.price == 250), T).await,
        "the new price reaches shop A's till"
    );
    let owner_key = ha
        .people(&owner_a)
        .unwrap()
        .into_iter()
        .find(|p| p.username == "olivia")
        .and_then(|p| p.public_key)
        .unwrap();
    let audit = ha
        .audit(
            &owner_a,
            &tillmesh::domain::audit::AuditFilter {
                to: i64::MAX,
                doc: Some("catalog".into()),
                limit: 100,
                ..Default::default()
            },
        )
        .unwrap();
    let change = audit
        .entries
        .iter()
        .find(|e| e.device.as_deref() == Some(ra.device_id()) && e.kind == "product_edit")
        .unwrap_or_else(|| panic!("the relay's change in the till's audit: {audit:#?}"));
    assert_eq!(change.signer, owner_key);
    assert_eq!(change.signer_role, "owner");
    // Shop B saw nothing of it.
    assert_eq!(hb.product(pb.id).unwrap().price, 200);
    assert!(hb.product(pa.id).is_err());

    // Another shop's name with A's owner's password, an unknown shop and a wrong password all
    // get the same answer.
    let tries = [
        json!({"shop": "Bakery", "username": "olivia", "password": OWNER_PW}),
        json!({"shop": "Nowhere Shop", "username": "olivia", "password": OWNER_PW}),
        json!({"shop": "Corner Shop", "username": "olivia", "password": "not the password"}),
        json!({"shop": "Corner Shop", "username": "nobody", "password": OWNER_PW}),
    ];
    let mut answers = Vec::new();
    for t in tries {
        answers.push(answer(login(t)).await);
    }
    assert_eq!(answers[0].0, 401, "{}", answers[0].1);
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:#?}");
    // The same shop's owner with the right password logs in to B, and sees B.
    let (s, body) = answer(login(json!({
        "shop": shop_b.to_string(), "username": "bruno", "password": bakery_pw
    })))
    .await;
    assert_eq!(s, 200, "{body}");
    let token_b = json_of(&body)["token"].as_str().unwrap().to_string();
    let (_, body) = answer(http.get(format!("{base}/products")).bearer_auth(&token_b)).await;
    assert_eq!(json_of(&body)[0]["sku"], "SHOP-B");

    // Staff log in on a till, not on the relay.
    let (s, body) = answer(login(json!({
        "shop": "Corner Shop", "username": "sam", "pin": "1234"
    })))
    .await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("till"), "{body}");

    // A sale through the relay is refused clearly and writes nothing.
    let before = ra.status().unwrap().envelopes;
    let (s, body) = answer(as_a(http.post(format!("{base}/sales")).json(
        &json!({"lines": [{"product_id": pa.id, "qty": 1}], "payments": [{"method": "cash"}]}),
    )))
    .await;
    assert_eq!(s, 403, "{body}");
    let err = json_of(&body);
    assert_eq!(err["error"]["code"], "forbidden");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("on a till"),
        "{body}"
    );
    let (s, body) = answer(as_a(
        http.post(format!("{base}/stock/in"))
            .json(&json!({"product_id": pa.id, "qty": 5, "unit_cost": 50})),
    ))
    .await;
    assert_eq!(s, 403, "stock in through the relay: {body}");
    assert_eq!(ra.status().unwrap().envelopes, before);
    assert!(ra.sales(0, i64::MAX).unwrap().is_empty());
    assert!(ha.sales(0, i64::MAX).unwrap().is_empty());
    // Setup and invites belong to the shop's devices.
    let (s, _) = answer(as_a(http.post(format!("{base}/invites")).json(&json!({
        "role": "till", "name": "Till 9"
    }))))
    .await;
    assert_eq!(s, 403);

    // Logging out ends the session: the token opens nothing any more.
    let (s, _) = answer(as_a(http.post(format!("{base}/logout")))).await;
    assert_eq!(s, 204);
    let (s, _) = answer(as_a(http.get(format!("{base}/products")))).await;
    assert_eq!(s, 401);

    // Plain HTTP on the port gets no HTTP answer.
    let plain = reqwest::Client::builder().timeout(T).build().unwrap();
    let err = plain
        .get(format!("http://{https}/api/v1/server"))
        .send()
        .await;
    assert!(err.is_err(), "plain http answered: {err:?}");
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(https).await.unwrap();
        s.write_all(b"GET /api/v1/server HTTP/1.1\r\nHost: relay\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(T, s.read_to_end(&mut buf)).await;
        assert!(
            !buf.starts_with(b"HTTP/"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
    }

    drop((ra, rb, ha, hb));
    relay.shutdown().await;
    a1.shutdown().await;
    b1.shutdown().await;
}
