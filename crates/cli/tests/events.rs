//! Orders placed in the Shopify simulator arrive in the Odoo simulator through `erpsync serve`,
//! driven by the shop's signed webhooks, under faults:
//! - `kill -9` of erpsync while webhooks arrive: the shop retries what was not acknowledged,
//!   erpsync resumes, and every order is in Odoo exactly once;
//! - Odoo down for a while: nothing is lost, the orders arrive once it is back, once each;
//! - a webhook the shop never delivered: the reconciliation pass finds the order.

use erpsync_sim::{odoo, shopify};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

struct Setup {
    dir: tempfile::TempDir,
    odoo: odoo::RunningOdooSim,
    shop: shopify::RunningSim,
    listen: String,
    client: reqwest::Client,
}

const CONFIG: &str = r#"
[server]
listen = "{listen}"
public_url = "http://{listen}"

[engine]
lease = "3s"

[systems.odoo]
type = "odoo"
url = "{odoo}"
database = "odoo"
protocol = "json2"
api_key = { file = "odoo-key" }
shipping_product = "SHIPPING"

[systems.shopify]
type = "shopify"
url = "{shopify}"
access_token = { file = "shopify-token" }
webhook_secret = { file = "shopify-webhook-secret" }

[flows.products]
entity = "product"
source = "odoo"
target = "shopify"
enabled = false

[flows.orders]
entity = "order"
source = "shopify"
target = "odoo"
retry = { max_attempts = 3, initial = "200ms", max = "1s" }
{orders_extra}
"#;

async fn setup(orders_extra: &str) -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let odoo_config = odoo::OdooSimConfig {
        seed: Some(odoo::SeedConfig {
            seed: 3,
            products: 10,
            max_variants: 1,
            min_variants: 1,
            warehouses: 1,
            customers: 0,
            orders: 0,
            ..odoo::SeedConfig::default()
        }),
        ..odoo::OdooSimConfig::default()
    };
    let api_key = odoo_config.api_key.clone();
    let odoo = odoo::OdooSim::start(odoo_config).await.unwrap();
    let shop_config = shopify::ShopifyConfig {
        plan: shopify::PlanLimits::PLUS,
        // Shopify's retry schedule (a minute, then doubling) shrunk to about a second.
        webhook_time_scale: 0.02,
        seed: Some(shopify::SeedConfig {
            seed: 3,
            products: 0,
            variants_per_product: 1,
            locations: 1,
            customers: 5,
            orders: 0,
        }),
        ..shopify::ShopifyConfig::default()
    };
    let secret = shop_config.api_secret.clone();
    let shop = shopify::ShopifySim::start(shop_config).await.unwrap();
    let client = reqwest::Client::new();
    for (model, values) in [
        ("product.product", serde_json::json!({ "name": "Shipping", "default_code": "SHIPPING", "type": "service" })),
        (
            "account.tax",
            serde_json::json!({ "name": "VAT 20% (incl.)", "amount": 20, "amount_type": "percent", "type_tax_use": "sale", "price_include": true }),
        ),
    ] {
        let response = client
            .post(format!("{}/json/2/{model}/create", odoo.base_url()))
            .bearer_auth(&api_key)
            .header("X-Odoo-Database", "odoo")
            .json(&serde_json::json!({ "vals_list": [values] }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{model}: {}", response.status());
    }
    let dir = tempfile::tempdir().unwrap();
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    std::fs::write(dir.path().join("odoo-key"), &api_key).unwrap();
    std::fs::write(dir.path().join("shopify-token"), shop.access_token()).unwrap();
    std::fs::write(dir.path().join("shopify-webhook-secret"), &secret).unwrap();
    std::fs::write(
        dir.path().join("erpsync.toml"),
        CONFIG
            .replace("{listen}", &listen)
            .replace("{odoo}", &odoo.base_url())
            .replace("{shopify}", &shop.base_url())
            .replace("{orders_extra}", orders_extra),
    )
    .unwrap();
    let setup = Setup { dir, odoo, shop, listen, client };
    setup.run(&["sync", "products", "--no-progress"]);
    setup.run(&["webhooks", "register"]);
    setup
}

impl Setup {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_erpsync"));
        command.current_dir(self.dir.path()).args(["--config", "erpsync.toml", "--data-dir", "data"]).args(args);
        command
    }

    fn run(&self, args: &[&str]) {
        let output = self.command(args).output().unwrap();
        assert!(
            output.status.success(),
            "erpsync {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    async fn serve(&self) -> Serve {
        // The log goes to a file of the test's folder (kept below for a failing assertion).
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("serve.log")).unwrap();
        let child =
            self.command(&["serve"]).env("ERPSYNC_LOG", "info").stdout(Stdio::null()).stderr(log).spawn().unwrap();
        let serve = Serve(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = self.client.get(format!("http://{}/readyz", self.listen)).send().await
                && response.status().is_success()
            {
                return serve;
            }
            assert!(Instant::now() < deadline, "erpsync serve did not get ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Places `count` orders in the shop (its webhooks go out) and returns their numbers.
    async fn place(&self, count: usize) -> Vec<String> {
        let response: serde_json::Value = self
            .client
            .post(format!("{}/_sim/orders", self.shop.base_url()))
            .json(&serde_json::json!({ "create": count }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids: Vec<u64> = response["created"]
            .as_array()
            .unwrap()
            .iter()
            .map(|gid| gid.as_str().unwrap().rsplit('/').next().unwrap().parse().unwrap())
            .collect();
        self.shop.with_state(|state| ids.iter().map(|id| format!("#{}", state.orders[id].number)).collect())
    }

    /// Odoo's sale orders by shop order number, with how many each number has (read from the
    /// simulator's state, so that injected faults do not hit the test's own reads).
    async fn sale_orders(&self) -> BTreeMap<String, usize> {
        self.odoo.with_state(|state| {
            let mut counts = BTreeMap::new();
            for id in state.ids("sale.order") {
                let number = state.raw_text("sale.order", id, "client_order_ref").unwrap_or_default();
                *counts.entry(number).or_insert(0) += 1;
            }
            counts
        })
    }

    /// Waits until every placed order is in Odoo, then checks each is there exactly once.
    async fn expect_each_once(&self, placed: &[String], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let orders = self.sale_orders().await;
            if placed.iter().all(|number| orders.contains_key(number)) {
                let twice: Vec<_> = orders.iter().filter(|(_, count)| **count > 1).collect();
                assert!(twice.is_empty(), "orders created twice in Odoo: {twice:?}");
                assert_eq!(orders.len(), placed.len(), "no order in Odoo that the shop did not place");
                return;
            }
            let missing: Vec<&String> = placed.iter().filter(|number| !orders.contains_key(*number)).collect();
            assert!(Instant::now() < deadline, "{} orders never reached Odoo: {missing:?}", missing.len());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn kill_nine(serve: &Serve) {
    let status = Command::new("kill").args(["-KILL", &serve.0.id().to_string()]).status().unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_while_webhooks_arrive_loses_and_duplicates_nothing() {
    // Webhooks only: no schedule and no reconciliation, so every order must come through the
    // inbox (or the shop's retry of a delivery that got no answer).
    let setup = setup("reconcile = \"off\"").await;
    let serve = setup.serve().await;
    let mut placed = Vec::new();
    for round in 0..20 {
        placed.extend(setup.place(3).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
        if round == 10 {
            kill_nine(&serve);
        }
    }
    drop(serve);
    // Deliveries sent while erpsync was down failed and are retried by the shop.
    let _serve = setup.serve().await;
    setup.expect_each_once(&placed, Duration::from_secs(60)).await;
    let refused = setup.shop.deliveries().iter().filter(|d| d.status.is_none()).count();
    assert!(refused > 0, "some deliveries met the killed process (else the test proved nothing)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_wait_while_odoo_is_down_and_arrive_once_when_it_is_back() {
    let setup = setup("interval = \"2s\"").await;
    let _serve = setup.serve().await;
    let mut placed = setup.place(5).await;
    setup.expect_each_once(&placed, Duration::from_secs(30)).await;

    // Odoo answers 503 to every sale order call for a while.
    setup.odoo.set_faults(odoo::Faults {
        rules: vec![odoo::FaultRule {
            kind: odoo::FaultKind::Status { status: 503, retry_after_seconds: Some(1) },
            count: 100_000,
            model: Some("sale.order".into()),
            method: None,
        }],
        ..odoo::Faults::default()
    });
    let during = setup.place(10).await;
    placed.extend(during.iter().cloned());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = setup.sale_orders().await;
    assert!(during.iter().all(|number| !before.contains_key(number)), "nothing reached Odoo while it was down");
    setup.odoo.set_faults(odoo::Faults::default());
    setup.expect_each_once(&placed, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_webhook_is_found_by_reconciliation() {
    let setup = setup("reconcile = \"1m\"").await;
    // The order is placed while no subscription exists: its webhook is lost for good.
    setup.run(&["webhooks", "remove", "shopify", "--all"]);
    let lost = setup.place(1).await;
    setup.run(&["webhooks", "register"]);
    let _serve = setup.serve().await;
    // Deliveries name their orders, so only those are fetched: the lost one stays missing...
    let delivered = setup.place(2).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let orders = setup.sale_orders().await;
        if delivered.iter().all(|number| orders.contains_key(number)) {
            assert!(lost.iter().all(|number| !orders.contains_key(number)), "the lost order came without a webhook");
            break;
        }
        assert!(Instant::now() < deadline, "the delivered orders did not arrive: {orders:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ...until the reconciliation pass (every minute here) reads everything and finds it.
    let mut all = lost.clone();
    all.extend(delivered);
    setup.expect_each_once(&all, Duration::from_secs(90)).await;
}

/// New orders are taken from their webhook bodies, which cost the shop's API nothing: none is
/// read by id. An update of an order already in Odoo is fetched (a body may be older than
/// what was synced), and the order stays in Odoo once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_orders_come_from_their_webhook_bodies_and_updates_are_fetched() {
    let setup = setup("reconcile = \"off\"").await;
    let _serve = setup.serve().await;
    let calls = |setup: &Setup, root: &str| setup.shop.counters().operations.get(root).copied().unwrap_or(0);
    let (nodes_before, pulls_before) = (calls(&setup, "nodes"), calls(&setup, "orders"));
    let placed = setup.place(20).await;
    setup.expect_each_once(&placed, Duration::from_secs(30)).await;
    let reads = |setup: &Setup| calls(setup, "nodes") - nodes_before;
    assert_eq!(reads(&setup), 0, "new orders were read by id: {:?}", setup.shop.counters().operations);
    assert_eq!(calls(&setup, "orders"), pulls_before, "and not pulled either");

    // Three of them change in the shop: their orders/updated bodies are not taken, the orders
    // are fetched in their current state.
    let gids: Vec<String> = setup.shop.with_state(|state| {
        let numbers: Vec<u64> = placed[..3].iter().map(|number| number[1..].parse().unwrap()).collect();
        state
            .orders
            .values()
            .filter(|order| numbers.contains(&order.number))
            .map(|order| format!("gid://shopify/Order/{}", order.id))
            .collect()
    });
    assert_eq!(gids.len(), 3);
    setup.shop.advance_clock(Duration::from_secs(5));
    let response = setup
        .client
        .post(format!("{}/_sim/orders", setup.shop.base_url()))
        .json(&serde_json::json!({ "update": gids }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while reads(&setup) == 0 {
        assert!(Instant::now() < deadline, "the updated orders were never fetched");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    setup.expect_each_once(&placed, Duration::from_secs(10)).await;
}

/// Deliveries out of order and twice: orders cancelled in the shop right after they were
/// placed, while the shop delivers every webhook after a random delay (so a cancellation's
/// `orders/updated` often arrives before the order's `orders/create`) and sends some twice.
/// Each order is in Odoo once, and in its latest state: the cancelled ones cancelled, the
/// others not (an older body never wins over what was processed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_and_duplicate_deliveries_end_in_the_latest_state_once() {
    let setup = setup("reconcile = \"off\"").await;
    let _serve = setup.serve().await;
    setup.shop.set_faults(shopify::Faults { webhook_reorder_ms: 1500, webhook_duplicates: 8, ..Default::default() });
    let placed = setup.place(12).await;
    let cancelled: Vec<String> = placed.iter().step_by(3).cloned().collect();
    let gids: Vec<String> = setup.shop.with_state(|state| {
        state
            .orders
            .values()
            .filter(|order| cancelled.contains(&order.name()))
            .map(|order| format!("gid://shopify/Order/{}", order.id))
            .collect()
    });
    assert_eq!(gids.len(), cancelled.len());
    setup.shop.advance_clock(Duration::from_secs(2));
    for gid in &gids {
        let response: serde_json::Value = setup
            .client
            .post(setup.shop.graphql_url("2026-10"))
            .header("X-Shopify-Access-Token", setup.shop.access_token())
            .json(&serde_json::json!({ "query": format!(
                "mutation {{ orderCancel(orderId: \"{gid}\", reason: CUSTOMER, restock: false, refund: false) {{ job {{ id }} orderCancelUserErrors {{ message }} }} }}"
            ) }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            response["data"]["orderCancel"]["orderCancelUserErrors"].as_array().is_some_and(Vec::is_empty),
            "{response}"
        );
    }
    setup.expect_each_once(&placed, Duration::from_secs(30)).await;
    let states = || {
        setup.odoo.with_state(|state| {
            state
                .ids("sale.order")
                .into_iter()
                .map(|id| {
                    (
                        state.raw_text("sale.order", id, "client_order_ref").unwrap_or_default(),
                        state.raw_text("sale.order", id, "state").unwrap_or_default(),
                    )
                })
                .collect::<BTreeMap<String, String>>()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let states = states();
        let done = placed.iter().all(|number| {
            let state = states.get(number).map(String::as_str);
            if cancelled.contains(number) { state == Some("cancel") } else { state.is_some_and(|s| s != "cancel") }
        });
        if done {
            break;
        }
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(setup.dir.path().join("serve.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
            panic!("not every order ended in its latest state: {states:?}\nserve's log ends:\n{}", tail.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    setup.expect_each_once(&placed, Duration::from_secs(5)).await;
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    for delivery in setup.shop.deliveries() {
        *sent.entry(delivery.webhook_id).or_default() += 1;
    }
    assert!(sent.values().any(|copies| *copies > 1), "some deliveries came twice (else the test proved less)");
}
