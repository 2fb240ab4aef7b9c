//! Lookup tables: value translations (tax codes, shipping methods, payment methods, customer groups
//! to price lists, warehouses to locations) written in the configuration or a CSV file.
//!
//! ```toml
//! [lookups.tax_codes]
//! values = { "19" = "DE-STD", "7" = "DE-RED" }
//! file = "lookups/tax.csv"      # two columns with a header row: from,to
//! on_unknown = "error"          # or: default = "DE-STD"; exactly one of the two
//! ```
//!
//! An expression reaches the table `tax_codes` as the function `$lookup_tax_codes(value)`. JSONata's
//! own `$lookup(object, key)` is a different, built-in function (it reads a key of an object and
//! gives no value for a missing key), so lookup tables get a name of their own instead of
//! overloading it; [`crate::Mapping::compile`] explains this to anyone who writes
//! `$lookup('tax_codes', …)`.
//!
//! The table function takes one string or number (numbers are written as JSONata writes them,
//! `19` for 19) and gives the translation; an array is translated item by item. No value in gives
//! no value out, and `null` gives `null`, as JSONata functions do. A value missing from the table
//! gives the table's `default`, or fails the record with an error naming the table and the value.
//! This crate does no I/O: the engine reads `file` and passes its text to [`LookupTable::from_spec`].

use crate::spec::SpecProblem;
use jsonata_core::evaluator::EvaluatorError;
use jsonata_core::value::JValue;
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

/// The prefix of the function through which an expression reaches a lookup table.
pub const LOOKUP_FUNCTION_PREFIX: &str = "lookup_";

/// A `[lookups.<name>]` section as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupSpec {
    /// Translations written inline: from → to.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    /// A CSV file of translations (a header row, then `from,to` rows), read by the engine
    /// relative to the configuration file.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// The value for anything not in the table. Exactly one of `default` and `on_unknown`.
    #[serde(default)]
    pub default: Option<String>,
    /// `"error"`: a value not in the table fails the record.
    #[serde(default)]
    pub on_unknown: Option<OnUnknown>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnknown {
    Error,
}

impl LookupSpec {
    /// Every problem visible without the file's text.
    pub fn validate(&self) -> Result<(), Vec<SpecProblem>> {
        let mut problems = Vec::new();
        match (&self.default, &self.on_unknown) {
            (Some(_), Some(_)) => problems.push(SpecProblem::new(
                "on_unknown",
                "give either `default` or `on_unknown = \"error\"`, not both: which one should win is not obvious",
            )),
            (None, None) => problems.push(SpecProblem::new(
                "default",
                "say what happens to a value that is not in the table: `default = \"...\"` or `on_unknown = \"error\"`",
            )),
            _ => {}
        }
        if self.values.is_empty() && self.file.is_none() {
            problems.push(SpecProblem::new(
                "values",
                "the table is empty: give `values = { \"from\" = \"to\" }` or `file = \"lookup.csv\"`",
            ));
        }
        if self.file.as_ref().is_some_and(|file| file.as_os_str().is_empty()) {
            problems.push(SpecProblem::new("file", "is empty"));
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

/// What a table gives for a value it does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhenUnknown {
    Default(String),
    Error,
}

/// Why a lookup table could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("lookups.{lookup}.{}", .problem)]
    Spec { lookup: String, problem: SpecProblem },
    #[error(
        "lookups.{lookup}: the name must be letters, digits and `_`, starting with a letter or `_`, because expressions call it as `$lookup_{lookup}(...)`"
    )]
    BadName { lookup: String },
    #[error("lookups.{lookup}.file: the file's text was not given (the engine reads the file)")]
    FileTextMissing { lookup: String },
    #[error("lookups.{lookup}: file text was given, but the lookup names no file")]
    UnexpectedFileText { lookup: String },
    #[error("lookups.{lookup}.file, line {line}: {message}")]
    Csv { lookup: String, line: u64, message: String },
    #[error("lookups.{lookup}: {key:?} is translated twice ({first} and {second}): keep one")]
    DuplicateKey { lookup: String, key: String, first: String, second: String },
}

/// A built lookup table. Immutable and shared between threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupTable {
    name: String,
    entries: HashMap<String, String>,
    when_unknown: WhenUnknown,
}

impl LookupTable {
    /// Builds the table `name` from its section and, when the section names a `file`, that file's
    /// text (decoded by the engine). Reports every problem found, not only the first.
    pub fn from_spec(name: &str, spec: &LookupSpec, file_text: Option<&str>) -> Result<LookupTable, Vec<LookupError>> {
        let mut errors = Vec::new();
        if !is_valid_name(name) {
            errors.push(LookupError::BadName { lookup: name.to_string() });
        }
        if let Err(problems) = spec.validate() {
            errors.extend(problems.into_iter().map(|problem| LookupError::Spec { lookup: name.to_string(), problem }));
        }
        // Where each key came from, for duplicate reports.
        let mut sources: HashMap<String, String> = HashMap::new();
        let mut entries = HashMap::new();
        for (from, to) in &spec.values {
            sources.insert(from.clone(), "in `values`".to_string());
            entries.insert(from.clone(), to.clone());
        }
        match (&spec.file, file_text) {
            (Some(_), Some(text)) => {
                read_csv(name, text, &mut entries, &mut sources, &mut errors);
            }
            (Some(_), None) => errors.push(LookupError::FileTextMissing { lookup: name.to_string() }),
            (None, Some(_)) => errors.push(LookupError::UnexpectedFileText { lookup: name.to_string() }),
            (None, None) => {}
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let when_unknown = match &spec.default {
            Some(default) => WhenUnknown::Default(default.clone()),
            None => WhenUnknown::Error,
        };
        Ok(LookupTable { name: name.to_string(), entries, when_unknown })
    }

    /// A table from translations in code, for tests and connectors' defaults.
    pub fn from_pairs<'a>(
        name: &str,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        when_unknown: WhenUnknown,
    ) -> Result<LookupTable, Vec<LookupError>> {
        if !is_valid_name(name) {
            return Err(vec![LookupError::BadName { lookup: name.to_string() }]);
        }
        let entries = pairs.into_iter().map(|(from, to)| (from.to_string(), to.to_string())).collect();
        Ok(LookupTable { name: name.to_string(), entries, when_unknown })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn when_unknown(&self) -> &WhenUnknown {
        &self.when_unknown
    }

    /// The translation of `key`, or the default; `None` when the table has neither.
    pub fn translate(&self, key: &str) -> Option<&str> {
        match (self.entries.get(key), &self.when_unknown) {
            (Some(to), _) => Some(to),
            (None, WhenUnknown::Default(default)) => Some(default),
            (None, WhenUnknown::Error) => None,
        }
    }
}

fn is_valid_name(name: &str) -> bool {
    let mut characters = name.chars();
    characters.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && characters.all(|character| character.is_ascii_alphanumeric() || character == '_')
}

fn read_csv(
    name: &str,
    text: &str,
    entries: &mut HashMap<String, String>,
    sources: &mut HashMap<String, String>,
    errors: &mut Vec<LookupError>,
) {
    let csv_error = |line: u64, message: String| LookupError::Csv { lookup: name.to_string(), line, message };
    // Spreadsheets write a byte-order mark that would otherwise become part of the first header.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader =
        csv::ReaderBuilder::new().has_headers(true).flexible(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    match reader.headers() {
        Ok(headers) if headers.len() == 2 => {}
        Ok(headers) => {
            errors.push(csv_error(
                1,
                format!("expected a header row of two columns (from,to), found {} columns", headers.len()),
            ));
            return;
        }
        Err(error) => {
            errors.push(csv_error(1, error.to_string()));
            return;
        }
    }
    for row in reader.records() {
        let row = match row {
            Ok(row) => row,
            Err(error) => {
                let line = error.position().map_or(0, csv::Position::line);
                errors.push(csv_error(line, error.to_string()));
                continue;
            }
        };
        let line = row.position().map_or(0, csv::Position::line);
        if row.len() != 2 {
            errors.push(csv_error(line, format!("expected two columns (from,to), found {}", row.len())));
            continue;
        }
        let (from, to) = (&row[0], &row[1]);
        if from.is_empty() {
            errors.push(csv_error(line, "the first column (the value to translate) is empty".to_string()));
            continue;
        }
        let here = format!("on line {line} of the file");
        if let Some(first) = sources.get(from) {
            errors.push(LookupError::DuplicateKey {
                lookup: name.to_string(),
                key: from.to_string(),
                first: first.clone(),
                second: here,
            });
            continue;
        }
        sources.insert(from.to_string(), here);
        entries.insert(from.to_string(), to.to_string());
    }
}

/// The named lookup tables of a configuration. Cheap to clone: tables are shared.
#[derive(Debug, Clone, Default)]
pub struct Lookups {
    tables: BTreeMap<String, Arc<LookupTable>>,
}

impl Lookups {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a table, replacing any table of the same name.
    pub fn insert(&mut self, table: LookupTable) {
        self.tables.insert(table.name.clone(), Arc::new(table));
    }

    pub fn get(&self, name: &str) -> Option<&Arc<LookupTable>> {
        self.tables.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

impl FromIterator<LookupTable> for Lookups {
    fn from_iter<I: IntoIterator<Item = LookupTable>>(tables: I) -> Self {
        let mut lookups = Lookups::new();
        for table in tables {
            lookups.insert(table);
        }
        lookups
    }
}

/// A value an expression looked up and the table did not have (and had no default for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LookupMiss {
    pub lookup: String,
    pub value: String,
}

/// Where the table function leaves the details of a miss: the evaluator only carries a message,
/// and a record error should name the table and the value as data.
pub(crate) type MissSlot = Rc<RefCell<Option<LookupMiss>>>;

/// The JSONata function `$lookup_<name>` for one table.
pub(crate) fn table_function(
    table: Arc<LookupTable>,
    miss: MissSlot,
) -> impl Fn(&[JValue]) -> Result<JValue, EvaluatorError> + 'static {
    move |arguments: &[JValue]| {
        if arguments.len() != 1 {
            return Err(EvaluatorError::EvaluationError(format!(
                "`${LOOKUP_FUNCTION_PREFIX}{}` takes one argument (the value to translate), got {}",
                table.name,
                arguments.len()
            )));
        }
        translate_value(&table, &arguments[0], &miss)
    }
}

fn translate_value(table: &LookupTable, value: &JValue, miss: &MissSlot) -> Result<JValue, EvaluatorError> {
    let key = match value {
        JValue::Undefined => return Ok(JValue::Undefined),
        JValue::Null => return Ok(JValue::Null),
        JValue::String(text) => text.to_string(),
        JValue::Number(number) => number_key(*number),
        JValue::Array(items) => {
            let mut translated = Vec::with_capacity(items.len());
            for item in items.iter() {
                let item = translate_value(table, item, miss)?;
                if !item.is_undefined() {
                    translated.push(item);
                }
            }
            return Ok(JValue::array(translated));
        }
        other => {
            return Err(EvaluatorError::TypeError(format!(
                "`${LOOKUP_FUNCTION_PREFIX}{}` translates strings and numbers, got {}",
                table.name,
                crate::json::jvalue_type_name(other)
            )));
        }
    };
    match table.translate(&key) {
        Some(to) => Ok(JValue::string(to)),
        None => {
            let message = format!("value {key:?} is not in lookup `{}`, which has no default", table.name);
            miss.replace(Some(LookupMiss { lookup: table.name.clone(), value: key }));
            Err(EvaluatorError::EvaluationError(message))
        }
    }
}

/// A number as a table key, the way JSONata's `$string` writes it: `19`, not `19.0`.
fn number_key(number: f64) -> String {
    if number.fract() == 0.0 && number.abs() < 1e15 { format!("{}", number as i64) } else { format!("{number}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> LookupSpec {
        toml::from_str(toml_text).unwrap()
    }

    fn check(toml_text: &str, file_text: Option<&str>, expected: Result<&[(&str, Option<&str>)], &[&str]>) {
        let built = LookupTable::from_spec("tax_codes", &spec(toml_text), file_text);
        match (built, expected) {
            (Ok(table), Ok(translations)) => {
                for (from, to) in translations {
                    assert_eq!(table.translate(from), *to, "translation of {from:?}");
                }
            }
            (Err(errors), Err(messages)) => {
                let found: Vec<String> = errors.iter().map(ToString::to_string).collect();
                let expected: Vec<String> = messages.iter().map(ToString::to_string).collect();
                assert_eq!(found, expected);
            }
            (Ok(table), Err(messages)) => panic!("expected errors {messages:?}, built {table:?}"),
            (Err(errors), Ok(_)) => panic!("expected a table, got {errors:?}"),
        }
    }

    #[test]
    fn inline_values_with_a_default() {
        check(
            "values = { \"19\" = \"DE-STD\" }\ndefault = \"DE-NONE\"",
            None,
            Ok(&[("19", Some("DE-STD")), ("20", Some("DE-NONE"))]),
        );
    }

    #[test]
    fn inline_values_that_fail_on_unknown() {
        check(
            "values = { \"19\" = \"DE-STD\" }\non_unknown = \"error\"",
            None,
            Ok(&[("19", Some("DE-STD")), ("20", None)]),
        );
    }

    #[test]
    fn csv_text_with_header_bom_and_spaces() {
        check(
            "file = \"tax.csv\"\nvalues = { \"0\" = \"DE-FREE\" }\non_unknown = \"error\"",
            Some("\u{feff}from,to\n19, DE-STD\n\"7\",DE-RED\n"),
            Ok(&[("19", Some("DE-STD")), ("7", Some("DE-RED")), ("0", Some("DE-FREE"))]),
        );
    }

    #[test]
    fn the_unknown_rule_must_be_explicit_and_single() {
        check(
            "values = { \"a\" = \"b\" }",
            None,
            Err(&[
                "lookups.tax_codes.default: say what happens to a value that is not in the table: `default = \"...\"` or `on_unknown = \"error\"`",
            ]),
        );
        check(
            "values = { \"a\" = \"b\" }\ndefault = \"x\"\non_unknown = \"error\"",
            None,
            Err(&[
                "lookups.tax_codes.on_unknown: give either `default` or `on_unknown = \"error\"`, not both: which one should win is not obvious",
            ]),
        );
    }

    #[test]
    fn csv_problems_name_their_line_and_duplicates_their_places() {
        check(
            "file = \"tax.csv\"\nvalues = { \"19\" = \"DE-STD\" }\ndefault = \"x\"",
            Some("from,to\n19,DE-OTHER\n7\n,X\n8,A\n8,B\n"),
            Err(&[
                "lookups.tax_codes: \"19\" is translated twice (in `values` and on line 2 of the file): keep one",
                "lookups.tax_codes.file, line 3: expected two columns (from,to), found 1",
                "lookups.tax_codes.file, line 4: the first column (the value to translate) is empty",
                "lookups.tax_codes: \"8\" is translated twice (on line 5 of the file and on line 6 of the file): keep one",
            ]),
        );
    }

    #[test]
    fn names_must_be_callable() {
        let error =
            LookupTable::from_spec("tax-codes", &spec("values = { a = \"b\" }\ndefault = \"x\""), None).unwrap_err();
        assert!(matches!(error[0], LookupError::BadName { .. }), "{error:?}");
    }

    #[test]
    fn numbers_are_keys_as_jsonata_writes_them() {
        assert_eq!(number_key(19.0), "19");
        assert_eq!(number_key(7.5), "7.5");
    }
}
