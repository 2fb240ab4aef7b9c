//! The admin API, `/metrics` and the OpenAPI document through the real router, in process,
//! over a real SQLite store and the files connector: every endpoint answers as documented,
//! tokens and roles are enforced, a dead letter is edited and retried with the audit log naming
//! who did it, a paused flow gets no scheduled or webhook-triggered run, the document lists
//! every route (and docs/api.md every one of them), and `/metrics` is valid Prometheus text
//! whose counters move with a sync.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use erpsync_engine::config::Config;
use erpsync_engine::shutdown::{self, Shutdown};
use erpsync_engine::{Engine, RunOptions};
use erpsync_store::{NewInboxDelivery, Store, TokenRole};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// Two good rows and one with a negative price (a dead letter holding a readable record).
const CATALOG: &str = "code,title,sku,price,currency\n\
                       GOOD-1,Good one,GOOD-1,10.00,EUR\n\
                       NEG-1,Negative price,NEG-1,-1.00,EUR\n\
                       GOOD-2,Good two,GOOD-2,11.00,EUR\n";

struct Setup {
    dir: tempfile::TempDir,
    engine: Arc<Engine>,
    router: Router,
    viewer: String,
    operator: String,
    admin: String,
}

/// `flow` is the product flow's name: tests that read shared metrics use their own.
async fn setup(flow: &str, interval: Option<&str>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("erp")).unwrap();
    std::fs::create_dir_all(dir.path().join("shop")).unwrap();
    std::fs::write(dir.path().join("erp/products.csv"), CATALOG).unwrap();
    let trigger = interval.map(|every| format!("interval = \"{every}\"")).unwrap_or_default();
    let config = format!(
        r#"
[queue]
max_deliveries = 2

[systems.erp]
type = "files"
path = "erp"
format = "csv"

[systems.shop]
type = "files"
path = "shop"
format = "jsonl"

[flows.{flow}]
entity = "product"
source = "erp"
target = "shop"
{trigger}
"#
    );
    let config = Config::parse(&config, &dir.path().join("erpsync.toml")).unwrap();
    let store: Arc<dyn Store> =
        Arc::new(erpsync_store::sqlite::SqliteStore::open(&dir.path().join("state.db")).await.unwrap());
    let engine = Arc::new(Engine::new(Arc::new(config), store));
    let mut secrets = Vec::new();
    for (name, role) in [("grafana", TokenRole::Viewer), ("anna", TokenRole::Operator), ("root", TokenRole::Admin)] {
        secrets.push(engine.create_token(name, role, "test").await.unwrap().secret);
    }
    let router = erpsync_server::router(engine.clone());
    let [viewer, operator, admin] = <[String; 3]>::try_from(secrets).unwrap();
    Setup { dir, engine, router, viewer, operator, admin }
}

impl Setup {
    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let (status, text) = self.call_text(method, path, token, body).await;
        let value = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text));
        (status, value)
    }

    async fn call_text(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, String) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request.header("content-type", "application/json").body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    async fn get(&self, path: &str) -> Value {
        let (status, value) = self.call(Method::GET, path, Some(&self.viewer), None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {value}");
        value
    }

    async fn sync(&self, flow: &str) {
        let options = RunOptions { full: false, dry_run: false, trigger: "manual".into() };
        self.engine.sync(flow, &options, &Shutdown::never(), &|_| {}).await.unwrap();
    }

    async fn open_dead_letter(&self) -> i64 {
        let letters = self.get("/api/v1/dead-letters").await;
        let letters = letters.as_array().unwrap();
        assert_eq!(letters.len(), 1, "{letters:?}");
        letters[0]["id"].as_i64().unwrap()
    }
}

#[tokio::test]
async fn every_endpoint_answers_as_documented() {
    let setup = setup("products", None).await;
    setup.sync("products").await;

    let systems = setup.get("/api/v1/systems").await;
    let names: Vec<&str> = systems.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["erp", "shop"]);
    assert_eq!(systems[0]["source_of"], json!(["products"]));
    assert_eq!(systems[1]["target_of"], json!(["products"]));
    assert_eq!(systems[0]["connector"], "files");

    let health = setup.get("/api/v1/systems/erp/health").await;
    assert_eq!(health["healthy"], true, "{health}");
    assert_eq!(health["checks"][0]["check"], "read product", "{health}");
    let (status, _) = setup.call(Method::GET, "/api/v1/systems/nowhere/health", Some(&setup.viewer), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A system whose folder is gone fails its check with 503 and says why.
    std::fs::remove_dir_all(setup.dir.path().join("erp")).unwrap();
    let (status, health) = setup.call(Method::GET, "/api/v1/systems/erp/health", Some(&setup.viewer), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["healthy"], false);
    std::fs::create_dir_all(setup.dir.path().join("erp")).unwrap();
    std::fs::write(setup.dir.path().join("erp/products.csv"), CATALOG).unwrap();

    let flows = setup.get("/api/v1/flows").await;
    assert_eq!(flows[0]["name"], "products");
    assert_eq!(flows[0]["last_run"]["status"], "partially_failed", "{flows}");
    assert_eq!(flows[0]["open_failures"], 1);
    assert!(flows[0]["lag_seconds"].as_i64().unwrap() >= 0);
    assert_eq!(flows[0]["paused"], Value::Null);
    assert_eq!(setup.get("/api/v1/flows/products").await["name"], "products");
    let (status, _) = setup.call(Method::GET, "/api/v1/flows/nothing", Some(&setup.viewer), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, paused) = setup
        .call(
            Method::POST,
            "/api/v1/flows/products/pause",
            Some(&setup.operator),
            Some(json!({"reason": "stock take"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["paused"]["paused_by"], "token:anna");
    assert_eq!(paused["paused"]["reason"], "stock take");
    let (status, refused) = setup.call(Method::POST, "/api/v1/flows/products/run", Some(&setup.operator), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "a paused flow is not run: {refused}");
    assert!(refused["message"].as_str().unwrap().contains("paused by token:anna"), "{refused}");
    let (status, resumed) =
        setup.call(Method::POST, "/api/v1/flows/products/resume", Some(&setup.operator), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resumed["paused"], Value::Null);

    let (status, queued) = setup.call(Method::POST, "/api/v1/flows/products/run", Some(&setup.operator), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["full"], false);
    let job = setup.engine.store().job(queued["job_id"].as_i64().unwrap()).await.unwrap().unwrap();
    assert_eq!(job.kind, "run_flow");
    assert_eq!(job.payload["key"], "flow:products", "{}", job.payload);
    assert_eq!(job.payload["payload"]["full"], false);
    let (status, again) = setup.call(Method::POST, "/api/v1/flows/products/resync", Some(&setup.operator), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "one queued run per flow: {again}");
    // Once the queued run is done, a full resync is queued.
    let claimed = setup.engine.store().claim_jobs("test", &["run_flow"], Duration::from_secs(60), 1).await;
    setup.engine.store().complete_job(claimed.unwrap()[0].id, "test").await.unwrap();
    let (status, queued) = setup.call(Method::POST, "/api/v1/flows/products/resync", Some(&setup.operator), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["full"], true);

    let runs = setup.get("/api/v1/runs").await;
    let run_id = runs[0]["id"].as_i64().unwrap();
    assert_eq!(runs[0]["counts"]["created"], 2, "{runs}");
    assert_eq!(runs[0]["counts"]["failed"], 1);
    assert!(runs[0]["duration_seconds"].as_f64().is_some());
    assert_eq!(setup.get("/api/v1/runs?status=partially_failed&flow=products").await.as_array().unwrap().len(), 1);
    assert!(setup.get("/api/v1/runs?status=failed").await.as_array().unwrap().is_empty());
    assert!(setup.get(&format!("/api/v1/runs?before={run_id}")).await.as_array().unwrap().is_empty());
    let (status, _) = setup.call(Method::GET, "/api/v1/runs?status=bogus", Some(&setup.viewer), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(setup.get(&format!("/api/v1/runs/{run_id}")).await["counts"]["read"], 3);
    let (status, _) = setup.call(Method::GET, "/api/v1/runs/99999", Some(&setup.viewer), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let trace = setup.get("/api/v1/records?key=GOOD-1").await;
    let links: BTreeSet<&str> =
        trace["records"][0]["links"].as_array().unwrap().iter().map(|l| l["system"].as_str().unwrap()).collect();
    assert_eq!(links, BTreeSet::from(["erp", "shop"]), "{trace}");
    assert_eq!(trace["records"][0]["events"][0]["action"], "created");
    let (status, _) = setup.call(Method::GET, "/api/v1/records?key=NOPE", Some(&setup.viewer), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let letter_id = setup.open_dead_letter().await;
    let detail = setup.get(&format!("/api/v1/dead-letters/{letter_id}")).await;
    assert_eq!(detail["source_id"], "NEG-1", "{detail}");
    assert_eq!(detail["payload"]["raw"]["price"], "-1.00", "the row as read: {detail}");
    assert_eq!(detail["history"][0]["event"], "failed");
    assert!(setup.get("/api/v1/dead-letters?status=all&flow=products").await.as_array().unwrap().len() == 1);
    let (status, _) = setup.call(Method::GET, "/api/v1/dead-letters?status=bogus", Some(&setup.viewer), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = setup.call(Method::GET, "/api/v1/dead-letters/99999", Some(&setup.viewer), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A raw row cannot be retried as it is: the answer says to edit it into a record; bulk
    // retry reports the same per letter.
    let (status, refused) =
        setup.call(Method::POST, &format!("/api/v1/dead-letters/{letter_id}/retry"), Some(&setup.operator), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("edit the payload into a record"), "{refused}");
    let (status, bulk) = setup
        .call(Method::POST, "/api/v1/dead-letters/retry", Some(&setup.operator), Some(json!({"flow": "products"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{bulk}");
    assert_eq!(bulk, json!([{ "id": letter_id, "resolved": false, "error": refused["message"] }]));

    let (status, _) = setup
        .call(
            Method::POST,
            &format!("/api/v1/dead-letters/{letter_id}/discard"),
            Some(&setup.operator),
            Some(json!({"reason": " "})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a reason is required");
    let (status, discarded) = setup
        .call(
            Method::POST,
            &format!("/api/v1/dead-letters/{letter_id}/discard"),
            Some(&setup.operator),
            Some(json!({"reason": "product withdrawn"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{discarded}");
    assert_eq!(discarded["status"], "discarded");
    let (status, _) = setup
        .call(
            Method::PUT,
            &format!("/api/v1/dead-letters/{letter_id}/payload"),
            Some(&setup.operator),
            Some(json!({"payload": detail["payload"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a discarded letter is not edited");

    let audit = setup.get("/api/v1/audit?limit=3").await;
    assert_eq!(audit.as_array().unwrap().len(), 3);
    assert_eq!(audit[0]["action"], "dead_letter.discard");
    assert_eq!(audit[0]["actor"], "token:anna");
    assert_eq!(audit[0]["details"]["reason"], "product withdrawn");

    let (status, tokens) = setup.call(Method::GET, "/api/v1/tokens", Some(&setup.admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens.as_array().unwrap().len(), 3);
    assert!(tokens.to_string().find("secret").is_none(), "no secret or hash in a list: {tokens}");
    let (status, issued) = setup
        .call(Method::POST, "/api/v1/tokens", Some(&setup.admin), Some(json!({"name": "ci", "role": "viewer"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let secret = issued["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("erpsync_") && secret.len() == 8 + 64, "{secret}");
    let (status, _) = setup.call(Method::GET, "/api/v1/flows", Some(&secret), None).await;
    assert_eq!(status, StatusCode::OK, "the new token works at once");
    let (status, _) = setup
        .call(Method::POST, "/api/v1/tokens", Some(&setup.admin), Some(json!({"name": "ci", "role": "viewer"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "one active token per name");
    let (status, _) =
        setup.call(Method::POST, "/api/v1/tokens", Some(&setup.admin), Some(json!({"name": "x", "role": "god"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = setup.call(Method::DELETE, "/api/v1/tokens/ci", Some(&setup.admin), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = setup.call(Method::GET, "/api/v1/flows", Some(&secret), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a revoked token stops working at once");
    let (status, _) = setup.call(Method::DELETE, "/api/v1/tokens/ci", Some(&setup.admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let audit = setup.get("/api/v1/audit?limit=2").await;
    assert_eq!(audit[0]["action"], "token.revoke");
    assert_eq!(audit[1]["action"], "token.create");
    assert_eq!(audit[1]["actor"], "token:root");

    // A job that failed on every delivery (`[queue] max_deliveries`, 2 here) is listed as a
    // dead job, with its last error. (Its own kind, so that no run queued above is taken.)
    assert_eq!(setup.get("/api/v1/jobs/dead").await, json!([]));
    let queue = setup.engine.queue().clone();
    let job = erpsync_queue::NewQueuedJob {
        kind: "dead_test".into(),
        // (Not `flow:products`: a run queued above and not taken holds that key.)
        key: "flow:products-dead".into(),
        dedupe_id: Some("api-test".into()),
        payload: json!({"flow": "products", "trigger": "schedule", "full": false}),
        not_before: None,
    };
    queue.publish(&job).await.unwrap();
    let mut attempts = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(std::time::Instant::now() < deadline, "the job never died");
        // A nak hands the job back when the queue next reclaims leases (every second).
        let Some(delivery) = queue.pull("test", &["dead_test"], 1, Duration::from_secs(60)).await.unwrap().pop() else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        attempts += 1;
        let nacked = queue.nak(&delivery, Duration::ZERO, "the ERP's folder is gone").await.unwrap();
        if nacked == erpsync_queue::Nacked::Dead {
            break;
        }
    }
    assert_eq!(attempts, 2);
    let dead = setup.get("/api/v1/jobs/dead?limit=5").await;
    assert_eq!(dead.as_array().unwrap().len(), 1, "{dead}");
    assert_eq!((dead[0]["flow"].as_str(), dead[0]["key"].as_str()), (Some("products"), Some("flow:products-dead")));
    assert_eq!(dead[0]["attempts"], attempts, "{dead}");
    assert_eq!(dead[0]["error"], "the ERP's folder is gone");
    assert_eq!(dead[0]["payload"]["trigger"], "schedule");

    // The dashboard's failures page lists it too, with a button to run the flow for operators.
    let page = |secret: String| {
        let request = Request::builder()
            .uri("/failures")
            .header("cookie", format!("erpsync_session={secret}"))
            .body(Body::empty())
            .unwrap();
        let router = setup.router.clone();
        async move {
            let response = router.oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let bytes = axum::body::to_bytes(response.into_body(), 1024 * 1024).await.unwrap();
            String::from_utf8(bytes.to_vec()).unwrap()
        }
    };
    let html = page(setup.operator.clone()).await;
    let section = &html[html.find("Dead jobs").expect("a dead jobs section")..];
    assert!(section.contains("<td>products</td><td>a pull</td><td>2</td>"), "{section}");
    assert!(section.contains("folder is gone"), "{section}");
    assert!(section.contains("action=\"/flows/products/run\""), "{section}");
    let html = page(setup.viewer.clone()).await;
    assert!(html.contains("folder is gone") && !html.contains("/flows/products/run"), "viewers only read: {html}");
}

#[tokio::test]
async fn tokens_and_roles_are_enforced() {
    let setup = setup("products", None).await;
    // No token, a malformed header, a wrong token: 401 with a Bearer challenge.
    for token in [None, Some("erpsync_0000"), Some("")] {
        let (status, body) = setup.call(Method::GET, "/api/v1/flows", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
    }
    let request = Request::get("/api/v1/flows").header("authorization", format!("Basic {}", setup.admin));
    let response = setup.router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "only Bearer tokens");
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    // A token differing in its last character is still wrong.
    let mut near = setup.admin.clone();
    let last = near.pop().unwrap();
    near.push(if last == '0' { '1' } else { '0' });
    assert_eq!(setup.call(Method::GET, "/api/v1/flows", Some(&near), None).await.0, StatusCode::UNAUTHORIZED);

    // Viewers read but do not act; operators act but do not manage tokens.
    let operator_actions = [
        (Method::POST, "/api/v1/flows/products/pause", None),
        (Method::POST, "/api/v1/flows/products/resume", None),
        (Method::POST, "/api/v1/flows/products/run", None),
        (Method::POST, "/api/v1/flows/products/resync", None),
        (Method::POST, "/api/v1/dead-letters/1/retry", None),
        (Method::POST, "/api/v1/dead-letters/retry", None),
        (Method::POST, "/api/v1/dead-letters/1/discard", Some(json!({"reason": "x"}))),
        (Method::PUT, "/api/v1/dead-letters/1/payload", Some(json!({"payload": {}}))),
    ];
    for (method, path, body) in operator_actions.iter().cloned() {
        let (status, answer) = setup.call(method.clone(), path, Some(&setup.viewer), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "viewer {method} {path}: {answer}");
        assert!(answer["message"].as_str().unwrap().contains("operator role"), "{answer}");
    }
    let admin_actions = [
        (Method::GET, "/api/v1/tokens", None),
        (Method::POST, "/api/v1/tokens", Some(json!({"name": "x", "role": "admin"}))),
        (Method::DELETE, "/api/v1/tokens/grafana", None),
    ];
    for (method, path, body) in admin_actions.iter().cloned() {
        for token in [&setup.viewer, &setup.operator] {
            let (status, answer) = setup.call(method.clone(), path, Some(token), body.clone()).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        }
    }
    // Every operation of the document, not only those above: no token and a wrong token are
    // refused with 401 before anything else is looked at, and every operation that is not a
    // read is one of the role-checked actions above.
    let (_, document) = setup.call(Method::GET, "/api/v1/openapi.json", None, None).await;
    let operations = documented_operations(&document);
    assert!(operations.len() >= 20, "{operations:?}");
    for (method, template) in &operations {
        let path = template
            .replace("{flow}", "products")
            .replace("{system}", "erp")
            .replace("{id}", "1")
            .replace("{name}", "grafana");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        for token in [None, Some(near.as_str()), Some("erpsync_not-a-token")] {
            let (status, answer) = setup.call(method.clone(), &path, token, Some(json!({}))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {token:?}: {answer}");
        }
        let role_checked =
            operator_actions.iter().chain(admin_actions.iter()).any(|(m, p, _)| *m == method && *p == path);
        assert!(
            method == Method::GET || role_checked,
            "{method} {template} changes something but is not checked for a role by this test"
        );
    }

    // Nothing of those refused actions happened.
    assert!(setup.engine.store().paused_flows().await.unwrap().is_empty());
    assert!(setup.engine.store().list_jobs(None, 10).await.unwrap().is_empty());
    assert_eq!(setup.engine.store().api_tokens(false).await.unwrap().len(), 3);

    // The document, health and metrics need no token; webhooks have their own verification.
    for path in ["/api/v1/openapi.json", "/healthz", "/readyz", "/metrics"] {
        assert_eq!(setup.call_text(Method::GET, path, None, None).await.0, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn a_dead_letter_is_edited_and_retried_and_the_audit_log_says_who() {
    let setup = setup("products", None).await;
    setup.sync("products").await;
    let id = setup.open_dead_letter().await;
    let detail = setup.get(&format!("/api/v1/dead-letters/{id}")).await;

    // Not a record: refused with the reason, nothing changed.
    let (status, refused) = setup
        .call(
            Method::PUT,
            &format!("/api/v1/dead-letters/{id}/payload"),
            Some(&setup.operator),
            Some(json!({"payload": {"sku": "NEG-1"}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("versioned form"), "{refused}");

    assert_eq!(detail["payload"]["raw"]["sku"], "NEG-1", "{detail}");
    let fixed = record_like(&setup.dir.path().join("shop"), "GOOD-1", "NEG-1");
    let (status, edited) = setup
        .call(
            Method::PUT,
            &format!("/api/v1/dead-letters/{id}/payload"),
            Some(&setup.operator),
            Some(json!({"payload": fixed})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["payload"], fixed);
    assert_eq!(edited["history"].as_array().unwrap().last().unwrap()["event"], "edited");

    let (status, retried) =
        setup.call(Method::POST, &format!("/api/v1/dead-letters/{id}/retry"), Some(&setup.operator), None).await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried, json!({ "id": id, "resolved": true, "error": null }));
    assert_eq!(setup.get(&format!("/api/v1/dead-letters/{id}")).await["status"], "resolved");
    assert!(setup.get("/api/v1/dead-letters").await.as_array().unwrap().is_empty());
    let (status, _) =
        setup.call(Method::POST, &format!("/api/v1/dead-letters/{id}/retry"), Some(&setup.operator), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "a resolved letter is not retried");

    // The record is in the shop now.
    let trace = setup.get("/api/v1/records?key=NEG-1").await;
    let systems: BTreeSet<&str> =
        trace["records"][0]["links"].as_array().unwrap().iter().map(|l| l["system"].as_str().unwrap()).collect();
    assert!(systems.contains("shop"), "{trace}");

    let audit = setup.get("/api/v1/audit").await;
    let actions: Vec<(&str, &str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    let target = format!("dead_letter:{id}");
    assert_eq!(
        &actions[..2],
        &[("token:anna", "dead_letter.retry", target.as_str()), ("token:anna", "dead_letter.edit", target.as_str())],
        "{audit}"
    );
}

#[tokio::test]
async fn a_paused_flow_gets_no_scheduled_or_webhook_runs_until_resumed() {
    let setup = setup("products", Some("1s")).await;
    let (status, _) = setup.call(Method::POST, "/api/v1/flows/products/pause", Some(&setup.operator), None).await;
    assert_eq!(status, StatusCode::OK);
    let store = setup.engine.store().clone();

    // A webhook for the paused flow's source is settled without a run.
    store
        .insert_inbox(&NewInboxDelivery {
            system: "erp".into(),
            delivery_id: "d-1".into(),
            topic: "products".into(),
            headers: json!({}),
            body: b"{}".to_vec(),
            received_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    assert_eq!(setup.engine.process_inbox().await.unwrap(), 0);
    assert!(store.pending_inbox(10).await.unwrap().is_empty(), "the delivery is settled");
    assert!(store.list_jobs(None, 10).await.unwrap().is_empty(), "and queued no run");

    let (trigger, listener) = shutdown::channel();
    let scheduler = tokio::spawn({
        let engine = setup.engine.clone();
        async move { engine.serve(listener).await }
    });
    // Three intervals pass: no run.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert!(store.list_runs(Some("products"), 10).await.unwrap().is_empty(), "a paused flow was run");
    let flow = setup.get("/api/v1/flows/products").await;
    assert_eq!(flow["paused"]["paused_by"], "token:anna", "{flow}");

    let (status, _) = setup.call(Method::POST, "/api/v1/flows/products/resume", Some(&setup.operator), None).await;
    assert_eq!(status, StatusCode::OK);
    let mut ran = false;
    for _ in 0..100 {
        if !store.list_runs(Some("products"), 10).await.unwrap().is_empty() {
            ran = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    trigger.trigger();
    scheduler.await.unwrap().unwrap();
    assert!(ran, "the resumed flow ran on its schedule");
}

/// Paths and methods of the OpenAPI document.
fn documented_operations(document: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_docs_api_md_every_one_of_them() {
    let setup = setup("products", None).await;
    let (status, text) = setup.call_text(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let document: Value = serde_json::from_str(&text).expect("the document is JSON");
    assert!(document["openapi"].as_str().unwrap().starts_with("3."), "{}", document["openapi"]);
    let documented = documented_operations(&document);
    assert!(document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer");

    // Every documented operation is served: a request reaches a handler (any answer but the
    // router's "no such endpoint" and 405).
    for (method, path) in &documented {
        let concrete = path
            .replace("{system}", "erp")
            .replace("{flow}", "products")
            .replace("{id}", "1")
            .replace("{name}", "nobody");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, body) = setup.call(method.clone(), &concrete, Some(&setup.admin), Some(json!({}))).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {concrete}");
        assert!(!body.to_string().contains("no such endpoint"), "{method} {concrete} is documented but not served");
    }

    // The other direction: API routes are registered only through utoipa-axum's `routes!`,
    // which adds a handler to the router and its operation to the document together, so the
    // served document must be exactly the generated one.
    let (router, generated) = erpsync_server::router_with_openapi(setup.engine.clone());
    drop(router);
    let generated = documented_operations(&serde_json::to_value(&generated).unwrap());
    assert_eq!(generated, documented, "the served document is the generated one");

    // docs/api.md has one heading per operation, `### METHOD /path`, and no other.
    let guide = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md")).unwrap();
    let in_guide: BTreeSet<(String, String)> = guide
        .lines()
        .filter_map(|line| line.strip_prefix("### `"))
        .filter_map(|line| line.strip_suffix('`'))
        .filter_map(|heading| heading.split_once(' '))
        .filter(|(_, path)| *path != "/api/v1/openapi.json")
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(in_guide, documented, "docs/api.md and the OpenAPI document differ");
    assert!(guide.contains("### `GET /api/v1/openapi.json`"));

    // A path that is not in the document is not served.
    let (status, body) = setup.call(Method::GET, "/api/v1/nothing-here", Some(&setup.admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.to_string().contains("no such endpoint"), "{body}");
}

/// A small check of the Prometheus text format (0.0.4): `# HELP` and `# TYPE` lines, samples
/// `name{label="value",...} number`, every sample of a declared family. Returns the samples.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name) = (parts.next().unwrap(), parts.next().expect("a metric name"));
            assert!(valid_name(name), "bad metric name in {line:?}");
            if keyword == "TYPE" {
                let kind = parts.next().expect("a type").to_string();
                assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind.as_str()), "{line}");
                types.insert(name.to_string(), kind);
            } else {
                assert_eq!(keyword, "HELP", "{line}");
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(valid_name(name), "bad metric name in {line:?}");
        let labels = &series[name.len()..];
        if !labels.is_empty() {
            let inner = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}')).expect("labels in braces");
            for pair in split_labels(inner) {
                let (label, quoted) = pair.split_once('=').unwrap_or_else(|| panic!("bad label in {line:?}"));
                assert!(valid_name(label), "bad label name in {line:?}");
                assert!(quoted.starts_with('"') && quoted.ends_with('"') && quoted.len() >= 2, "{line}");
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|t| t == "histogram" || t == "summary"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample without a # TYPE: {line:?}");
        samples.insert(series.to_string(), value);
    }
    samples
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Splits `a="x",b="y,z"` at the commas between pairs (not inside quoted values).
fn split_labels(inner: &str) -> Vec<&str> {
    let (mut pairs, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (index, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                pairs.push(&inner[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if start < inner.len() {
        pairs.push(&inner[start..]);
    }
    pairs
}

#[test]
fn the_prometheus_check_rejects_what_is_not_prometheus_text() {
    for bad in [
        "erpsync_x 1",
        "# TYPE erpsync_x counter\nerpsync_x one",
        "# TYPE 9x counter\n9x 1",
        "# TYPE x counter\nx{a=1} 1",
    ] {
        assert!(std::panic::catch_unwind(|| parse_prometheus(bad)).is_err(), "accepted {bad:?}");
    }
    let good = parse_prometheus("# HELP x X.\n# TYPE x counter\nx{a=\"1,2\",b=\"\"} 3\n");
    assert_eq!(good["x{a=\"1,2\",b=\"\"}"], 3.0);
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_counters_move_with_a_sync() {
    // Its own flow name: the recorder is shared by every test of this binary.
    let setup = setup("metered", None).await;
    let created = "erpsync_records_total{flow=\"metered\",entity=\"product\",outcome=\"created\"}";
    let runs = "erpsync_runs_total{flow=\"metered\",status=\"partially_failed\"}";
    let scrape = || async {
        let (status, text) = setup.call_text(Method::GET, "/metrics", None, None).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        parse_prometheus(&text)
    };
    let before = scrape().await;
    assert_eq!(before.get(created), None, "{before:?}");
    assert_eq!(before["erpsync_dead_letters_open{flow=\"metered\"}"], 0.0);
    assert_eq!(before["erpsync_flow_paused{flow=\"metered\"}"], 0.0);

    setup.sync("metered").await;
    let after = scrape().await;
    assert_eq!(after[created], 2.0, "{after:?}");
    assert_eq!(after["erpsync_records_total{flow=\"metered\",entity=\"product\",outcome=\"failed\"}"], 1.0);
    assert_eq!(after[runs], 1.0);
    assert_eq!(after["erpsync_run_duration_seconds_count{flow=\"metered\",status=\"partially_failed\"}"], 1.0);
    assert_eq!(after["erpsync_dead_letters_open{flow=\"metered\"}"], 1.0);
    assert!(after["erpsync_flow_lag_seconds{flow=\"metered\"}"] >= 0.0);
    assert!(after.contains_key("erpsync_inbox_pending"), "{after:?}");
    assert!(after.contains_key("erpsync_jobs{state=\"pending\"}"), "{after:?}");
    assert!(
        after.keys().any(|series| series
            .starts_with("erpsync_connector_calls_total{system=\"erp\",operation=\"read\",result=\"ok\"")),
        "{after:?}"
    );
    assert!(
        after
            .keys()
            .any(|series| series.starts_with("erpsync_connector_calls_total{system=\"shop\",operation=\"write\"")),
        "{after:?}"
    );

    // A second sync of the same file creates nothing: the created count stays, runs go up.
    setup.sync("metered").await;
    let again = scrape().await;
    assert_eq!(again[created], 2.0);
    let all_runs: f64 = again
        .iter()
        .filter(|(series, _)| series.starts_with("erpsync_runs_total{flow=\"metered\""))
        .map(|(_, value)| value)
        .sum();
    assert_eq!(all_runs, 2.0, "{again:?}");
}

/// The record the files sink wrote for `sku`, in the versioned form, with every `sku` turned
/// into `new_sku`: what an operator pastes into a dead letter whose row could not be read.
fn record_like(shop: &Path, sku: &str, new_sku: &str) -> Value {
    for entry in std::fs::read_dir(shop).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        if let Some(line) = text.lines().find(|line| line.contains(&format!("\"{sku}\""))) {
            let written: Value = serde_json::from_str(line).unwrap();
            let envelope = if written.get("v").is_some() { written } else { json!({ "v": 1, "record": written }) };
            return serde_json::from_str(&envelope.to_string().replace(sku, new_sku)).unwrap();
        }
    }
    panic!("no record with sku {sku} in {}", shop.display());
}
