//! `erpsync token` and the admin API through the binary: a token created with the CLI opens the
//! API of `erpsync serve`, its secret is printed once and stored nowhere in clear, revoking it
//! closes the API at once, and both actions are in the audit log as the CLI user. With
//! `[server] tls_cert`/`tls_key`, the same API answers over HTTPS (certificate made with the
//! `openssl` command, requests made with `curl`; both must be installed).

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn erpsync(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_erpsync"))
        .arg("--config")
        .arg(dir.join("erpsync.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .env_remove("ERPSYNC_CONFIG")
        .env_remove("ERPSYNC_DATA_DIR")
        .env("USER", "anna")
        .output()
        .unwrap()
}

fn setup(tls: bool) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("erp")).unwrap();
    std::fs::create_dir_all(dir.path().join("shop")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let tls_settings = if tls {
        let made = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-keyout", "key.pem", "-out", "cert.pem", "-days", "1", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .current_dir(dir.path())
            .output()
            .expect("the openssl command is needed to make a test certificate");
        assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
        "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n"
    } else {
        ""
    };
    let config = format!(
        "[server]\nlisten = \"{address}\"\n{tls_settings}\n\
         [systems.erp]\ntype = \"files\"\npath = \"erp\"\nformat = \"csv\"\n\n\
         [systems.shop]\ntype = \"files\"\npath = \"shop\"\nformat = \"jsonl\"\n\n\
         [flows.products]\nentity = \"product\"\nsource = \"erp\"\ntarget = \"shop\"\n"
    );
    std::fs::write(dir.path().join("erpsync.toml"), config).unwrap();
    (dir, address)
}

fn serve(dir: &Path) -> Serve {
    let child = Command::new(env!("CARGO_BIN_EXE_erpsync"))
        .arg("--config")
        .arg(dir.join("erpsync.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("serve")
        .env_remove("ERPSYNC_CONFIG")
        .env_remove("ERPSYNC_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Serve(child)
}

/// `curl` answer: status code, then body.
fn curl(url: &str, token: &str) -> (u16, String) {
    let output = Command::new("curl")
        .args(["--silent", "--insecure", "--max-time", "5", "--write-out", "\n%{http_code}"])
        .args(["--header", &format!("Authorization: Bearer {token}"), url])
        .output()
        .expect("the curl command is needed to call the API");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn wait_until_answering(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while curl(url, "-").0 == 0 {
        assert!(Instant::now() < deadline, "erpsync serve did not answer at {url}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn create_token(dir: &Path, name: &str, role: &str) -> String {
    let output = erpsync(dir, &["token", "create", "--name", name, "--role", role]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let secret = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert!(secret.starts_with("erpsync_"), "{secret}");
    secret
}

#[test]
fn a_cli_token_opens_the_api_until_revoked_and_both_are_audited() {
    let (dir, address) = setup(false);
    let secret = create_token(dir.path(), "grafana", "viewer");

    let listed = erpsync(dir.path(), &["token", "list", "--json"]);
    let tokens: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(tokens[0]["name"], "grafana");
    assert_eq!(tokens[0]["role"], "viewer");
    assert_eq!(tokens[0]["created_by"], "cli:anna");
    assert!(!tokens.to_string().contains(&secret[8..]), "the secret is never listed");
    // The database and its write-ahead log: neither holds the secret.
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
        stored.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(stored.len() > 4096, "the store's files were read");
    assert!(!stored.windows(64).any(|window| window == &secret.as_bytes()[8..]), "the secret is not stored");

    let again = erpsync(dir.path(), &["token", "create", "--name", "grafana", "--role", "admin"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let _serve = serve(dir.path());
    let url = format!("http://{address}/api/v1/flows");
    wait_until_answering(&url);
    let (status, body) = curl(&url, &secret);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"name\":\"products\""), "{body}");

    let revoked = erpsync(dir.path(), &["token", "revoke", "grafana"]);
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    assert_eq!(curl(&url, &secret).0, 401, "a revoked token stops working at once");
    assert!(!erpsync(dir.path(), &["token", "revoke", "grafana"]).status.success());

    let admin = create_token(dir.path(), "root", "admin");
    let (status, audit) = curl(&format!("http://{address}/api/v1/audit"), &admin);
    assert_eq!(status, 200, "{audit}");
    let audit: Value = serde_json::from_str(&audit).unwrap();
    let entries: Vec<(&str, &str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    assert_eq!(
        entries,
        vec![
            ("cli:anna", "token.create", "token:root"),
            ("cli:anna", "token.revoke", "token:grafana"),
            ("cli:anna", "token.create", "token:grafana"),
        ]
    );
}

#[test]
fn the_api_answers_over_https_when_a_certificate_is_configured() {
    let (dir, address) = setup(true);
    let secret = create_token(dir.path(), "ops", "operator");
    let _serve = serve(dir.path());
    let url = format!("https://{address}/api/v1/flows");
    wait_until_answering(&url);
    let (status, body) = curl(&url, &secret);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"name\":\"products\""), "{body}");
    // Plain HTTP on the TLS port gets no API answer.
    let (status, _) = curl(&format!("http://{address}/api/v1/flows"), &secret);
    assert_ne!(status, 200);
}
