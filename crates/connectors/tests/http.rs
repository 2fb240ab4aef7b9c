//! The `http` connector against a small REST API served in process: every pagination style,
//! every authentication method, throttling with `Retry-After`, incremental reads with their
//! boundary, per-item errors in batches, matching by natural key, and webhook signatures.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use erpsync_connectors::http::{HttpConfig, HttpConnector};
use erpsync_connectors::{ErrorKind, ReadRequest, Sink, Source, WriteBatch, WriteItem, WriteOutcome};
use erpsync_model::{Checkpoint, EntityKind, Product, Record, Variant};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
struct Item {
    id: u64,
    sku: String,
    name: String,
    modified: DateTime<Utc>,
}

#[derive(Default)]
struct Api {
    items: Vec<Item>,
    requests: u64,
    /// Answer the next N requests with 429 and `Retry-After: 1`.
    throttle_next: u64,
    tokens_issued: u64,
    created: Vec<Value>,
    updated: Vec<Value>,
    next_id: u64,
}

type Shared = Arc<Mutex<Api>>;

fn item_json(item: &Item) -> Value {
    json!({ "id": item.id, "sku": item.sku, "name": item.name, "modified": item.modified.to_rfc3339() })
}

fn sorted(api: &Api, since: Option<&String>) -> Vec<Item> {
    let since = since.and_then(|text| DateTime::parse_from_rfc3339(text).ok()).map(|at| at.with_timezone(&Utc));
    let mut items: Vec<Item> =
        api.items.iter().filter(|item| since.is_none_or(|since| item.modified >= since)).cloned().collect();
    items.sort_by_key(|item| (item.modified, item.id));
    items
}

fn number(params: &HashMap<String, String>, name: &str, default: usize) -> usize {
    params.get(name).and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn check_throttle(api: &mut Api) -> Option<Response> {
    api.requests += 1;
    if api.throttle_next > 0 {
        api.throttle_next -= 1;
        return Some((StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response());
    }
    None
}

async fn page_style(
    State(api): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let mut api = api.lock().unwrap();
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer good-token") {
        return (StatusCode::UNAUTHORIZED, "bad token").into_response();
    }
    if let Some(response) = check_throttle(&mut api) {
        return response;
    }
    let items = sorted(&api, params.get("modified_since"));
    let (page, size) = (number(&params, "page", 1), number(&params, "per_page", 10));
    let slice: Vec<Value> = items.iter().skip((page - 1) * size).take(size).map(item_json).collect();
    axum::Json(Value::Array(slice)).into_response()
}

async fn offset_style(
    State(api): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let api = api.lock().unwrap();
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some("k3y") {
        return (StatusCode::FORBIDDEN, "no key").into_response();
    }
    let items = sorted(&api, None);
    let (offset, limit) = (number(&params, "offset", 0), number(&params, "limit", 10));
    let slice: Vec<Value> = items.iter().skip(offset).take(limit).map(item_json).collect();
    axum::Json(json!({ "data": slice, "total": items.len() })).into_response()
}

async fn cursor_style(
    State(api): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let api = api.lock().unwrap();
    // Basic "shop:pa55" is c2hvcDpwYTU1.
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Basic c2hvcDpwYTU1") {
        return (StatusCode::UNAUTHORIZED, "basic auth required").into_response();
    }
    let items = sorted(&api, None);
    let after: u64 = params.get("after").and_then(|v| v.parse().ok()).unwrap_or(0);
    let size = number(&params, "limit", 10);
    let slice: Vec<&Item> = items.iter().filter(|item| item.id > after).take(size).collect();
    let next = if slice.len() == size { slice.last().map(|item| item.id.to_string()) } else { None };
    axum::Json(
        json!({ "items": slice.iter().map(|item| item_json(item)).collect::<Vec<_>>(), "paging": { "next": next } }),
    )
    .into_response()
}

async fn link_style(
    State(api): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let api = api.lock().unwrap();
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !token.starts_with("Bearer oauth-") {
        return (StatusCode::UNAUTHORIZED, "oauth token required").into_response();
    }
    let items = sorted(&api, None);
    let page = number(&params, "p", 1);
    let size = 10;
    let slice: Vec<Value> = items.iter().skip((page - 1) * size).take(size).map(item_json).collect();
    let mut response = axum::Json(Value::Array(slice)).into_response();
    if page * size < items.len() {
        let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let link = format!("<http://{host}/link/products?p={}>; rel=\"next\"", page + 1);
        response.headers_mut().insert("link", link.parse().unwrap());
    }
    response
}

async fn oauth_token(State(api): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let mut api = api.lock().unwrap();
    // Basic "client:s3cret" is Y2xpZW50OnMzY3JldA==.
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Basic Y2xpZW50OnMzY3JldA==")
        || !body.contains("grant_type=client_credentials")
    {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({ "error": "invalid_client" }))).into_response();
    }
    api.tokens_issued += 1;
    axum::Json(
        json!({ "access_token": format!("oauth-{}", api.tokens_issued), "token_type": "bearer", "expires_in": 3600 }),
    )
    .into_response()
}

async fn hmac_style(State(api): State<Shared>, headers: HeaderMap) -> Response {
    let api = api.lock().unwrap();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"hmac-secret").unwrap();
    mac.update(format!("GET\n/hmac/products?page=1&per_page=10\n{}\n", header("x-timestamp")).as_bytes());
    if hex::encode(mac.finalize().into_bytes()) != header("x-signature") {
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let slice: Vec<Value> = sorted(&api, None).iter().take(10).map(item_json).collect();
    axum::Json(Value::Array(slice)).into_response()
}

/// WooCommerce-style batch: `{create: [...], update: [...]}`; a name containing "bad" fails.
async fn batch(State(api): State<Shared>, axum::Json(body): axum::Json<Value>) -> Response {
    let mut api = api.lock().unwrap();
    if let Some(response) = check_throttle(&mut api) {
        return response;
    }
    let mut created = Vec::new();
    for item in body["create"].as_array().cloned().unwrap_or_default() {
        if item["name"].as_str().unwrap_or_default().contains("bad") {
            created.push(json!({ "id": 0, "error": { "code": "invalid_name", "message": "the name is not allowed" } }));
            continue;
        }
        api.next_id += 1;
        let id = 1000 + api.next_id;
        api.created.push(item.clone());
        created.push(json!({ "id": id, "sku": item["sku"] }));
    }
    let mut updated = Vec::new();
    for item in body["update"].as_array().cloned().unwrap_or_default() {
        api.updated.push(item.clone());
        updated.push(json!({ "id": item["id"], "sku": item["sku"] }));
    }
    axum::Json(json!({ "create": created, "update": updated })).into_response()
}

async fn create_one(State(api): State<Shared>, axum::Json(body): axum::Json<Value>) -> Response {
    let mut api = api.lock().unwrap();
    if body["name"].as_str().unwrap_or_default().contains("bad") {
        return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({ "message": "the name is not allowed" })))
            .into_response();
    }
    api.next_id += 1;
    let id = 1000 + api.next_id;
    api.created.push(body);
    (StatusCode::CREATED, axum::Json(json!({ "id": id }))).into_response()
}

async fn update_one(
    State(api): State<Shared>,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::Json(mut body): axum::Json<Value>,
) -> Response {
    body["id"] = json!(id);
    api.lock().unwrap().updated.push(body);
    axum::Json(json!({ "id": id })).into_response()
}

async fn search(State(api): State<Shared>, Query(params): Query<HashMap<String, String>>) -> Response {
    let api = api.lock().unwrap();
    let found: Vec<Value> =
        api.items.iter().filter(|item| Some(&item.sku) == params.get("sku")).map(item_json).collect();
    axum::Json(Value::Array(found)).into_response()
}

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

async fn serve(n: u64) -> (String, Shared) {
    let items = (1..=n)
        .map(|id| Item {
            id,
            sku: format!("SKU-{id:03}"),
            name: format!("Item {id}"),
            modified: base_time() + ChronoDuration::seconds(id as i64 / 2),
        })
        .collect();
    let api: Shared = Arc::new(Mutex::new(Api { items, ..Api::default() }));
    let app = Router::new()
        .route("/page/products", get(page_style))
        .route("/offset/products", get(offset_style))
        .route("/cursor/products", get(cursor_style))
        .route("/link/products", get(link_style))
        .route("/hmac/products", get(hmac_style))
        .route("/oauth/token", post(oauth_token))
        .route("/products/batch", post(batch))
        .route("/products", post(create_one).get(search))
        .route("/products/{id}", put(update_one))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), api)
}

const TO_CANONICAL: &str = "{ 'code': sku, 'title': name, 'variants': [{ 'sku': sku }] }";

fn connector(toml_text: &str) -> HttpConnector {
    let config: HttpConfig = toml::from_str(toml_text).unwrap();
    let problems = config.validate();
    assert!(problems.is_empty(), "{problems:?}");
    HttpConnector::new("api", config).unwrap()
}

/// Reads every page from `checkpoint` to the end; returns source ids and the final checkpoint.
async fn read_all(connector: &HttpConnector, checkpoint: Checkpoint) -> (Vec<String>, Checkpoint) {
    let mut ids = Vec::new();
    let mut checkpoint = checkpoint;
    for _ in 0..1000 {
        let page = connector
            .read_page(&ReadRequest { entity: EntityKind::Product, checkpoint: &checkpoint, page_size: 100 })
            .await
            .unwrap();
        for record in &page.records {
            assert!(record.content.is_ok(), "{:?}", record.content);
            ids.push(record.source_id.clone());
        }
        checkpoint = page.checkpoint;
        if page.done {
            return (ids, checkpoint);
        }
    }
    panic!("pagination never ended");
}

fn expected_ids(n: u64) -> Vec<String> {
    (1..=n).map(|id| id.to_string()).collect()
}

#[tokio::test]
async fn every_pagination_style_with_its_authentication_reads_every_record_once() {
    let (base, api) = serve(35).await;
    let styles = [
        (
            "page",
            format!(r#"auth = {{ type = "bearer", token = {} }}"#, secret("good-token")),
            r#"pagination = { style = "page", size = 10 }"#,
            "",
        ),
        (
            "offset",
            format!(r#"auth = {{ type = "api_key", header = "X-Api-Key", key = {} }}"#, secret("k3y")),
            r#"pagination = { style = "offset", size = 10 }"#,
            r#"records = "data""#,
        ),
        (
            "cursor",
            format!(r#"auth = {{ type = "basic", username = "shop", password = {} }}"#, secret("pa55")),
            r#"pagination = { style = "cursor", cursor_param = "after", next_cursor = "paging.next", size_param = "limit", size = 10 }"#,
            r#"records = "items""#,
        ),
        (
            "link",
            format!(
                r#"auth = {{ type = "oauth2", token_url = "{base}/oauth/token", client_id = "client", client_secret = {} }}"#,
                secret("s3cret")
            ),
            r#"pagination = { style = "link" }"#,
            "",
        ),
    ];
    for (style, auth, pagination, records) in styles {
        let text = format!(
            "base_url = \"{base}\"\n{auth}\n[entities.product.read]\npath = \"/{style}/products\"\n{pagination}\n{records}\nto_canonical = \"{TO_CANONICAL}\"\n"
        );
        let (ids, _) = read_all(&connector(&text), Checkpoint::default()).await;
        assert_eq!(ids, expected_ids(35), "style {style}");
    }
    assert_eq!(api.lock().unwrap().tokens_issued, 1, "the OAuth token is cached between requests");

    // HMAC-signed requests.
    let text = format!(
        "base_url = \"{base}\"\nauth = {{ type = \"hmac\", secret = {} }}\n[entities.product.read]\npath = \"/hmac/products\"\npagination = {{ style = \"page\", size = 10 }}\nto_canonical = \"{TO_CANONICAL}\"\n",
        secret("hmac-secret")
    );
    let page = connector(&text)
        .read_page(&ReadRequest { entity: EntityKind::Product, checkpoint: &Checkpoint::default(), page_size: 10 })
        .await
        .unwrap();
    assert_eq!(page.records.len(), 10);

    // Wrong credentials are an auth error, not retried.
    let text = format!(
        "base_url = \"{base}\"\nauth = {{ type = \"bearer\", token = {} }}\n[entities.product.read]\npath = \"/page/products\"\n",
        secret("nope")
    );
    let error = connector(&text)
        .read_page(&ReadRequest { entity: EntityKind::Product, checkpoint: &Checkpoint::default(), page_size: 10 })
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Auth);
    assert!(!error.retryable);
}

/// A secret in a file, as the configuration refers to it: `{ file = "..." }`. The files live
/// in the system's temporary folder for the test run.
fn secret(value: &str) -> String {
    let path = std::env::temp_dir().join(format!("erpsync-http-test-{}-{}", std::process::id(), hex::encode(value)));
    std::fs::write(&path, value).unwrap();
    format!("{{ file = \"{}\" }}", path.display())
}

fn page_connector(base: &str, extra: &str) -> HttpConnector {
    connector(&format!(
        "base_url = \"{base}\"\nauth = {{ type = \"bearer\", token = {} }}\n{extra}\n[entities.product.read]\npath = \"/page/products\"\npagination = {{ style = \"page\", size = 10 }}\nincremental = {{ param = \"modified_since\", field = \"modified\", overlap = \"2s\" }}\nto_canonical = \"{TO_CANONICAL}\"\n",
        secret("good-token")
    ))
}

#[tokio::test]
async fn throttling_is_a_retryable_error_carrying_retry_after() {
    let (base, api) = serve(5).await;
    api.lock().unwrap().throttle_next = 1;
    let connector = page_connector(&base, "");
    let error = connector
        .read_page(&ReadRequest { entity: EntityKind::Product, checkpoint: &Checkpoint::default(), page_size: 10 })
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::RateLimited);
    assert!(error.retryable);
    assert_eq!(error.retry_after, Some(std::time::Duration::from_secs(1)));
    let (ids, _) = read_all(&connector, Checkpoint::default()).await;
    assert_eq!(ids.len(), 5);
}

#[tokio::test]
async fn incremental_reads_reach_back_and_never_miss_a_change_at_the_boundary() {
    let (base, api) = serve(25).await;
    let connector = page_connector(&base, "rate_limit = { per_second = 200 }");
    let (ids, checkpoint) = read_all(&connector, Checkpoint::default()).await;
    assert_eq!(ids.len(), 25);
    let newest = base_time() + ChronoDuration::seconds(12);
    assert_eq!(checkpoint.watermark, Some(newest), "the watermark is the newest change seen");

    // Two records change with exactly the watermark's time (a tie at the boundary), one a
    // second later; one old record does not change.
    {
        let mut api = api.lock().unwrap();
        api.items[0].modified = newest;
        api.items[1].modified = newest;
        api.items[2].modified = newest + ChronoDuration::seconds(1);
    }
    let (ids, _) = read_all(&connector, checkpoint).await;
    for id in ["1", "2", "3"] {
        assert!(ids.contains(&id.to_string()), "{id} missed: {ids:?}");
    }
    assert!(!ids.contains(&"4".to_string()), "an unchanged old record was read again: {ids:?}");
}

fn product(sku: &str, name: &str) -> Record {
    Record::Product(Product {
        code: sku.into(),
        title: name.into(),
        variants: vec![Variant { sku: sku.into(), ..Variant::default() }],
        ..Product::default()
    })
}

fn item(sku: &str, name: &str, target_id: Option<&str>) -> WriteItem {
    WriteItem { target_id: target_id.map(str::to_string), natural_key: sku.into(), record: product(sku, name) }
}

const FROM_CANONICAL: &str = "{ 'sku': code, 'name': title }";

#[tokio::test]
async fn batches_fail_item_by_item_and_updates_carry_the_target_id() {
    let (base, api) = serve(0).await;
    let connector = connector(&format!(
        "base_url = \"{base}\"\n[entities.product.write]\nbatch = {{ path = \"/products/batch\", max = 2 }}\nfrom_canonical = \"{FROM_CANONICAL}\"\n"
    ));
    assert_eq!(connector.max_batch_size(EntityKind::Product), 2);
    let batch = WriteBatch {
        entity: EntityKind::Product,
        batch_id: "b1".into(),
        items: vec![item("A", "good", None), item("B", "bad one", None), item("C", "changed", Some("77"))],
    };
    let outcomes = connector.write_batch(&batch).await.unwrap();
    assert!(matches!(&outcomes[0], WriteOutcome::Created { target_id } if target_id == "1001"), "{outcomes:?}");
    assert!(
        matches!(&outcomes[1], WriteOutcome::Failed(error) if error.kind == ErrorKind::InvalidRequest && error.to_string().contains("not allowed")),
        "{outcomes:?}"
    );
    assert!(matches!(&outcomes[2], WriteOutcome::Updated { target_id } if target_id == "77"), "{outcomes:?}");
    assert_eq!(api.lock().unwrap().updated, vec![json!({ "sku": "C", "name": "changed", "id": 77 })]);

    // A throttled batch fails whole and retryable: the engine sends it again, same batch id.
    api.lock().unwrap().throttle_next = 1;
    let error = connector.write_batch(&batch).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::RateLimited);
    assert!(error.retryable && error.retry_after.is_some());
}

#[tokio::test]
async fn single_writes_create_update_and_match_by_natural_key() {
    let (base, api) = serve(3).await;
    let connector = connector(&format!(
        "base_url = \"{base}\"\n[entities.product.write]\ncreate = {{ path = \"/products\" }}\nupdate = {{ method = \"PUT\", path = \"/products/{{id}}\" }}\nlookup = {{ path = \"/products\", param = \"sku\" }}\nfrom_canonical = \"{FROM_CANONICAL}\"\n"
    ));
    assert!(Sink::capabilities(&connector, EntityKind::Product).lookup);
    let found = connector.lookup(EntityKind::Product, &["SKU-002".into(), "NEW".into()]).await.unwrap();
    assert_eq!(found, vec![Some("2".to_string()), None]);
    let batch = WriteBatch {
        entity: EntityKind::Product,
        batch_id: "b".into(),
        items: vec![item("NEW", "fresh", None), item("SKU-002", "renamed", Some("2")), item("X", "bad", None)],
    };
    let outcomes = connector.write_batch(&batch).await.unwrap();
    assert!(matches!(&outcomes[0], WriteOutcome::Created { target_id } if target_id == "1001"), "{outcomes:?}");
    assert!(matches!(&outcomes[1], WriteOutcome::Updated { target_id } if target_id == "2"), "{outcomes:?}");
    assert!(matches!(&outcomes[2], WriteOutcome::Failed(error) if !error.retryable), "{outcomes:?}");
    assert_eq!(api.lock().unwrap().updated[0]["id"], "2");
}

#[tokio::test]
async fn records_that_do_not_convert_are_problems_not_failures_of_the_page() {
    let (base, api) = serve(3).await;
    api.lock().unwrap().items[1].sku = String::new();
    let connector = page_connector(&base, "");
    let page = connector
        .read_page(&ReadRequest { entity: EntityKind::Product, checkpoint: &Checkpoint::default(), page_size: 10 })
        .await
        .unwrap();
    assert_eq!(page.records.len(), 3);
    let problem = page.records[1].content.as_ref().unwrap_err();
    assert_eq!(problem.kind, "validation");
    assert!(problem.message.contains("sku"), "{}", problem.message);
    assert!(page.records[0].content.is_ok() && page.records[2].content.is_ok());
}

#[test]
fn configuration_problems_are_all_reported_with_their_field() {
    let config: HttpConfig = toml::from_str(
        r#"
base_url = "ftp://x"
timeout = "soon"
[entities.product.read]
path = "products"
to_canonical = "{ 'code': "
[entities.product.write]
update = { method = "PUT", path = "/products" }
[entities.produkt.read]
path = "/x"
"#,
    )
    .unwrap();
    let fields: Vec<String> = config.validate().into_iter().map(|(field, _)| field).collect();
    for expected in [
        "base_url",
        "timeout",
        "entities.product.read.path",
        "entities.product.read.to_canonical",
        "entities.product.write",
        "entities.product.write.update.path",
        "entities.produkt",
    ] {
        assert!(fields.iter().any(|field| field == expected), "{expected} not in {fields:?}");
    }
}
