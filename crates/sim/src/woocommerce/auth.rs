//! Consumer-key authentication as WooCommerce does it.
//!
//! - Over HTTPS (here: when the simulator is configured as sitting behind an HTTPS terminator),
//!   HTTP Basic with the consumer key as user and the secret as password, or the
//!   `consumer_key`/`consumer_secret` query parameters.
//! - Over plain HTTP, OAuth 1.0a one-legged: `oauth_consumer_key`, `oauth_timestamp`,
//!   `oauth_nonce`, `oauth_signature_method` (HMAC-SHA1 or HMAC-SHA256) and `oauth_signature`,
//!   in the query string or an `Authorization: OAuth` header. The base string is
//!   `METHOD&pct(URL)&pct(sorted pct(key)=pct(value) pairs joined with &)` over the site URL
//!   with the request path (no query), every query parameter is signed, the body is not; the key
//!   is `consumer_secret&` (no token). The timestamp must be within 15 minutes of now and the
//!   nonce unused for that key.
//! - Basic credentials sent over plain HTTP are ignored, as WooCommerce ignores them: the
//!   request is then unauthenticated.

use std::collections::HashMap;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;

use super::state::WooError;

/// What a key may do, as chosen when it is created in WooCommerce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPermissions {
    Read,
    Write,
    ReadWrite,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub consumer_key: String,
    pub consumer_secret: String,
    pub permissions: KeyPermissions,
}

/// How far `oauth_timestamp` may be from now.
pub const TIMESTAMP_WINDOW_SECONDS: i64 = 15 * 60;

/// RFC 3986 percent-encoding (PHP's `rawurlencode`): all but `A-Z a-z 0-9 - _ . ~`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes, and `+` as a space when `plus_is_space` (query strings).
pub fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        index += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query string as decoded pairs, in order.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key, true), percent_decode(value, true))
        })
        .collect()
}

/// The OAuth 1.0a signature base string, as WooCommerce builds it: parameters sorted by
/// key (byte order), `oauth_signature` excluded.
pub fn oauth_base_string(method: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().filter(|(key, _)| key != "oauth_signature").collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then_with(|| a.1.cmp(&b.1)));
    let joined: Vec<String> = sorted
        .iter()
        .map(|(key, value)| percent_encode(&format!("{}={}", percent_encode(key), percent_encode(value))))
        .collect();
    format!("{}&{}&{}", method.to_ascii_uppercase(), percent_encode(url), joined.join("%26"))
}

/// Base64 of HMAC over the base string with `consumer_secret&`; `None` for an unknown method.
pub fn oauth_signature(signature_method: &str, consumer_secret: &str, base_string: &str) -> Option<String> {
    let key = format!("{consumer_secret}&");
    let bytes = match signature_method {
        "HMAC-SHA1" => {
            let mut mac =
                <Hmac<Sha1> as KeyInit>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
            mac.update(base_string.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        "HMAC-SHA256" => {
            let mut mac =
                <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
            mac.update(base_string.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        _ => return None,
    };
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// One request as authentication sees it.
pub struct AuthRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub authorization: Option<&'a str>,
}

/// Parses `OAuth key="value", ...` (values percent-encoded).
fn parse_oauth_header(header: &str) -> Vec<(String, String)> {
    let Some(rest) = header.strip_prefix("OAuth ") else { return Vec::new() };
    rest.split(',')
        .filter_map(|part| {
            let (key, value) = part.trim().split_once('=')?;
            let key = key.trim();
            if !key.starts_with("oauth_") {
                return None;
            }
            let value = value.trim().trim_matches('"');
            Some((key.to_string(), percent_decode(value, false)))
        })
        .collect()
}

fn auth_error(message: &str) -> WooError {
    WooError::new(401, "woocommerce_rest_authentication_error", message)
}

/// Who is calling, or the 401 WooCommerce answers.
pub fn authenticate<'k>(
    keys: &'k [ApiKey],
    https: bool,
    site_url: &str,
    nonces: &mut HashMap<String, HashMap<String, i64>>,
    now_unix: i64,
    request: &AuthRequest<'_>,
) -> Result<&'k ApiKey, WooError> {
    if https {
        if let Some(encoded) = request.authorization.and_then(|h| h.strip_prefix("Basic ")) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .unwrap_or_default();
            let (user, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
            return check_basic(keys, user, password);
        }
        let get = |name: &str| request.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        if let (Some(user), Some(password)) = (get("consumer_key"), get("consumer_secret")) {
            return check_basic(keys, user, password);
        }
    }
    let mut params: Vec<(String, String)> = request.query.to_vec();
    if let Some(header) = request.authorization {
        params.extend(parse_oauth_header(header));
    }
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    if get("oauth_consumer_key").is_none() {
        return Err(WooError::new(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources."));
    }
    for required in
        ["oauth_consumer_key", "oauth_timestamp", "oauth_nonce", "oauth_signature", "oauth_signature_method"]
    {
        if get(required).is_none() {
            return Err(auth_error(&format!("Missing OAuth parameter {required}")));
        }
    }
    let consumer_key = get("oauth_consumer_key").unwrap_or_default();
    let Some(key) = keys.iter().find(|k| k.consumer_key == consumer_key) else {
        return Err(auth_error("Consumer key is invalid."));
    };
    let method = get("oauth_signature_method").unwrap_or_default();
    if method != "HMAC-SHA1" && method != "HMAC-SHA256" {
        return Err(auth_error("Invalid signature - signature method is invalid."));
    }
    let url = format!("{}{}", site_url.trim_end_matches('/'), request.path);
    let base = oauth_base_string(request.method, &url, &params);
    let expected = oauth_signature(&method, &key.consumer_secret, &base).unwrap_or_default();
    let given = get("oauth_signature").unwrap_or_default().replace(' ', "+");
    if !constant_time_eq(expected.as_bytes(), given.as_bytes()) {
        return Err(auth_error("Invalid signature - provided signature does not match."));
    }
    let timestamp: i64 = get("oauth_timestamp").unwrap_or_default().parse().unwrap_or(i64::MIN);
    if timestamp < now_unix - TIMESTAMP_WINDOW_SECONDS || timestamp > now_unix + TIMESTAMP_WINDOW_SECONDS {
        return Err(auth_error("Invalid timestamp."));
    }
    let nonce = get("oauth_nonce").unwrap_or_default();
    let used = nonces.entry(key.consumer_key.clone()).or_default();
    used.retain(|_, at| *at >= now_unix - TIMESTAMP_WINDOW_SECONDS);
    if used.contains_key(&nonce) {
        return Err(auth_error("Invalid nonce - nonce has already been used."));
    }
    used.insert(nonce, timestamp);
    Ok(key)
}

fn check_basic<'k>(keys: &'k [ApiKey], user: &str, password: &str) -> Result<&'k ApiKey, WooError> {
    let Some(key) = keys.iter().find(|k| k.consumer_key == user) else {
        return Err(auth_error("Consumer key is invalid."));
    };
    if !constant_time_eq(key.consumer_secret.as_bytes(), password.as_bytes()) {
        return Err(auth_error("Consumer secret is invalid."));
    }
    Ok(key)
}

/// Whether the key may use `method`: reads need read access, everything else write access.
pub fn check_permission(key: &ApiKey, method: &str) -> Result<(), WooError> {
    let reading = matches!(method, "GET" | "HEAD" | "OPTIONS");
    match (key.permissions, reading) {
        (KeyPermissions::Write, true) => Err(auth_error("The API key provided does not have read permissions.")),
        (KeyPermissions::Read, false) => Err(auth_error("The API key provided does not have write permissions.")),
        _ => Ok(()),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_handles_plus_and_escapes() {
        assert_eq!(percent_decode("a+b%20c%2B", true), "a b c+");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("100%", true), "100%");
        assert_eq!(
            parse_query("x=1&y=a%26b&z"),
            vec![("x".into(), "1".into()), ("y".into(), "a&b".into()), ("z".into(), "".into())]
        );
    }
}
