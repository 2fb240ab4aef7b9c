//! `MappingSpec`: a flow's mapping as written in the configuration, and its pure validation.
//!
//! ```toml
//! [flows.products.mapping]
//! filter = "status = 'active' and $count(variants) > 0"
//! [flows.products.mapping.fields]
//! title = "$uppercase(title)"
//! "extra.season" = "extra.saison"
//! tax_class = "$lookup_tax_codes(tax_class)"
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// A flow's mapping: an optional filter and field overrides, each a JSONata expression evaluated
/// against the canonical record's JSON. Fields not named keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    /// Records for which this is `false` are skipped. It must produce a boolean.
    #[serde(default)]
    pub filter: Option<String>,
    /// Dotted path into the record's JSON (`title`, `extra.season`) to the expression that
    /// computes its new value.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// One problem found in a specification, with the path of the setting it concerns, relative to
/// the specification (`fields."extra.season"`, `default`). The engine prefixes its own position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    pub field: String,
    pub message: String,
}

impl SpecProblem {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        SpecProblem { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl MappingSpec {
    /// Whether this mapping changes nothing: no filter, no fields.
    pub fn is_identity(&self) -> bool {
        self.filter.is_none() && self.fields.is_empty()
    }

    /// Every problem that can be seen without knowing the entity or the lookups: empty
    /// expressions, malformed paths, paths that overlap. Expressions are not parsed here;
    /// [`crate::Mapping::compile`] does that and reports positions inside them.
    pub fn validate(&self) -> Result<(), Vec<SpecProblem>> {
        let mut problems = Vec::new();
        if let Some(filter) = &self.filter
            && filter.trim().is_empty()
        {
            problems.push(SpecProblem::new("filter", "is empty: remove it to keep every record"));
        }
        let mut paths = Vec::new();
        for (path, expression) in &self.fields {
            let setting = field_setting(path);
            match FieldPath::parse(path) {
                Ok(parsed) => paths.push(parsed),
                Err(message) => problems.push(SpecProblem::new(setting.clone(), message)),
            }
            if expression.trim().is_empty() {
                problems.push(SpecProblem::new(
                    setting,
                    "the expression is empty: write the expression that computes the field, or remove the line to keep the field as it is",
                ));
            }
        }
        for (index, outer) in paths.iter().enumerate() {
            for inner in &paths[index + 1..] {
                let (shorter, longer) =
                    if outer.segments.len() <= inner.segments.len() { (outer, inner) } else { (inner, outer) };
                if longer.segments.starts_with(&shorter.segments) {
                    problems.push(SpecProblem::new(
                        field_setting(&longer.text),
                        format!(
                            "is inside `{}`, which is mapped too: map the whole `{}` or only the fields inside it",
                            shorter.text, shorter.text
                        ),
                    ));
                }
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

/// How a field's setting is named in messages: `fields.title`, `fields."extra.season"`.
pub(crate) fn field_setting(path: &str) -> String {
    if !path.is_empty() && path.chars().all(|character| character.is_ascii_alphanumeric() || character == '_') {
        format!("fields.{path}")
    } else {
        format!("fields.{path:?}")
    }
}

/// A dotted path into a record's JSON: `extra.season` is `["extra", "season"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    pub text: String,
    pub segments: Vec<String>,
}

impl FieldPath {
    /// Splits on dots. Segments are object keys; there is no syntax for array indexes, because a
    /// mapping replaces an array as a whole.
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        if text.trim().is_empty() {
            return Err("the field path is empty".to_string());
        }
        let segments: Vec<String> = text.split('.').map(str::to_string).collect();
        if segments.iter().any(|segment| segment.is_empty()) {
            return Err(format!("`{text}` has an empty segment: write dotted field names like `extra.season`"));
        }
        if let Some(segment) = segments.iter().find(|segment| segment.trim() != segment.as_str()) {
            return Err(format!("`{text}`: the segment {segment:?} has surrounding spaces"));
        }
        if let Some(segment) = segments.iter().find(|segment| segment.contains('[') || segment.contains(']')) {
            return Err(format!(
                "`{text}`: {segment:?} looks like an array index, and paths into arrays are not supported: map the whole array instead"
            ));
        }
        if segments[0] == "entity" {
            return Err("`entity` is the record's kind and cannot be mapped: a flow moves one entity".to_string());
        }
        Ok(FieldPath { text: text.to_string(), segments })
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str, expected: &[&str]) {
        let spec: MappingSpec = toml::from_str(toml_text).unwrap();
        let found: Vec<String> = match spec.validate() {
            Ok(()) => Vec::new(),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        };
        let expected: Vec<String> = expected.iter().map(ToString::to_string).collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn a_good_spec_has_no_problems() {
        check(
            "filter = \"status = 'active'\"\n[fields]\ntitle = '$uppercase(title)'\n\"extra.season\" = 'extra.saison'\n",
            &[],
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_setting() {
        check(
            "filter = ' '\n[fields]\n\"extra..x\" = 'a'\nnote = ''\nextra = 'extra'\n\"extra.season\" = 'x'\n",
            &[
                "filter: is empty: remove it to keep every record",
                "fields.\"extra..x\": `extra..x` has an empty segment: write dotted field names like `extra.season`",
                "fields.note: the expression is empty: write the expression that computes the field, or remove the line to keep the field as it is",
                "fields.\"extra.season\": is inside `extra`, which is mapped too: map the whole `extra` or only the fields inside it",
            ],
        );
    }

    #[test]
    fn unknown_settings_are_refused() {
        let error = toml::from_str::<MappingSpec>("filters = 'x'").unwrap_err();
        assert!(error.to_string().contains("unknown field `filters`"), "{error}");
    }

    #[test]
    fn the_entity_tag_cannot_be_mapped() {
        assert!(FieldPath::parse("entity").unwrap_err().contains("cannot be mapped"));
        assert!(FieldPath::parse("variants[0].sku").unwrap_err().contains("paths into arrays are not supported"));
    }
}
