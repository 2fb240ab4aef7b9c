//! `erpsync demo --duration`: both simulators, every default flow under `serve`, end to end.
//! The catalog reaches the shop, every order placed in the shop reaches Odoo exactly once,
//! nothing fails, and an order can be traced across both systems afterwards.

use std::process::Command;

fn figure(output: &str, label: &str) -> usize {
    let line = output.lines().find(|line| line.trim_start().starts_with(label)).unwrap_or_else(|| {
        panic!("no {label:?} line in the demo's output:\n{output}");
    });
    line[line.find(':').unwrap() + 1..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn the_demo_syncs_the_catalog_and_every_order_once() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let output = Command::new(env!("CARGO_BIN_EXE_erpsync"))
        .args(["demo", "--dir"])
        .arg(&demo)
        .args(["--products", "40", "--duration", "20s", "--orders-per-minute", "120"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let errors = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "the demo exits 0 when nothing failed:\n{text}\n{errors}");

    assert_eq!(figure(&text, "products in the shop:"), 40, "{text}");
    let placed = figure(&text, "orders placed in the shop:");
    let in_odoo = figure(&text, "sale orders in Odoo:");
    assert!(placed >= 10, "the order stream placed orders: {text}");
    assert_eq!(in_odoo, placed, "every shop order is in Odoo, once: {text}");

    // The first order, traced by its number: linked in both systems.
    let config = demo.join("erpsync.toml");
    let trace = Command::new(env!("CARGO_BIN_EXE_erpsync"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(demo.join("data"))
        .args(["trace", "#1001", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&trace.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&trace.stdout)));
    let systems: Vec<&str> = report["records"][0]["identity"]["links"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"))
        .iter()
        .filter_map(|link| link["system"].as_str())
        .collect();
    assert!(systems.contains(&"shopify") && systems.contains(&"odoo"), "{report}");
}
