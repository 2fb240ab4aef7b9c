//! Content hashing: the snapshot hash that skips unchanged writes and recognises echoes.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io;

/// SHA-256 of a value's canonical JSON form.
///
/// Canonical means: struct fields in declaration order, object keys of [`crate::Extra`] sorted at
/// every depth, decimals normalized. The same content therefore gives the same hash whatever the
/// key order or number formatting of the source.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", &self.to_hex()[..12])
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

struct HashWriter(Sha256);

impl io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Hashes any model value. The model's own types serialize canonically by construction.
pub fn content_hash<T: Serialize + ?Sized>(value: &T) -> ContentHash {
    let mut writer = HashWriter(Sha256::new());
    // Serializing model types into a hasher cannot fail: they contain no maps with non-string
    // keys and the writer never returns an error.
    serde_json::to_writer(&mut writer, value).expect("model values always serialize to JSON");
    ContentHash(writer.0.finalize().into())
}
