//! The same sync on the PostgreSQL store: the binary with `[store] url = "postgres://…"`.
//! PostgreSQL must run at 127.0.0.1:5432 (or `ERPSYNC_TEST_POSTGRES_URL`); `.ci/run` starts it.
//! When it is not reachable this test fails, it is never skipped.

use serde_json::Value;
use std::process::Command;

fn admin_url() -> String {
    std::env::var("ERPSYNC_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn psql(sql: &str) {
    let output =
        Command::new("psql").arg(admin_url()).args(["-v", "ON_ERROR_STOP=1", "-c", sql]).output().unwrap_or_else(
            |error| panic!("psql is needed to create the test database ({error}); install postgresql-client"),
        );
    assert!(
        output.status.success(),
        "PostgreSQL at {} is not usable: {}",
        admin_url(),
        String::from_utf8_lossy(&output.stderr)
    );
}

struct Database(String);

impl Drop for Database {
    fn drop(&mut self) {
        psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
    }
}

#[test]
fn sync_then_unchanged_then_failure_on_postgres() {
    let name = format!("erpsync_cli_test_{}", std::process::id());
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    psql(&format!("CREATE DATABASE {name}"));
    let database = Database(name);
    let base = admin_url();
    let url = format!("{}/{}", &base[..base.rfind('/').unwrap()], database.0);

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("erp")).unwrap();
    std::fs::create_dir_all(dir.path().join("shop")).unwrap();
    std::fs::write(
        dir.path().join("erpsync.toml"),
        format!(
            "[store]\nurl = \"{url}\"\n\n[systems.erp]\ntype = \"files\"\npath = \"erp\"\n\n[systems.shop]\ntype = \"files\"\npath = \"shop\"\nformat = \"jsonl\"\n\n[flows.products]\nentity = \"product\"\nsource = \"erp\"\ntarget = \"shop\"\npage_size = 100\n"
        ),
    )
    .unwrap();
    let mut csv = String::from("code,title,sku,price,currency\n");
    for index in 0..1000 {
        csv.push_str(&format!("P{index},Product {index},P{index},{}.50,EUR\n", index % 40));
    }
    csv.push_str("BAD,Bad currency,BAD,1.00,EUX\n");
    std::fs::write(dir.path().join("erp/products.csv"), csv).unwrap();

    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_erpsync"))
            .arg("--config")
            .arg(dir.path().join("erpsync.toml"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args)
            .env_remove("ERPSYNC_CONFIG")
            .output()
            .unwrap()
    };
    let first = run(&["sync", "products", "--json"]);
    assert_eq!(first.status.code(), Some(3), "{}", String::from_utf8_lossy(&first.stderr));
    let first: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(first["counts"]["created"], 1000, "{first}");
    assert_eq!(first["counts"]["failed"], 1, "{first}");

    let again = run(&["sync", "products", "--full", "--json"]);
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["counts"]["unchanged"], 1000, "{again}");
    assert_eq!(again["counts"]["created"].as_i64().unwrap() + again["counts"]["updated"].as_i64().unwrap(), 0);

    let failures: Value = serde_json::from_slice(&run(&["failures", "list", "--json"]).stdout).unwrap();
    assert_eq!(failures.as_array().unwrap().len(), 1, "{failures}");
    assert!(failures[0]["error"].as_str().unwrap().contains("EUX"));
    assert!(!dir.path().join("data").exists(), "no SQLite file when the store is PostgreSQL");
}
