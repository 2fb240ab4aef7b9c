//! End to end through the `erpsync` binary: a 10,000-product CSV synced into a folder, a
//! second run that writes nothing, ten changed rows that write exactly ten records, bad rows
//! that become dead letters, and `kill -9` at different points that still gives exactly the
//! target state of an uninterrupted run.

mod common;

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Setup {
    /// An ERP export folder (CSV) and a shop import folder (JSON Lines), one product flow.
    fn new(page_size: usize) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("erp")).unwrap();
        std::fs::create_dir_all(root.join("shop")).unwrap();
        let config = format!(
            r#"
[systems.erp]
type = "files"
path = "erp"
format = "csv"

[systems.shop]
type = "files"
path = "shop"
format = "jsonl"

[flows.products]
entity = "product"
source = "erp"
target = "shop"
page_size = {page_size}

[flows.stock]
entity = "stock_level"
source = "erp"
target = "shop"
"#
        );
        std::fs::write(root.join("erpsync.toml"), config).unwrap();
        Setup { _dir: dir, root }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_erpsync"));
        command
            .arg("--config")
            .arg(self.root.join("erpsync.toml"))
            .arg("--data-dir")
            .arg(self.root.join("data"))
            .args(args)
            .env_remove("ERPSYNC_CONFIG")
            .env_remove("ERPSYNC_DATA_DIR");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs a sync with `--json` and returns its summary; panics with the output on errors
    /// other than failed records.
    fn sync(&self, extra: &[&str]) -> Value {
        let mut args = vec!["sync", "products", "--json"];
        args.extend_from_slice(extra);
        let output = self.run(&args);
        let code = output.status.code();
        assert!(
            code == Some(0) || code == Some(3),
            "sync failed ({code:?}):\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!("sync printed no JSON summary ({error}): {}", String::from_utf8_lossy(&output.stdout))
        })
    }

    fn write_catalog(&self, name: &str, text: &str) {
        // Write then rename, as an ERP drop should, so the reader never sees half a file.
        let temporary = self.root.join("erp").join(format!(".{name}.partial"));
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(&temporary, self.root.join("erp").join(name)).unwrap();
    }

    fn shop_files(&self) -> Vec<PathBuf> {
        files_in(&self.root.join("shop"))
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).filter(|path| path.is_file()).collect();
    files.sort();
    files
}

/// Every record in the JSON Lines files of a folder, by natural key, once no writer is running.
/// Panics on a duplicate and on a temporary file left behind.
fn target_state(dir: &Path) -> BTreeMap<String, Value> {
    read_target(dir, false)
}

/// The records of the finished batch files while a writer may be running: a temporary file is
/// a batch being written and is not part of the state yet.
fn target_state_while_writing(dir: &Path) -> BTreeMap<String, Value> {
    read_target(dir, true)
}

fn read_target(dir: &Path, writer_running: bool) -> BTreeMap<String, Value> {
    let mut state = BTreeMap::new();
    for file in files_in(dir) {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let temporary = name.starts_with('.') || name.ends_with(".tmp");
        if temporary && writer_running {
            continue;
        }
        assert!(!temporary, "a temporary file was left behind: {name}");
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let record: Value = serde_json::from_str(line).unwrap();
            let key = record["code"].as_str().unwrap().to_string();
            if let Some(previous) = state.insert(key.clone(), record) {
                panic!("record {key} was written twice (again in {name}); first: {previous}");
            }
        }
    }
    state
}

fn count(summary: &Value, field: &str) -> i64 {
    summary["counts"][field].as_i64().unwrap()
}

/// `products` products with `variants` sizes each; the price depends on `version` so a
/// changed catalog can be produced.
fn catalog(products: usize, variants: usize, changed: &[usize]) -> String {
    let sizes = ["S", "M", "L", "XL"];
    let mut csv = String::from("code,title,vendor,sku,option1_name,option1_value,price,currency\n");
    for index in 0..products {
        let bump = if changed.contains(&index) { 1 } else { 0 };
        for size in &sizes[..variants] {
            let _ = writeln!(
                csv,
                "P{index:06},Product {index},Acme,P{index:06}-{size},Size,{size},{}.{:02},EUR",
                10 + index % 50 + bump,
                index % 100
            );
        }
    }
    csv
}

#[test]
fn ten_thousand_products_then_nothing_then_exactly_ten() {
    let setup = Setup::new(500);
    setup.write_catalog("products.csv", &catalog(10_000, 2, &[]));

    let first = setup.sync(&[]);
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(count(&first, "read"), 10_000);
    assert_eq!(count(&first, "created"), 10_000);
    assert_eq!(count(&first, "failed"), 0);
    let state = target_state(&setup.root.join("shop"));
    assert_eq!(state.len(), 10_000);
    assert_eq!(state["P000042"]["variants"][1]["sku"], "P000042-M");
    let files_after_first = setup.shop_files();

    // Nothing new in the ERP folder: nothing read, nothing written.
    let second = setup.sync(&[]);
    assert_eq!(count(&second, "created") + count(&second, "updated"), 0, "{second}");
    assert_eq!(setup.shop_files(), files_after_first);

    // A full re-read of the unchanged catalog compares every record and still writes nothing.
    let full = setup.sync(&["--full"]);
    assert_eq!(count(&full, "read"), 10_000, "{full}");
    assert_eq!(count(&full, "unchanged"), 10_000, "{full}");
    assert_eq!(count(&full, "created") + count(&full, "updated"), 0, "{full}");
    assert_eq!(setup.shop_files(), files_after_first);

    // The ERP exports the catalog again with ten prices changed: exactly ten records written.
    let changed: Vec<usize> = (0..10).map(|i| i * 997).collect();
    setup.write_catalog("products.csv", &catalog(10_000, 2, &changed));
    let third = setup.sync(&[]);
    assert_eq!(count(&third, "updated"), 10, "{third}");
    assert_eq!(count(&third, "created"), 0, "{third}");
    assert_eq!(count(&third, "unchanged"), 9_990, "{third}");
    let new_files: Vec<PathBuf> =
        setup.shop_files().into_iter().filter(|file| !files_after_first.contains(file)).collect();
    let written: usize = new_files
        .iter()
        .map(|file| std::fs::read_to_string(file).unwrap().lines().filter(|l| !l.trim().is_empty()).count())
        .sum();
    assert_eq!(written, 10, "new files: {new_files:?}");

    // Status and trace see it.
    let status: Value = serde_json::from_slice(&setup.run(&["status", "--json"]).stdout).unwrap();
    let products = status.as_array().unwrap().iter().find(|flow| flow["name"] == "products").unwrap();
    assert_eq!(products["last_run"]["status"], "succeeded");
    assert_eq!(products["open_failures"], 0);
    let trace = setup.run(&["trace", "P000997", "--json"]);
    assert!(trace.status.success());
    let trace: Value = serde_json::from_slice(&trace.stdout).unwrap();
    let events = trace["records"][0]["events"].as_array().unwrap();
    let actions: Vec<&str> = events.iter().map(|event| event["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["created", "updated"], "{trace}");
    let systems: Vec<&str> = trace["records"][0]["identity"]["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["system"].as_str().unwrap())
        .collect();
    assert!(systems.contains(&"erp") && systems.contains(&"shop"), "{trace}");
}

#[test]
fn bad_rows_become_dead_letters_naming_file_row_and_reason() {
    let setup = Setup::new(100);
    let csv = "code,title,sku,price,currency\n\
               GOOD-1,Good one,GOOD-1,10.00,EUR\n\
               BROKEN,\"unterminated,quote,10.00,EUR\n\
               GOOD-2,Good two,GOOD-2,11.00,EUR\n\
               NOSKU,No sku,,12.00,EUR\n\
               CUR,Unknown currency,CUR,13.00,EUX\n\
               NEG,Negative price,NEG,-1.00,EUR\n\
               GOOD-1,Good one again,GOOD-1,10.00,EUR\n\
               GOOD-3,Good three,GOOD-3,12.00,EUR\n";
    setup.write_catalog("products.csv", csv);
    let summary = setup.sync(&[]);
    assert_eq!(summary["status"], "partially_failed", "{summary}");
    let state = target_state(&setup.root.join("shop"));
    for key in ["GOOD-1", "GOOD-2", "GOOD-3"] {
        assert!(state.contains_key(key), "{key} missing from {:?}", state.keys());
    }
    assert_eq!(state["GOOD-1"]["title"], "Good one", "the first of two duplicates is kept");

    let output = setup.run(&["failures", "list", "--json"]);
    assert!(output.status.success());
    let failures: Value = serde_json::from_slice(&output.stdout).unwrap();
    let failures = failures.as_array().unwrap();
    let reasons: Vec<String> = failures.iter().map(|f| f["error"].as_str().unwrap().to_string()).collect();
    let joined = reasons.join("\n");
    assert!(failures.len() >= 4, "{joined}");
    // Every reason names the file and the row.
    for reason in &reasons {
        assert!(reason.contains("products.csv") && reason.contains("row"), "{reason}");
    }
    assert!(reasons.iter().any(|r| r.contains("sku") && r.contains("required")), "{joined}");
    assert!(reasons.iter().any(|r| r.contains("EUX")), "{joined}");
    assert!(reasons.iter().any(|r| r.contains("negative")), "{joined}");
    assert!(reasons.iter().any(|r| r.to_lowercase().contains("duplicate")), "{joined}");

    // Fixing the source resolves the failures on the next sync.
    let fixed = csv.replace("EUX", "EUR").replace("-1.00", "1.00").replace("NOSKU,No sku,,", "NOSKU,No sku,NOSKU,");
    setup.write_catalog("products.csv", &fixed);
    setup.sync(&[]);
    let open: Value = serde_json::from_slice(&setup.run(&["failures", "list", "--json"]).stdout).unwrap();
    let remaining: Vec<String> =
        open.as_array().unwrap().iter().map(|f| f["error"].as_str().unwrap().to_string()).collect();
    assert!(remaining.iter().all(|r| !r.contains("EUX") && !r.contains("negative")), "{remaining:?}");

    // A failure can be discarded by hand, and the discard is audited.
    let id = open.as_array().unwrap().first().map(|f| f["id"].as_i64().unwrap());
    if let Some(id) = id {
        let discard = setup.run(&["failures", "discard", &id.to_string(), "--reason", "handled in the ERP"]);
        assert!(discard.status.success(), "{}", String::from_utf8_lossy(&discard.stderr));
        let shown: Value =
            serde_json::from_slice(&setup.run(&["failures", "show", &id.to_string(), "--json"]).stdout).unwrap();
        assert_eq!(shown["status"], "discarded");
    }
}

#[test]
fn negative_stock_is_a_dead_letter_and_the_rest_syncs() {
    let setup = Setup::new(100);
    setup.write_catalog("stock_level.csv", "sku,location,available\nA,WH1,5\nB,WH1,-2\nC,WH1,0\n");
    let output = setup.run(&["sync", "stock", "--json"]);
    assert_eq!(output.status.code(), Some(3), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(count(&summary, "created"), 2);
    assert_eq!(count(&summary, "failed"), 1);
    let failures: Value = serde_json::from_slice(&setup.run(&["failures", "list", "--json"]).stdout).unwrap();
    let error = failures[0]["error"].as_str().unwrap();
    assert!(error.contains("stock_level.csv") && error.contains("row 3") && error.contains("negative"), "{error}");
}

#[test]
fn kill_nine_at_any_moment_then_resume_gives_the_uninterrupted_state() {
    let products = 6_000;
    let csv = catalog(products, 3, &[]);

    // Reference: an uninterrupted run.
    let reference = Setup::new(50);
    reference.write_catalog("products.csv", &csv);
    let summary = reference.sync(&[]);
    assert_eq!(count(&summary, "created"), products as i64);
    let expected = target_state(&reference.root.join("shop"));
    assert_eq!(expected.len(), products);

    // The same sync, killed with SIGKILL at several points, then resumed each time. The
    // points are chosen by progress (how many batch files the target has), not by time, so the
    // test kills mid-run on a fast machine as on a slow one; the extra microseconds after each
    // threshold land the kill in different phases (reading, writing, committing).
    let setup = Setup::new(50);
    setup.write_catalog("products.csv", &csv);
    let shop = setup.root.join("shop");
    let mut kills = 0;
    for (threshold, extra_micros) in
        [(2usize, 0u64), (9, 700), (21, 150), (40, 2_500), (63, 40), (88, 1_200), (105, 300)]
    {
        let mut child = setup
            .command(&["sync", "products", "--json", "--no-progress"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let finished = loop {
            if child.try_wait().unwrap().is_some() {
                break true;
            }
            if std::fs::read_dir(&shop).unwrap().count() >= threshold {
                break false;
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        if finished {
            break; // the remaining work was done before this kill point
        }
        std::thread::sleep(Duration::from_micros(extra_micros));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        kills += 1;
    }
    eprintln!("killed the sync {kills} times");
    assert!(kills >= 3, "the sync finished too fast to be killed mid-way ({kills} kills)");
    let last = setup.sync(&[]);
    assert!(last["status"] == "succeeded", "{last}");

    let state = target_state(&setup.root.join("shop"));
    assert_eq!(state.len(), expected.len(), "records lost or added");
    assert!(state == expected, "the target differs from the uninterrupted run");

    // Every product has exactly one link and the store agrees nothing is left to do.
    let again = setup.sync(&["--full"]);
    assert_eq!(count(&again, "unchanged"), products as i64, "{again}");
    assert_eq!(count(&again, "created") + count(&again, "updated"), 0, "{again}");
}

#[test]
fn validate_reports_every_problem_with_file_line_and_field() {
    let setup = Setup::new(100);
    std::fs::write(
        setup.root.join("erpsync.toml"),
        "[systems.erp]\ntype = \"files\"\npath = \"erp\"\n\n[flows.products]\nentity = \"produkt\"\nsource = \"erp\"\ntarget = \"nowhere\"\n",
    )
    .unwrap();
    let output = setup.run(&["validate"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("erpsync.toml:6:") && stderr.contains("flows.products.entity"), "{stderr}");
    assert!(stderr.contains("erpsync.toml:8:") && stderr.contains("nowhere"), "{stderr}");
}

/// A spawned `erpsync` that is killed when dropped, so a failing test leaves no process behind.
struct Reaped(std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.0.kill().ok();
            self.0.wait().ok();
        }
    }
}

fn send_sigterm(child: &std::process::Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

fn wait_with_timeout(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            child.kill().ok();
            panic!("the process did not stop within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_finishes_the_page_and_the_next_sync_resumes() {
    let products = 4_000;
    let setup = Setup::new(50);
    setup.write_catalog("products.csv", &catalog(products, 3, &[]));
    let mut child = setup
        .command(&["sync", "products", "--json", "--no-progress"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    if child.try_wait().unwrap().is_some() {
        panic!("the sync finished before it could be interrupted; make the catalog larger");
    }
    send_sigterm(&child);
    let status = wait_with_timeout(&mut child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "an interrupted run exits with 1");
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["status"], "interrupted", "{summary}");
    let done_before = count(&summary, "created");
    assert!(done_before > 0 && done_before < products as i64, "{summary}");

    let rest = setup.sync(&[]);
    assert_eq!(count(&rest, "created"), products as i64 - done_before, "{rest}");
    assert_eq!(target_state(&setup.root.join("shop")).len(), products);
}

#[test]
fn serve_runs_flows_on_their_interval_and_stops_on_sigterm() {
    let setup = Setup::new(500);
    let config = std::fs::read_to_string(setup.root.join("erpsync.toml")).unwrap();
    let config = config.replace("page_size = 500\n", "page_size = 500\ninterval = \"1s\"\n");
    let config = format!("[server]\nlisten = \"127.0.0.1:0\"\n{config}");
    std::fs::write(setup.root.join("erpsync.toml"), config).unwrap();
    setup.write_catalog("products.csv", &catalog(50, 1, &[]));
    let mut child = Reaped(setup.command(&["serve"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());

    // The first run happens at start; a file dropped later is picked up by a later run.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while target_state_while_writing(&setup.root.join("shop")).len() < 50 {
        assert!(std::time::Instant::now() < deadline, "serve did not sync the catalog");
        std::thread::sleep(Duration::from_millis(100));
    }
    setup.write_catalog("more.csv", "code,title,sku,price,currency\nLATE-1,Late,LATE-1,1.00,EUR\n");
    // more.csv does not match the default products pattern unless named so; use the pattern.
    std::fs::rename(setup.root.join("erp/more.csv"), setup.root.join("erp/products-2.csv")).unwrap();
    while !target_state_while_writing(&setup.root.join("shop")).contains_key("LATE-1") {
        assert!(std::time::Instant::now() < deadline, "serve did not pick up the new file");
        std::thread::sleep(Duration::from_millis(100));
    }
    send_sigterm(&child);
    let status = wait_with_timeout(&mut child, Duration::from_secs(30));
    assert!(status.success(), "serve exits cleanly on SIGTERM: {status:?}");
    let runs: Value = serde_json::from_slice(&setup.run(&["status", "--json"]).stdout).unwrap();
    let products = runs.as_array().unwrap().iter().find(|flow| flow["name"] == "products").unwrap();
    assert_ne!(products["last_run"]["status"], "running", "{products}");
    // The scheduler stored the next run: a restart continues from it instead of running at once.
    let next_run = products["next_run"].as_str().unwrap_or_else(|| panic!("no stored next run: {products}"));
    let started = products["last_run"]["started_at"].as_str().unwrap();
    let parse = |text: &str| chrono::DateTime::parse_from_rfc3339(text).unwrap();
    assert!(parse(next_run) > parse(started), "next run {next_run} after the last start {started}");
    assert_eq!(target_state(&setup.root.join("shop")).len(), 51, "after a clean stop no temporary file is left");
}

/// Regression: batch ids were derived from the checkpoint before the page, so a `--full` run
/// (which starts from the same empty checkpoint as the very first run) wrote its changed
/// records under the first run's batch id and the files sink overwrote that batch, losing
/// records from the target. Ids now derive from the batch's content.
#[test]
fn a_full_run_with_changes_never_overwrites_earlier_batches() {
    let setup = Setup::new(10);
    setup.write_catalog("products.csv", &catalog(30, 1, &[]));
    assert_eq!(count(&setup.sync(&[]), "created"), 30);
    setup.write_catalog("products.csv", &catalog(30, 1, &[1, 2]));
    let full = setup.sync(&["--full"]);
    assert_eq!((count(&full, "updated"), count(&full, "unchanged")), (2, 28), "{full}");
    let mut latest: BTreeMap<String, Value> = BTreeMap::new();
    for file in setup.shop_files() {
        for line in std::fs::read_to_string(&file).unwrap().lines().filter(|l| !l.trim().is_empty()) {
            let record: Value = serde_json::from_str(line).unwrap();
            latest.insert(record["code"].as_str().unwrap().to_string(), record);
        }
    }
    assert_eq!(latest.len(), 30, "records were lost from the target");
    assert_eq!(latest["P000001"]["variants"][0]["price"]["amount"], "12.01");
}

/// A GET of `path` on `address`: (status code, body); `None` while nothing listens.
fn http_get(address: &str, path: &str) -> Option<(u16, String)> {
    let response = common::raw_http(address, "GET", path, &[], b"")?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    Some((status, body))
}

/// Scale-out processes that serve no HTTP (here a worker beside a scheduler on the embedded
/// store) expose their health and their own metrics with `--metrics-listen`.
#[test]
fn a_worker_serves_its_health_and_metrics_with_metrics_listen() {
    let setup = Setup::new(500);
    let config = std::fs::read_to_string(setup.root.join("erpsync.toml")).unwrap();
    let config = config.replace("page_size = 500\n", "page_size = 500\ninterval = \"1s\"\n");
    std::fs::write(setup.root.join("erpsync.toml"), config).unwrap();
    setup.write_catalog("products.csv", &catalog(20, 1, &[]));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let mut scheduler = Reaped(
        setup.command(&["serve", "--role", "scheduler"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap(),
    );
    let mut worker = Reaped(
        setup
            .command(&["serve", "--role", "worker", "--metrics-listen", &address])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = None;
    let metrics = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker's /metrics never counted the synced records; its last answer: {last:?}"
        );
        last = http_get(&address, "/metrics");
        if let Some((200, body)) = &last
            && body.lines().any(|line| {
                line.starts_with("erpsync_records_total{")
                    && line.contains("flow=\"products\"")
                    && line.contains("outcome=\"created\"")
                    && line.ends_with(" 20")
            })
        {
            break body.clone();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(metrics.contains("erpsync_runs_total"), "{metrics}");
    assert_eq!(http_get(&address, "/healthz").map(|(status, _)| status), Some(200));
    let (status, body) = http_get(&address, "/readyz").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("schema version"), "{body}");
    // Only health and metrics: no webhooks, no admin API on this address.
    assert_eq!(http_get(&address, "/api/v1/flows").map(|(status, _)| status), Some(404));

    for child in [&mut worker, &mut scheduler] {
        send_sigterm(child);
        let status = wait_with_timeout(child, Duration::from_secs(30));
        assert!(status.success(), "exits cleanly on SIGTERM: {status:?}");
    }
    assert!(http_get(&address, "/healthz").is_none(), "the metrics listener stops with the worker");
}

/// A run that fails as a whole on every delivery ends as a dead job of the queue, listed by
/// `erpsync failures jobs` with its flow and last error, and pointed to by `failures list`.
#[test]
fn a_run_failing_on_every_delivery_is_listed_as_a_dead_job() {
    let setup = Setup::new(500);
    let config = std::fs::read_to_string(setup.root.join("erpsync.toml")).unwrap();
    let config = config.replace("page_size = 500\n", "page_size = 500\ninterval = \"1s\"\n");
    let config = format!("[server]\nlisten = \"127.0.0.1:0\"\n\n[queue]\nmax_deliveries = 1\n{config}");
    std::fs::write(setup.root.join("erpsync.toml"), config).unwrap();
    setup.write_catalog("products.csv", &catalog(5, 1, &[]));
    let none: Value = serde_json::from_slice(&setup.run(&["failures", "jobs", "--json"]).stdout).unwrap();
    assert_eq!(none, serde_json::json!([]));
    let mut child = Reaped(setup.command(&["serve"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while target_state_while_writing(&setup.root.join("shop")).len() < 5 {
        assert!(std::time::Instant::now() < deadline, "serve did not sync the catalog");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The ERP's export folder goes away: every pull of the flow now fails as a whole.
    std::fs::rename(setup.root.join("erp"), setup.root.join("erp-gone")).unwrap();
    let jobs = loop {
        assert!(std::time::Instant::now() < deadline, "no dead job appeared");
        let output = setup.run(&["failures", "jobs", "--json"]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let jobs: Value = serde_json::from_slice(&output.stdout).unwrap();
        if jobs.as_array().is_some_and(|jobs| !jobs.is_empty()) {
            break jobs;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    send_sigterm(&child);
    assert!(wait_with_timeout(&mut child, Duration::from_secs(30)).success());
    let job = &jobs[0];
    assert_eq!(job["kind"], "run_flow", "{jobs}");
    assert!(job["flow"] == "products" || job["flow"] == "stock", "{jobs}");
    assert_eq!(job["attempts"], 1, "{jobs}");
    assert!(!job["error"].as_str().unwrap().is_empty(), "{jobs}");
    let table = String::from_utf8(setup.run(&["failures", "jobs"]).stdout).unwrap();
    assert!(table.starts_with("     JOB FLOW"), "{table}");
    let list = String::from_utf8(setup.run(&["failures", "list"]).stdout).unwrap();
    assert!(list.contains("dead in the queue (whole runs, not records): erpsync failures jobs"), "{list}");
}
