//! The WooCommerce simulator checked against WooCommerce's documented behaviour: OAuth 1.0a
//! signatures (an example computed by hand), the timestamp window and nonces, Basic only over
//! HTTPS, read-only keys, pagination headers at the boundaries, `modified_after` strictly after,
//! the batch cap and per-item errors, webhook signatures, the creation ping and the
//! disabling after consecutive failed deliveries, and faults.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use erpsync_sim::woocommerce::{
    Faults, RunningWooSim, SeedConfig, WooSim, WooSimConfig, oauth_base_string, oauth_signature,
};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value as Json, json};

fn frozen() -> WooSimConfig {
    WooSimConfig {
        clock_start: "2026-03-01T12:00:00Z".parse().unwrap(),
        clock_scale: 0.0,
        timezone_offset_minutes: 60,
        ..WooSimConfig::default()
    }
}

async fn start(config: WooSimConfig) -> RunningWooSim {
    // reqwest is built with `rustls-no-provider` in this workspace; plain HTTP still needs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    WooSim::start(config).await.unwrap()
}

/// Adds OAuth 1.0a query parameters to `url` (which may carry a query already).
fn signed_url(
    sim: &RunningWooSim,
    method: &str,
    url: &str,
    key: &str,
    secret: &str,
    nonce: &str,
    timestamp: i64,
) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.replace("%20", " ").replace("%3A", ":"))
        })
        .collect();
    params.push(("oauth_consumer_key".into(), key.into()));
    params.push(("oauth_nonce".into(), nonce.into()));
    params.push(("oauth_signature_method".into(), "HMAC-SHA256".into()));
    params.push(("oauth_timestamp".into(), timestamp.to_string()));
    let signature = oauth_signature("HMAC-SHA256", secret, &oauth_base_string(method, base, &params)).unwrap();
    let _ = sim;
    let mut out = reqwest::Url::parse(base).unwrap();
    {
        let mut pairs = out.query_pairs_mut();
        for (k, v) in &params {
            pairs.append_pair(k, v);
        }
        pairs.append_pair("oauth_signature", &signature);
    }
    out.to_string()
}

struct Client {
    sim: RunningWooSim,
    http: reqwest::Client,
    nonce: std::sync::atomic::AtomicU64,
}

impl Client {
    async fn new(config: WooSimConfig) -> Self {
        Client { sim: start(config).await, http: reqwest::Client::new(), nonce: 0.into() }
    }

    fn url(&self, method: &str, path: &str) -> String {
        let n = self.nonce.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = self.sim.key().clone();
        signed_url(
            &self.sim,
            method,
            &format!("{}{path}", self.sim.api_url()),
            &key.consumer_key,
            &key.consumer_secret,
            &format!("nonce{n}"),
            self.sim.now().timestamp(),
        )
    }

    async fn call(&self, method: &str, path: &str, body: Option<Json>) -> (u16, reqwest::header::HeaderMap, Json) {
        let url = self.url(method, path);
        let mut request = self.http.request(method.parse().unwrap(), url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        (status, headers, serde_json::from_str(&text).unwrap_or(Json::String(text)))
    }
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[test]
fn oauth_base_string_and_signature_match_a_hand_computed_example() {
    let params = vec![
        ("per_page".to_string(), "5".to_string()),
        ("oauth_timestamp".to_string(), "1700000000".to_string()),
        ("oauth_signature_method".to_string(), "HMAC-SHA1".to_string()),
        ("oauth_nonce".to_string(), "abc".to_string()),
        ("oauth_consumer_key".to_string(), "ck_1".to_string()),
        ("search".to_string(), "a b&c".to_string()),
    ];
    let base = oauth_base_string("get", "http://shop.example/wp-json/wc/v3/products", &params);
    // Written out by hand: the URL encoded once, each `key=value` encoded once as a pair of
    // encoded parts and then again as a whole, sorted by key, joined with `%26`.
    let expected = "GET&http%3A%2F%2Fshop.example%2Fwp-json%2Fwc%2Fv3%2Fproducts&\
        oauth_consumer_key%3Dck_1%26oauth_nonce%3Dabc%26oauth_signature_method%3DHMAC-SHA1%26\
        oauth_timestamp%3D1700000000%26per_page%3D5%26search%3Da%2520b%2526c";
    assert_eq!(base, expected);
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(b"cs_secret&").unwrap();
    mac.update(expected.as_bytes());
    let by_hand = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(oauth_signature("HMAC-SHA1", "cs_secret", &base).unwrap(), by_hand);
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"cs_secret&").unwrap();
    mac.update(expected.as_bytes());
    let by_hand = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(oauth_signature("HMAC-SHA256", "cs_secret", &base).unwrap(), by_hand);
    assert_eq!(oauth_signature("PLAINTEXT", "cs_secret", &base), None);
}

#[tokio::test]
async fn oauth_over_plain_http_checks_signature_timestamp_window_and_nonce() {
    let client = Client::new(frozen()).await;
    let sim = &client.sim;
    let key = sim.key().clone();
    let now = sim.now().timestamp();
    let url = format!("{}/products?per_page=5", sim.api_url());
    let good = signed_url(sim, "GET", &url, &key.consumer_key, &key.consumer_secret, "n-1", now);
    let response = client.http.get(&good).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // The same nonce again is a replay.
    let response = client.http.get(&good).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Json = response.json().await.unwrap();
    assert_eq!(body["code"], "woocommerce_rest_authentication_error");
    assert_eq!(body["data"]["status"], 401);
    assert!(body["message"].as_str().unwrap().contains("nonce"), "{body}");
    // 14 minutes off is inside the window, 16 minutes is not.
    let inside = signed_url(sim, "GET", &url, &key.consumer_key, &key.consumer_secret, "n-2", now - 14 * 60);
    assert_eq!(client.http.get(&inside).send().await.unwrap().status(), 200);
    let stale = signed_url(sim, "GET", &url, &key.consumer_key, &key.consumer_secret, "n-3", now - 16 * 60);
    let body: Json = client.http.get(&stale).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["message"], "Invalid timestamp.");
    // A wrong secret, and a signed parameter changed after signing.
    let wrong = signed_url(sim, "GET", &url, &key.consumer_key, "cs_wrong", "n-4", now);
    let body: Json = client.http.get(&wrong).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["message"], "Invalid signature - provided signature does not match.");
    let tampered = signed_url(sim, "GET", &url, &key.consumer_key, &key.consumer_secret, "n-5", now)
        .replace("per_page=5", "per_page=6");
    assert_eq!(client.http.get(&tampered).send().await.unwrap().status(), 401);
    let unknown = signed_url(sim, "GET", &url, "ck_nobody", "cs", "n-6", now);
    let body: Json = client.http.get(&unknown).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["message"], "Consumer key is invalid.");
    // Basic over plain HTTP is ignored: the request is unauthenticated.
    let response =
        client.http.get(&url).basic_auth(&key.consumer_key, Some(&key.consumer_secret)).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Json = response.json().await.unwrap();
    assert_eq!(body["code"], "woocommerce_rest_cannot_view");
}

#[tokio::test]
async fn basic_auth_works_behind_an_https_terminator_and_read_only_keys_cannot_write() {
    let sim = start(WooSimConfig { https_terminated: true, ..frozen() }).await;
    let http = reqwest::Client::new();
    let key = sim.key().clone();
    let url = format!("{}/products", sim.api_url());
    let response = http.get(&url).basic_auth(&key.consumer_key, Some(&key.consumer_secret)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let response = http.get(&url).basic_auth(&key.consumer_key, Some("cs_wrong")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<Json>().await.unwrap()["message"], "Consumer secret is invalid.");
    let query = format!("{url}?consumer_key={}&consumer_secret={}", key.consumer_key, key.consumer_secret);
    assert_eq!(http.get(&query).send().await.unwrap().status(), 200);
    let read_only = sim.shared.config.keys.iter().find(|k| k.consumer_key.contains("read_only")).unwrap().clone();
    let response = http
        .post(&url)
        .basic_auth(&read_only.consumer_key, Some(&read_only.consumer_secret))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.json::<Json>().await.unwrap()["message"],
        "The API key provided does not have write permissions."
    );
    let response =
        http.get(&url).basic_auth(&read_only.consumer_key, Some(&read_only.consumer_secret)).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn pagination_headers_at_the_boundaries_and_invalid_parameters() {
    let client = Client::new(WooSimConfig {
        seed: Some(SeedConfig {
            simple_products: 25,
            variable_products: 0,
            customers: 0,
            orders: 0,
            ..SeedConfig::default()
        }),
        ..frozen()
    })
    .await;
    let (status, headers, body) = client.call("GET", "/products?per_page=10&orderby=id&order=asc", None).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 10);
    assert_eq!(header(&headers, "x-wp-total"), Some("25"));
    assert_eq!(header(&headers, "x-wp-totalpages"), Some("3"));
    let link = header(&headers, "link").unwrap();
    assert!(link.contains("rel=\"next\"") && !link.contains("rel=\"prev\""), "{link}");
    assert!(link.contains("page=2") && link.contains("per_page=10") && !link.contains("oauth_"), "{link}");
    let (_, headers, body) = client.call("GET", "/products?per_page=10&page=3&orderby=id&order=asc", None).await;
    assert_eq!(body.as_array().unwrap().len(), 5);
    let link = header(&headers, "link").unwrap();
    assert!(link.contains("rel=\"prev\"") && !link.contains("rel=\"next\""), "{link}");
    // Past the end: an empty page with the true totals.
    let (status, headers, body) = client.call("GET", "/products?per_page=10&page=4", None).await;
    assert_eq!((status, body), (200, json!([])));
    assert_eq!(header(&headers, "x-wp-total"), Some("25"));
    // Exactly two full pages: no third.
    let (_, headers, _) = client.call("GET", "/products?per_page=25", None).await;
    assert_eq!(header(&headers, "x-wp-totalpages"), Some("1"));
    assert!(header(&headers, "link").is_none());
    for bad in [
        "per_page=101",
        "per_page=0",
        "page=0",
        "order=up",
        "orderby=colour",
        "modified_after=yesterday",
        "dates_are_gmt=maybe",
    ] {
        let (status, _, body) = client.call("GET", &format!("/products?{bad}"), None).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["code"], "rest_invalid_param", "{bad}");
        let name = bad.split('=').next().unwrap();
        assert!(body["data"]["params"][name].is_string(), "{bad}: {body}");
    }
    let (_, _, body) = client.call("GET", "/products?sku=SIM-7", None).await;
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["sku"], "SIM-7");
}

#[tokio::test]
async fn modified_after_is_strictly_after_and_ties_break_by_id() {
    let client = Client::new(frozen()).await;
    let sim = &client.sim;
    let mut ids = Vec::new();
    for (n, advance) in [(1, 0), (2, 10), (3, 0), (4, 10)] {
        sim.advance_clock(Duration::from_secs(advance));
        let (status, _, body) = client
            .call(
                "POST",
                "/products",
                Some(json!({"name": format!("P{n}"), "sku": format!("P-{n}"), "regular_price": "1.00"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_u64().unwrap());
    }
    // P2 and P3 share a second, 12:00:10 GMT (13:00:10 site time at +01:00).
    let at_gmt = "2026-03-01T12:00:10";
    let (_, _, body) = client
        .call("GET", &format!("/products?modified_after={at_gmt}&dates_are_gmt=true&orderby=modified&order=asc"), None)
        .await;
    let names: Vec<&str> = body.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["P4"], "a record modified at the boundary second is not after it");
    let just_before = "2026-03-01T12:00:09";
    let (_, _, body) = client
        .call(
            "GET",
            &format!("/products?modified_after={just_before}&dates_are_gmt=true&orderby=modified&order=asc"),
            None,
        )
        .await;
    let found: Vec<u64> = body.as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(found, [ids[1], ids[2], ids[3]], "equal times come in id order");
    // Without dates_are_gmt the wall time is the site's.
    let (_, _, body) =
        client.call("GET", "/products?modified_after=2026-03-01T13:00:09&orderby=modified&order=asc", None).await;
    assert_eq!(body.as_array().unwrap().len(), 3);
    let (_, _, body) =
        client.call("GET", "/products?modified_before=2026-03-01T12:00:10&dates_are_gmt=true", None).await;
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["date_modified_gmt"], "2026-03-01T12:00:00");
    assert_eq!(body[0]["date_modified"], "2026-03-01T13:00:00");
}

#[tokio::test]
async fn batch_cap_per_item_errors_and_unique_skus() {
    let client = Client::new(frozen()).await;
    let too_many: Vec<Json> = (0..101).map(|n| json!({"name": format!("N{n}")})).collect();
    let (status, _, body) = client.call("POST", "/products/batch", Some(json!({"create": too_many}))).await;
    assert_eq!(status, 413);
    assert_eq!(body["code"], "woocommerce_rest_request_entity_too_large");
    // The cap counts create, update and delete together.
    let creates: Vec<Json> = (0..60).map(|n| json!({"name": format!("N{n}")})).collect();
    let updates: Vec<Json> = (0..41).map(|n| json!({"id": n + 1})).collect();
    let (status, _, _) =
        client.call("POST", "/products/batch", Some(json!({"create": creates, "update": updates}))).await;
    assert_eq!(status, 413);
    let body = json!({"create": [
        {"name": "A", "sku": "DUP", "regular_price": "5.00"},
        {"name": "B", "sku": "DUP", "regular_price": "6.00"},
        {"name": "C", "sku": "C-1", "regular_price": "7"},
        {"name": "D", "sku": "D-1", "regular_price": 7},
    ]});
    let (status, _, body) = client.call("POST", "/products/batch", Some(body)).await;
    assert_eq!(status, 200, "per-item errors keep the response 200");
    let created = body["create"].as_array().unwrap();
    assert_eq!(created.len(), 4);
    assert!(created[0]["id"].as_u64().unwrap() > 0 && created[0]["error"].is_null());
    assert_eq!(created[1]["error"]["code"], "product_invalid_sku");
    assert_eq!(created[1]["error"]["data"]["status"], 400);
    assert!(created[2]["error"].is_null());
    assert_eq!(created[3]["error"]["code"], "rest_invalid_param", "prices are strings");
    let first = created[0]["id"].as_u64().unwrap();
    let body = json!({"update": [{"id": first, "regular_price": "9.50"}, {"id": 999_999, "name": "ghost"}], "delete": [first + 1000]});
    let (status, _, body) = client.call("POST", "/products/batch", Some(body)).await;
    assert_eq!(status, 200);
    assert_eq!(body["update"][0]["regular_price"], "9.50");
    assert_eq!(body["update"][1]["id"], 999_999);
    assert_eq!(body["update"][1]["error"]["code"], "woocommerce_rest_product_invalid_id");
    assert_eq!(body["delete"][0]["error"]["data"]["status"], 404);
    // A variation cannot take a SKU a product has.
    let (_, _, parent) =
        client.call("POST", "/products", Some(json!({"name": "V", "type": "variable", "sku": "V-1"}))).await;
    let parent = parent["id"].as_u64().unwrap();
    let body = json!({"create": [{"sku": "DUP", "regular_price": "1.00"}, {"sku": "V-1-S", "regular_price": "1.00"}]});
    let (status, _, body) = client.call("POST", &format!("/products/{parent}/variations/batch"), Some(body)).await;
    assert_eq!(status, 200);
    assert_eq!(body["create"][0]["error"]["code"], "product_invalid_sku");
    assert_eq!(body["create"][1]["sku"], "V-1-S");
    let (_, _, product) = client.call("GET", &format!("/products/{parent}"), None).await;
    assert_eq!(product["variations"].as_array().unwrap().len(), 1);
    // Injected failures are per item too.
    client.sim.set_faults(Faults { batch_item_failures: 1, ..Faults::default() });
    let body = json!({"create": [{"name": "E", "sku": "E-1"}, {"name": "F", "sku": "F-1"}]});
    let (status, _, body) = client.call("POST", "/products/batch", Some(body)).await;
    assert_eq!(status, 200);
    assert_eq!(body["create"][0]["error"]["data"]["status"], 500);
    assert_eq!(body["create"][1]["sku"], "F-1");
}

#[tokio::test]
async fn customers_have_unique_emails_and_orders_validate_statuses() {
    let client = Client::new(WooSimConfig { seed: Some(SeedConfig::default()), ..frozen() }).await;
    let (status, _, body) =
        client.call("POST", "/customers", Some(json!({"email": "a@example.com", "first_name": "A"}))).await;
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = client.call("POST", "/customers", Some(json!({"email": "A@example.com"}))).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("registration-error-email-exists")));
    let (_, _, body) = client.call("GET", "/customers?email=a@example.com", None).await;
    assert_eq!(body.as_array().unwrap().len(), 1);
    let order = client.sim.checkout(&erpsync_sim::woocommerce::server::Checkout {
        email: "a@example.com".into(),
        lines: vec![("SIM-1".into(), 2)],
        coupon: Some("SAVE10".into()),
        payment_method: "sim_card".into(),
        shipping_cents: 490,
    });
    let order = order.unwrap();
    assert_eq!(order["status"], "processing");
    let line = &order["line_items"][0];
    let subtotal = line["subtotal"].as_str().unwrap().parse::<f64>().unwrap();
    let total = line["total"].as_str().unwrap().parse::<f64>().unwrap();
    assert!((subtotal * 0.9 - total).abs() < 0.011, "{line}");
    let sum = total + 4.90 + order["total_tax"].as_str().unwrap().parse::<f64>().unwrap();
    assert!((sum - order["total"].as_str().unwrap().parse::<f64>().unwrap()).abs() < 0.001, "{order}");
    let id = order["id"].as_u64().unwrap();
    let (status, _, body) = client.call("PUT", &format!("/orders/{id}"), Some(json!({"status": "shipped"}))).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("rest_invalid_param")));
    let (status, _, body) = client.call("PUT", &format!("/orders/{id}"), Some(json!({"status": "completed"}))).await;
    assert_eq!(status, 200);
    assert!(body["date_completed_gmt"].is_string());
    let (status, _, _) = client
        .call(
            "POST",
            &format!("/orders/{id}/notes"),
            Some(json!({"note": "Shipped with DHL 123", "customer_note": true})),
        )
        .await;
    assert_eq!(status, 201);
    let (_, _, notes) = client.call("GET", &format!("/orders/{id}/notes"), None).await;
    assert!(
        notes.as_array().unwrap().iter().any(|n| n["note"] == "Shipped with DHL 123" && n["customer_note"] == true)
    );
    let item = order["line_items"][0]["id"].as_u64().unwrap();
    let refund = json!({"amount": "5.00", "reason": "damaged", "line_items": [{"id": item, "quantity": 1, "refund_total": "5.00"}]});
    let (status, _, body) = client.call("POST", &format!("/orders/{id}/refunds"), Some(refund)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["amount"], "5.00");
    let (_, _, order) = client.call("GET", &format!("/orders/{id}"), None).await;
    assert_eq!(order["refunds"][0]["total"], "-5.00");
}

type Recorded = Arc<Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;

/// A webhook receiver in the test: records every request, answers `status`.
struct Receiver {
    url: String,
    requests: Recorded,
    status: Arc<Mutex<u16>>,
}

async fn receiver() -> Receiver {
    use axum::extract::State;
    type Shared = (Recorded, Arc<Mutex<u16>>);
    async fn handle(
        State((requests, status)): State<Shared>,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::http::StatusCode {
        requests.lock().unwrap().push((headers, body.to_vec()));
        axum::http::StatusCode::from_u16(*status.lock().unwrap()).unwrap()
    }
    let requests = Arc::new(Mutex::new(Vec::new()));
    let status = Arc::new(Mutex::new(200));
    let router =
        axum::Router::new().route("/hook", axum::routing::post(handle)).with_state((requests.clone(), status.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Receiver { url, requests, status }
}

async fn wait_for(mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 2 s");
}

#[tokio::test]
async fn webhooks_ping_on_creation_sign_the_raw_body_and_carry_the_wc_headers() {
    let client = Client::new(frozen()).await;
    let hook = receiver().await;
    let (status, _, webhook) = client
        .call(
            "POST",
            "/webhooks",
            Some(json!({"name": "erp", "topic": "product.created", "delivery_url": hook.url, "secret": "whsec"})),
        )
        .await;
    assert_eq!(status, 201, "{webhook}");
    assert_eq!((webhook["resource"].as_str(), webhook["event"].as_str()), (Some("product"), Some("created")));
    assert!(webhook.get("secret").is_none(), "the secret is write-only");
    wait_for(|| hook.requests.lock().unwrap().len() == 1).await;
    {
        let requests = hook.requests.lock().unwrap();
        let (headers, body) = &requests[0];
        assert_eq!(String::from_utf8_lossy(body), format!("webhook_id={}", webhook["id"]));
        assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
        assert!(headers.get("x-wc-webhook-signature").is_none());
    }
    let (_, _, product) = client.call("POST", "/products", Some(json!({"name": "Hooked", "sku": "H-1"}))).await;
    wait_for(|| hook.requests.lock().unwrap().len() == 2).await;
    let requests = hook.requests.lock().unwrap();
    let (headers, body) = &requests[1];
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"whsec").unwrap();
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(headers["x-wc-webhook-signature"], expected.as_str());
    assert_eq!(headers["x-wc-webhook-topic"], "product.created");
    assert_eq!(headers["x-wc-webhook-resource"], "product");
    assert_eq!(headers["x-wc-webhook-event"], "created");
    assert_eq!(headers["x-wc-webhook-id"], webhook["id"].to_string().as_str());
    assert_eq!(headers["x-wc-webhook-source"], format!("{}/", client.sim.base_url()).as_str());
    assert!(!headers["x-wc-webhook-delivery-id"].is_empty());
    let delivered: Json = serde_json::from_slice(body).unwrap();
    assert_eq!(delivered["id"], product["id"]);
    assert_eq!(delivered["sku"], "H-1");
}

#[tokio::test]
async fn a_webhook_is_disabled_after_consecutive_failures_and_never_retried() {
    let client = Client::new(frozen()).await;
    let hook = receiver().await;
    *hook.status.lock().unwrap() = 500;
    let (_, _, webhook) = client
        .call("POST", "/webhooks", Some(json!({"topic": "customer.created", "delivery_url": hook.url, "secret": "s"})))
        .await;
    let id = webhook["id"].as_u64().unwrap();
    wait_for(|| hook.requests.lock().unwrap().len() == 1).await; // the ping
    let status = || client.sim.with_store(|s| (s.webhooks[&id].status.clone(), s.webhooks[&id].failure_count));
    for n in 1..=7u32 {
        client.call("POST", "/customers", Some(json!({"email": format!("c{n}@example.com")}))).await;
        wait_for(|| hook.requests.lock().unwrap().len() == 1 + n as usize).await;
        wait_for(|| client.sim.deliveries().iter().filter(|d| !d.ping).count() == n as usize).await;
        let (state, failures) = status();
        if n < 7 {
            assert_eq!((state.as_str(), failures), ("active", n), "after failure {n}");
        } else {
            // WooCommerce disables when a failure finds the count already above 5.
            assert_eq!(state, "disabled", "after failure {n}");
        }
    }
    client.call("POST", "/customers", Some(json!({"email": "late@example.com"}))).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hook.requests.lock().unwrap().len(), 8, "no delivery to a disabled webhook, and no retries");
    // A success resets the count.
    let (_, _, webhook) = client
        .call("POST", "/webhooks", Some(json!({"topic": "customer.updated", "delivery_url": hook.url, "secret": "s"})))
        .await;
    let second = webhook["id"].as_u64().unwrap();
    let customer = client.sim.with_store(|s| *s.customers.keys().next().unwrap());
    client.call("PUT", &format!("/customers/{customer}"), Some(json!({"first_name": "X"}))).await;
    wait_for(|| client.sim.with_store(|s| s.webhooks[&second].failure_count) == 1).await;
    *hook.status.lock().unwrap() = 200;
    client.call("PUT", &format!("/customers/{customer}"), Some(json!({"first_name": "Y"}))).await;
    wait_for(|| client.sim.with_store(|s| s.webhooks[&second].failure_count) == 0).await;
}

#[tokio::test]
async fn faults_give_5xx_and_truncated_bodies() {
    let client = Client::new(frozen()).await;
    client.sim.set_faults(Faults { server_errors: 1, truncated_bodies: 1, ..Faults::default() });
    let (status, _, body) = client.call("GET", "/products", None).await;
    assert_eq!(status, 503);
    assert_eq!(body["data"]["status"], 503);
    client.call("POST", "/products", Some(json!({"name": "T"}))).await;
    client.sim.set_faults(Faults { truncated_bodies: 1, ..Faults::default() });
    let (status, _, body) = client.call("GET", "/products", None).await;
    assert_eq!(status, 200);
    assert!(body.is_string(), "the body is cut and is not JSON: {body}");
    let (status, _, body) = client.call("GET", "/nothing/here", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("rest_no_route")));
}
