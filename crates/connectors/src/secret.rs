//! Secrets in the configuration: only references (`"${ENV_VAR}"` or `{ file = "path" }`), never
//! literals, resolved when a connector is built and held in a type that never prints its value.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, de};
use std::fmt;
use std::path::PathBuf;

/// Where a secret comes from. Parsing the configuration reads only this reference; the value is
/// fetched by [`SecretRef::resolve`] when the connector is built.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    /// A relative `{ file = ... }` path is relative to the configuration file's folder (as every
    /// path in the configuration): makes it so. Call once after loading.
    pub fn resolve_path(&mut self, base_dir: &std::path::Path) {
        if let SecretRef::File(path) = self
            && path.is_relative()
        {
            *path = base_dir.join(&*path);
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "${{{name}}}"),
            SecretRef::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSecret {
    Text(String),
    File { file: PathBuf },
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match RawSecret::deserialize(deserializer)? {
            RawSecret::File { file } => Ok(SecretRef::File(file)),
            RawSecret::Text(text) => {
                let name = text.strip_prefix("${").and_then(|rest| rest.strip_suffix('}'));
                match name {
                    Some(name) if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                        Ok(SecretRef::Env(name.to_string()))
                    }
                    _ => Err(de::Error::custom(
                        "secrets are not written into the configuration: use \"${ENV_VAR}\" or { file = \"/path/to/secret\" }",
                    )),
                }
            }
        }
    }
}

/// A resolved secret. `Debug` and `Display` print `[redacted]`.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a secret obtained at run time (an OAuth token).
    pub fn from_string(value: String) -> Secret {
        Secret(SecretString::from(value))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set (it holds a secret named in the configuration)")]
    MissingEnv(String),
    #[error("reading the secret file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the secret in {0} is empty")]
    Empty(String),
}

impl SecretRef {
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        let value = match self {
            SecretRef::Env(name) => std::env::var(name).map_err(|_| SecretError::MissingEnv(name.clone()))?,
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|source| SecretError::File { path: path.clone(), source })?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        };
        if value.is_empty() {
            return Err(SecretError::Empty(format!("{self:?}")));
        }
        Ok(Secret(SecretString::from(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Holder {
        token: SecretRef,
    }

    #[test]
    fn accepts_references_and_refuses_literals() {
        let holder: Holder = toml::from_str("token = \"${SHOP_TOKEN}\"").unwrap();
        assert_eq!(holder.token, SecretRef::Env("SHOP_TOKEN".into()));
        let holder: Holder = toml::from_str("token = { file = \"/run/secrets/token\" }").unwrap();
        assert_eq!(holder.token, SecretRef::File("/run/secrets/token".into()));
        let error = toml::from_str::<Holder>("token = \"shpat_123\"").unwrap_err();
        // The message (what `erpsync validate` prints, with line and column) never repeats the
        // literal; toml's own Display adds a source snippet, which erpsync does not print.
        assert!(error.message().contains("${ENV_VAR}"), "{error}");
        assert!(!error.message().contains("shpat_123"), "the literal must not be echoed: {error}");
    }

    #[test]
    fn resolved_values_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cr3t\n").unwrap();
        let secret = SecretRef::File(path).resolve().unwrap();
        assert_eq!(secret.expose(), "s3cr3t");
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
        let missing = SecretRef::Env("ERPSYNC_TEST_SURELY_UNSET_VARIABLE".into()).resolve().unwrap_err();
        assert!(missing.to_string().contains("ERPSYNC_TEST_SURELY_UNSET_VARIABLE"));
    }
}
