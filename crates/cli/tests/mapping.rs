//! Mappings end to end through the binary: field overrides, lookup tables, filters, mapping
//! errors as dead letters, configuration errors with positions, and `erpsync mapping test`.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn erpsync(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_erpsync"))
        .arg("--config")
        .arg(root.join("erpsync.toml"))
        .arg("--data-dir")
        .arg(root.join("data"))
        .args(args)
        .env_remove("ERPSYNC_CONFIG")
        .env_remove("ERPSYNC_DATA_DIR")
        .output()
        .unwrap()
}

const CONFIG: &str = r#"
[systems.erp]
type = "files"
path = "erp"

[systems.shop]
type = "files"
path = "shop"
format = "jsonl"

[lookups.tax_codes]
values = { "standard" = "DE-19", "reduced" = "DE-7" }
on_unknown = "error"

[flows.products]
entity = "product"
source = "erp"
target = "shop"

[flows.products.mapping]
filter = "status = 'active'"

[flows.products.mapping.fields]
title = "$uppercase(title)"
tax_class = "$lookup_tax_codes(tax_class)"
"extra.channel" = "'web'"
"#;

fn setup(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("erp")).unwrap();
    std::fs::create_dir_all(dir.path().join("shop")).unwrap();
    std::fs::write(dir.path().join("erpsync.toml"), config).unwrap();
    dir
}

fn shop_records(root: &Path) -> Vec<Value> {
    let mut records = Vec::new();
    for entry in std::fs::read_dir(root.join("shop")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        records
            .extend(text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str::<Value>(l).unwrap()));
    }
    records.sort_by(|a, b| a["code"].as_str().cmp(&b["code"].as_str()));
    records
}

#[test]
fn fields_lookups_and_filters_apply_and_mapping_errors_are_dead_letters() {
    let dir = setup(CONFIG);
    std::fs::write(
        dir.path().join("erp/products.csv"),
        "code,title,status,tax_class,sku,price,currency\n\
         A,shirt,active,standard,A,10.00,EUR\n\
         B,old shirt,archived,standard,B,10.00,EUR\n\
         C,book,active,reduced,C,5.00,EUR\n\
         D,mystery,active,luxury,D,5.00,EUR\n",
    )
    .unwrap();
    let output = erpsync(dir.path(), &["sync", "products", "--json"]);
    assert_eq!(output.status.code(), Some(3), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["counts"]["created"], 2, "{summary}");
    assert_eq!(summary["counts"]["skipped"], 1, "{summary}");
    assert_eq!(summary["counts"]["failed"], 1, "{summary}");

    let records = shop_records(dir.path());
    let codes: Vec<&str> = records.iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["A", "C"]);
    assert_eq!(records[0]["title"], "SHIRT");
    assert_eq!(records[0]["tax_class"], "DE-19");
    assert_eq!(records[1]["tax_class"], "DE-7");
    assert_eq!(records[0]["extra"]["channel"], "web");

    let failures: Value = serde_json::from_slice(&erpsync(dir.path(), &["failures", "list", "--json"]).stdout).unwrap();
    let error = failures[0]["error"].as_str().unwrap();
    assert!(
        error.contains("products.csv: row 5") && error.contains("luxury") && error.contains("tax_codes"),
        "{error}"
    );
    assert_eq!(failures[0]["error_kind"], "mapping");
    // The dead letter keeps the record as read, not as mapped, so a retry maps it again.
    assert_eq!(failures[0]["payload"]["record"]["title"], "mystery", "{}", failures[0]["payload"]);
}

#[test]
fn mapping_errors_in_the_configuration_name_file_line_and_field() {
    let config = CONFIG.replace("$uppercase(title)", "$uppercase(title").replace("'web'", "$lookup_vat(tax_class)");
    let dir = setup(&config);
    let output = erpsync(dir.path(), &["validate"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let title_line = config.lines().position(|line| line.starts_with("title =")).unwrap() + 1;
    assert!(stderr.contains(&format!("erpsync.toml:{title_line}:")), "{stderr}");
    assert!(stderr.contains("flows.products.mapping.fields.title"), "{stderr}");
    assert!(stderr.contains("lookup_vat") || stderr.contains("vat"), "{stderr}");
}

#[test]
fn mapping_test_command_runs_cases_against_the_flows() {
    let dir = setup(CONFIG);
    let tests = r#"
[[tests]]
name = "titles are upper case"
flow = "products"
input = { entity = "product", code = "A", title = "shirt", status = "active", tax_class = "standard", variants = [{ sku = "A" }] }
expected = { title = "SHIRT", tax_class = "DE-19" }

[[tests]]
name = "archived products are skipped"
flow = "products"
input = { entity = "product", code = "B", title = "x", status = "archived", tax_class = "standard", variants = [{ sku = "B" }] }
expected_skipped = true

[[tests]]
name = "a wrong expectation fails"
flow = "products"
input = { entity = "product", code = "C", title = "x", status = "active", tax_class = "reduced", variants = [{ sku = "C" }] }
expected = { tax_class = "DE-19" }
"#;
    std::fs::write(dir.path().join("mapping-tests.toml"), tests).unwrap();
    let output = erpsync(dir.path(), &["mapping", "test", dir.path().join("mapping-tests.toml").to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ok   titles are upper case"), "{stdout}");
    assert!(stdout.contains("ok   archived products are skipped"), "{stdout}");
    assert!(stdout.contains("FAIL a wrong expectation fails") && stdout.contains("DE-7"), "{stdout}");
    assert!(stdout.contains("2 passed, 1 failed"), "{stdout}");
}
