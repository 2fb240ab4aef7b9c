//! Content hashing: the snapshot hash that skips unchanged writes and recognises echoes.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;

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
        // Decoded in place: the store hands back a hash per record of every page it looks up.
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self(bytes))
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

/// Hashes any model value. The model's own types serialize canonically by construction.
pub fn content_hash<T: Serialize + ?Sized>(value: &T) -> ContentHash {
    // Serializing into a reused buffer and hashing it in one go is several times faster than
    // feeding the hasher the many small writes serde makes; this is on every record's path.
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        buffer.clear();
        // Serializing model types into memory cannot fail: they contain no maps with non-string
        // keys and writing to a Vec never errors.
        serde_json::to_writer(&mut *buffer, value).expect("model values always serialize to JSON");
        let hash = ContentHash(Sha256::digest(buffer.as_slice()).into());
        // Do not keep a huge buffer alive after one unusually large record.
        if buffer.capacity() > 1 << 20 {
            *buffer = Vec::new();
        }
        hash
    })
}
