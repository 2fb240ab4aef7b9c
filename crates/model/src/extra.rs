//! `Extra`: the JSON object every entity carries for fields the model does not name.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// Custom fields, metafields, `x_` fields: anything a system has that the model does not name.
///
/// Serialization always writes keys in sorted order, at every depth, so the content hash of an
/// entity does not depend on the order in which a source system sent its custom fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Extra(pub Map<String, Value>);

impl Extra {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    pub fn insert(&mut self, key: impl Into<String>, value: Value) -> Option<Value> {
        self.0.insert(key.into(), value)
    }
}

impl Serialize for Extra {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        CanonicalObject(&self.0).serialize(serializer)
    }
}

struct CanonicalObject<'a>(&'a Map<String, Value>);

impl Serialize for CanonicalObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut entries: Vec<(&String, &Value)> = self.0.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let mut map = serializer.serialize_map(Some(entries.len()))?;
        for (key, value) in entries {
            map.serialize_entry(key, &CanonicalValue(value))?;
        }
        map.end()
    }
}

/// A JSON value written with sorted object keys at every depth.
pub struct CanonicalValue<'a>(pub &'a Value);

impl Serialize for CanonicalValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match self.0 {
            Value::Object(object) => CanonicalObject(object).serialize(serializer),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&CanonicalValue(item))?;
                }
                seq.end()
            }
            other => other.serialize(serializer),
        }
    }
}
