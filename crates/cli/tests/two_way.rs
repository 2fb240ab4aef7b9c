//! Two flows of one entity in opposite directions: what erpsync writes to one side and reads
//! back from it is recognised as its own echo and not synced back, while a real edit on either
//! side goes across once. No ping-pong.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn erpsync(root: &Path, args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_erpsync"))
        .arg("--config")
        .arg(root.join("erpsync.toml"))
        .arg("--data-dir")
        .arg(root.join("data"))
        .args(args)
        .arg("--json")
        .env_remove("ERPSYNC_CONFIG")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    files
}

fn counts(summary: &Value) -> (i64, i64, i64, i64) {
    let counts = &summary["counts"];
    let get = |name: &str| counts[name].as_i64().unwrap();
    (get("read"), get("created") + get("updated"), get("skipped"), get("failed"))
}

#[test]
fn echoes_are_dropped_and_real_edits_cross_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("erp")).unwrap();
    std::fs::create_dir_all(root.join("shop")).unwrap();
    std::fs::write(
        root.join("erpsync.toml"),
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

[flows.products_back]
entity = "product"
source = "shop"
target = "erp"
"#,
    )
    .unwrap();
    let mut csv = String::from("code,title,sku,price,currency\n");
    for index in 0..20 {
        csv.push_str(&format!("P{index:02},Product {index},P{index:02},{index}.50,EUR\n"));
    }
    std::fs::write(root.join("erp/products.csv"), csv).unwrap();

    // ERP → shop: everything is new.
    assert_eq!(counts(&erpsync(root, &["sync", "products"])), (20, 20, 0, 0));
    // Shop → ERP reads the shop's files, which are erpsync's own writes: all echoes.
    let erp_files = files(&root.join("erp"));
    assert_eq!(counts(&erpsync(root, &["sync", "products_back"])), (20, 0, 20, 0));
    assert_eq!(files(&root.join("erp")), erp_files, "nothing was written back to the ERP");

    // Someone edits one product in the shop: it goes to the ERP once.
    let shop_file = files(&root.join("shop")).into_iter().next().unwrap();
    let line =
        std::fs::read_to_string(&shop_file).unwrap().lines().find(|line| line.contains("\"P05\"")).unwrap().to_string();
    let mut record: Value = serde_json::from_str(&line).unwrap();
    record["title"] = Value::String("Product 5, renamed in the shop".into());
    std::fs::write(root.join("shop/product-edit.jsonl"), format!("{record}\n")).unwrap();
    assert_eq!(counts(&erpsync(root, &["sync", "products_back"])), (1, 1, 0, 0));
    let new_erp_files: Vec<PathBuf> = files(&root.join("erp")).into_iter().filter(|f| !erp_files.contains(f)).collect();
    assert_eq!(new_erp_files.len(), 1);
    assert!(std::fs::read_to_string(&new_erp_files[0]).unwrap().contains("renamed in the shop"));

    // The ERP side now holds that write: reading it back towards the shop is an echo.
    let shop_files = files(&root.join("shop"));
    assert_eq!(counts(&erpsync(root, &["sync", "products"])), (1, 0, 1, 0));
    assert_eq!(files(&root.join("shop")), shop_files, "no ping-pong back to the shop");

    // A real change in the ERP still goes to the shop.
    std::fs::write(
        root.join("erp/products-2.csv"),
        "code,title,sku,price,currency\nP07,Product 7 new name,P07,7.50,EUR\n",
    )
    .unwrap();
    assert_eq!(counts(&erpsync(root, &["sync", "products"])), (1, 1, 0, 0));
}
