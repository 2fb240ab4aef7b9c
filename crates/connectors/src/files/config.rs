//! Configuration of the `files` connector: the TOML table, its pure validation, and the
//! validated [`Settings`] the connector is built from.
//!
//! "Parse, then build": [`FilesConfig::settings`] turns the table into `Settings` without
//! touching the file system, and reports every problem at once with the field path it concerns.
//! The rest of the connector takes `Settings` and never re-checks an option.

use crate::files::map;
use encoding_rs::Encoding;
use erpsync_model::EntityKind;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

/// The `[systems.<name>]` table of a `type = "files"` system.
///
/// ```toml
/// [systems.erp]
/// type = "files"
/// path = "/srv/exchange/erp"
/// format = "csv"            # or "jsonl"
/// delimiter = ";"
/// encoding = "windows-1252"
/// decimal_separator = ","
/// min_age_seconds = 60
///
/// [systems.erp.entities.product]
/// pattern = "Artikel*.csv"
/// columns = { Artikelnummer = "sku", Bezeichnung = "title" }
/// file_prefix = "erpsync-"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// The folder files are read from and written to.
    pub path: PathBuf,
    #[serde(default)]
    pub format: FileFormat,
    /// One ASCII character; `\t` for tab-separated files.
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Any label the WHATWG Encoding Standard knows (`utf-8`, `windows-1252`, `latin1`,
    /// `iso-8859-15`, `shift_jis`…), as long as the encoding is ASCII-compatible.
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// `.` or `,`: how decimal numbers are written in CSV cells.
    #[serde(default = "default_decimal_separator")]
    pub decimal_separator: String,
    /// Files modified more recently than this are left for the next run, so that a file still
    /// being uploaded is not read half-written.
    #[serde(default)]
    pub min_age_seconds: u64,
    /// Per-entity settings, keyed by entity name (`product`, `stock_level`, …).
    #[serde(default)]
    pub entities: BTreeMap<String, EntityFilesConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    #[default]
    Csv,
    Jsonl,
}

impl FileFormat {
    pub fn extension(&self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Jsonl => "jsonl",
        }
    }
}

/// `[systems.<name>.entities.<entity>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityFilesConfig {
    /// File-name glob (`*` any run of characters, `?` one character, ASCII case ignored).
    /// Default: `<entity>*.csv` or `<entity>*.jsonl`.
    pub pattern: Option<String>,
    /// File header → canonical column name, for renaming an ERP's headers
    /// (`Artikelnummer = "sku"`). Used in reverse when writing.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Prefix of the files the sink writes: `<file_prefix><entity>-<batch id>.<csv|jsonl>`.
    pub file_prefix: Option<String>,
}

fn default_delimiter() -> String {
    ",".to_string()
}

fn default_encoding() -> String {
    "utf-8".to_string()
}

fn default_decimal_separator() -> String {
    ".".to_string()
}

impl FilesConfig {
    /// A configuration with every option at its default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            format: FileFormat::default(),
            delimiter: default_delimiter(),
            encoding: default_encoding(),
            decimal_separator: default_decimal_separator(),
            min_age_seconds: 0,
            entities: BTreeMap::new(),
        }
    }

    /// Makes a relative `path` relative to `base_dir` (the configuration file's folder) instead
    /// of to whatever folder the process happens to run in.
    pub fn resolve_paths(&mut self, base_dir: &std::path::Path) {
        if self.path.is_relative() && !self.path.as_os_str().is_empty() {
            self.path = base_dir.join(&self.path);
        }
    }

    /// Every problem of the configuration, each with the field path it concerns
    /// (`entities.product.columns.Artikelnummer`). Pure: the folder is not looked at.
    pub fn validate(&self) -> Vec<(String, String)> {
        match self.settings() {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }

    /// The validated settings, or every problem found.
    pub(crate) fn settings(&self) -> Result<Settings, Vec<(String, String)>> {
        let mut problems: Vec<(String, String)> = Vec::new();
        let mut problem = |field: String, message: String| problems.push((field, message));

        if self.path.as_os_str().is_empty() {
            problem("path".into(), "is required: the folder the files are in".into());
        }

        let delimiter = match self.delimiter.as_bytes() {
            [byte] if byte.is_ascii() && !matches!(byte, b'"' | b'\n' | b'\r') => Some(*byte),
            _ => {
                problem(
                    "delimiter".into(),
                    format!(
                        "expected one ASCII character other than a quote or a line break, such as \",\", \";\" or \"\\t\", found {:?}",
                        self.delimiter
                    ),
                );
                None
            }
        };

        let encoding = match Encoding::for_label(self.encoding.trim().as_bytes()) {
            Some(encoding) if encoding.is_ascii_compatible() && encoding != encoding_rs::REPLACEMENT => Some(encoding),
            Some(encoding) => {
                problem(
                    "encoding".into(),
                    format!(
                        "{:?} ({}) is not ASCII-compatible, so delimiters and quotes cannot be found byte by byte: use utf-8 or a single-byte encoding such as windows-1252",
                        self.encoding,
                        encoding.name()
                    ),
                );
                None
            }
            None => {
                problem(
                    "encoding".into(),
                    format!(
                        "unknown encoding {:?}: expected a label such as \"utf-8\", \"windows-1252\" or \"iso-8859-15\"",
                        self.encoding
                    ),
                );
                None
            }
        };

        let decimal_comma = match self.decimal_separator.as_str() {
            "." => false,
            "," => {
                if self.delimiter == "," {
                    problem(
                        "decimal_separator".into(),
                        "\",\" cannot be both the delimiter and the decimal separator: set delimiter = \";\"".into(),
                    );
                }
                true
            }
            other => {
                problem("decimal_separator".into(), format!("expected \".\" or \",\", found {other:?}"));
                false
            }
        };

        let mut entities = HashMap::new();
        for (name, entity_config) in &self.entities {
            let field = format!("entities.{name}");
            let entity: EntityKind = match name.parse() {
                Ok(entity) => entity,
                Err(error) => {
                    problem(field, error.to_string());
                    continue;
                }
            };
            let mut ok = true;
            if let Some(pattern) = &entity_config.pattern
                && let Err(message) = check_file_name_part(pattern, "a file-name pattern")
            {
                problem(format!("{field}.pattern"), message);
                ok = false;
            }
            if let Some(prefix) = entity_config.file_prefix.as_deref().filter(|prefix| !prefix.is_empty())
                && let Err(message) = check_file_name_part(prefix, "a file-name prefix")
            {
                problem(format!("{field}.file_prefix"), message);
                ok = false;
            }
            let mut column_to_header: HashMap<String, String> = HashMap::new();
            for (header, column) in &entity_config.columns {
                let column_field = format!("{field}.columns.{header}");
                if header.trim().is_empty() {
                    problem(format!("{field}.columns"), "a file header must not be empty".into());
                    ok = false;
                    continue;
                }
                let Some(canonical) = map::canonical_column(entity, column.trim()) else {
                    problem(
                        column_field,
                        format!(
                            "unknown column {column:?} for {entity}: expected one of {}",
                            map::column_names(entity).join(", ")
                        ),
                    );
                    ok = false;
                    continue;
                };
                let canonical = canonical.to_string();
                if let Some(previous) = column_to_header.get(&canonical) {
                    problem(
                        column_field,
                        format!("headers {previous:?} and {header:?} both map to {canonical:?}: keep one"),
                    );
                    ok = false;
                    continue;
                }
                column_to_header.insert(canonical, header.trim().to_string());
            }
            if ok {
                let header_to_column =
                    column_to_header.iter().map(|(column, header)| (header.clone(), column.clone())).collect();
                entities.insert(
                    entity,
                    EntitySettings {
                        pattern: entity_config.pattern.clone().map(FilePattern::Glob),
                        header_to_column,
                        column_to_header,
                        file_prefix: entity_config.file_prefix.clone().unwrap_or_default(),
                    },
                );
            }
        }

        match (delimiter, encoding) {
            (Some(delimiter), Some(encoding)) if problems.is_empty() => Ok(Settings {
                folder: self.path.clone(),
                format: self.format,
                delimiter,
                encoding,
                cells: map::CellFormat { decimal_comma },
                min_age: Duration::from_secs(self.min_age_seconds),
                entities,
            }),
            _ => Err(problems),
        }
    }
}

/// A pattern or prefix must name files inside the folder, and not hidden ones (which are the
/// sink's temporary files and are never read).
fn check_file_name_part(text: &str, what: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if text.contains(['/', '\\']) || text.contains("..") {
        return Err(format!("{what} names files inside the folder: no \"/\", \"\\\" or \"..\", found {text:?}"));
    }
    if text.starts_with('.') {
        return Err(format!("{what} must not start with \".\": hidden files are never read, found {text:?}"));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("{what} must not contain control characters, found {text:?}"));
    }
    Ok(())
}

/// Validated settings of one `files` system.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub folder: PathBuf,
    pub format: FileFormat,
    pub delimiter: u8,
    pub encoding: &'static Encoding,
    pub cells: map::CellFormat,
    pub min_age: Duration,
    entities: HashMap<EntityKind, EntitySettings>,
}

/// Validated per-entity settings. Entities without a table get the defaults.
#[derive(Debug, Clone, Default)]
pub(crate) struct EntitySettings {
    /// `None`: the default pattern `<entity>*.<extension>`.
    pattern: Option<FilePattern>,
    /// File header → canonical column.
    pub header_to_column: HashMap<String, String>,
    /// Canonical column → file header, for writing.
    pub column_to_header: HashMap<String, String>,
    pub file_prefix: String,
}

impl Settings {
    pub fn entity(&self, entity: EntityKind) -> &EntitySettings {
        static DEFAULT: std::sync::OnceLock<EntitySettings> = std::sync::OnceLock::new();
        self.entities.get(&entity).unwrap_or_else(|| DEFAULT.get_or_init(EntitySettings::default))
    }

    /// Whether a file of the folder belongs to `entity`. Hidden files (the sink's temporary
    /// files) and `.tmp` files never do.
    pub fn matches(&self, entity: EntityKind, file_name: &str) -> bool {
        if file_name.starts_with('.') || file_name.to_ascii_lowercase().ends_with(".tmp") {
            return false;
        }
        match &self.entity(entity).pattern {
            Some(FilePattern::Glob(pattern)) => glob_matches(pattern, file_name),
            None => default_pattern_matches(entity, self.format, file_name),
        }
    }
}

#[derive(Debug, Clone)]
enum FilePattern {
    Glob(String),
}

/// `<entity>*.<extension>`, except that a file whose name starts with a longer entity name
/// belongs to that entity: `order_status-1.csv` is an order status file, not an order file.
fn default_pattern_matches(entity: EntityKind, format: FileFormat, file_name: &str) -> bool {
    let lower = file_name.to_ascii_lowercase();
    let pattern = format!("{}*.{}", entity.as_str(), format.extension());
    if !glob_matches(&pattern, &lower) {
        return false;
    }
    !EntityKind::ALL.iter().any(|other| {
        other.as_str().len() > entity.as_str().len()
            && other.as_str().starts_with(entity.as_str())
            && lower.starts_with(other.as_str())
    })
}

/// A tiny glob: `*` matches any run of characters (also none), `?` exactly one; everything
/// else matches itself, ignoring ASCII case (ERPs on Windows write `ARTIKEL.CSV`).
pub(crate) fn glob_matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    // Where the last `*` was, and the name position it is currently matched up to: on a
    // mismatch the star swallows one more character. Linear backtracking, no recursion.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p].eq_ignore_ascii_case(&name[n])) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_glob(pattern: &str, name: &str, expected: bool) {
        assert_eq!(glob_matches(pattern, name), expected, "{pattern:?} against {name:?}");
    }

    #[test]
    fn glob_matches_stars_question_marks_and_ignores_ascii_case() {
        check_glob("products*.csv", "products.csv", true);
        check_glob("products*.csv", "products-2024-01.csv", true);
        check_glob("products*.csv", "PRODUCTS_1.CSV", true);
        check_glob("products*.csv", "products.csv.bak", false);
        check_glob("products*.csv", "old-products.csv", false);
        check_glob("a?c", "abc", true);
        check_glob("a?c", "ac", false);
        check_glob("*", "", true);
        check_glob("*x*y", "axbxcy", true);
        check_glob("*x*y", "axbxc", false);
        check_glob("Artikel*.csv", "Artikel_Ä.csv", true);
    }

    #[test]
    fn default_patterns_keep_orders_and_order_statuses_apart() {
        let csv = FileFormat::Csv;
        assert!(default_pattern_matches(EntityKind::Order, csv, "orders-1.csv"));
        assert!(!default_pattern_matches(EntityKind::Order, csv, "order_status-1.csv"));
        assert!(default_pattern_matches(EntityKind::OrderStatus, csv, "order_status-1.csv"));
        assert!(!default_pattern_matches(EntityKind::Order, csv, "orders-1.jsonl"));
        assert!(default_pattern_matches(EntityKind::Order, FileFormat::Jsonl, "orders-1.jsonl"));
    }

    fn check_problems(config: FilesConfig, expected: &[(&str, &str)]) {
        let problems = config.validate();
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
        for ((field, message), (expected_field, expected_fragment)) in problems.iter().zip(expected) {
            assert_eq!(field, expected_field, "{problems:#?}");
            assert!(message.contains(expected_fragment), "{message:?} should contain {expected_fragment:?}");
        }
    }

    #[test]
    fn validate_reports_every_problem_with_its_field_path() {
        check_problems(FilesConfig::new("/tmp/x"), &[]);

        let mut config = FilesConfig::new("");
        config.delimiter = ";;".into();
        config.encoding = "klingon".into();
        config.decimal_separator = "·".into();
        config.entities.insert(
            "product".into(),
            EntityFilesConfig {
                pattern: Some("../x*.csv".into()),
                columns: BTreeMap::from([
                    ("Artikelnummer".to_string(), "sku".to_string()),
                    ("Nummer".to_string(), "sku".to_string()),
                    ("Preis".to_string(), "prise".to_string()),
                ]),
                file_prefix: Some(".hidden".into()),
            },
        );
        config.entities.insert("produkt".into(), EntityFilesConfig::default());
        check_problems(
            config,
            &[
                ("path", "is required"),
                ("delimiter", "one ASCII character"),
                ("encoding", "unknown encoding \"klingon\""),
                ("decimal_separator", "expected \".\" or \",\""),
                ("entities.product.pattern", "inside the folder"),
                ("entities.product.file_prefix", "must not start with"),
                ("entities.product.columns.Nummer", "both map to \"sku\""),
                ("entities.product.columns.Preis", "unknown column \"prise\" for product"),
                ("entities.produkt", "unknown entity \"produkt\""),
            ],
        );
    }

    #[test]
    fn validate_rejects_encodings_that_are_not_ascii_compatible_and_comma_twice() {
        let mut config = FilesConfig::new("/tmp/x");
        config.encoding = "utf-16le".into();
        config.decimal_separator = ",".into();
        check_problems(config, &[("encoding", "not ASCII-compatible"), ("decimal_separator", "both the delimiter")]);
        let mut config = FilesConfig::new("/tmp/x");
        config.encoding = "latin1".into();
        config.delimiter = "\t".into();
        assert_eq!(config.settings().unwrap().encoding, encoding_rs::WINDOWS_1252);
    }

    #[test]
    fn relative_paths_resolve_against_the_configuration_folder() {
        let mut config = FilesConfig::new("erp/export");
        config.resolve_paths(std::path::Path::new("/etc/erpsync"));
        assert_eq!(config.path, std::path::Path::new("/etc/erpsync/erp/export"));
        let mut config = FilesConfig::new("/srv/exchange");
        config.resolve_paths(std::path::Path::new("/etc/erpsync"));
        assert_eq!(config.path, std::path::Path::new("/srv/exchange"));
    }

    #[test]
    fn deserializing_refuses_unknown_fields() {
        let error =
            serde_json::from_value::<FilesConfig>(serde_json::json!({"path": "/x", "delimeter": ";"})).unwrap_err();
        assert!(error.to_string().contains("delimeter"), "{error}");
        let error = serde_json::from_value::<FilesConfig>(
            serde_json::json!({"path": "/x", "entities": {"product": {"colums": {}}}}),
        )
        .unwrap_err();
        assert!(error.to_string().contains("colums"), "{error}");
    }
}
