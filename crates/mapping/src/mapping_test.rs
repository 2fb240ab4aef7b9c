//! Mapping tests: sample records with their expected output, run by `erpsync mapping test <file>`.
//!
//! ```toml
//! flow = "products"                 # optional: the flow of every test that names none
//!
//! [[tests]]
//! name = "uppercases titles"
//! flow = "products"                 # the CLI takes this flow's mapping from the configuration
//! input = { entity = "product", code = "A", title = "shirt", variants = [{ sku = "A" }] }
//! expected = { title = "SHIRT" }    # the output must contain these fields with these values
//!
//! [[tests]]
//! name = "unknown tax codes fail"
//! flow = "products"
//! input = '''{"entity": "product", "code": "B", "tax_class": "20", "variants": [{"sku": "B"}]}'''
//! expected_error = "not in lookup `tax_codes`"   # a part of the error message
//!
//! [[tests]]
//! name = "drafts are skipped"
//! input = { entity = "product", code = "C", status = "draft", variants = [{ sku = "C" }] }
//! expected_skipped = true
//! ```
//!
//! Each test has exactly one of `expected`, `expected_error` and `expected_skipped = true`.
//! `input` and `expected` are TOML tables or strings of JSON (paste a record from `erpsync trace`
//! or a dead letter; the versioned `{"v": 1, "record": …}` form is accepted too). TOML has no
//! `null`, so expecting `null` needs the JSON form. `expected` is matched as a subset: objects may
//! have more fields than listed, arrays must have as many items as listed, each matched the same
//! way, and numbers match decimal strings of the same value (`19.9` matches `"19.90"`).

use crate::mapping::{Applied, Mapping};
use erpsync_model::Record;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;

/// One test, ready to run against the named flow's mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingTestCase {
    pub name: String,
    pub flow: String,
    pub input: Record,
    pub expectation: Expectation,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// The record is mapped, and its JSON contains this (see the module documentation).
    Output(Value),
    /// Mapping fails with a message that contains this text.
    Error(String),
    /// The filter skips the record.
    Skipped,
}

/// The outcome of one test, with a message saying what differed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub name: String,
    pub passed: bool,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TestFileError {
    #[error("{message}")]
    Toml { message: String },
    #[error("the file has no tests: add `[[tests]]` sections")]
    NoTests,
    #[error("tests[{index}] ({name:?}): {message}")]
    Case { index: usize, name: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    flow: Option<String>,
    #[serde(default)]
    tests: Vec<RawCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    #[serde(default)]
    flow: Option<String>,
    input: Value,
    #[serde(default)]
    expected: Option<Value>,
    #[serde(default)]
    expected_error: Option<String>,
    #[serde(default)]
    expected_skipped: Option<bool>,
}

/// Reads a test file, reporting every problem in it.
pub fn parse_tests(text: &str) -> Result<Vec<MappingTestCase>, Vec<TestFileError>> {
    let raw: RawFile =
        toml::from_str(text).map_err(|error| vec![TestFileError::Toml { message: error.to_string() }])?;
    if raw.tests.is_empty() {
        return Err(vec![TestFileError::NoTests]);
    }
    let mut cases = Vec::with_capacity(raw.tests.len());
    let mut errors = Vec::new();
    let mut names = HashSet::new();
    for (index, case) in raw.tests.into_iter().enumerate() {
        let problem = |message: String| TestFileError::Case { index, name: case.name.clone(), message };
        if !names.insert(case.name.clone()) {
            errors.push(problem("another test has the same name: names say which test failed".to_string()));
        }
        let Some(flow) = case.flow.clone().or_else(|| raw.flow.clone()) else {
            errors
                .push(problem("names no flow: add `flow = \"...\"` to the test or at the top of the file".to_string()));
            continue;
        };
        let expectation = match (&case.expected, &case.expected_error, case.expected_skipped) {
            (Some(expected), None, None | Some(false)) => match from_toml_or_json(expected.clone()) {
                Ok(expected) => Expectation::Output(expected),
                Err(message) => {
                    errors.push(problem(format!("expected: {message}")));
                    continue;
                }
            },
            (None, Some(text), None | Some(false)) => Expectation::Error(text.clone()),
            (None, None, Some(true)) => Expectation::Skipped,
            _ => {
                errors.push(problem(
                    "give exactly one of `expected`, `expected_error` and `expected_skipped = true`".to_string(),
                ));
                continue;
            }
        };
        let input = match from_toml_or_json(case.input.clone()).and_then(record_from_json) {
            Ok(input) => input,
            Err(message) => {
                errors.push(problem(format!("input: {message}")));
                continue;
            }
        };
        cases.push(MappingTestCase { name: case.name, flow, input, expectation });
    }
    if errors.is_empty() { Ok(cases) } else { Err(errors) }
}

/// Runs one test against the mapping of its flow.
pub fn run_test(mapping: &Mapping, case: &MappingTestCase) -> TestResult {
    let outcome = mapping.apply(&case.input);
    let (passed, message) = match (&case.expectation, outcome) {
        (Expectation::Output(expected), Ok(Applied::Mapped(record))) => {
            // A Record always serializes: see `erpsync_model::content_hash`.
            let actual = serde_json::to_value(&record).expect("records always serialize");
            let mut differences = Vec::new();
            compare(expected, &actual, "", &mut differences);
            if differences.is_empty() {
                (true, "output matches".to_string())
            } else {
                (false, format!("output differs:\n  {}", differences.join("\n  ")))
            }
        }
        (Expectation::Error(text), Err(error)) => {
            let message = error.to_string();
            if message.contains(text.as_str()) {
                (true, format!("failed as expected: {message}"))
            } else {
                (false, format!("expected an error containing {text:?}, got: {message}"))
            }
        }
        (Expectation::Skipped, Ok(Applied::Skipped { reason })) => (true, format!("skipped as expected: {reason}")),
        (expectation, Ok(Applied::Mapped(record))) => {
            let actual = serde_json::to_value(&record).expect("records always serialize");
            (
                false,
                format!("{}, but the record was mapped to {}", expected_text(expectation), crate::json::brief(&actual)),
            )
        }
        (expectation, Ok(Applied::Skipped { reason })) => {
            (false, format!("{}, but the record was skipped: {reason}", expected_text(expectation)))
        }
        (expectation, Err(error)) => (false, format!("{}, but mapping failed: {error}", expected_text(expectation))),
    };
    TestResult { name: case.name.clone(), passed, message }
}

fn expected_text(expectation: &Expectation) -> String {
    match expectation {
        Expectation::Output(_) => "expected output".to_string(),
        Expectation::Error(text) => format!("expected an error containing {text:?}"),
        Expectation::Skipped => "expected the record to be skipped".to_string(),
    }
}

/// Collects where `actual` does not contain `expected`, one line per difference, by JSON path.
fn compare(expected: &Value, actual: &Value, path: &str, differences: &mut Vec<String>) {
    let shown_path = if path.is_empty() { "the record".to_string() } else { format!("`{path}`") };
    match (expected, actual) {
        (Value::Object(expected_fields), Value::Object(actual_fields)) => {
            for (key, expected_value) in expected_fields {
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match actual_fields.get(key) {
                    Some(actual_value) => compare(expected_value, actual_value, &child, differences),
                    None => differences.push(format!(
                        "`{child}`: expected {}, but the output has no such field",
                        crate::json::brief(expected_value)
                    )),
                }
            }
        }
        (Value::Array(expected_items), Value::Array(actual_items)) => {
            if expected_items.len() != actual_items.len() {
                differences.push(format!(
                    "{shown_path}: expected {} items, got {}: {}",
                    expected_items.len(),
                    actual_items.len(),
                    crate::json::brief(actual)
                ));
                return;
            }
            for (index, (expected_item, actual_item)) in expected_items.iter().zip(actual_items).enumerate() {
                compare(expected_item, actual_item, &format!("{path}[{index}]"), differences);
            }
        }
        (expected, actual) if scalars_match(expected, actual) => {}
        (expected, actual) => differences.push(format!(
            "{shown_path}: expected {}, got {}",
            crate::json::brief(expected),
            crate::json::brief(actual)
        )),
    }
}

/// Equal, or the same decimal number written as a number on one side and a string on the other:
/// the model writes decimals as strings, and a test author writes `19.9`.
fn scalars_match(expected: &Value, actual: &Value) -> bool {
    if expected == actual {
        return true;
    }
    let either_is_number = expected.is_number() || actual.is_number();
    let decimal = erpsync_model::decimal::parse_json;
    either_is_number && matches!((decimal(expected), decimal(actual)), (Ok(left), Ok(right)) if left == right)
}

/// A TOML table as JSON, or a string of JSON parsed.
fn from_toml_or_json(value: Value) -> Result<Value, String> {
    match value {
        Value::String(text) => serde_json::from_str(&text).map_err(|error| format!("is not valid JSON: {error}")),
        other => Ok(untoml(other)),
    }
}

/// TOML date-times arrive as a one-key object; records want the text.
fn untoml(value: Value) -> Value {
    const TOML_DATETIME: &str = "$__toml_private_datetime";
    match value {
        Value::Object(fields) => {
            if fields.len() == 1
                && let Some(Value::String(text)) = fields.get(TOML_DATETIME)
            {
                return Value::String(text.clone());
            }
            Value::Object(fields.into_iter().map(|(key, item)| (key, untoml(item))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(untoml).collect()),
        other => other,
    }
}

fn record_from_json(value: Value) -> Result<Record, String> {
    let versioned = value.get("v").is_some() && value.get("record").is_some();
    if versioned {
        let bytes = serde_json::to_vec(&value).map_err(|error| error.to_string())?;
        return erpsync_model::envelope::from_slice(&bytes).map_err(|error| error.to_string());
    }
    serde_json::from_value(value).map_err(|error| format!("is not a canonical record: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup::Lookups;
    use crate::mapping::CompileContext;
    use crate::spec::MappingSpec;
    use erpsync_model::EntityKind;

    fn mapping() -> Mapping {
        let spec: MappingSpec = toml::from_str(
            "filter = \"status = 'active'\"\n[fields]\ntitle = '$uppercase(title)'\n\"extra.season\" = 'extra.saison'\n",
        )
        .unwrap();
        Mapping::compile(&spec, &Lookups::new(), &CompileContext::new("erpsync.toml", "products", EntityKind::Product))
            .unwrap()
    }

    /// Parses `file`, runs every test, and compares (passed, message) per test.
    fn check(file: &str, expected: &[(bool, &str)]) {
        let cases = parse_tests(file).unwrap_or_else(|errors| panic!("{errors:#?}"));
        let results: Vec<(bool, String)> = cases
            .iter()
            .map(|case| {
                let result = run_test(&mapping(), case);
                (result.passed, result.message)
            })
            .collect();
        let expected: Vec<(bool, String)> =
            expected.iter().map(|(passed, message)| (*passed, message.to_string())).collect();
        assert_eq!(results, expected);
    }

    #[test]
    fn passing_tests() {
        check(
            r#"
flow = "products"

[[tests]]
name = "uppercases titles"
input = { entity = "product", code = "A", title = "shirt", variants = [{ sku = "A", price = { amount = "19.90", currency = "EUR" } }], extra = { saison = "summer" } }
expected = { title = "SHIRT", extra = { season = "summer" }, variants = [{ sku = "A", price = { amount = 19.9 } }] }

[[tests]]
name = "drafts are skipped"
input = { entity = "product", code = "B", status = "draft", variants = [{ sku = "B" }] }
expected_skipped = true

[[tests]]
name = "products need a season"
input = '{"v": 1, "record": {"entity": "product", "code": "C", "variants": [{"sku": "C"}]}}'
expected_error = "produced no value"
"#,
            &[
                (true, "output matches"),
                (true, "skipped as expected: filter `status = 'active'` is false"),
                (true, "failed as expected: field `extra.season`: expression `extra.saison` produced no value"),
            ],
        );
    }

    #[test]
    fn failing_tests_say_what_differs() {
        check(
            r#"
flow = "products"

[[tests]]
name = "wrong title"
input = { entity = "product", code = "A", title = "shirt", variants = [{ sku = "A" }], extra = { saison = "summer" } }
expected = '{"title": "Shirt", "vendor": null, "extra": {"season": "winter", "colour": "red"}, "variants": []}'

[[tests]]
name = "not skipped"
input = { entity = "product", code = "A", variants = [{ sku = "A" }], extra = { saison = "summer" } }
expected_skipped = true

[[tests]]
name = "other error"
input = { entity = "product", code = "A", variants = [{ sku = "A" }] }
expected_error = "lookup"
"#,
            &[
                (
                    false,
                    "output differs:\n  `title`: expected \"Shirt\", got \"SHIRT\"\n  `extra.season`: expected \"winter\", got \"summer\"\n  `extra.colour`: expected \"red\", but the output has no such field\n  `variants`: expected 0 items, got 1: [{\"sku\":\"A\",\"title\":null,\"barcode\":null,\"options\":[],\"price\":null,\"compare_at_pr…",
                ),
                (
                    false,
                    "expected the record to be skipped, but the record was mapped to {\"entity\":\"product\",\"code\":\"A\",\"title\":\"\",\"description\":null,\"status\":\"active\",\"…",
                ),
                (
                    false,
                    "expected an error containing \"lookup\", got: field `extra.season`: expression `extra.saison` produced no value",
                ),
            ],
        );
    }

    #[test]
    fn file_problems_are_all_reported() {
        let errors = parse_tests(
            r#"
[[tests]]
name = "a"
input = { entity = "product" }

[[tests]]
name = "b"
flow = "products"
input = { entity = "product", titel = "x" }
expected = { title = "x" }

[[tests]]
name = "c"
flow = "products"
input = { entity = "product" }
expected = { title = "x" }
expected_skipped = true
"#,
        )
        .unwrap_err();
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 3, "{messages:#?}");
        assert!(messages[0].starts_with("tests[0] (\"a\"): names no flow"), "{}", messages[0]);
        assert!(
            messages[1].starts_with("tests[1] (\"b\"): input: is not a canonical record: unknown field `titel`"),
            "{}",
            messages[1]
        );
        assert!(messages[2].contains("give exactly one of"), "{}", messages[2]);
    }

    #[test]
    fn toml_errors_keep_their_position() {
        let errors = parse_tests("[[tests]]\nname = \n").unwrap_err();
        assert!(errors[0].to_string().contains("line 2"), "{}", errors[0]);
    }

    #[test]
    fn toml_datetimes_become_text() {
        let cases = parse_tests(
            "[[tests]]\nname = \"t\"\nflow = \"products\"\ninput = { entity = \"product\", code = \"A\", updated_at = 2024-05-01T10:00:00Z, variants = [{ sku = \"A\" }] }\nexpected_skipped = true\n",
        )
        .unwrap();
        assert!(cases[0].input.updated_at().is_some());
    }
}
