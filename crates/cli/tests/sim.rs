//! `erpsync sim shopify|odoo` serve their APIs: the printed URL answers a real request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

/// The simulator process and its standard output, kept open so that it can go on printing.
struct Running(Child, #[allow(dead_code)] BufReader<std::process::ChildStdout>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn start(args: &[&str]) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_erpsync")).args(args).stdout(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    output.read_line(&mut first).unwrap();
    let url = first.split_whitespace().last().unwrap_or_default().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{first}");
    (Running(child, output), url)
}

/// A plain HTTP/1.1 POST: the test needs no client library for one request.
fn post(url: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let address = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn shopify_simulator_answers_graphql_with_cost() {
    let (_sim, url) = start(&["sim", "shopify", "--products", "3"]);
    let response = post(
        &url,
        "/admin/api/2026-10/graphql.json",
        &[("X-Shopify-Access-Token", "shpat_simulator")],
        r#"{"query":"{ products(first: 5) { nodes { title } } }"}"#,
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"products\"") && response.contains("throttleStatus"), "{response}");
    let denied = post(
        &url,
        "/admin/api/2026-10/graphql.json",
        &[("X-Shopify-Access-Token", "wrong")],
        r#"{"query":"{ shop { name } }"}"#,
    );
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
}

#[test]
fn odoo_simulator_authenticates_over_json_rpc() {
    let (_sim, url) = start(&["sim", "odoo", "--products", "3"]);
    let body = r#"{"jsonrpc":"2.0","method":"call","params":{"service":"common","method":"authenticate","args":["odoo","admin","admin",{}]},"id":1}"#;
    let response = post(&url, "/jsonrpc", &[], body);
    assert!(response.contains("\"result\":2"), "{response}");
    let wrong = body.replace("\"admin\",\"admin\"", "\"admin\",\"nope\"");
    assert!(post(&url, "/jsonrpc", &[], &wrong).contains("\"result\":false"));
}
