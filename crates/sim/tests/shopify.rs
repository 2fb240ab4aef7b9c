//! The Shopify simulator checked against Shopify's documented behaviour: auth and versions,
//! cost arithmetic and the leaky bucket, pagination boundaries and search, productSet and
//! inventory semantics, webhook signatures and retries, bulk operations, faults.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use erpsync_sim::shopify::{Faults, PlanLimits, RetryPolicy, RunningSim, SeedConfig, ShopifyConfig, ShopifySim};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value as Json, json};
use sha2::Sha256;

const VERSION: &str = "2026-04";

struct Sim {
    running: RunningSim,
    client: reqwest::Client,
}

fn frozen_config() -> ShopifyConfig {
    ShopifyConfig {
        clock_start: "2026-01-01T00:00:00Z".parse().unwrap(),
        clock_scale: 0.0,
        bulk_step_delay: Duration::from_millis(5),
        ..ShopifyConfig::default()
    }
}

async fn start(config: ShopifyConfig) -> Sim {
    // reqwest is built with `rustls-no-provider` in this workspace; plain HTTP still needs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let running = ShopifySim::start(config).await.unwrap();
    Sim { running, client: reqwest::Client::new() }
}

impl Sim {
    async fn raw(&self, version: &str, token: &str, body: Json) -> (u16, reqwest::header::HeaderMap, String) {
        let response = self
            .client
            .post(self.running.graphql_url(version))
            .header("X-Shopify-Access-Token", token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }

    async fn gql_at(&self, version: &str, query: &str, variables: Json) -> Json {
        let token = self.running.access_token().to_string();
        let (status, _, text) = self.raw(version, &token, json!({"query": query, "variables": variables})).await;
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    async fn gql(&self, query: &str, variables: Json) -> Json {
        self.gql_at(VERSION, query, variables).await
    }

    async fn control(&self, path: &str, body: Json) -> Json {
        let url = format!("{}{path}", self.running.base_url());
        let response = self.client.post(url).json(&body).send().await.unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.unwrap()
    }

    async fn seed(&self, products: usize, variants: usize) {
        self.control(
            "/_sim/seed",
            json!({"seed": 7, "products": products, "variants_per_product": variants, "locations": 2, "customers": 3, "orders": 3}),
        )
        .await;
    }
}

fn cost(response: &Json) -> (u64, Option<u64>, u64) {
    let cost = &response["extensions"]["cost"];
    (
        cost["requestedQueryCost"].as_u64().unwrap(),
        cost["actualQueryCost"].as_u64(),
        cost["throttleStatus"]["currentlyAvailable"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn token_and_versions_follow_shopify() {
    let sim = start(frozen_config()).await;
    let query = json!({"query": "{ shop { name } }"});
    let (status, _, body) = sim.raw(VERSION, "wrong", query.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<Json>(&body).unwrap(),
        json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"})
    );
    let token = sim.running.access_token().to_string();
    let (status, headers, _) = sim.raw(VERSION, &token, query.clone()).await;
    assert_eq!((status, headers["x-shopify-api-version"].to_str().unwrap()), (200, VERSION));
    // An unsupported old version falls forward to the oldest supported one.
    let (status, headers, _) = sim.raw("2023-01", &token, query.clone()).await;
    assert_eq!((status, headers["x-shopify-api-version"].to_str().unwrap()), (200, "2025-07"));
    let (status, _, _) = sim.raw("2025-05", &token, query).await;
    assert_eq!(status, 404);
    sim.running.shutdown().await;
}

#[tokio::test]
async fn malformed_documents_get_graphql_errors_with_locations() {
    let sim = start(frozen_config()).await;
    let response = sim.gql("{ products(first: 1) { edges { node { id } }", json!({})).await;
    assert!(response.get("data").is_none());
    assert_eq!(response["errors"][0]["locations"][0], json!({"line": 1, "column": 45}));
    let response = sim.gql("{ products { edges { node { id } } } }", json!({})).await;
    assert_eq!(response["errors"][0]["message"], "you must provide one of first or last");
    sim.running.shutdown().await;
}

#[tokio::test]
async fn costs_are_debited_up_front_and_refunded_to_actual() {
    let sim = start(frozen_config()).await;
    sim.seed(3, 2).await;
    let response = sim.gql("{ shop { id } }", json!({})).await;
    assert_eq!(cost(&response), (1, Some(1), 1999));
    assert_eq!(response["extensions"]["cost"]["throttleStatus"]["maximumAvailable"], 2000.0);
    assert_eq!(response["extensions"]["cost"]["throttleStatus"]["restoreRate"], 100.0);
    // 2 + 10 × 1 requested; 3 products exist, so 2 + 3 × 1 actual.
    let response = sim.gql("{ products(first: 10) { edges { node { id title } } } }", json!({})).await;
    assert_eq!(cost(&response), (12, Some(5), 1994));
    // Nested: 2 + 10 × (1 + (2 + 5 × 1)); actual 2 + 3 × (1 + 2 + 2).
    let response =
        sim.gql("{ products(first: 10) { nodes { id variants(first: 5) { nodes { sku } } } } }", json!({})).await;
    assert_eq!(cost(&response), (82, Some(17), 1977));
    // Mutations cost 10.
    let response =
        sim.gql("mutation { customerCreate(input: {email: \"a@b.c\"}) { customer { id } } }", json!({})).await;
    assert_eq!(cost(&response), (10, Some(10), 1967));
    sim.running.shutdown().await;
}

#[tokio::test]
async fn an_empty_bucket_throttles_with_http_200_and_restores_over_time() {
    let sim = start(frozen_config()).await;
    sim.seed(3, 1).await;
    sim.control("/_sim/plan", json!({"plan": "standard", "drain": true})).await;
    let query = "{ products(first: 50) { edges { node { id } } } }";
    let response = sim.gql(query, json!({})).await;
    assert!(response.get("data").is_none(), "{response}");
    assert_eq!(response["errors"][0]["extensions"]["code"], "THROTTLED");
    assert_eq!(response["errors"][0]["message"], "Throttled");
    assert_eq!(cost(&response), (52, None, 0));
    // 100 points per second: after 0.5 s there are 50, not enough; after 1 s 100.
    sim.running.advance_clock(Duration::from_millis(500));
    assert_eq!(sim.gql(query, json!({})).await["errors"][0]["extensions"]["code"], "THROTTLED");
    sim.running.advance_clock(Duration::from_millis(500));
    let response = sim.gql(query, json!({})).await;
    assert_eq!(cost(&response), (52, Some(5), 95));
    // It never restores past the maximum.
    sim.running.advance_clock(Duration::from_secs(3600));
    let response = sim.gql("{ shop { id } }", json!({})).await;
    assert_eq!(cost(&response).2, 1999);
    // Plus: 20000 restoring 1000/s.
    let status = sim.control("/_sim/plan", json!({"plan": "plus"})).await;
    assert_eq!(status["maximumAvailable"], 20000.0);
    assert_eq!(PlanLimits::PLUS.restore_rate, 1000.0);
    sim.running.shutdown().await;
}

#[tokio::test]
async fn queries_over_1000_points_are_refused() {
    let sim = start(frozen_config()).await;
    let response = sim
        .gql(
            "{ products(first: 250) { edges { node { id variants(first: 10) { edges { node { id } } } } } } }",
            json!({}),
        )
        .await;
    assert!(response.get("data").is_none());
    assert_eq!(response["errors"][0]["extensions"]["code"], "MAX_COST_EXCEEDED");
    assert_eq!(response["errors"][0]["extensions"]["cost"], 2 + 250 * (1 + 2 + 10));
    assert_eq!(response["errors"][0]["extensions"]["maxCost"], 1000);
    // Nothing was debited.
    assert_eq!(cost(&response).2, 2000);
    sim.running.shutdown().await;
}

#[tokio::test]
async fn pages_hold_at_most_250_and_cursors_walk_everything_once() {
    let sim = start(frozen_config()).await;
    sim.seed(300, 1).await;
    let ok = sim.gql("{ products(first: 250) { nodes { id } pageInfo { hasNextPage endCursor } } }", json!({})).await;
    assert_eq!(ok["data"]["products"]["nodes"].as_array().unwrap().len(), 250);
    assert_eq!(ok["data"]["products"]["pageInfo"]["hasNextPage"], true);
    let too_many = sim.gql("{ products(first: 251) { nodes { id } } }", json!({})).await;
    assert!(too_many.get("data").is_none());
    assert!(too_many["errors"][0]["message"].as_str().unwrap().contains("250"));

    let query = "query($after: String) { products(first: 70, after: $after, sortKey: ID) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }";
    let mut seen = Vec::new();
    let mut after = Json::Null;
    loop {
        let response = sim.gql(query, json!({"after": after})).await;
        let connection = &response["data"]["products"];
        for edge in connection["edges"].as_array().unwrap() {
            seen.push(edge["node"]["id"].as_str().unwrap().to_string());
        }
        if connection["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = connection["pageInfo"]["endCursor"].clone();
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (300, 300));
    // Reverse order starts at the end.
    let reversed = sim.gql("{ products(first: 1, reverse: true) { nodes { id } } }", json!({})).await;
    assert_eq!(reversed["data"]["products"]["nodes"][0]["id"].as_str().unwrap(), seen.last().unwrap());
    sim.running.shutdown().await;
}

#[tokio::test]
async fn updated_at_filters_are_strict_or_inclusive_and_ties_break_by_id() {
    let sim = start(frozen_config()).await;
    sim.seed(5, 1).await;
    let ids: Vec<String> =
        sim.gql("{ products(first: 5) { nodes { id } } }", json!({})).await["data"]["products"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect();
    sim.running.advance_clock(Duration::from_secs(10));
    for id in [&ids[3], &ids[1], &ids[2]] {
        sim.control("/_sim/touch", json!({"id": id})).await;
    }
    let query = "query($q: String, $after: String) { products(first: 2, after: $after, query: $q, sortKey: UPDATED_AT) { nodes { id updatedAt } pageInfo { hasNextPage endCursor } } }";
    let count = |response: &Json| response["data"]["products"]["nodes"].as_array().unwrap().len();
    let after_t0 = sim.gql(query, json!({"q": "updated_at:>'2026-01-01T00:00:00Z'"})).await;
    assert_eq!(count(&after_t0), 2);
    assert_eq!(after_t0["data"]["products"]["nodes"][0]["id"], ids[1].as_str());
    assert_eq!(after_t0["data"]["products"]["nodes"][0]["updatedAt"], "2026-01-01T00:00:10Z");
    let next = sim
        .gql(query, json!({"q": "updated_at:>'2026-01-01T00:00:00Z'", "after": after_t0["data"]["products"]["pageInfo"]["endCursor"]}))
        .await;
    assert_eq!(next["data"]["products"]["nodes"][0]["id"], ids[3].as_str());
    assert_eq!(next["data"]["products"]["pageInfo"]["hasNextPage"], false);
    let strict = sim.gql(query, json!({"q": "updated_at:>'2026-01-01T00:00:10Z'"})).await;
    assert_eq!(count(&strict), 0);
    let inclusive = sim.gql(query, json!({"q": "updated_at:>='2026-01-01T00:00:10Z'"})).await;
    assert_eq!(count(&inclusive), 2);
    let before = sim.gql(query, json!({"q": "updated_at:<'2026-01-01T00:00:10Z'"})).await;
    assert_eq!(count(&before), 2);
    let upto = sim
        .gql("{ products(first: 10, query: \"updated_at:<='2026-01-01T00:00:10Z'\") { nodes { id } } }", json!({}))
        .await;
    assert_eq!(count(&upto), 5);
    let by_sku = sim
        .gql("{ productVariants(first: 10, query: \"sku:SKU-00002-1\") { nodes { sku product { id } } } }", json!({}))
        .await;
    assert_eq!(by_sku["data"]["productVariants"]["nodes"][0]["product"]["id"], ids[1].as_str());
    let numeric = ids[2].rsplit('/').next().unwrap();
    let by_id =
        sim.gql(&format!("{{ products(first: 10, query: \"id:>{numeric}\") {{ nodes {{ id }} }} }}"), json!({})).await;
    assert_eq!(count(&by_id), 2);
    sim.running.shutdown().await;
}

const PRODUCT_SET: &str = r#"
mutation Set($input: ProductSetInput!, $identifier: ProductSetIdentifiers) {
  productSet(input: $input, identifier: $identifier, synchronous: true) {
    product { id handle title updatedAt variants(first: 10) { nodes { id sku price selectedOptions { name value } } } }
    userErrors { code field message }
  }
}"#;

fn sized(sizes: &[(&str, &str, &str)]) -> Json {
    json!(sizes
        .iter()
        .map(|(size, sku, price)| json!({"sku": sku, "price": price, "optionValues": [{"optionName": "Size", "name": size}]}))
        .collect::<Vec<_>>())
}

fn options(values: &[&str]) -> Json {
    json!([{"name": "Size", "values": values.iter().map(|v| json!({"name": v})).collect::<Vec<_>>()}])
}

#[tokio::test]
async fn product_set_replaces_variant_lists_and_reports_user_errors() {
    let sim = start(frozen_config()).await;
    sim.seed(0, 1).await;
    let created = sim
        .gql(
            PRODUCT_SET,
            json!({"input": {"title": "Tee", "handle": "tee", "productOptions": options(&["S", "M", "L"]),
                   "variants": sized(&[("S", "T-S", "10.00"), ("M", "T-M", "10.00"), ("L", "T-L", "12.5")])}}),
        )
        .await;
    let product = &created["data"]["productSet"]["product"];
    assert_eq!(created["data"]["productSet"]["userErrors"], json!([]));
    let variants = product["variants"]["nodes"].as_array().unwrap();
    assert_eq!(variants.len(), 3);
    assert_eq!(variants[2]["price"], "12.5");
    let small_id = variants[0]["id"].clone();

    // Replace: S stays (same id), M and L are deleted, XL is new; by handle.
    sim.running.advance_clock(Duration::from_secs(5));
    let replaced = sim
        .gql(
            PRODUCT_SET,
            json!({"identifier": {"handle": "tee"}, "input": {"productOptions": options(&["S", "XL"]),
                   "variants": sized(&[("S", "T-S", "11.00"), ("XL", "T-XL", "14.00")])}}),
        )
        .await;
    let product = &replaced["data"]["productSet"]["product"];
    assert_eq!(product["title"], "Tee");
    assert_eq!(product["updatedAt"], "2026-01-01T00:00:05Z");
    let variants = product["variants"]["nodes"].as_array().unwrap();
    assert_eq!(variants.iter().map(|v| v["sku"].as_str().unwrap()).collect::<Vec<_>>(), vec!["T-S", "T-XL"]);
    assert_eq!(variants[0]["id"], small_id);
    let all = sim.gql("{ productVariants(first: 50) { nodes { sku } } }", json!({})).await;
    assert_eq!(all["data"]["productVariants"]["nodes"].as_array().unwrap().len(), 2);

    // Validation failures come back as userErrors with code and field, nothing applied.
    let invalid = sim
        .gql(
            PRODUCT_SET,
            json!({"identifier": {"id": product["id"]}, "input": {"productOptions": options(&["S", "M"]),
            "variants": [
                {"sku": "DUP", "price": "1.00", "optionValues": [{"optionName": "Size", "name": "S"}]},
                {"sku": "DUP", "price": "-1.00", "optionValues": [{"optionName": "Size", "name": "M"}]},
                {"sku": "X", "price": "1.00", "optionValues": []},
            ]}}),
        )
        .await;
    let errors = invalid["data"]["productSet"]["userErrors"].as_array().unwrap();
    let codes: Vec<&str> = errors.iter().map(|e| e["code"].as_str().unwrap()).collect();
    assert!(codes.contains(&"INVALID_VARIANT"), "{codes:?}");
    assert!(codes.contains(&"INVALID_INPUT"), "{codes:?}");
    assert!(codes.contains(&"NEED_TO_ADD_OPTION_VALUES"), "{codes:?}");
    assert!(errors.iter().any(|e| e["field"] == json!(["input", "variants", "1", "price"])));
    assert_eq!(invalid["data"]["productSet"]["product"], Json::Null);
    let unchanged = sim.gql("{ productVariants(first: 50) { nodes { sku } } }", json!({})).await;
    assert_eq!(unchanged["data"]["productVariants"]["nodes"].as_array().unwrap().len(), 2);

    let too_many: Vec<Json> = (0..2049).map(|n| json!({"sku": format!("S{n}"), "price": "1.00", "optionValues": [{"optionName": "Size", "name": format!("V{n}")}]})).collect();
    let values: Vec<String> = (0..2049).map(|n| format!("V{n}")).collect();
    let response = sim
        .gql(PRODUCT_SET, json!({"input": {"title": "Big", "productOptions": options(&values.iter().map(String::as_str).collect::<Vec<_>>()), "variants": too_many}}))
        .await;
    assert!(
        response["data"]["productSet"]["userErrors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["code"] == "VARIANTS_OVER_LIMIT")
    );
    let missing =
        sim.gql(PRODUCT_SET, json!({"identifier": {"id": "gid://shopify/Product/1"}, "input": {"title": "x"}})).await;
    assert_eq!(missing["data"]["productSet"]["userErrors"][0]["code"], "PRODUCT_DOES_NOT_EXIST");
    sim.running.shutdown().await;
}

const SET_QUANTITIES: &str = r#"
mutation Set($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { reason changes { name delta quantityAfterChange } }
    userErrors { code field message }
  }
}"#;

#[tokio::test]
async fn inventory_set_quantities_compares_and_replays_idempotent_keys() {
    let sim = start(frozen_config()).await;
    sim.seed(1, 1).await;
    let level = sim
        .gql(
            r#"{ productVariants(first: 1) { nodes { inventoryItem { id inventoryLevels(first: 1) { nodes { location { id } quantities(names: ["available", "on_hand"]) { name quantity } } } } } } }"#,
            json!({}),
        )
        .await;
    let item = &level["data"]["productVariants"]["nodes"][0]["inventoryItem"];
    let item_id = item["id"].clone();
    let level = &item["inventoryLevels"]["nodes"][0];
    let location_id = level["location"]["id"].clone();
    let available = level["quantities"][0]["quantity"].as_i64().unwrap();
    let input = |change_from: Json, quantity: i64| {
        let mut row = json!({"inventoryItemId": item_id, "locationId": location_id, "quantity": quantity});
        if !change_from.is_null() || change_from == json!("null") {
            row["changeFromQuantity"] = change_from;
        }
        json!({"name": "available", "reason": "correction", "quantities": [row]})
    };
    // From 2026-04 `changeFromQuantity` must be given and `@idempotent` is required.
    let omitted = sim.gql(SET_QUANTITIES, json!({"input": input(Json::Null, 5), "key": "k0"})).await;
    assert_eq!(omitted["data"]["inventorySetQuantities"], Json::Null);
    assert!(omitted["errors"][0]["message"].as_str().unwrap().contains("changeFromQuantity"));
    let no_key = sim
        .gql(
            "mutation($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) { userErrors { code } } }",
            json!({"input": input(json!(available), 5)}),
        )
        .await;
    assert!(no_key["errors"][0]["message"].as_str().unwrap().contains("@idempotent"));

    let stale = sim.gql(SET_QUANTITIES, json!({"input": input(json!(available + 1), 5), "key": "k1"})).await;
    let errors = &stale["data"]["inventorySetQuantities"]["userErrors"];
    assert_eq!(errors[0]["code"], "CHANGE_FROM_QUANTITY_STALE");
    assert_eq!(errors[0]["field"], json!(["input", "quantities", "0", "changeFromQuantity"]));

    let applied = sim.gql(SET_QUANTITIES, json!({"input": input(json!(available), available + 7), "key": "k2"})).await;
    let changes = &applied["data"]["inventorySetQuantities"]["inventoryAdjustmentGroup"]["changes"];
    assert_eq!(changes[0], json!({"name": "available", "delta": 7, "quantityAfterChange": available + 7}));
    // The same key replays the first result; the stale compare would fail if it ran again.
    let replay = sim.gql(SET_QUANTITIES, json!({"input": input(json!(available), available + 7), "key": "k2"})).await;
    assert_eq!(replay["data"], applied["data"]);
    // An explicit null skips the check.
    let mut unchecked = input(Json::Null, 3);
    unchecked["quantities"][0]["changeFromQuantity"] = Json::Null;
    let forced = sim.gql(SET_QUANTITIES, json!({"input": unchecked, "key": "k3"})).await;
    assert_eq!(forced["data"]["inventorySetQuantities"]["userErrors"], json!([]));
    // Before 2026-04: compareQuantity, or ignoreCompareQuantity.
    let old = sim
        .gql_at(
            "2025-10",
            "mutation($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) { userErrors { code } } }",
            json!({"input": {"name": "available", "reason": "correction", "quantities": [{"inventoryItemId": item_id, "locationId": location_id, "quantity": 1, "compareQuantity": 99}]}}),
        )
        .await;
    assert_eq!(old["data"]["inventorySetQuantities"]["userErrors"][0]["code"], "COMPARE_QUANTITY_STALE");
    sim.running.shutdown().await;
}

/// Requests a receiver got: headers and raw body.
type Request = (Vec<(String, String)>, Vec<u8>);
type Received = Arc<Mutex<Vec<Request>>>;

/// A webhook receiver on 127.0.0.1 that records (headers, raw body) and answers `status`.
async fn receiver(status: u16) -> (String, Received) {
    use axum::routing::post;
    let received: Received = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/hooks",
        post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                let headers =
                    headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
                store.lock().unwrap().push((headers, body.to_vec()));
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

async fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..500 {
        if let Some(value) = check() {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting");
}

const SUBSCRIBE: &str = r#"
mutation($topic: WebhookSubscriptionTopic!, $url: URL!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: {callbackUrl: $url, format: JSON}) {
    webhookSubscription { id topic } userErrors { field message }
  }
}"#;

#[tokio::test]
async fn webhooks_are_signed_over_the_raw_body() {
    let sim = start(ShopifyConfig { api_secret: "hush".into(), ..frozen_config() }).await;
    sim.seed(2, 1).await;
    let (url, received) = receiver(200).await;
    let created = sim.gql(SUBSCRIBE, json!({"topic": "ORDERS_CREATE", "url": url})).await;
    assert_eq!(created["data"]["webhookSubscriptionCreate"]["webhookSubscription"]["topic"], "ORDERS_CREATE");
    let listed = sim.gql("{ webhookSubscriptions(first: 10) { nodes { topic endpoint { ... on WebhookHttpEndpoint { callbackUrl } } } } }", json!({})).await;
    assert_eq!(listed["data"]["webhookSubscriptions"]["nodes"][0]["endpoint"]["callbackUrl"], url.as_str());
    sim.control("/_sim/orders", json!({"create": 1})).await;
    let (headers, body) = wait_for(|| received.lock().unwrap().first().cloned()).await;
    let header =
        |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone()).unwrap();
    // The documented check: base64(HMAC-SHA256(secret, raw body)) equals the header.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"hush").unwrap();
    mac.update(&body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(header("x-shopify-hmac-sha256"), expected);
    assert_eq!(header("x-shopify-topic"), "orders/create");
    assert_eq!(header("x-shopify-shop-domain"), "sim-shop.myshopify.com");
    assert!(!header("x-shopify-webhook-id").is_empty());
    assert!(!header("x-shopify-event-id").is_empty());
    assert!(header("x-shopify-triggered-at").starts_with("2026-01-01T00:00:00"));
    let order: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(order["name"], "#1004");

    // Duplicates keep the webhook id; bad signatures do not verify.
    sim.running.set_faults(Faults { webhook_duplicates: 1, ..Faults::default() });
    sim.control("/_sim/orders", json!({"create": 1})).await;
    let duplicates = wait_for(|| {
        let all = received.lock().unwrap().clone();
        (all.len() >= 3).then_some(all)
    })
    .await;
    let id = |i: usize| duplicates[i].0.iter().find(|(k, _)| k == "x-shopify-webhook-id").unwrap().1.clone();
    assert_eq!(id(1), id(2));
    sim.running.shutdown().await;
}

#[tokio::test]
async fn failed_deliveries_retry_eight_times_then_the_subscription_is_removed() {
    // 4 hours scaled by 1/10000 is 1.44 s.
    let sim = start(ShopifyConfig { webhook_time_scale: 0.0001, ..frozen_config() }).await;
    sim.seed(1, 1).await;
    let (url, received) = receiver(500).await;
    sim.gql(SUBSCRIBE, json!({"topic": "PRODUCTS_UPDATE", "url": url})).await;
    let id = sim.gql("{ products(first: 1) { nodes { id } } }", json!({})).await["data"]["products"]["nodes"][0]["id"]
        .clone();
    sim.control("/_sim/touch", json!({"id": id})).await;
    wait_for(|| (sim.running.deliveries().len() == 9).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(received.lock().unwrap().len(), 9);
    let ids: Vec<String> = sim.running.deliveries().iter().map(|d| d.webhook_id.clone()).collect();
    assert!(ids.iter().all(|i| i == &ids[0]), "every retry carries the same webhook id");
    wait_for(|| sim.running.with_state(|s| s.webhook_subscriptions.is_empty()).then_some(())).await;
    assert_eq!(RetryPolicy::current().delays.len(), 8);
    sim.running.shutdown().await;
}

async fn wait_bulk(sim: &Sim, kind: &str) -> Json {
    for _ in 0..200 {
        let response = sim
            .gql(
                &format!(
                    "{{ currentBulkOperation(type: {kind}) {{ id status errorCode objectCount rootObjectCount url }} }}"
                ),
                json!({}),
            )
            .await;
        let operation = response["data"]["currentBulkOperation"].clone();
        if operation["status"] == "COMPLETED" || operation["status"] == "FAILED" {
            return operation;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("bulk operation did not finish");
}

#[tokio::test]
async fn bulk_queries_write_jsonl_with_parent_ids() {
    let sim = start(frozen_config()).await;
    sim.seed(2, 2).await;
    let (url, received) = receiver(200).await;
    sim.gql(SUBSCRIBE, json!({"topic": "BULK_OPERATIONS_FINISH", "url": url})).await;
    let run = r#"mutation($q: String!) { bulkOperationRunQuery(query: $q) { bulkOperation { id status } userErrors { field message code } } }"#;
    let query = "{ products { edges { node { id title variants { edges { node { id sku } } } } } } }";
    let started = sim.gql(run, json!({"q": query})).await;
    assert_eq!(started["data"]["bulkOperationRunQuery"]["bulkOperation"]["status"], "CREATED");
    let second = sim.gql(run, json!({"q": query})).await;
    assert_eq!(second["data"]["bulkOperationRunQuery"]["userErrors"][0]["code"], "OPERATION_IN_PROGRESS");
    let operation = wait_bulk(&sim, "QUERY").await;
    assert_eq!(operation["status"], "COMPLETED");
    assert_eq!(operation["objectCount"], "6");
    assert_eq!(operation["rootObjectCount"], "2");
    let text = reqwest::get(operation["url"].as_str().unwrap()).await.unwrap().text().await.unwrap();
    let lines: Vec<Json> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 6);
    assert!(lines[0].get("__parentId").is_none() && lines[0].get("variants").is_none());
    assert_eq!(lines[1]["__parentId"], lines[0]["id"]);
    assert_eq!(lines[2]["__parentId"], lines[0]["id"]);
    assert_eq!(lines[4]["__parentId"], lines[3]["id"]);
    let (headers, body) = wait_for(|| received.lock().unwrap().first().cloned()).await;
    assert!(headers.iter().any(|(k, v)| k == "x-shopify-topic" && v == "bulk_operations/finish"));
    let finish: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(finish["status"], "completed");
    assert_eq!(finish["admin_graphql_api_id"], operation["id"]);
    sim.running.shutdown().await;
}

#[tokio::test]
async fn bulk_mutations_run_each_line_of_a_staged_upload() {
    let sim = start(frozen_config()).await;
    sim.seed(0, 1).await;
    let staged = sim
        .gql(
            r#"mutation { stagedUploadsCreate(input: [{resource: BULK_MUTATION_VARIABLES, filename: "vars.jsonl", mimeType: "text/jsonl", httpMethod: POST}]) {
                 stagedTargets { url resourceUrl parameters { name value } } userErrors { field message } } }"#,
            json!({}),
        )
        .await;
    let target = &staged["data"]["stagedUploadsCreate"]["stagedTargets"][0];
    let parameters = target["parameters"].as_array().unwrap();
    let key = parameters.iter().find(|p| p["name"] == "key").unwrap()["value"].as_str().unwrap().to_string();
    let lines = (0..3)
        .map(|n| {
            json!({"input": {"title": format!("Bulk {n}"), "variants": [{"sku": format!("B-{n}"), "price": "5.00"}]}})
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n");
    let boundary = "simboundary";
    let mut body = String::new();
    for parameter in parameters {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{}\r\n",
            parameter["name"].as_str().unwrap(),
            parameter["value"].as_str().unwrap()
        ));
    }
    body.push_str(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"vars.jsonl\"\r\nContent-Type: text/jsonl\r\n\r\n{lines}\r\n--{boundary}--\r\n"));
    let uploaded = reqwest::Client::new()
        .post(target["url"].as_str().unwrap())
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status().as_u16(), 201);
    let run = sim
        .gql(
            r#"mutation($m: String!, $path: String!) { bulkOperationRunMutation(mutation: $m, stagedUploadPath: $path) { bulkOperation { id status } userErrors { code message } } }"#,
            json!({"m": "mutation call($input: ProductSetInput!) { productSet(input: $input) { product { id title } userErrors { code message } } }", "path": key}),
        )
        .await;
    assert_eq!(run["data"]["bulkOperationRunMutation"]["userErrors"], json!([]));
    let operation = wait_bulk(&sim, "MUTATION").await;
    assert_eq!(operation["status"], "COMPLETED");
    let text = reqwest::get(operation["url"].as_str().unwrap()).await.unwrap().text().await.unwrap();
    let results: Vec<Json> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(results.len(), 3);
    assert_eq!(results[2]["data"]["productSet"]["product"]["title"], "Bulk 2");
    assert_eq!(results[2]["__lineNumber"], 2);
    let missing = sim
        .gql(
            r#"mutation { bulkOperationRunMutation(mutation: "mutation { productSet(input: {}) { product { id } } }", stagedUploadPath: "nope") { userErrors { code } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(missing["data"]["bulkOperationRunMutation"]["userErrors"][0]["code"], "NO_SUCH_FILE");
    sim.running.shutdown().await;
}

#[tokio::test]
async fn orders_fulfil_and_refund_with_money_bags() {
    let sim = start(frozen_config()).await;
    sim.seed(3, 2).await;
    let orders = sim
        .gql(
            r#"{ orders(first: 5, sortKey: UPDATED_AT, query: "updated_at:>='2025-12-31T00:00:00Z'") { nodes {
                 id name displayFinancialStatus displayFulfillmentStatus currencyCode
                 totalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
                 lineItems(first: 10) { nodes { id sku quantity originalUnitPriceSet { shopMoney { amount } } taxLines { rate priceSet { shopMoney { amount } } } } }
                 shippingLines(first: 5) { nodes { title originalPriceSet { shopMoney { amount } } } }
                 fulfillmentOrders(first: 5) { nodes { id status assignedLocation { name location { id name } } lineItems(first: 10) { nodes { id remainingQuantity } } } }
               } } }"#,
            json!({}),
        )
        .await;
    let order = &orders["data"]["orders"]["nodes"][0];
    assert_eq!(order["name"], "#1001");
    assert_eq!(order["totalPriceSet"]["shopMoney"]["currencyCode"], "EUR");
    assert_eq!(order["shippingLines"]["nodes"][0]["originalPriceSet"]["shopMoney"]["amount"], "4.9");
    let fulfillment_order = &order["fulfillmentOrders"]["nodes"][0];
    // The assigned location is a Location, with its name (a sink that matches locations by
    // name depends on it).
    assert_eq!(fulfillment_order["assignedLocation"]["name"], "Warehouse");
    assert_eq!(fulfillment_order["assignedLocation"]["location"]["name"], "Warehouse");
    assert!(
        fulfillment_order["assignedLocation"]["location"]["id"]
            .as_str()
            .unwrap()
            .starts_with("gid://shopify/Location/")
    );
    let first_line = &fulfillment_order["lineItems"]["nodes"][0];
    let fulfilled = sim
        .gql(
            r#"mutation($f: FulfillmentInput!) { fulfillmentCreate(fulfillment: $f) { fulfillment { id status trackingInfo { company number url } } userErrors { field message } } }"#,
            json!({"f": {"lineItemsByFulfillmentOrder": [{"fulfillmentOrderId": fulfillment_order["id"], "fulfillmentOrderLineItems": [{"id": first_line["id"], "quantity": 1}]}],
                         "trackingInfo": {"company": "DHL", "number": "123", "url": "https://dhl.example/123"}}}),
        )
        .await;
    assert_eq!(fulfilled["data"]["fulfillmentCreate"]["userErrors"], json!([]));
    assert_eq!(
        fulfilled["data"]["fulfillmentCreate"]["fulfillment"]["trackingInfo"][0],
        json!({"company": "DHL", "number": "123", "url": "https://dhl.example/123"})
    );
    let too_many = sim
        .gql(
            r#"mutation($f: FulfillmentInput!) { fulfillmentCreate(fulfillment: $f) { userErrors { message } } }"#,
            json!({"f": {"lineItemsByFulfillmentOrder": [{"fulfillmentOrderId": fulfillment_order["id"], "fulfillmentOrderLineItems": [{"id": first_line["id"], "quantity": 99}]}]}}),
        )
        .await;
    assert_eq!(too_many["data"]["fulfillmentCreate"]["userErrors"].as_array().unwrap().len(), 1);
    let line = &order["lineItems"]["nodes"][0];
    let refund = sim
        .gql(
            r#"mutation($input: RefundInput!) { refundCreate(input: $input) { refund { totalRefundedSet { shopMoney { amount } } } order { displayFinancialStatus } userErrors { field message } } }"#,
            json!({"input": {"orderId": order["id"], "refundLineItems": [{"lineItemId": line["id"], "quantity": 1, "restockType": "NO_RESTOCK"}],
                             "transactions": [{"orderId": order["id"], "gateway": "manual", "kind": "REFUND", "amount": "1.00"}]}}),
        )
        .await;
    assert_eq!(refund["data"]["refundCreate"]["userErrors"], json!([]));
    assert_eq!(refund["data"]["refundCreate"]["refund"]["totalRefundedSet"]["shopMoney"]["amount"], "1.0");
    assert_eq!(refund["data"]["refundCreate"]["order"]["displayFinancialStatus"], "PARTIALLY_REFUNDED");
    sim.running.shutdown().await;
}

#[tokio::test]
async fn b2b_fixed_prices_are_added_to_a_price_list() {
    let sim = start(frozen_config()).await;
    sim.seed(1, 2).await;
    let list = sim.gql(r#"mutation { priceListCreate(input: {name: "Dealers", currency: EUR}) { priceList { id } userErrors { message } } }"#, json!({})).await;
    let list_id = list["data"]["priceListCreate"]["priceList"]["id"].clone();
    let variant = sim.gql("{ productVariants(first: 1) { nodes { id } } }", json!({})).await["data"]["productVariants"]
        ["nodes"][0]["id"]
        .clone();
    let added = sim
        .gql(
            r#"mutation($id: ID!, $prices: [PriceListPriceInput!]!) { priceListFixedPricesAdd(priceListId: $id, prices: $prices) { prices { price { amount currencyCode } variant { id } } userErrors { code field message } } }"#,
            json!({"id": list_id, "prices": [
                {"variantId": variant, "price": {"amount": "8.50", "currencyCode": "EUR"}},
                {"variantId": "gid://shopify/ProductVariant/1", "price": {"amount": "1.00", "currencyCode": "EUR"}},
            ]}),
        )
        .await;
    let payload = &added["data"]["priceListFixedPricesAdd"];
    assert_eq!(payload["prices"][0]["price"], json!({"amount": "8.5", "currencyCode": "EUR"}));
    assert_eq!(payload["userErrors"][0]["code"], "VARIANT_NOT_FOUND");
    sim.running.shutdown().await;
}

#[tokio::test]
async fn faults_and_counters() {
    let sim = start(frozen_config()).await;
    sim.control("/_sim/faults", json!({"server_errors": 1, "truncated_bodies": 1, "throttled": 1})).await;
    let token = sim.running.access_token().to_string();
    let query = json!({"query": "{ shop { name } }"});
    let (status, _, _) = sim.raw(VERSION, &token, query.clone()).await;
    assert_eq!(status, 503);
    let (status, _, body) = sim.raw(VERSION, &token, query.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Json>(&body).unwrap()["errors"][0]["extensions"]["code"], "THROTTLED");
    let (_, _, body) = sim.raw(VERSION, &token, query.clone()).await;
    assert!(serde_json::from_str::<Json>(&body).is_err(), "a truncated body does not parse");
    let (_, _, body) = sim.raw(VERSION, &token, query).await;
    assert_eq!(serde_json::from_str::<Json>(&body).unwrap()["data"]["shop"]["name"], "sim-shop");
    let counters = sim.running.counters();
    assert_eq!((counters.mutations, counters.operations.get("shop").copied()), (0, Some(2)));
    let seeded = sim
        .control(
            "/_sim/seed",
            json!({"seed": 1, "products": 2, "variants_per_product": 1, "locations": 1, "customers": 1, "orders": 0}),
        )
        .await;
    assert_eq!(seeded["products"], 2);
    sim.running.shutdown().await;
}

#[tokio::test]
async fn seeds_are_deterministic() {
    let first = start(frozen_config()).await;
    let second = start(frozen_config()).await;
    first.seed(4, 2).await;
    second.seed(4, 2).await;
    let query = "{ products(first: 10) { nodes { id title variants(first: 5) { nodes { sku price } } } } }";
    assert_eq!(first.gql(query, json!({})).await["data"], second.gql(query, json!({})).await["data"]);
    let seed = SeedConfig::default();
    assert_eq!(seed.variants_per_product, 3);
    first.running.shutdown().await;
    second.running.shutdown().await;
}

#[tokio::test]
async fn catalog_and_inventory_changes_send_their_webhooks() {
    let sim = start(frozen_config()).await;
    sim.seed(0, 1).await;
    let (url, received) = receiver(200).await;
    for topic in ["PRODUCTS_CREATE", "PRODUCTS_UPDATE", "INVENTORY_LEVELS_UPDATE"] {
        sim.gql(SUBSCRIBE, json!({"topic": topic, "url": url})).await;
    }
    let location = sim.gql("{ locations(first: 1) { nodes { id } } }", json!({})).await["data"]["locations"]["nodes"]
        [0]["id"]
        .clone();
    let created = sim
        .gql(
            PRODUCT_SET,
            json!({"input": {"title": "Mug", "productOptions": options(&["One"]),
                   "variants": [{"sku": "MUG", "price": "7.00", "optionValues": [{"optionName": "Size", "name": "One"}],
                                 "inventoryQuantities": [{"locationId": location, "name": "available", "quantity": 4}]}]}}),
        )
        .await;
    let product_id = created["data"]["productSet"]["product"]["id"].clone();
    sim.gql(PRODUCT_SET, json!({"identifier": {"id": product_id}, "input": {"title": "Big Mug"}})).await;
    let topics = |all: &[Request]| -> Vec<String> {
        all.iter().map(|(h, _)| h.iter().find(|(k, _)| k == "x-shopify-topic").unwrap().1.clone()).collect()
    };
    let all = wait_for(|| {
        let all = received.lock().unwrap().clone();
        (all.len() >= 3).then_some(all)
    })
    .await;
    let mut seen = topics(&all);
    seen.sort();
    assert_eq!(seen, vec!["inventory_levels/update", "products/create", "products/update"]);
    let update = all.iter().find(|(h, _)| h.iter().any(|(_, v)| v == "products/update")).unwrap();
    let body: Json = serde_json::from_slice(&update.1).unwrap();
    assert_eq!(body["title"], "Big Mug");
    assert_eq!(body["variants"][0]["sku"], "MUG");
    assert_eq!(body["variants"][0]["price"], "7.00");
    let level = all.iter().find(|(h, _)| h.iter().any(|(_, v)| v == "inventory_levels/update")).unwrap();
    assert_eq!(serde_json::from_slice::<Json>(&level.1).unwrap()["available"], 4);
    sim.running.shutdown().await;
}

#[tokio::test]
async fn partial_failures_hit_batch_items_with_user_errors() {
    let sim = start(frozen_config()).await;
    sim.seed(2, 2).await;
    let list = sim
        .gql(r#"mutation { priceListCreate(input: {name: "B2B", currency: EUR}) { priceList { id } } }"#, json!({}))
        .await["data"]["priceListCreate"]["priceList"]["id"]
        .clone();
    let variants =
        sim.gql("{ productVariants(first: 4) { nodes { id } } }", json!({})).await["data"]["productVariants"]["nodes"]
            .clone();
    let prices: Vec<Json> = variants
        .as_array()
        .unwrap()
        .iter()
        .map(|v| json!({"variantId": v["id"], "price": {"amount": "3.00", "currencyCode": "EUR"}}))
        .collect();
    let add = r#"mutation($id: ID!, $prices: [PriceListPriceInput!]!) { priceListFixedPricesAdd(priceListId: $id, prices: $prices) { prices { variant { id } } userErrors { code field } } }"#;
    sim.control("/_sim/faults", json!({"partial_failure_rate": 1.0})).await;
    let failed = sim.gql(add, json!({"id": list, "prices": prices})).await;
    assert_eq!(failed["data"]["priceListFixedPricesAdd"]["userErrors"].as_array().unwrap().len(), 4);
    sim.control("/_sim/faults", json!({})).await;
    let passed = sim.gql(add, json!({"id": list, "prices": prices})).await;
    assert_eq!(passed["data"]["priceListFixedPricesAdd"]["prices"].as_array().unwrap().len(), 4);
    assert_eq!(sim.running.counters().mutations, 3);
    let clock = sim.control("/_sim/clock", json!({"advance_seconds": 90})).await;
    assert_eq!(clock["now"], "2026-01-01T00:01:30Z");
    sim.running.shutdown().await;
}

#[tokio::test]
async fn nodes_by_id_cost_one_object_per_id_and_return_null_for_unknown_ids() {
    let sim = start(frozen_config()).await;
    sim.seed(2, 1).await;
    let orders = sim.gql("{ orders(first: 3) { nodes { id } } }", json!({})).await;
    let mut ids: Vec<Json> =
        orders["data"]["orders"]["nodes"].as_array().unwrap().iter().map(|o| o["id"].clone()).collect();
    ids.push(json!("gid://shopify/Order/999999"));
    let query = "query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Order { name customer { id } lineItems(first: 5) { nodes { sku } } } ... on Product { title } } }";
    let response = sim.gql(query, json!({"ids": ids})).await;
    let nodes = response["data"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4, "one entry per id, in order");
    assert_eq!(nodes[0]["id"], ids[0]);
    assert!(nodes[3].is_null(), "an unknown id is null");
    let (requested, actual, _) = cost(&response);
    // Each id is one order: 1 + customer 1 + lineItems (2 + 5 × 1); the Product fragment
    // costs less, so the interface costs its Order selection.
    assert_eq!(requested, 4 * 9);
    assert!(actual.unwrap() < requested, "the missing order and short line lists are refunded");
    let too_many: Vec<String> = (1..=251).map(|n| format!("gid://shopify/Order/{n}")).collect();
    let refused = sim.gql("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", json!({"ids": too_many})).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "BAD_REQUEST", "{refused}");
    assert!(refused.get("data").is_none());
    sim.running.shutdown().await;
}

const ORDER_STATE: &str =
    "query($id: ID!) { order(id: $id) { cancelledAt cancelReason closed closedAt displayFinancialStatus } }";

#[tokio::test]
async fn orders_cancel_once_and_close_with_their_webhooks() {
    let sim = start(frozen_config()).await;
    sim.seed(2, 1).await;
    let (url, received) = receiver(200).await;
    for topic in ["ORDERS_CANCELLED", "ORDERS_UPDATED"] {
        sim.gql(SUBSCRIBE, json!({"topic": topic, "url": url})).await;
    }
    let orders = sim.gql("{ orders(first: 2) { nodes { id } } }", json!({})).await;
    let first = orders["data"]["orders"]["nodes"][0]["id"].clone();
    let second = orders["data"]["orders"]["nodes"][1]["id"].clone();
    let cancel = "mutation($id: ID!, $reason: OrderCancelReason!) { orderCancel(orderId: $id, reason: $reason, refundMethod: {originalPaymentMethodsRefund: false}, restock: true, notifyCustomer: false) { job { id done } orderCancelUserErrors { field message code } } }";
    let answer = sim.gql(cancel, json!({"id": first, "reason": "INVENTORY"})).await;
    let payload = &answer["data"]["orderCancel"];
    assert_eq!(payload["orderCancelUserErrors"], json!([]));
    assert!(payload["job"]["id"].as_str().unwrap().starts_with("gid://shopify/Job/"));
    let state = sim.gql(ORDER_STATE, json!({"id": first})).await;
    assert_eq!(state["data"]["order"]["cancelReason"], "INVENTORY");
    assert!(state["data"]["order"]["cancelledAt"].is_string());
    // Cancelling is irreversible and happens once; unknown orders and reasons are refused.
    let again = sim.gql(cancel, json!({"id": first, "reason": "INVENTORY"})).await;
    assert_eq!(again["data"]["orderCancel"]["orderCancelUserErrors"][0]["code"], "INVALID");
    let unknown = sim.gql(cancel, json!({"id": "gid://shopify/Order/999999", "reason": "OTHER"})).await;
    assert_eq!(unknown["data"]["orderCancel"]["orderCancelUserErrors"][0]["code"], "NOT_FOUND");
    let bad_reason = sim.gql(cancel, json!({"id": second, "reason": "BORED"})).await;
    assert!(bad_reason["errors"][0]["message"].as_str().unwrap().contains("OrderCancelReason"), "{bad_reason}");
    let no_restock = sim
        .gql(
            "mutation($id: ID!) { orderCancel(orderId: $id, reason: OTHER, refund: false) { job { id } } }",
            json!({"id": second}),
        )
        .await;
    assert!(no_restock["errors"][0]["message"].as_str().unwrap().contains("restock"), "{no_restock}");

    let close = "mutation($id: ID!) { orderClose(input: {id: $id}) { order { id closed closedAt } userErrors { field message } } }";
    let closed = sim.gql(close, json!({"id": second})).await;
    assert_eq!(closed["data"]["orderClose"]["order"]["closed"], true);
    assert_eq!(closed["data"]["orderClose"]["userErrors"], json!([]));
    let missing = sim.gql(close, json!({"id": "gid://shopify/Order/999999"})).await;
    assert_eq!(missing["data"]["orderClose"]["userErrors"][0]["field"], json!(["id"]));
    let status = sim.gql("{ orders(first: 5, query: \"status:closed\") { nodes { id } } }", json!({})).await;
    assert_eq!(status["data"]["orders"]["nodes"], json!([{"id": second}]));

    let all = wait_for(|| {
        let all = received.lock().unwrap().clone();
        (all.len() >= 3).then_some(all)
    })
    .await;
    let topic = |(headers, _): &(Vec<(String, String)>, Vec<u8>)| {
        headers.iter().find(|(k, _)| k == "x-shopify-topic").unwrap().1.clone()
    };
    let mut topics: Vec<String> = all.iter().map(topic).collect();
    topics.sort();
    assert_eq!(topics, ["orders/cancelled", "orders/updated", "orders/updated"]);
    let cancelled = all.iter().find(|delivery| topic(delivery) == "orders/cancelled").unwrap();
    let body: Json = serde_json::from_slice(&cancelled.1).unwrap();
    assert_eq!(body["admin_graphql_api_id"], first);
    assert_eq!(body["cancel_reason"], "inventory");
    sim.running.shutdown().await;
}

const METAFIELDS_SET: &str = "mutation($metafields: [MetafieldsSetInput!]!) { metafieldsSet(metafields: $metafields) { metafields { id namespace key value type ownerType } userErrors { field message code elementIndex } } }";

#[tokio::test]
async fn metafields_set_is_atomic_validates_types_and_updates_in_place() {
    let sim = start(frozen_config()).await;
    sim.seed(1, 1).await;
    let order =
        sim.gql("{ orders(first: 1) { nodes { id } } }", json!({})).await["data"]["orders"]["nodes"][0]["id"].clone();
    let field = |key: &str, kind: &str, value: &str| json!({"ownerId": order, "namespace": "erpsync", "key": key, "type": kind, "value": value});
    let set = sim
        .gql(
            METAFIELDS_SET,
            json!({"metafields": [
                field("invoice_number", "single_line_text_field", "INV-1"),
                field("invoice_date", "date", "2026-01-02"),
                field("invoice_total", "money", "{\"amount\":\"24.90\",\"currency_code\":\"EUR\"}"),
                field("invoice_url", "url", "https://erp.example.com/inv/1.pdf"),
            ]}),
        )
        .await;
    let written = set["data"]["metafieldsSet"]["metafields"].as_array().unwrap();
    assert_eq!(written.len(), 4, "{set}");
    assert_eq!(written[0]["ownerType"], "ORDER");
    let first_id = written[0]["id"].clone();

    // One bad value: nothing of the call is saved, and the error names its element.
    let refused = sim
        .gql(
            METAFIELDS_SET,
            json!({"metafields": [field("invoice_number", "single_line_text_field", "INV-2"), field("invoice_date", "date", "2nd of January")]}),
        )
        .await;
    let errors = &refused["data"]["metafieldsSet"]["userErrors"];
    assert_eq!(errors[0]["code"], "INVALID_VALUE");
    assert_eq!(errors[0]["elementIndex"], 1);
    assert_eq!(errors[0]["field"], json!(["metafields", "1", "value"]));
    let read = "query($id: ID!) { order(id: $id) { metafield(namespace: \"erpsync\", key: \"invoice_number\") { id value } metafields(first: 10, namespace: \"erpsync\") { nodes { key } } } }";
    let stored = sim.gql(read, json!({"id": order})).await;
    assert_eq!(stored["data"]["order"]["metafield"]["value"], "INV-1", "an atomic refusal saves nothing");
    assert_eq!(stored["data"]["order"]["metafields"]["nodes"].as_array().unwrap().len(), 4);

    // Setting again updates in place (same id); the type may be left out for an existing one.
    let update = sim
        .gql(METAFIELDS_SET, json!({"metafields": [{"ownerId": order, "namespace": "erpsync", "key": "invoice_number", "value": "INV-2"}]}))
        .await;
    assert_eq!(update["data"]["metafieldsSet"]["metafields"][0]["id"], first_id);
    assert_eq!(sim.gql(read, json!({"id": order})).await["data"]["order"]["metafield"]["value"], "INV-2");

    // Short keys, unknown owners, missing types and more than 25 inputs are refused.
    let checks = sim
        .gql(
            METAFIELDS_SET,
            json!({"metafields": [
                {"ownerId": order, "namespace": "erpsync", "key": "x", "type": "single_line_text_field", "value": "v"},
                {"ownerId": "gid://shopify/Order/999999", "namespace": "erpsync", "key": "k1", "type": "single_line_text_field", "value": "v"},
                {"ownerId": order, "namespace": "erpsync", "key": "brand_new", "value": "v"},
            ]}),
        )
        .await;
    let codes: Vec<&str> = checks["data"]["metafieldsSet"]["userErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["TOO_SHORT", "INVALID", "BLANK"]);
    let many: Vec<Json> = (0..26).map(|n| field(&format!("k{n}"), "single_line_text_field", "v")).collect();
    let over = sim.gql(METAFIELDS_SET, json!({"metafields": many})).await;
    assert_eq!(over["data"]["metafieldsSet"]["userErrors"][0]["code"], "LESS_THAN_OR_EQUAL_TO");
    sim.running.shutdown().await;
}

#[tokio::test]
async fn products_archive_with_product_update_and_delete_with_product_delete() {
    let sim = start(frozen_config()).await;
    sim.seed(2, 1).await;
    let products = sim.gql("{ products(first: 2) { nodes { id } } }", json!({})).await;
    let first = products["data"]["products"]["nodes"][0]["id"].clone();
    let second = products["data"]["products"]["nodes"][1]["id"].clone();
    let update = "mutation($product: ProductUpdateInput!) { productUpdate(product: $product) { product { id status } userErrors { field message } } }";
    let archived = sim.gql(update, json!({"product": {"id": first, "status": "ARCHIVED"}})).await;
    assert_eq!(archived["data"]["productUpdate"]["product"]["status"], "ARCHIVED");
    let variants = sim
        .gql("query($id: ID!) { product(id: $id) { variants(first: 5) { nodes { id } } } }", json!({"id": first}))
        .await;
    assert_eq!(variants["data"]["product"]["variants"]["nodes"].as_array().unwrap().len(), 1, "variants stay");
    let unknown =
        sim.gql(update, json!({"product": {"id": "gid://shopify/Product/999999", "status": "ARCHIVED"}})).await;
    assert_eq!(unknown["data"]["productUpdate"]["userErrors"][0]["field"], json!(["id"]));
    let bad = sim.gql(update, json!({"product": {"id": first, "status": "GONE"}})).await;
    assert!(bad["errors"][0]["message"].as_str().unwrap().contains("ProductStatus"), "{bad}");

    let delete =
        "mutation($id: ID!) { productDelete(input: {id: $id}) { deletedProductId userErrors { field message } } }";
    let deleted = sim.gql(delete, json!({"id": second})).await;
    assert_eq!(deleted["data"]["productDelete"]["deletedProductId"], second);
    let gone = sim.gql(delete, json!({"id": second})).await;
    assert_eq!(gone["data"]["productDelete"]["userErrors"][0]["message"], "Product does not exist");
    let node = sim.gql("query($id: ID!) { node(id: $id) { id } }", json!({"id": second})).await;
    assert!(node["data"]["node"].is_null());
    sim.running.shutdown().await;
}
