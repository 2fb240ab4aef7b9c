//! The Odoo simulator checked over HTTP against Odoo's documented behaviour: authentication,
//! domains, `write_date` boundaries, batch creates, x2many commands, error shapes of both
//! protocols, the sales workflow, the invoice PDF, seeding and fault injection.

use std::time::Duration;

use erpsync_sim::odoo::{OdooSim, OdooSimConfig, RunningOdooSim, SeedConfig};
use serde_json::{Value, json};

const DB: &str = "odoo";
const PASSWORD: &str = "admin";

async fn start() -> RunningOdooSim {
    OdooSim::start(OdooSimConfig::default()).await.expect("simulator starts")
}

async fn start_seeded() -> RunningOdooSim {
    let config = OdooSimConfig { seed: Some(SeedConfig::default()), ..OdooSimConfig::default() };
    OdooSim::start(config).await.expect("simulator starts")
}

/// An HTTP client; the workspace builds reqwest without a TLS crypto provider, so one is
/// installed first (plain HTTP never uses it, but the client refuses to build without one).
fn client() -> reqwest::Client {
    client_builder().build().expect("client")
}

fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

fn api_key() -> String {
    OdooSimConfig::default().api_key
}

/// Posts a JSON-RPC call and returns the whole envelope.
async fn rpc(sim: &RunningOdooSim, service: &str, method: &str, args: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "method": "call", "params": {"service": service, "method": method, "args": args}, "id": 7});
    let response = client().post(format!("{}/jsonrpc", sim.base_url())).json(&body).send().await.expect("request");
    assert_eq!(response.status(), 200, "JSON-RPC always answers HTTP 200");
    response.json().await.expect("json body")
}

/// `execute_kw`, returning the envelope.
async fn execute_kw(sim: &RunningOdooSim, model: &str, method: &str, args: Value, kwargs: Value) -> Value {
    rpc(sim, "object", "execute_kw", json!([DB, 2, PASSWORD, model, method, args, kwargs])).await
}

/// `execute_kw` that must succeed, returning `result`.
async fn call(sim: &RunningOdooSim, model: &str, method: &str, args: Value, kwargs: Value) -> Value {
    let envelope = execute_kw(sim, model, method, args, kwargs).await;
    assert!(envelope.get("error").is_none(), "unexpected error: {envelope}");
    envelope["result"].clone()
}

async fn json2(sim: &RunningOdooSim, model: &str, method: &str, body: Value) -> (u16, Value) {
    let response = client()
        .post(format!("{}/json/2/{model}/{method}", sim.base_url()))
        .header("Authorization", format!("bearer {}", api_key()))
        .header("X-Odoo-Database", DB)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json body"))
}

async fn control(sim: &RunningOdooSim, path: &str, body: Value) -> Value {
    let response = client().post(format!("{}/_sim/{path}", sim.base_url())).json(&body).send().await.expect("request");
    assert_eq!(response.status(), 200, "control call {path}");
    response.json().await.expect("json body")
}

fn ids(value: &Value) -> Vec<i64> {
    value.as_array().expect("array").iter().map(|item| item["id"].as_i64().expect("id")).collect()
}

#[tokio::test]
async fn authenticate_returns_uid_or_false() {
    let sim = start().await;
    assert_eq!(rpc(&sim, "common", "authenticate", json!([DB, "admin", PASSWORD, {}])).await["result"], json!(2));
    // An API key stands in for the password.
    assert_eq!(rpc(&sim, "common", "authenticate", json!([DB, "admin", api_key(), {}])).await["result"], json!(2));
    assert_eq!(rpc(&sim, "common", "authenticate", json!([DB, "admin", "wrong", {}])).await["result"], json!(false));
    let version = rpc(&sim, "common", "version", json!([])).await;
    assert_eq!(version["result"]["protocol_version"], json!(1));
    // A wrong password on execute_kw raises AccessDenied inside an HTTP 200 envelope.
    let denied = rpc(&sim, "object", "execute_kw", json!([DB, 2, "wrong", "res.partner", "search", [[]], {}])).await;
    assert_eq!(denied["error"]["code"], json!(200));
    assert_eq!(denied["error"]["message"], json!("Odoo Server Error"));
    assert_eq!(denied["error"]["data"]["name"], json!("odoo.exceptions.AccessDenied"));
    sim.shutdown().await;
}

#[tokio::test]
async fn create_with_a_list_returns_ids_and_a_dict_returns_one_id() {
    let sim = start().await;
    let created =
        call(&sim, "res.partner", "create", json!([[{"name": "A"}, {"name": "B"}, {"name": "C"}]]), json!({})).await;
    let created: Vec<i64> = created.as_array().expect("list").iter().filter_map(Value::as_i64).collect();
    assert_eq!(created.len(), 3);
    assert!(created.windows(2).all(|pair| pair[1] == pair[0] + 1));
    let single = call(&sim, "res.partner", "create", json!([{"name": "D"}]), json!({})).await;
    assert!(single.is_i64(), "a single dict gives a single id: {single}");
    let read = call(&sim, "res.partner", "read", json!([created, ["name", "type", "parent_id"]]), json!({})).await;
    assert_eq!(read[0]["name"], json!("A"));
    assert_eq!(read[0]["type"], json!("contact"));
    assert_eq!(read[0]["parent_id"], json!(false));
    sim.shutdown().await;
}

#[tokio::test]
async fn search_read_with_prefix_operators() {
    let sim = start().await;
    let vals = json!([[
        {"name": "Alice", "email": "alice@example.com", "city": "Berlin", "customer_rank": 1},
        {"name": "Bob", "email": "bob@example.com", "city": "Paris", "customer_rank": 1},
        {"name": "Carol", "email": "carol@shop.test", "city": "Berlin", "customer_rank": 0},
        {"name": "Dave", "city": "Rome", "customer_rank": 2},
    ]]);
    call(&sim, "res.partner", "create", vals, json!({})).await;
    let names = |rows: &Value| -> Vec<String> {
        rows.as_array().expect("rows").iter().map(|row| row["name"].as_str().unwrap_or_default().to_owned()).collect()
    };
    // `|` of two terms, implicitly `&`-ed with a third.
    let rows = call(
        &sim,
        "res.partner",
        "search_read",
        json!([["|", ["city", "=", "Berlin"], ["city", "=", "Paris"], ["customer_rank", ">", 0]]]),
        json!({"fields": ["name"], "order": "name asc"}),
    )
    .await;
    assert_eq!(names(&rows), vec!["Alice", "Bob"]);
    // Explicit `&` nested in `|`, and `!`.
    let rows = call(
        &sim,
        "res.partner",
        "search_read",
        json!([["|", "&", ["city", "=", "Berlin"], ["email", "ilike", "SHOP"], "!", ["customer_rank", "<=", 1]]]),
        json!({"fields": ["name"], "order": "name asc"}),
    )
    .await;
    assert_eq!(names(&rows), vec!["Carol", "Dave"]);
    // `in`, `=like`, unset values, and `!=` that includes unset rows.
    let rows = call(
        &sim,
        "res.partner",
        "search_read",
        json!([[["email", "=", false], ["name", "in", ["Dave", "Bob"]]]]),
        json!({"fields": ["name"]}),
    )
    .await;
    assert_eq!(names(&rows), vec!["Dave"]);
    let rows = call(
        &sim,
        "res.partner",
        "search_read",
        json!([[["email", "=like", "%@example.com"]]]),
        json!({"fields": ["name"], "order": "name desc"}),
    )
    .await;
    assert_eq!(names(&rows), vec!["Bob", "Alice"]);
    let count = call(
        &sim,
        "res.partner",
        "search_count",
        json!([[["city", "!=", "Berlin"], ["customer_rank", ">=", 0], ["is_company", "=", false]]]),
        json!({}),
    )
    .await;
    assert_eq!(count, json!(2));
    // Pagination with offset and limit on a stable order.
    let page = call(
        &sim,
        "res.partner",
        "search",
        json!([[["customer_rank", ">=", 0], ["is_company", "=", false]]]),
        json!({"offset": 1, "limit": 2, "order": "name asc"}),
    )
    .await;
    let page_names = call(&sim, "res.partner", "read", json!([page, ["name"]]), json!({})).await;
    assert_eq!(names(&page_names), vec!["Bob", "Carol"]);
    // A bad domain is a ValueError.
    let bad = execute_kw(&sim, "res.partner", "search", json!([["|", ["name", "=", "x"]]]), json!({})).await;
    assert_eq!(bad["error"]["data"]["name"], json!("builtins.ValueError"));
    sim.shutdown().await;
}

#[tokio::test]
async fn dotted_paths_follow_many2one() {
    let sim = start().await;
    let partner =
        call(&sim, "res.partner", "create", json!([{"name": "Eve", "email": "eve@example.com"}]), json!({})).await;
    let product = call(
        &sim,
        "product.product",
        "create",
        json!([{"name": "Widget", "default_code": "W-1", "list_price": 10.0}]),
        json!({}),
    )
    .await;
    let order = call(&sim, "sale.order", "create", json!([{"partner_id": partner, "client_order_ref": "#42", "order_line": [[0, 0, {"product_id": product, "product_uom_qty": 2}]]}]), json!({})).await;
    let found =
        call(&sim, "sale.order", "search", json!([[["partner_id.email", "=", "eve@example.com"]]]), json!({})).await;
    assert_eq!(found, json!([order]));
    let found = call(&sim, "sale.order", "search", json!([[["client_order_ref", "=", "#42"]]]), json!({})).await;
    assert_eq!(found, json!([order]));
    let lines = call(
        &sim,
        "sale.order.line",
        "search_read",
        json!([[["order_id.client_order_ref", "=", "#42"]]]),
        json!({"fields": ["product_id", "price_unit", "price_subtotal", "tax_id"]}),
    )
    .await;
    assert_eq!(lines[0]["product_id"], json!([product, "[W-1] Widget"]));
    assert_eq!(lines[0]["price_unit"], json!(10.0));
    assert_eq!(lines[0]["price_subtotal"], json!(20.0));
    sim.shutdown().await;
}

#[tokio::test]
async fn write_date_greater_is_strict_and_ties_share_a_second() {
    let sim = start().await;
    control(&sim, "clock", json!({"frozen": "2024-05-01 10:00:00"})).await;
    let created = call(
        &sim,
        "res.partner",
        "create",
        json!([[{"name": "P1"}, {"name": "P2"}, {"name": "P3"}, {"name": "P4"}]]),
        json!({}),
    )
    .await;
    let created: Vec<i64> = created.as_array().expect("ids").iter().filter_map(Value::as_i64).collect();
    // Three records modified within the same second: a boundary tie.
    let touched = control(
        &sim,
        "touch",
        json!({"model": "res.partner", "ids": &created[..3], "write_date": "2024-05-01 10:00:05"}),
    )
    .await;
    assert_eq!(touched["write_date"], json!("2024-05-01 10:00:05"));
    let rows = call(&sim, "res.partner", "read", json!([created, ["write_date", "create_date"]]), json!({})).await;
    assert_eq!(rows[3]["write_date"], json!("2024-05-01 10:00:00"), "naive UTC, second precision");
    let strictly_after = call(
        &sim,
        "res.partner",
        "search_read",
        json!([[["write_date", ">", "2024-05-01 10:00:05"], ["id", "in", created]]]),
        json!({"fields": ["id"], "order": "write_date asc, id asc"}),
    )
    .await;
    assert_eq!(ids(&strictly_after), Vec::<i64>::new(), "`>` misses records in the boundary second");
    let from_boundary = call(
        &sim,
        "res.partner",
        "search_read",
        json!([[["write_date", ">=", "2024-05-01 10:00:05"], ["id", "in", created]]]),
        json!({"fields": ["id", "write_date"], "order": "write_date asc, id asc"}),
    )
    .await;
    assert_eq!(ids(&from_boundary), created[..3].to_vec());
    // A write moves write_date to the (frozen) clock, after advancing it.
    control(&sim, "clock", json!({"advance_seconds": 60})).await;
    call(&sim, "res.partner", "write", json!([[created[3]], {"phone": "+1"}]), json!({})).await;
    let after = call(
        &sim,
        "res.partner",
        "search_read",
        json!([[["write_date", ">", "2024-05-01 10:00:05"], ["id", "in", created]]]),
        json!({"fields": ["write_date"]}),
    )
    .await;
    assert_eq!(ids(&after), vec![created[3]]);
    assert_eq!(after[0]["write_date"], json!("2024-05-01 10:01:00"));
    sim.shutdown().await;
}

async fn read_partner(sim: &RunningOdooSim, partner: &Value) -> Value {
    call(sim, "res.partner", "read", json!([[partner], ["category_id", "child_ids"]]), json!({})).await[0].clone()
}

#[tokio::test]
async fn x2many_commands() {
    let sim = start().await;
    let tags = call(
        &sim,
        "res.partner.category",
        "create",
        json!([[{"name": "Retail"}, {"name": "Wholesale"}, {"name": "VIP"}]]),
        json!({}),
    )
    .await;
    let tags: Vec<i64> = tags.as_array().expect("ids").iter().filter_map(Value::as_i64).collect();
    let partner = call(
        &sim,
        "res.partner",
        "create",
        json!([{"name": "Frank", "category_id": [[6, 0, [tags[0], tags[1]]]]}]),
        json!({}),
    )
    .await;
    assert_eq!(read_partner(&sim, &partner).await["category_id"], json!([tags[0], tags[1]]));
    call(&sim, "res.partner", "write", json!([[partner], {"category_id": [[3, tags[0]], [4, tags[2]]]}]), json!({}))
        .await;
    assert_eq!(read_partner(&sim, &partner).await["category_id"], json!([tags[1], tags[2]]));
    call(&sim, "res.partner", "write", json!([[partner], {"category_id": [[5]]}]), json!({})).await;
    assert_eq!(read_partner(&sim, &partner).await["category_id"], json!([]));
    // (0,0,vals) creates a child on a one2many, (1,id,vals) updates it, (2,id) deletes it.
    call(&sim, "res.partner", "write", json!([[partner], {"child_ids": [[0, 0, {"type": "delivery", "city": "Lyon"}], [0, 0, {"type": "invoice", "name": "Billing"}]]}]), json!({})).await;
    let children = read_partner(&sim, &partner).await["child_ids"].clone();
    let children: Vec<i64> = children.as_array().expect("ids").iter().filter_map(Value::as_i64).collect();
    assert_eq!(children.len(), 2);
    call(
        &sim,
        "res.partner",
        "write",
        json!([[partner], {"child_ids": [[1, children[0], {"city": "Marseille"}], [2, children[1]]]}]),
        json!({}),
    )
    .await;
    let rows = call(
        &sim,
        "res.partner",
        "search_read",
        json!([[["parent_id", "=", partner]]]),
        json!({"fields": ["city", "display_name", "type"]}),
    )
    .await;
    assert_eq!(rows.as_array().expect("rows").len(), 1);
    assert_eq!(rows[0]["city"], json!("Marseille"));
    assert_eq!(rows[0]["display_name"], json!("Frank, Delivery Address"));
    // Sales order lines: create with the order, then update and delete through the order.
    let product =
        call(&sim, "product.product", "create", json!([{"name": "Thing", "list_price": 5.0}]), json!({})).await;
    let order = call(&sim, "sale.order", "create", json!([{"partner_id": partner, "order_line": [[0, 0, {"product_id": product, "product_uom_qty": 1, "price_unit": 100.0, "tax_id": [[6, 0, [1]]]}], [0, 0, {"product_id": product, "product_uom_qty": 3}]]}]), json!({})).await;
    let order_row = call(
        &sim,
        "sale.order",
        "read",
        json!([[order], ["order_line", "amount_untaxed", "amount_tax", "amount_total", "partner_shipping_id", "name"]]),
        json!({}),
    )
    .await;
    assert_eq!(order_row[0]["amount_untaxed"], json!(115.0));
    assert_eq!(order_row[0]["amount_tax"], json!(15.0));
    assert_eq!(order_row[0]["amount_total"], json!(130.0));
    assert_eq!(
        order_row[0]["partner_shipping_id"][0],
        json!(children[0]),
        "the delivery child is the shipping address"
    );
    let lines: Vec<i64> =
        order_row[0]["order_line"].as_array().expect("lines").iter().filter_map(Value::as_i64).collect();
    call(
        &sim,
        "sale.order",
        "write",
        json!([[order], {"order_line": [[1, lines[0], {"discount": 50.0}], [2, lines[1]]]}]),
        json!({}),
    )
    .await;
    let order_row = call(&sim, "sale.order", "read", json!([[order], ["order_line", "amount_total"]]), json!({})).await;
    assert_eq!(order_row[0]["order_line"], json!([lines[0]]));
    assert_eq!(order_row[0]["amount_total"], json!(57.5));
    sim.shutdown().await;
}

#[tokio::test]
async fn jsonrpc_error_shapes() {
    let sim = start().await;
    let unknown_field =
        execute_kw(&sim, "res.partner", "create", json!([{"name": "X", "nickname": "x"}]), json!({})).await;
    assert_eq!(unknown_field["jsonrpc"], json!("2.0"));
    assert_eq!(unknown_field["id"], json!(7));
    let data = &unknown_field["error"]["data"];
    assert_eq!(data["name"], json!("builtins.ValueError"));
    assert_eq!(data["message"], json!("Invalid field 'nickname' on model 'res.partner'"));
    assert_eq!(data["arguments"], json!(["Invalid field 'nickname' on model 'res.partner'"]));
    assert!(data["debug"].as_str().is_some_and(|debug| debug.starts_with("Traceback")));
    assert_eq!(data["context"], json!({}));
    let unknown_model = execute_kw(&sim, "x.nothing", "search", json!([[]]), json!({})).await;
    assert_eq!(unknown_model["error"]["data"]["name"], json!("odoo.exceptions.UserError"));
    assert_eq!(unknown_model["error"]["data"]["message"], json!("Object x.nothing doesn't exist"));
    let selection =
        execute_kw(&sim, "res.partner", "create", json!([{"name": "X", "type": "billing"}]), json!({})).await;
    assert_eq!(selection["error"]["data"]["message"], json!("Wrong value for res.partner.type: 'billing'"));
    let required = execute_kw(&sim, "product.template", "create", json!([{"list_price": 3.0}]), json!({})).await;
    assert_eq!(required["error"]["data"]["name"], json!("odoo.exceptions.ValidationError"));
    assert!(
        required["error"]["data"]["message"].as_str().is_some_and(|message| message.contains("Field: Name (name)"))
    );
    let missing = execute_kw(&sim, "res.partner", "read", json!([[9999], ["name"]]), json!({})).await;
    assert_eq!(missing["error"]["data"]["name"], json!("odoo.exceptions.MissingError"));
    let missing_link = execute_kw(&sim, "sale.order", "create", json!([{"partner_id": 9999}]), json!({})).await;
    assert_eq!(missing_link["error"]["data"]["name"], json!("odoo.exceptions.MissingError"));
    let private = execute_kw(&sim, "res.partner", "_compute_display_name", json!([[1]]), json!({})).await;
    assert_eq!(private["error"]["data"]["name"], json!("odoo.exceptions.AccessError"));
    let no_method = execute_kw(&sim, "res.partner", "frobnicate", json!([[1]]), json!({})).await;
    assert_eq!(no_method["error"]["data"]["name"], json!("builtins.AttributeError"));
    let bad_kwarg = execute_kw(&sim, "res.partner", "search_read", json!([[]]), json!({"fieldz": ["name"]})).await;
    assert_eq!(bad_kwarg["error"]["data"]["name"], json!("builtins.TypeError"));
    // Barcodes are unique; default_code is not.
    call(
        &sim,
        "product.product",
        "create",
        json!([[{"name": "A", "default_code": "DUP", "barcode": "123"}, {"name": "B", "default_code": "DUP"}]]),
        json!({}),
    )
    .await;
    let duplicate =
        execute_kw(&sim, "product.product", "create", json!([{"name": "C", "barcode": "123"}]), json!({})).await;
    assert_eq!(duplicate["error"]["data"]["name"], json!("odoo.exceptions.ValidationError"));
    sim.shutdown().await;
}

#[tokio::test]
async fn json2_success_and_error_shapes() {
    let sim = start().await;
    let (status, created) =
        json2(&sim, "res.partner", "create", json!({"vals_list": [{"name": "J1"}, {"name": "J2"}]})).await;
    assert_eq!(status, 200);
    assert_eq!(created.as_array().map(Vec::len), Some(2), "the bare result: {created}");
    let (status, rows) = json2(
        &sim,
        "res.partner",
        "search_read",
        json!({"domain": [["name", "like", "J"]], "fields": ["name"], "order": "id desc", "limit": 1}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(rows[0]["name"], json!("J2"));
    let (status, written) =
        json2(&sim, "res.partner", "write", json!({"ids": created, "vals": {"city": "Gent"}})).await;
    assert_eq!((status, written), (200, json!(true)));
    let (status, context) = json2(&sim, "res.users", "context_get", json!({})).await;
    assert_eq!((status, context["uid"].clone()), (200, json!(2)));

    let unauthorized = client()
        .post(format!("{}/json/2/res.partner/search", sim.base_url()))
        .header("Authorization", "bearer nope")
        .json(&json!({"domain": []}))
        .send()
        .await
        .expect("request");
    assert_eq!(unauthorized.status(), 401);
    let body: Value = unauthorized.json().await.expect("json");
    assert_eq!(body["name"], json!("werkzeug.exceptions.Unauthorized"));
    assert_eq!(body["message"], json!("Invalid apikey"));
    assert_eq!(body["arguments"], json!(["Invalid apikey", 401]));
    for key in ["context", "debug"] {
        assert!(body.get(key).is_some(), "{key} in {body}");
    }
    let (status, body) = json2(&sim, "x.nothing", "search", json!({})).await;
    assert_eq!((status, body["name"].clone()), (404, json!("werkzeug.exceptions.NotFound")));
    let (status, body) = json2(&sim, "res.partner", "frobnicate", json!({"ids": [1]})).await;
    assert_eq!((status, body["name"].clone()), (404, json!("werkzeug.exceptions.NotFound")));
    let (status, body) = json2(&sim, "res.partner", "read", json!({"ids": [9999], "fields": ["name"]})).await;
    assert_eq!((status, body["name"].clone()), (404, json!("odoo.exceptions.MissingError")));
    let (status, body) = json2(&sim, "res.partner", "create", json!({"vals_list": [{"type": "contact"}]})).await;
    assert_eq!((status, body["name"].clone()), (422, json!("odoo.exceptions.ValidationError")));
    let (status, body) = json2(&sim, "res.partner", "create", json!({"ids": [1], "vals_list": [{"name": "x"}]})).await;
    assert_eq!((status, body["name"].clone()), (422, json!("werkzeug.exceptions.UnprocessableEntity")));
    let (status, body) = json2(&sim, "res.partner", "search", json!({"domian": []})).await;
    assert_eq!((status, body["name"].clone()), (422, json!("werkzeug.exceptions.UnprocessableEntity")));
    let (status, body) = json2(&sim, "res.partner", "search", json!({"domain": [["nope", "=", 1]]})).await;
    assert_eq!((status, body["name"].clone()), (500, json!("builtins.ValueError")));
    sim.shutdown().await;
}

#[tokio::test]
async fn archived_records_are_hidden_unless_asked_for() {
    let sim = start().await;
    let product =
        call(&sim, "product.product", "create", json!([{"name": "Old", "default_code": "OLD-1"}]), json!({})).await;
    call(&sim, "product.product", "action_archive", json!([[product]]), json!({})).await;
    let visible = call(&sim, "product.product", "search", json!([[["default_code", "=", "OLD-1"]]]), json!({})).await;
    assert_eq!(visible, json!([]));
    let with_context = call(
        &sim,
        "product.product",
        "search",
        json!([[["default_code", "=", "OLD-1"]]]),
        json!({"context": {"active_test": false}}),
    )
    .await;
    assert_eq!(with_context, json!([product]));
    let with_domain = call(
        &sim,
        "product.product",
        "search",
        json!([[["default_code", "=", "OLD-1"], ["active", "in", [true, false]]]]),
        json!({}),
    )
    .await;
    assert_eq!(with_domain, json!([product]));
    sim.shutdown().await;
}

#[tokio::test]
async fn confirming_an_order_creates_a_transfer_and_validating_it_ships() {
    let sim = start().await;
    let partner = call(&sim, "res.partner", "create", json!([{"name": "Gina"}]), json!({})).await;
    let product = call(
        &sim,
        "product.product",
        "create",
        json!([{"name": "Boxed", "default_code": "BOX", "type": "product", "list_price": 20.0}]),
        json!({}),
    )
    .await;
    let stock_location = call(
        &sim,
        "stock.warehouse",
        "search_read",
        json!([[["code", "=", "WH"]]]),
        json!({"fields": ["lot_stock_id"]}),
    )
    .await[0]["lot_stock_id"][0]
        .clone();
    call(
        &sim,
        "stock.quant",
        "create",
        json!([{"product_id": product, "location_id": stock_location, "inventory_quantity": 10}]),
        json!({}),
    )
    .await;
    let quants = call(&sim, "stock.quant", "search", json!([[["product_id", "=", product]]]), json!({})).await;
    // Quantities are set through inventory mode, never written directly.
    let refused = execute_kw(&sim, "stock.quant", "write", json!([quants, {"quantity": 5}]), json!({})).await;
    assert_eq!(refused["error"]["data"]["name"], json!("odoo.exceptions.UserError"));
    call(&sim, "stock.quant", "action_apply_inventory", json!([quants]), json!({})).await;
    let on_hand =
        call(&sim, "product.product", "read", json!([[product], ["qty_available", "lst_price"]]), json!({})).await;
    assert_eq!(on_hand[0]["qty_available"], json!(10.0));

    let order = call(&sim, "sale.order", "create", json!([{"partner_id": partner, "client_order_ref": "#1001", "order_line": [[0, 0, {"product_id": product, "product_uom_qty": 3}]]}]), json!({})).await;
    assert_eq!(
        call(&sim, "sale.order", "read", json!([[order], ["state"]]), json!({})).await[0]["state"],
        json!("draft")
    );
    assert_eq!(call(&sim, "sale.order", "action_confirm", json!([[order]]), json!({})).await, json!(true));
    let confirmed =
        call(&sim, "sale.order", "read", json!([[order], ["state", "name", "picking_ids"]]), json!({})).await;
    assert_eq!(confirmed[0]["state"], json!("sale"));
    let pickings = confirmed[0]["picking_ids"].clone();
    assert_eq!(pickings.as_array().map(Vec::len), Some(1));
    let picking = call(
        &sim,
        "stock.picking",
        "read",
        json!([pickings.clone(), ["state", "origin", "sale_id", "carrier_tracking_ref"]]),
        json!({}),
    )
    .await;
    assert_eq!(picking[0]["state"], json!("assigned"));
    assert_eq!(picking[0]["origin"], confirmed[0]["name"]);
    assert_eq!(picking[0]["sale_id"][0], json!(order));
    assert_eq!(picking[0]["carrier_tracking_ref"], json!(false));
    let again = execute_kw(&sim, "sale.order", "action_confirm", json!([[order]]), json!({})).await;
    assert_eq!(again["error"]["data"]["name"], json!("odoo.exceptions.UserError"));
    let delete = execute_kw(&sim, "sale.order", "unlink", json!([[order]]), json!({})).await;
    assert_eq!(delete["error"]["data"]["name"], json!("odoo.exceptions.UserError"));

    call(&sim, "stock.picking", "write", json!([pickings.clone(), {"carrier_tracking_ref": "TRACK-1"}]), json!({}))
        .await;
    call(&sim, "stock.picking", "button_validate", json!([pickings.clone()]), json!({})).await;
    let done = call(
        &sim,
        "stock.picking",
        "read",
        json!([pickings, ["state", "date_done", "carrier_tracking_ref"]]),
        json!({}),
    )
    .await;
    assert_eq!(done[0]["state"], json!("done"));
    assert!(done[0]["date_done"].is_string());
    let after = call(&sim, "product.product", "read", json!([[product], ["qty_available"]]), json!({})).await;
    assert_eq!(after[0]["qty_available"], json!(7.0));
    let lines = call(
        &sim,
        "sale.order.line",
        "search_read",
        json!([[["order_id", "=", order]]]),
        json!({"fields": ["qty_delivered"]}),
    )
    .await;
    assert_eq!(lines[0]["qty_delivered"], json!(3.0));
    sim.shutdown().await;
}

#[tokio::test]
async fn seeded_data_is_deterministic_and_complete() {
    let first = start_seeded().await;
    let second = start_seeded().await;
    let fields =
        json!({"fields": ["default_code", "barcode", "lst_price", "display_name", "write_date"], "order": "id asc"});
    let a = call(&first, "product.product", "search_read", json!([[]]), fields.clone()).await;
    let b = call(&second, "product.product", "search_read", json!([[]]), fields).await;
    assert_eq!(a, b);
    assert!(a.as_array().is_some_and(|rows| rows.len() >= 20));
    // Seeded records share write_date seconds: boundary ties exist from the start.
    let dates: Vec<&str> = a.as_array().expect("rows").iter().filter_map(|row| row["write_date"].as_str()).collect();
    assert!(dates.windows(2).any(|pair| pair[0] == pair[1]));
    let customers = call(
        &first,
        "res.partner",
        "search_read",
        json!([[["customer_rank", ">", 0]]]),
        json!({"fields": ["child_ids", "property_product_pricelist", "category_id"]}),
    )
    .await;
    assert_eq!(customers.as_array().map(Vec::len), Some(10));
    assert!(
        customers
            .as_array()
            .expect("rows")
            .iter()
            .any(|row| row["child_ids"].as_array().is_some_and(|children| children.len() == 2))
    );
    let invoices = call(
        &first,
        "account.move",
        "search_read",
        json!([[["move_type", "=", "out_invoice"], ["state", "=", "posted"]]]),
        json!({"fields": ["name", "amount_total", "invoice_origin"]}),
    )
    .await;
    assert!(!invoices.as_array().expect("rows").is_empty());
    assert!(invoices[0]["name"].as_str().is_some_and(|name| name.starts_with("INV/2024/")));
    let done = call(
        &first,
        "stock.picking",
        "search_count",
        json!([[["state", "=", "done"], ["carrier_tracking_ref", "!=", false]]]),
        json!({}),
    )
    .await;
    assert!(done.as_i64().is_some_and(|count| count > 0));
    // Wholesale quantity tiers: 10 units cost less per unit than 1.
    let wholesale =
        call(&first, "product.pricelist", "search", json!([[["name", "=", "Wholesale"]]]), json!({})).await[0].clone();
    let items =
        call(&first, "product.pricelist.item", "search_count", json!([[["pricelist_id", "=", wholesale]]]), json!({}))
            .await;
    assert_eq!(items, json!(3));
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn invoice_pdf_needs_a_session() {
    let sim = start_seeded().await;
    let invoice =
        call(&sim, "account.move", "search", json!([[["state", "=", "posted"]]]), json!({"limit": 1})).await[0].clone();
    let url = format!("{}/report/pdf/account.report_invoice/{invoice}", sim.base_url());
    let client = client_builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let anonymous = client.get(&url).send().await.expect("request");
    assert_eq!(anonymous.status(), 303);
    let login = client
        .post(format!("{}/web/session/authenticate", sim.base_url()))
        .json(&json!({"jsonrpc": "2.0", "method": "call", "params": {"db": DB, "login": "admin", "password": PASSWORD}, "id": 1}))
        .send()
        .await
        .expect("login");
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .expect("cookie")
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let pdf = client.get(&url).header("Cookie", cookie).send().await.expect("request");
    assert_eq!(pdf.status(), 200);
    assert_eq!(pdf.headers().get("content-type").and_then(|value| value.to_str().ok()), Some("application/pdf"));
    let bytes = pdf.bytes().await.expect("body");
    assert!(bytes.starts_with(b"%PDF"));
    assert!(bytes.ends_with(b"%%EOF\n"));
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_status_truncation_hang_and_partial_batches() {
    let sim = start().await;
    control(&sim, "faults", json!({"rules": [{"kind": "status", "status": 503, "count": 1, "method": "search_read"}]}))
        .await;
    let body = json!({"jsonrpc": "2.0", "method": "call", "params": {"service": "object", "method": "execute_kw", "args": [DB, 2, PASSWORD, "res.partner", "search_read", [[]], {"fields": ["name"]}]}, "id": 1});
    let client = client();
    let failed = client.post(format!("{}/jsonrpc", sim.base_url())).json(&body).send().await.expect("request");
    assert_eq!(failed.status(), 503);
    let recovered = client.post(format!("{}/jsonrpc", sim.base_url())).json(&body).send().await.expect("request");
    assert_eq!(recovered.status(), 200);

    control(&sim, "faults", json!({"rules": [{"kind": "truncate"}]})).await;
    let truncated = client.post(format!("{}/jsonrpc", sim.base_url())).json(&body).send().await.expect("request");
    let text = truncated.text().await.expect("text");
    assert!(serde_json::from_str::<Value>(&text).is_err(), "truncated body must not parse: {text}");

    control(&sim, "faults", json!({"rules": [{"kind": "hang", "seconds": 30}]})).await;
    let hanging = client_builder().timeout(Duration::from_millis(300)).build().expect("client");
    let timed_out = hanging.post(format!("{}/jsonrpc", sim.base_url())).json(&body).send().await;
    assert!(timed_out.is_err_and(|error| error.is_timeout()));

    // Every 2nd record of a batch fails: the call is one transaction, so nothing is created.
    control(&sim, "faults", json!({"partial_failure": {"every": 2, "model": "res.partner"}})).await;
    let before = call(&sim, "res.partner", "search_count", json!([[]]), json!({})).await;
    let batch = execute_kw(
        &sim,
        "res.partner",
        "create",
        json!([[{"name": "ok"}, {"name": "fails"}, {"name": "never"}]]),
        json!({}),
    )
    .await;
    assert_eq!(batch["error"]["data"]["name"], json!("odoo.exceptions.ValidationError"));
    assert_eq!(call(&sim, "res.partner", "search_count", json!([[]]), json!({})).await, before);
    let single = call(&sim, "res.partner", "create", json!([[{"name": "alone"}]]), json!({})).await;
    assert_eq!(single.as_array().map(Vec::len), Some(1));
    let cleared = client.delete(format!("{}/_sim/faults", sim.base_url())).send().await.expect("request");
    assert_eq!(cleared.status(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn counters_prove_zero_writes() {
    let sim = start_seeded().await;
    control(&sim, "counters/reset", json!({})).await;
    call(&sim, "product.product", "search_read", json!([[]]), json!({"fields": ["default_code"], "limit": 5})).await;
    json2(&sim, "res.partner", "search_count", json!({"domain": []})).await;
    let counters = sim.counters();
    assert_eq!(counters.writes, 0);
    assert_eq!(counters.get("product.product", "search_read"), 1);
    assert_eq!(counters.get("res.partner", "search_count"), 1);
    call(&sim, "res.partner", "write", json!([[1], {"phone": "1"}]), json!({})).await;
    assert_eq!(sim.counters().writes, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn ship_control_sets_tracking_and_validates() {
    let sim = start_seeded().await;
    let open =
        call(&sim, "stock.picking", "search", json!([[["state", "in", ["assigned", "confirmed"]]]]), json!({})).await;
    let open: Vec<i64> = open.as_array().expect("ids").iter().filter_map(Value::as_i64).collect();
    assert!(!open.is_empty());
    let shipped = control(&sim, "ship", json!({"carrier": "DHL"})).await;
    assert_eq!(shipped.as_array().map(Vec::len), Some(open.len()));
    let rows = call(&sim, "stock.picking", "read", json!([open, ["state", "carrier_tracking_ref"]]), json!({})).await;
    assert!(
        rows.as_array()
            .expect("rows")
            .iter()
            .all(|row| row["state"] == json!("done") && row["carrier_tracking_ref"].is_string())
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn inventory_mode_counts_and_applies_on_the_existing_quant() {
    let sim = start().await;
    let product =
        call(&sim, "product.product", "create", json!([{"name": "Counted", "type": "product"}]), json!({})).await;
    let warehouse =
        call(&sim, "stock.warehouse", "search_read", json!([[]]), json!({"fields": ["lot_stock_id"]})).await;
    let stock = warehouse[0]["lot_stock_id"][0].clone();
    let inventory = json!({"context": {"inventory_mode": true}});
    let first = call(
        &sim,
        "stock.quant",
        "create",
        json!([{"product_id": product, "location_id": stock, "inventory_quantity": 4}]),
        inventory.clone(),
    )
    .await;
    let again = call(
        &sim,
        "stock.quant",
        "create",
        json!([{"product_id": product, "location_id": stock, "inventory_quantity": 9}]),
        inventory.clone(),
    )
    .await;
    assert_eq!(first, again, "inventory mode reuses the quant of the same product and location");
    let quant = call(
        &sim,
        "stock.quant",
        "read",
        json!([[first], ["quantity", "inventory_quantity", "inventory_quantity_set", "inventory_diff_quantity"]]),
        json!({}),
    )
    .await;
    assert_eq!(quant[0]["inventory_quantity"], json!(9.0));
    assert_eq!(quant[0]["inventory_quantity_set"], json!(true));
    assert_eq!(quant[0]["inventory_diff_quantity"], json!(9.0));
    call(&sim, "stock.quant", "action_apply_inventory", json!([[first]]), json!({})).await;
    let applied = call(
        &sim,
        "stock.quant",
        "read",
        json!([[first], ["quantity", "available_quantity", "inventory_quantity_set"]]),
        json!({}),
    )
    .await;
    assert_eq!(applied[0]["quantity"], json!(9.0));
    assert_eq!(applied[0]["available_quantity"], json!(9.0));
    assert_eq!(applied[0]["inventory_quantity_set"], json!(false));
    call(&sim, "stock.quant", "write", json!([[first], {"inventory_quantity_auto_apply": 2}]), inventory).await;
    let auto = call(&sim, "stock.quant", "read", json!([[first], ["quantity"]]), json!({})).await;
    assert_eq!(auto[0]["quantity"], json!(2.0));
    sim.shutdown().await;
}

#[tokio::test]
async fn stock_per_warehouse_and_child_of_locations() {
    let sim = start().await;
    let second = call(&sim, "stock.warehouse", "create", json!([{"name": "Second", "code": "WH2"}]), json!({})).await;
    let warehouses = call(
        &sim,
        "stock.warehouse",
        "search_read",
        json!([[]]),
        json!({"fields": ["code", "lot_stock_id", "view_location_id"], "order": "id"}),
    )
    .await;
    assert_eq!(warehouses[1]["lot_stock_id"][1], json!("WH2/Stock"));
    let product =
        call(&sim, "product.product", "create", json!([{"name": "Spread", "type": "product"}]), json!({})).await;
    let inventory = json!({"context": {"inventory_mode": true}});
    for (warehouse, quantity) in [(0, 5), (1, 7)] {
        let location = warehouses[warehouse]["lot_stock_id"][0].clone();
        call(
            &sim,
            "stock.quant",
            "create",
            json!([{"product_id": product, "location_id": location, "inventory_quantity_auto_apply": quantity}]),
            inventory.clone(),
        )
        .await;
    }
    let total = call(&sim, "product.product", "read", json!([[product], ["qty_available"]]), json!({})).await;
    assert_eq!(total[0]["qty_available"], json!(12.0));
    let in_second = call(
        &sim,
        "product.product",
        "read",
        json!([[product], ["qty_available"]]),
        json!({"context": {"warehouse": second}}),
    )
    .await;
    assert_eq!(in_second[0]["qty_available"], json!(7.0));
    let view = warehouses[1]["view_location_id"][0].clone();
    let quants = call(
        &sim,
        "stock.quant",
        "search_read",
        json!([[["location_id", "child_of", view], ["product_id", "=", product]]]),
        json!({"fields": ["quantity", "warehouse_id"]}),
    )
    .await;
    assert_eq!(quants.as_array().map(Vec::len), Some(1));
    assert_eq!(quants[0]["quantity"], json!(7.0));
    assert_eq!(quants[0]["warehouse_id"][0], json!(second));
    sim.shutdown().await;
}

#[tokio::test]
async fn pricelist_tiers_price_new_order_lines() {
    let sim = start_seeded().await;
    let wholesale = call(
        &sim,
        "res.partner",
        "search_read",
        json!([[["category_id.name", "=", "Wholesale"], ["parent_id", "=", false]]]),
        json!({"fields": ["property_product_pricelist"], "limit": 1}),
    )
    .await;
    let customer = wholesale[0]["id"].clone();
    let variant = call(
        &sim,
        "product.product",
        "search_read",
        json!([[["default_code", "in", ["SKU-0001", "SKU-0001-S"]]]]),
        json!({"fields": ["lst_price", "default_code"]}),
    )
    .await;
    let variant_id = variant[0]["id"].clone();
    let list_price = variant[0]["lst_price"].as_f64().expect("price");
    let order = call(&sim, "sale.order", "create", json!([{"partner_id": customer, "order_line": [[0, 0, {"product_id": variant_id, "product_uom_qty": 1}], [0, 0, {"product_id": variant_id, "product_uom_qty": 10}], [0, 0, {"product_id": variant_id, "product_uom_qty": 50}]]}]), json!({})).await;
    assert_eq!(line_prices(&sim, &order).await, discounted(list_price, &[10.0, 15.0, 25.0]));
    let order_row = call(
        &sim,
        "sale.order",
        "read",
        json!([[order], ["pricelist_id", "partner_invoice_id", "partner_shipping_id"]]),
        json!({}),
    )
    .await;
    assert_eq!(order_row[0]["pricelist_id"], wholesale[0]["property_product_pricelist"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn wholesale_products_get_prices_of_their_own_with_a_tier() {
    let default = start_seeded().await;
    let config = SeedConfig { wholesale_products: 2, ..SeedConfig::default() };
    let sim = OdooSim::start(OdooSimConfig { seed: Some(config), ..OdooSimConfig::default() }).await.expect("starts");
    // The catalog is the default seed's; Wholesale has two rules more per product.
    let fields = json!({"fields": ["default_code", "lst_price", "write_date"], "order": "id asc"});
    let catalog = call(&sim, "product.product", "search_read", json!([[]]), fields.clone()).await;
    assert_eq!(catalog, call(&default, "product.product", "search_read", json!([[]]), fields).await);
    let items = call(
        &sim,
        "product.pricelist.item",
        "search_read",
        json!([[["pricelist_id.name", "=", "Wholesale"], ["applied_on", "=", "1_product"]]]),
        json!({"fields": ["product_tmpl_id", "min_quantity", "percent_price"], "order": "id"}),
    )
    .await;
    let rules: Vec<(i64, f64, f64)> = items
        .as_array()
        .expect("rows")
        .iter()
        .map(|item| {
            (
                item["product_tmpl_id"][0].as_i64().expect("template"),
                item["min_quantity"].as_f64().expect("quantity"),
                item["percent_price"].as_f64().expect("percent"),
            )
        })
        .collect();
    let templates = call(&sim, "product.template", "search", json!([[]]), json!({"order": "id", "limit": 2})).await;
    let (first, second) = (templates[0].as_i64().expect("id"), templates[1].as_i64().expect("id"));
    assert_eq!(rules, [(first, 1.0, 15.0), (first, 10.0, 25.0), (second, 1.0, 15.0), (second, 10.0, 25.0)]);
    // A wholesale customer's order lines take the product's rules before the catalog-wide ones.
    let customer = call(
        &sim,
        "res.partner",
        "search",
        json!([[["category_id.name", "=", "Wholesale"], ["parent_id", "=", false]]]),
        json!({"limit": 1}),
    )
    .await[0]
        .clone();
    let variant = call(
        &sim,
        "product.product",
        "search_read",
        json!([[["product_tmpl_id", "=", first]]]),
        json!({"fields": ["lst_price"], "limit": 1}),
    )
    .await;
    let list_price = variant[0]["lst_price"].as_f64().expect("price");
    let lines: Vec<Value> = [1, 10, 50]
        .iter()
        .map(|quantity| json!([0, 0, {"product_id": variant[0]["id"], "product_uom_qty": quantity}]))
        .collect();
    let order =
        call(&sim, "sale.order", "create", json!([{"partner_id": customer, "order_line": lines}]), json!({})).await;
    assert_eq!(line_prices(&sim, &order).await, discounted(list_price, &[15.0, 25.0, 25.0]));
    default.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn invoice_control_posts_an_invoice_per_order() {
    let sim = start_seeded().await;
    let invoices_before = call(&sim, "account.move", "search_count", json!([[]]), json!({})).await;
    let created = control(&sim, "orders", json!({"count": 3, "seed": 3, "confirm": true})).await;
    let orders: Vec<i64> = created["ids"].as_array().expect("ids").iter().filter_map(Value::as_i64).collect();
    // Delivered only: nothing of the new orders has left the warehouse yet.
    let invoiced = control(&sim, "invoice", json!({"order_ids": orders, "delivered": true})).await;
    assert_eq!(invoiced["ids"], json!([]));
    control(&sim, "ship", json!({"order_ids": [orders[0]]})).await;
    let invoiced = control(&sim, "invoice", json!({"order_ids": orders, "delivered": true})).await;
    let invoice = invoiced["ids"][0].as_i64().expect("an invoice");
    assert_eq!(invoiced["ids"].as_array().map(Vec::len), Some(1));
    let order =
        call(&sim, "sale.order", "read", json!([[orders[0]], ["name", "amount_total", "invoice_status"]]), json!({}))
            .await[0]
            .clone();
    let move_row = call(
        &sim,
        "account.move",
        "read",
        json!([[invoice], ["name", "move_type", "state", "invoice_origin", "amount_total"]]),
        json!({}),
    )
    .await[0]
        .clone();
    assert_eq!(move_row["move_type"], "out_invoice");
    assert_eq!(move_row["state"], "posted");
    assert!(move_row["name"].as_str().is_some_and(|name| name.starts_with("INV/")), "{move_row}");
    assert_eq!(move_row["invoice_origin"], order["name"]);
    assert_eq!(move_row["amount_total"], order["amount_total"]);
    assert_eq!(order["invoice_status"], "invoiced");
    // Without `delivered`, the other two; then nothing is left to invoice.
    let invoiced = control(&sim, "invoice", json!({"order_ids": orders})).await;
    assert_eq!(invoiced["ids"].as_array().map(Vec::len), Some(2));
    assert_eq!(control(&sim, "invoice", json!({"order_ids": orders})).await["ids"], json!([]));
    let invoices_after = call(&sim, "account.move", "search_count", json!([[]]), json!({})).await;
    assert_eq!(invoices_after.as_i64(), invoices_before.as_i64().map(|count| count + 3));
    sim.shutdown().await;
}

#[tokio::test]
async fn name_search_fields_get_and_denied_access() {
    let sim = start().await;
    call(
        &sim,
        "res.partner",
        "create",
        json!([[{"name": "Zed Corp", "is_company": true}, {"name": "Zelda"}]]),
        json!({}),
    )
    .await;
    let found = call(&sim, "res.partner", "name_search", json!(["zed"]), json!({"limit": 5})).await;
    assert_eq!(found.as_array().map(Vec::len), Some(1));
    assert_eq!(found[0][1], json!("Zed Corp"));
    let fields =
        call(&sim, "sale.order", "fields_get", json!([]), json!({"attributes": ["type", "relation", "required"]}))
            .await;
    assert_eq!(fields["partner_id"], json!({"type": "many2one", "relation": "res.partner", "required": true}));
    assert_eq!(fields["order_line"]["type"], json!("one2many"));
    control(&sim, "access", json!({"model": "account.move", "operations": ["read"]})).await;
    let denied = execute_kw(&sim, "account.move", "search_read", json!([[]]), json!({})).await;
    assert_eq!(denied["error"]["data"]["name"], json!("odoo.exceptions.AccessError"));
    assert!(denied["error"]["data"]["message"].as_str().is_some_and(|message| {
        message.starts_with("You are not allowed to access 'Journal Entry' (account.move) records.")
    }));
    let (status, body) = json2(&sim, "account.move", "search", json!({"domain": []})).await;
    assert_eq!((status, body["name"].clone()), (403, json!("odoo.exceptions.AccessError")));
    sim.shutdown().await;
}

#[tokio::test]
async fn repeated_failed_logins_trigger_the_cooldown() {
    let sim = start().await;
    for _ in 0..5 {
        assert_eq!(
            rpc(&sim, "common", "authenticate", json!([DB, "admin", "wrong", {}])).await["result"],
            json!(false)
        );
    }
    // The right password is refused too while cooling down.
    assert_eq!(rpc(&sim, "common", "authenticate", json!([DB, "admin", PASSWORD, {}])).await["result"], json!(false));
    control(&sim, "clock", json!({"advance_seconds": 61})).await;
    assert_eq!(rpc(&sim, "common", "authenticate", json!([DB, "admin", PASSWORD, {}])).await["result"], json!(2));
    sim.shutdown().await;
}

async fn reqwest_get_json(sim: &RunningOdooSim, path: &str) -> Value {
    client().get(format!("{}/_sim/{path}", sim.base_url())).send().await.expect("request").json().await.expect("json")
}

/// A receiver for webhooks: answers 200 and hands each body over.
async fn webhook_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read until the headers and the announced body are in.
            while let Ok(read) = stream.read(&mut chunk).await {
                if read == 0 {
                    break;
                }
                buffer.extend_from_slice(&chunk[..read]);
                let text = String::from_utf8_lossy(&buffer).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|line| {
                            line.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|value| value.trim().to_owned())
                        })
                        .and_then(|value| value.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        let _ = sender.send(serde_json::from_str::<Value>(body).unwrap_or(Value::Null));
                        break;
                    }
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
        }
    });
    (url, receiver)
}

async fn next_webhook(receiver: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(5), receiver.recv())
        .await
        .expect("a webhook arrives")
        .expect("open channel")
}

#[tokio::test]
async fn automation_webhooks_with_duplicates_and_reordering() {
    let sim = start().await;
    let (url, mut received) = webhook_receiver().await;
    let rule = control(
        &sim,
        "webhooks",
        json!({"url": url, "model": "res.partner", "trigger": "on_create_or_write", "fields": ["name", "parent_id"]}),
    )
    .await;
    let company =
        call(&sim, "res.partner", "create", json!([{"name": "Hook Co", "is_company": true}]), json!({})).await;
    let first = next_webhook(&mut received).await;
    assert_eq!(first["_model"], json!("res.partner"));
    assert_eq!(first["_id"], company);
    assert_eq!(first["id"], company);
    assert_eq!(first["_action"], json!(format!("Send Webhook Notification(#{})", rule["id"])));
    assert_eq!(first["name"], json!("Hook Co"));
    assert_eq!(first["parent_id"], json!(false));
    // A failed call sends nothing: its transaction is rolled back.
    let failed =
        execute_kw(&sim, "res.partner", "create", json!([[{"name": "ok"}, {"type": "contact"}]]), json!({})).await;
    assert!(failed.get("error").is_some());

    control(&sim, "webhooks/faults", json!({"duplicate": 1})).await;
    let child = call(&sim, "res.partner", "create", json!([{"name": "Child", "parent_id": company}]), json!({})).await;
    let once = next_webhook(&mut received).await;
    let twice = next_webhook(&mut received).await;
    assert_eq!(once, twice);
    assert_eq!(once["parent_id"], company, "many2one values are bare ids (read with load=None)");
    assert_eq!(once["_id"], child);

    control(&sim, "webhooks/faults", json!({"reorder": 1})).await;
    call(&sim, "res.partner", "write", json!([[company], {"name": "First write"}]), json!({})).await;
    call(&sim, "res.partner", "write", json!([[company], {"name": "Second write"}]), json!({})).await;
    assert_eq!(next_webhook(&mut received).await["name"], json!("Second write"));
    assert_eq!(next_webhook(&mut received).await["name"], json!("First write"), "the held delivery arrives late");
    let log = reqwest_get_json(&sim, "webhooks").await;
    assert!(
        log["deliveries"]
            .as_array()
            .is_some_and(|deliveries| deliveries.iter().all(|delivery| delivery["status"] == json!(200)))
    );
    sim.shutdown().await;
}

async fn xmlrpc(sim: &RunningOdooSim, service: &str, body: &str) -> String {
    let response = client()
        .post(format!("{}/xmlrpc/2/{service}", sim.base_url()))
        .header("Content-Type", "text/xml")
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "XML-RPC answers faults over HTTP 200");
    response.text().await.expect("text")
}

#[tokio::test]
async fn xmlrpc_calls_and_faults() {
    let sim = start().await;
    let authenticate = "<?xml version='1.0'?><methodCall><methodName>authenticate</methodName><params>\
        <param><value><string>odoo</string></value></param><param><value><string>admin</string></value></param>\
        <param><value><string>admin</string></value></param><param><value><struct></struct></value></param>\
        </params></methodCall>";
    assert!(xmlrpc(&sim, "common", authenticate).await.contains("<value><int>2</int></value>"));
    let search_read = "<?xml version='1.0'?><methodCall><methodName>execute_kw</methodName><params>\
        <param><value><string>odoo</string></value></param><param><value><int>2</int></value></param>\
        <param><value><string>admin</string></value></param><param><value><string>res.country</string></value></param>\
        <param><value><string>search_read</string></value></param>\
        <param><value><array><data><value><array><data><value><array><data>\
        <value><string>code</string></value><value><string>=</string></value><value><string>DE</string></value>\
        </data></array></value></data></array></value></data></array></value></param>\
        <param><value><struct><member><name>fields</name><value><array><data><value><string>name</string></value></data></array></value></member></struct></value></param>\
        </params></methodCall>";
    let answer = xmlrpc(&sim, "object", search_read).await;
    assert!(answer.contains("<name>name</name>\n<value><string>Germany</string></value>"), "{answer}");
    let denied = search_read.replace(
        "<param><value><string>admin</string></value></param><param><value><string>res.country",
        "<param><value><string>bad</string></value></param><param><value><string>res.country",
    );
    let fault = xmlrpc(&sim, "object", &denied).await;
    assert!(
        fault.contains("<fault>") && fault.contains("<name>faultCode</name>\n<value><int>3</int></value>"),
        "{fault}"
    );
    let missing = "<?xml version='1.0'?><methodCall><methodName>execute_kw</methodName><params>\
        <param><value><string>odoo</string></value></param><param><value><int>2</int></value></param>\
        <param><value><string>admin</string></value></param><param><value><string>res.country</string></value></param>\
        <param><value><string>read</string></value></param>\
        <param><value><array><data><value><array><data><value><int>999</int></value></data></array></value></data></array></value></param>\
        </params></methodCall>";
    let fault = xmlrpc(&sim, "object", missing).await;
    assert!(fault.contains("<value><int>2</int></value>"), "MissingError is a user error: {fault}");
    sim.shutdown().await;
}

#[tokio::test]
async fn template_attribute_lines_make_variants() {
    let sim = start().await;
    let size = call(&sim, "product.attribute", "create", json!([{"name": "Size"}]), json!({})).await;
    let color = call(&sim, "product.attribute", "create", json!([{"name": "Color"}]), json!({})).await;
    let sizes = call(
        &sim,
        "product.attribute.value",
        "create",
        json!([[{"name": "S", "attribute_id": size}, {"name": "M", "attribute_id": size}]]),
        json!({}),
    )
    .await;
    let colors = call(
        &sim,
        "product.attribute.value",
        "create",
        json!([[{"name": "Red", "attribute_id": color}, {"name": "Blue", "attribute_id": color}]]),
        json!({}),
    )
    .await;
    let template = call(
        &sim,
        "product.template",
        "create",
        json!([{"name": "Tee", "list_price": 12.5, "attribute_line_ids": [
            [0, 0, {"attribute_id": size, "value_ids": [[6, 0, sizes]]}],
            [0, 0, {"attribute_id": color, "value_ids": [[6, 0, colors]]}],
        ]}]),
        json!({}),
    )
    .await;
    let variants = call(
        &sim,
        "product.product",
        "search_read",
        json!([[["product_tmpl_id", "=", template]]]),
        json!({"fields": ["display_name", "lst_price", "default_code"], "order": "id"}),
    )
    .await;
    let names: Vec<&str> =
        variants.as_array().expect("rows").iter().filter_map(|row| row["display_name"].as_str()).collect();
    assert_eq!(names, vec!["Tee (S, Red)", "Tee (S, Blue)", "Tee (M, Red)", "Tee (M, Blue)"]);
    let count = call(&sim, "product.template", "read", json!([[template], ["product_variant_count"]]), json!({})).await;
    assert_eq!(count[0]["product_variant_count"], json!(4));
    // A single-variant template keeps default_code and barcode on its variant.
    let single =
        call(&sim, "product.template", "create", json!([{"name": "Mug", "default_code": "MUG-1"}]), json!({})).await;
    call(&sim, "product.template", "write", json!([[single], {"default_code": "MUG-2", "list_price": 9.0}]), json!({}))
        .await;
    let variant = call(
        &sim,
        "product.product",
        "search_read",
        json!([[["product_tmpl_id", "=", single]]]),
        json!({"fields": ["default_code", "lst_price"]}),
    )
    .await;
    assert_eq!(variant[0]["default_code"], json!("MUG-2"));
    assert_eq!(variant[0]["lst_price"], json!(9.0));
    // limit 0 means no limit, as in Odoo.
    let all = call(&sim, "product.product", "search", json!([[]]), json!({"limit": 0})).await;
    assert_eq!(all.as_array().map(Vec::len), Some(5));
    sim.shutdown().await;
}

#[tokio::test]
async fn activity_generators_add_orders_and_move_stock() {
    let sim = start_seeded().await;
    let before = call(&sim, "sale.order", "search_count", json!([[]]), json!({})).await;
    let created = control(&sim, "orders", json!({"count": 4, "seed": 7, "confirm": true})).await;
    assert_eq!(created["ids"].as_array().map(Vec::len), Some(4));
    let after = call(&sim, "sale.order", "search_count", json!([[]]), json!({})).await;
    assert_eq!(after.as_i64(), before.as_i64().map(|count| count + 4));
    let states = call(&sim, "sale.order", "read", json!([created["ids"], ["state", "picking_ids"]]), json!({})).await;
    assert!(states.as_array().expect("rows").iter().all(|row| row["state"] == json!("sale")));
    control(&sim, "clock", json!({"frozen": "2030-01-01 00:00:00"})).await;
    let adjusted = control(&sim, "stock", json!({"count": 3, "seed": 1})).await;
    let moved =
        call(&sim, "stock.quant", "search", json!([[["write_date", ">=", "2030-01-01 00:00:00"]]]), json!({})).await;
    let mut expected: Vec<i64> = adjusted["ids"].as_array().expect("ids").iter().filter_map(Value::as_i64).collect();
    expected.sort_unstable();
    expected.dedup();
    assert_eq!(moved, json!(expected));
    sim.shutdown().await;
}

/// The unit prices of an order's lines, in line order.
async fn line_prices(sim: &RunningOdooSim, order: &Value) -> Vec<f64> {
    let lines = call(
        sim,
        "sale.order.line",
        "search_read",
        json!([[["order_id", "=", order]]]),
        json!({"fields": ["price_unit"], "order": "id"}),
    )
    .await;
    lines.as_array().expect("lines").iter().filter_map(|line| line["price_unit"].as_f64()).collect()
}

/// `price` less each percentage, rounded to cents as Odoo rounds a line's unit price.
fn discounted(price: f64, percents: &[f64]) -> Vec<f64> {
    percents.iter().map(|percent| ((price * (1.0 - percent / 100.0)) * 100.0).round() / 100.0).collect()
}
