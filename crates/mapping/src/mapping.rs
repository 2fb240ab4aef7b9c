//! `Mapping`: a flow's compiled mapping, and applying it to one canonical record.
//!
//! Applying starts from the record's JSON (its serde form, with the `entity` tag), evaluates the
//! filter and then each field override against that original JSON (never against a partly mapped
//! one, so the order of fields does not matter), sets each result at its path, turns the JSON back
//! into a record and validates it. A field whose expression gives no value is an error, not a
//! dropped field: JSONata silently yields nothing for a misspelt input path.

use crate::expression::{Expression, ExpressionError, Limits};
use crate::json;
use crate::lookup::{LOOKUP_FUNCTION_PREFIX, Lookups};
use crate::position::TextPosition;
use crate::reads::Reads;
use crate::schema::{self, PathProblem};
use crate::spec::{FieldPath, MappingSpec, field_setting};
use erpsync_model::{EntityKind, Record, ValidationErrors};
use jsonata_core::value::JValue;
use serde_json::{Map, Value};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a mapping comes from, for its error messages, and what it maps.
#[derive(Debug, Clone)]
pub struct CompileContext {
    /// The configuration file.
    pub file: PathBuf,
    pub flow: String,
    /// The entity the flow moves: paths are checked against it.
    pub entity: EntityKind,
    pub limits: Limits,
}

impl CompileContext {
    pub fn new(file: impl Into<PathBuf>, flow: impl Into<String>, entity: EntityKind) -> Self {
        CompileContext { file: file.into(), flow: flow.into(), entity, limits: Limits::default() }
    }
}

/// One problem in a flow's mapping, found when the configuration loads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: flow `{flow}`, {field}{}: {problem}", .file.display(), PositionSuffix(.position))]
pub struct MappingError {
    pub file: PathBuf,
    pub flow: String,
    /// The setting, relative to the flow's mapping: `filter`, `fields.title`, `fields."extra.season"`.
    pub field: String,
    /// Inside the expression text; the engine adds where the string starts in the file.
    pub position: Option<TextPosition>,
    pub problem: MappingProblem,
}

struct PositionSuffix<'a>(&'a Option<TextPosition>);

impl fmt::Display for PositionSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(position) => write!(f, ", {position}"),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingProblem {
    #[error("{message}")]
    Spec { message: String },
    #[error("syntax error: {message}")]
    Syntax { message: String, code: Option<String> },
    #[error("{0}")]
    Expression(#[source] ExpressionError),
    #[error("calls `${LOOKUP_FUNCTION_PREFIX}{lookup}`, but there is no lookup table `{lookup}` ({})", known_tables(.known))]
    UnknownLookup { lookup: String, known: Vec<String> },
    #[error(
        "`$lookup('{table}', …)` is JSONata's built-in `$lookup(object, key)`, which gives no value for a string: to translate through the lookup table `{table}` write `${LOOKUP_FUNCTION_PREFIX}{table}(value)`"
    )]
    BuiltinLookupWithTableName { table: String },
    #[error("{}", unknown_field_message(.entity, .parent, .field, .suggestion))]
    UnknownField { entity: EntityKind, parent: String, field: String, suggestion: Option<String> },
    #[error(
        "`{array}.{inner}` goes into the array `{array}`, and paths into arrays are not supported: map the whole array, e.g. `{array} = \"{array}.$merge([$, {{ '{inner}': ... }}])\"`"
    )]
    PathIntoArray { array: String, inner: String },
    #[error("`{parent}` is {found}, which has no fields")]
    IntoScalar { parent: String, found: &'static str },
}

fn known_tables(known: &[String]) -> String {
    if known.is_empty() {
        "none is configured: add a `[lookups.<name>]` section".to_string()
    } else {
        let names: Vec<String> = known.iter().map(|name| format!("`{name}`")).collect();
        format!("configured: {}", names.join(", "))
    }
}

fn unknown_field_message(entity: &EntityKind, parent: &str, field: &str, suggestion: &Option<String>) -> String {
    let place = if parent.is_empty() { format!("a {entity}") } else { format!("`{parent}` in a {entity}") };
    let hint = match suggestion {
        Some(suggestion) => format!("did you mean `{suggestion}`? "),
        None => String::new(),
    };
    format!(
        "{place} has no field `{field}`: {hint}fields the model does not name go under `extra`, e.g. `extra.{field}`"
    )
}

/// The outcome of applying a mapping to one record.
// Like `Record` itself: nearly every outcome is `Mapped`, so boxing would cost an allocation per
// record to shrink the rare `Skipped`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The filter was false: the flow leaves this record alone.
    Skipped {
        reason: String,
    },
    Mapped(Record),
}

/// Why one record could not be mapped. The engine adds which record it was.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordMappingError {
    #[error("this mapping is for {expected} records, got a {found}")]
    WrongEntity { expected: EntityKind, found: EntityKind },
    #[error("filter: {source}")]
    Filter {
        #[source]
        source: ExpressionError,
    },
    #[error(
        "filter `{expression}` produced {found}, not true or false: compare explicitly, e.g. `extra.sync = true`, or use `$boolean(...)`"
    )]
    FilterNotBoolean { expression: String, found: &'static str },
    #[error("field `{field}`: expression `{expression}` produced no value")]
    NoValue { field: String, expression: String },
    #[error("field `{field}`: value {value:?} is not in lookup `{lookup}`, which has no default")]
    UnknownLookupValue { field: String, lookup: String, value: String },
    #[error("field `{field}`: {source}")]
    Expression {
        field: String,
        #[source]
        source: ExpressionError,
    },
    #[error("field `{field}`: cannot set it because `{parent}` is {found}, not an object")]
    NotAnObject { field: String, parent: String, found: &'static str },
    #[error("field `{field}`: the result does not fit a {entity}: {message}")]
    DoesNotFit { field: String, entity: EntityKind, message: String },
    #[error("the mapped {entity} does not fit the model: {message}")]
    RecordDoesNotFit { entity: EntityKind, message: String },
    #[error("the mapped record is invalid: {0}")]
    Invalid(#[source] ValidationErrors),
}

/// A compiled mapping. Cheap to clone and shared between threads.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    /// `None`: the identity mapping.
    compiled: Option<Arc<Compiled>>,
}

#[derive(Debug)]
struct Compiled {
    entity: EntityKind,
    filter: Option<Expression>,
    fields: Vec<FieldOverride>,
    /// Every field is inside the record's top-level `extra`: the mapped record is the original
    /// with those custom fields set, with no trip through JSON for the rest.
    extra_only: bool,
    /// The top-level fields of the record the filter and the expressions can read: only those
    /// are converted for evaluation.
    reads: Reads,
    lookups: Lookups,
}

#[derive(Debug)]
struct FieldOverride {
    path: FieldPath,
    expression: Expression,
    /// The model holds a list here: JSONata unwraps a sequence of one item, so a single value is
    /// wrapped back into a list.
    list: bool,
}

impl Mapping {
    /// The mapping that changes nothing (and costs nothing beyond validating the record).
    pub fn identity() -> Mapping {
        Mapping { compiled: None }
    }

    pub fn is_identity(&self) -> bool {
        self.compiled.is_none()
    }

    /// Compiles a flow's mapping: parses every expression, checks every path against the entity
    /// and every lookup call against `lookups`, and reports all problems together.
    pub fn compile(
        spec: &MappingSpec,
        lookups: &Lookups,
        context: &CompileContext,
    ) -> Result<Mapping, Vec<MappingError>> {
        let mut errors = Vec::new();
        let error = |field: &str, position: Option<TextPosition>, problem: MappingProblem| MappingError {
            file: context.file.clone(),
            flow: context.flow.clone(),
            field: field.to_string(),
            position,
            problem,
        };
        if let Err(problems) = spec.validate() {
            for problem in problems {
                errors.push(error(&problem.field, None, MappingProblem::Spec { message: problem.message }));
            }
        }
        if spec.is_identity() && errors.is_empty() {
            return Ok(Mapping::identity());
        }

        let compile_expression = |setting: &str, source: &str, errors: &mut Vec<MappingError>| {
            if source.trim().is_empty() {
                // Already reported by `validate`.
                return None;
            }
            match Expression::compile_with_limits(source, context.limits) {
                Ok(expression) => {
                    let before = errors.len();
                    // The built-in `$lookup` gives no value for a string subject, so a string
                    // there is always a mix-up, whether or not it names a configured table.
                    for table in expression.builtin_lookup_names() {
                        errors.push(error(
                            setting,
                            position_of(source, "$lookup("),
                            MappingProblem::BuiltinLookupWithTableName { table: table.clone() },
                        ));
                    }
                    for table in expression.lookups_used() {
                        if lookups.get(table).is_none() {
                            errors.push(error(
                                setting,
                                position_of(source, &format!("${LOOKUP_FUNCTION_PREFIX}{table}")),
                                MappingProblem::UnknownLookup {
                                    lookup: table.clone(),
                                    known: lookups.names().map(str::to_string).collect(),
                                },
                            ));
                        }
                    }
                    (errors.len() == before).then_some(expression)
                }
                Err(ExpressionError::Syntax { message, code, position, .. }) => {
                    errors.push(error(setting, Some(position), MappingProblem::Syntax { message, code }));
                    None
                }
                Err(other) => {
                    errors.push(error(setting, None, MappingProblem::Expression(other)));
                    None
                }
            }
        };

        let filter = spec.filter.as_deref().and_then(|source| compile_expression("filter", source, &mut errors));
        let mut fields = Vec::with_capacity(spec.fields.len());
        for (path_text, source) in &spec.fields {
            let setting = field_setting(path_text);
            let expression = compile_expression(&setting, source, &mut errors);
            // Malformed paths were reported by `validate`.
            let Ok(path) = FieldPath::parse(path_text) else { continue };
            let target = match schema::check_path(context.entity, &path) {
                Ok(target) => target,
                Err(problem) => {
                    errors.push(error(&setting, None, path_problem(context.entity, problem)));
                    continue;
                }
            };
            if let Some(expression) = expression {
                fields.push(FieldOverride { path, expression, list: target.list });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let reads = filter
            .iter()
            .chain(fields.iter().map(|field| &field.expression))
            .fold(Reads::Fields(Default::default()), |reads, expression| reads.union(expression.reads().clone()));
        Ok(Mapping {
            compiled: Some(Arc::new(Compiled {
                entity: context.entity,
                reads,
                filter,
                extra_only: fields
                    .iter()
                    .all(|field| field.path.segments.len() > 1 && field.path.segments[0] == "extra"),
                fields,
                lookups: lookups.clone(),
            })),
        })
    }

    /// Maps one record: skipped by the filter, or mapped and valid.
    pub fn apply(&self, record: &Record) -> Result<Applied, RecordMappingError> {
        let Some(compiled) = &self.compiled else {
            record.validate().map_err(RecordMappingError::Invalid)?;
            return Ok(Applied::Mapped(record.clone()));
        };
        if record.kind() != compiled.entity {
            return Err(RecordMappingError::WrongEntity { expected: compiled.entity, found: record.kind() });
        }
        // A Record always serializes: see `erpsync_model::content_hash`.
        let original = serde_json::to_value(record).expect("records always serialize");
        let input = match &compiled.reads {
            Reads::Everything => json::to_jvalue(&original),
            reads => json::to_jvalue_fields(&original, |name| reads.includes(name)),
        };

        if let Some(filter) = &compiled.filter {
            let verdict = filter
                .evaluate_jvalue(&input, &[], &compiled.lookups)
                .map_err(|source| RecordMappingError::Filter { source })?;
            match verdict {
                JValue::Bool(true) => {}
                JValue::Bool(false) => {
                    return Ok(Applied::Skipped { reason: format!("filter `{}` is false", filter.shown()) });
                }
                other => {
                    return Err(RecordMappingError::FilterNotBoolean {
                        expression: filter.shown(),
                        found: json::jvalue_type_name(&other),
                    });
                }
            }
        }
        if compiled.fields.is_empty() {
            record.validate().map_err(RecordMappingError::Invalid)?;
            return Ok(Applied::Mapped(record.clone()));
        }

        let mut values = Vec::with_capacity(compiled.fields.len());
        for field in &compiled.fields {
            values.push(evaluate_field(field, &input, &compiled.lookups)?);
        }
        drop(input);
        if compiled.extra_only {
            let mut mapped = record.clone();
            let extra = mapped.extra_mut();
            let mut root = Value::Object(std::mem::take(&mut extra.0));
            for (field, value) in compiled.fields.iter().zip(values) {
                set_path(&mut root, field, 1, value)?;
            }
            if let Value::Object(map) = root {
                extra.0 = map;
            }
            mapped.validate().map_err(RecordMappingError::Invalid)?;
            return Ok(Applied::Mapped(mapped));
        }
        let mut output = original;
        for (field, value) in compiled.fields.iter().zip(&values) {
            set_path(&mut output, field, 0, value.clone())?;
        }
        let mapped = match Record::from_value_of(compiled.entity, output) {
            Ok(mapped) => mapped,
            Err(error) => {
                // The rare failing record pays for serializing its original a second time.
                let original = serde_json::to_value(record).expect("records always serialize");
                return Err(blame(compiled, &original, &values, error));
            }
        };
        mapped.validate().map_err(RecordMappingError::Invalid)?;
        Ok(Applied::Mapped(mapped))
    }
}

fn evaluate_field(field: &FieldOverride, input: &JValue, lookups: &Lookups) -> Result<Value, RecordMappingError> {
    let field_error = |source: ExpressionError| match source {
        ExpressionError::UnknownLookupValue { lookup, value, .. } => {
            RecordMappingError::UnknownLookupValue { field: field.path.text.clone(), lookup, value }
        }
        source => RecordMappingError::Expression { field: field.path.text.clone(), source },
    };
    let result = field.expression.evaluate_jvalue(input, &[], lookups).map_err(field_error)?;
    let Some(value) = field.expression.to_json(&result).map_err(field_error)? else {
        return Err(RecordMappingError::NoValue {
            field: field.path.text.clone(),
            expression: field.expression.shown(),
        });
    };
    Ok(match value {
        Value::Array(_) => value,
        single if field.list => Value::Array(vec![single]),
        other => other,
    })
}

/// Sets `value` at the field's path, creating objects where the path meets nothing or `null`.
/// `root` is where the path's segment number `from` is looked up (0: the whole record).
fn set_path(root: &mut Value, field: &FieldOverride, from: usize, value: Value) -> Result<(), RecordMappingError> {
    let segments = &field.path.segments;
    let mut current = root;
    for (index, segment) in segments.iter().enumerate().skip(from) {
        if current.is_null() {
            *current = Value::Object(Map::new());
        }
        let Value::Object(object) = current else {
            return Err(RecordMappingError::NotAnObject {
                field: field.path.text.clone(),
                parent: segments[..index].join("."),
                found: json::type_name(current),
            });
        };
        if index + 1 == segments.len() {
            object.insert(segment.clone(), value);
            return Ok(());
        }
        current = object.entry(segment.clone()).or_insert(Value::Null);
    }
    Ok(())
}

/// Serde's messages do not say which field; we find the override that breaks the record on its
/// own. Only failures pay for this.
fn blame(compiled: &Compiled, original: &Value, values: &[Value], error: serde_json::Error) -> RecordMappingError {
    for (field, value) in compiled.fields.iter().zip(values) {
        let mut alone = original.clone();
        if set_path(&mut alone, field, 0, value.clone()).is_err() {
            continue;
        }
        if let Err(error) = serde_json::from_value::<Record>(alone) {
            return RecordMappingError::DoesNotFit {
                field: field.path.text.clone(),
                entity: compiled.entity,
                message: error.to_string(),
            };
        }
    }
    RecordMappingError::RecordDoesNotFit { entity: compiled.entity, message: error.to_string() }
}

fn path_problem(entity: EntityKind, problem: PathProblem) -> MappingProblem {
    match problem {
        PathProblem::UnknownField { parent, field, suggestion } => {
            MappingProblem::UnknownField { entity, parent, field, suggestion }
        }
        PathProblem::IntoArray { array, inner } => MappingProblem::PathIntoArray { array, inner },
        PathProblem::IntoScalar { parent, found } => MappingProblem::IntoScalar { parent, found },
    }
}

/// The position of the first occurrence of `needle` in `source`, for problems found by name.
fn position_of(source: &str, needle: &str) -> Option<TextPosition> {
    let byte_offset = source.find(needle)?;
    Some(TextPosition::of_char_offset(source, source[..byte_offset].chars().count()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup::{LookupSpec, LookupTable};
    use serde_json::json;

    const CONFIG: &str = "erpsync.toml";

    fn lookups() -> Lookups {
        let strict: LookupSpec =
            toml::from_str("values = { \"19\" = \"DE-STD\", \"7\" = \"DE-RED\" }\non_unknown = \"error\"").unwrap();
        let lenient: LookupSpec = toml::from_str("values = { \"DHL\" = \"dhl_de\" }\ndefault = \"other\"").unwrap();
        [
            LookupTable::from_spec("tax_codes", &strict, None).unwrap(),
            LookupTable::from_spec("carriers", &lenient, None).unwrap(),
        ]
        .into_iter()
        .collect()
    }

    fn mapping(spec_toml: &str) -> Mapping {
        let spec: MappingSpec = toml::from_str(spec_toml).unwrap();
        let context = CompileContext::new(CONFIG, "products", EntityKind::Product);
        Mapping::compile(&spec, &lookups(), &context).unwrap_or_else(|errors| panic!("{errors:#?}"))
    }

    fn compile_errors(spec_toml: &str) -> Vec<String> {
        let spec: MappingSpec = toml::from_str(spec_toml).unwrap();
        let context = CompileContext::new(CONFIG, "products", EntityKind::Product);
        Mapping::compile(&spec, &lookups(), &context).unwrap_err().iter().map(ToString::to_string).collect()
    }

    fn product(extra_fields: Value) -> Record {
        let mut json = json!({
            "entity": "product", "code": "A", "title": "shirt", "tax_class": "19",
            "variants": [{"sku": "A-1"}], "extra": {"saison": "summer"}
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut json, extra_fields) {
            base.extend(extra);
        }
        serde_json::from_value(json).unwrap()
    }

    /// Applies the mapping and compares the output's JSON with `expected`: the fields listed
    /// there must be equal; the rest is not looked at.
    fn check(spec_toml: &str, input: Record, expected: Result<Value, &str>) {
        let outcome = mapping(spec_toml).apply(&input);
        match (outcome, expected) {
            (Ok(Applied::Mapped(record)), Ok(expected)) => {
                let output = serde_json::to_value(&record).unwrap();
                for (key, value) in expected.as_object().unwrap() {
                    assert_eq!(&output[key], value, "field {key} of {output}");
                }
            }
            (Err(error), Err(message)) => assert_eq!(error.to_string(), message),
            (outcome, expected) => panic!("expected {expected:?}, got {outcome:?}"),
        }
    }

    #[test]
    fn fields_are_computed_from_the_original_record() {
        check(
            "[fields]\ntitle = '$uppercase(title)'\ncode = 'title'\n",
            product(json!({})),
            Ok(json!({"title": "SHIRT", "code": "shirt"})),
        );
    }

    #[test]
    fn extra_is_reachable_on_both_sides() {
        check(
            "[fields]\n\"extra.season\" = 'extra.saison'\nvendor = 'extra.saison & \" collection\"'\n",
            product(json!({})),
            Ok(json!({"extra": {"saison": "summer", "season": "summer"}, "vendor": "summer collection"})),
        );
        check(
            "[fields]\n\"extra.deep.er\" = '1'\n",
            product(json!({})),
            Ok(json!({"extra": {"saison": "summer", "deep": {"er": 1}}})),
        );
        // Custom fields only (the path that skips the JSON round trip) and a mix give the same.
        let only_extra = mapping("[fields]\n\"extra.season\" = 'extra.saison'\n\"extra.deep.er\" = '1'\n");
        let mixed = mapping("[fields]\n\"extra.season\" = 'extra.saison'\n\"extra.deep.er\" = '1'\ntitle = 'title'\n");
        let input = product(json!({}));
        let mapped = |mapping: &Mapping| match mapping.apply(&input).unwrap() {
            Applied::Mapped(record) => serde_json::to_value(record).unwrap(),
            Applied::Skipped { reason } => panic!("skipped: {reason}"),
        };
        assert_eq!(mapped(&only_extra), mapped(&mixed));
        check(
            "[fields]\n\"extra.saison.x\" = '1'\n",
            product(json!({})),
            Err("field `extra.saison.x`: cannot set it because `extra.saison` is a string, not an object"),
        );
    }

    #[test]
    fn expressions_see_the_fields_they_name_and_the_whole_record_when_they_ask_for_it() {
        // Only `variants` and `title` are converted for the first; `$keys($)` needs every field.
        check(
            "filter = \"title = 'shirt'\"\n[fields]\n\"extra.skus\" = '$join(variants.sku, \",\")'\n",
            product(json!({})),
            Ok(json!({"extra": {"saison": "summer", "skus": "A-1"}})),
        );
        check(
            "[fields]\n\"extra.fields\" = '$count($keys($))'\n\"extra.first\" = '$keys()[0]'\n",
            product(json!({})),
            Ok(json!({"extra": {"saison": "summer", "fields": 16, "first": "entity"}})),
        );
        // A name that is no top-level field reads nothing, as with the whole record.
        check(
            "[fields]\n\"extra.missing\" = '$exists(sku) ? \"yes\" : \"no\"'\n",
            product(json!({})),
            Ok(json!({"extra": {"saison": "summer", "missing": "no"}})),
        );
    }

    #[test]
    fn lookups_translate_and_fall_back_to_their_default() {
        check(
            "[fields]\ntax_class = '$lookup_tax_codes(tax_class)'\n",
            product(json!({})),
            Ok(json!({"tax_class": "DE-STD"})),
        );
        check("[fields]\nvendor = '$lookup_carriers(\"UPS\")'\n", product(json!({})), Ok(json!({"vendor": "other"})));
    }

    #[test]
    fn an_unknown_value_in_a_strict_lookup_fails_the_record() {
        check(
            "[fields]\ntax_class = '$lookup_tax_codes(tax_class)'\n",
            product(json!({"tax_class": "20"})),
            Err("field `tax_class`: value \"20\" is not in lookup `tax_codes`, which has no default"),
        );
    }

    #[test]
    fn a_false_filter_skips_the_record() {
        let outcome = mapping("filter = \"status = 'active'\"\n").apply(&product(json!({"status": "draft"}))).unwrap();
        assert_eq!(outcome, Applied::Skipped { reason: "filter `status = 'active'` is false".to_string() });
        let outcome = mapping("filter = \"status = 'active'\"\n").apply(&product(json!({}))).unwrap();
        assert!(matches!(outcome, Applied::Mapped(_)));
    }

    #[test]
    fn a_filter_must_say_true_or_false() {
        check(
            "filter = 'extra.sync'\n",
            product(json!({})),
            Err(
                "filter `extra.sync` produced no value, not true or false: compare explicitly, e.g. `extra.sync = true`, or use `$boolean(...)`",
            ),
        );
    }

    #[test]
    fn no_value_is_an_error_naming_field_and_expression() {
        check(
            "[fields]\ntax_class = '$lookup_tax_codes(tax_klass)'\n",
            product(json!({})),
            Err("field `tax_class`: expression `$lookup_tax_codes(tax_klass)` produced no value"),
        );
    }

    #[test]
    fn output_that_does_not_fit_names_the_field() {
        check(
            "[fields]\ntitle = '42'\nvendor = '\"ok\"'\n",
            product(json!({})),
            Err("field `title`: the result does not fit a product: invalid type: integer `42`, expected a string"),
        );
    }

    #[test]
    fn mapped_records_are_validated() {
        check(
            "[fields]\nvariants = '[]'\n",
            product(json!({})),
            Err("the mapped record is invalid: variants: a product needs at least one variant"),
        );
    }

    #[test]
    fn a_single_value_for_a_list_is_wrapped() {
        check(
            "[fields]\nvariants = \"variants.$merge([$, {'barcode': '4006381333931'}])\"\n",
            product(json!({})),
            Ok(json!({"variants": [{
                "sku": "A-1", "title": null, "barcode": "4006381333931", "options": [], "price": null,
                "compare_at_price": null, "cost": null, "price_includes_tax": false, "weight": null,
                "track_inventory": false, "extra": {}
            }]})),
        );
    }

    #[test]
    fn expressions_are_limited() {
        check(
            "[fields]\ntitle = '($f := function($n){ $f($n + 1) + 1 }; $f(0))'\n",
            product(json!({})),
            Err(
                "field `title`: evaluating `($f := function($n){ $f($n + 1) + 1 }; $f(0))`: nested deeper than the limit of 1000 levels (a runaway recursion?)",
            ),
        );
    }

    #[test]
    fn identity_changes_nothing() {
        let input = product(json!({}));
        assert_eq!(mapping("").apply(&input).unwrap(), Applied::Mapped(input.clone()));
        assert!(mapping("").is_identity());
        assert_eq!(Mapping::identity().apply(&input).unwrap(), Applied::Mapped(input));
    }

    #[test]
    fn records_of_another_entity_are_refused() {
        let stock: Record =
            serde_json::from_value(json!({"entity": "stock_level", "sku": "A", "location": "main", "available": "1"}))
                .unwrap();
        let error = mapping("[fields]\ntitle = 'title'\n").apply(&stock).unwrap_err();
        assert_eq!(error.to_string(), "this mapping is for product records, got a stock_level");
    }

    #[test]
    fn compile_errors_name_file_flow_field_line_and_column() {
        assert_eq!(
            compile_errors("filter = \"status = \"\n[fields]\ntitle = \"\"\"\n$uppercase(\n  title &\n)\"\"\"\n"),
            [
                "erpsync.toml: flow `products`, filter, line 1, column 10: syntax error: S0207: Unexpected end of expression",
                "erpsync.toml: flow `products`, fields.title, line 3, column 1: syntax error: S0211: The symbol RightParen cannot be used as a unary operator",
            ]
        );
    }

    #[test]
    fn compile_errors_for_paths_and_lookups() {
        assert_eq!(
            compile_errors(
                "[fields]\ntitel = 'title'\n\"variants.price\" = 'x'\ntax_class = \"$lookup('tax_codes', tax_class)\"\nvendor = '$lookup_vendors(vendor)'\n"
            ),
            [
                "erpsync.toml: flow `products`, fields.tax_class, line 1, column 1: `$lookup('tax_codes', …)` is JSONata's built-in `$lookup(object, key)`, which gives no value for a string: to translate through the lookup table `tax_codes` write `$lookup_tax_codes(value)`",
                "erpsync.toml: flow `products`, fields.titel: a product has no field `titel`: did you mean `title`? fields the model does not name go under `extra`, e.g. `extra.titel`",
                "erpsync.toml: flow `products`, fields.\"variants.price\": `variants.price` goes into the array `variants`, and paths into arrays are not supported: map the whole array, e.g. `variants = \"variants.$merge([$, { 'price': ... }])\"`",
                "erpsync.toml: flow `products`, fields.vendor, line 1, column 1: calls `$lookup_vendors`, but there is no lookup table `vendors` (configured: `carriers`, `tax_codes`)",
            ]
        );
    }

    #[test]
    fn mappings_are_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Mapping>();
        let mapping = mapping("[fields]\ntitle = '$uppercase(title)'\n");
        let input = product(json!({}));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (mapping, input) = (mapping.clone(), input.clone());
                std::thread::spawn(move || mapping.apply(&input))
            })
            .collect();
        for thread in threads {
            assert!(matches!(thread.join().unwrap(), Ok(Applied::Mapped(_))));
        }
    }
}
