//! The official JSONata test suite (reference implementation 2.2.2), run through our `Expression`
//! wrapper with our limits on, so that an upgrade of the pinned jsonata-core that breaks JSONata is
//! caught. Cases we knowingly differ on are listed in `KNOWN_DIFFERENCES` with the reason; a listed
//! case that starts passing fails the test too, so the list stays honest.
//!
//! The suite lives in the shared reference folder beside the workspace
//! (`../shared/reference/jsonata-test-suite` from the workspace root), where CI puts it as well.

use erpsync_mapping::{Bindings, Expression, ExpressionError, Limits};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// Cases we differ on, as `group/case` (`group/file[index]` for files holding several cases), with
/// the reason.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "function-encodeUrl/case002",
        "the case's input is a lone UTF-16 surrogate (\\uD800), which no Rust string can hold, so it cannot reach the expression",
    ),
    (
        "function-encodeUrlComponent/case002",
        "the case's input is a lone UTF-16 surrogate (\\uD800), which no Rust string can hold, so it cannot reach the expression",
    ),
    (
        "range-operator/case021",
        "counts a range of 10,000,000 items, beyond our max_sequence_length of 1,000,000 (D2015)",
    ),
    (
        "range-operator/case024",
        "counts a range of 10,000,000 items, beyond our max_sequence_length of 1,000,000 (D2015)",
    ),
];

/// The reference runner (jsonata-js `test/run-test-suite.js`, `timeboxExpression`) enforces a
/// case's `timelimit` and `depth` itself and reports either breach as U1001. We enforce them
/// inside the evaluator, which reports D1012 (time) and D1011 (depth).
fn codes_match(expected: &str, found: &str) -> bool {
    expected == found || (expected == "U1001" && matches!(found, "D1011" | "D1012"))
}

/// Two results are equal when their numbers are within this relative distance: the suite's numbers
/// went through JavaScript's float formatting.
const RELATIVE_TOLERANCE: f64 = 1e-10;

struct Case {
    id: String,
    group_dir: PathBuf,
    /// `Err`: the file is not JSON that Rust can hold (a lone surrogate in a string).
    spec: Result<Value, String>,
}

enum Verdict {
    Passed,
    Failed(String),
}

#[test]
fn official_jsonata_test_suite() {
    let root = suite_root();
    let cases = load_cases(&root);
    assert!(cases.len() > 1_000, "expected the whole suite in {}, found {} cases", root.display(), cases.len());
    let known: HashMap<&str, &str> = KNOWN_DIFFERENCES.iter().copied().collect();
    let mut datasets = HashMap::new();

    let (mut passed, mut known_failed) = (0, 0);
    let mut unexpected_failures = Vec::new();
    let mut unexpected_passes = Vec::new();
    for case in &cases {
        let verdict = run_case(case, &root, &mut datasets);
        match (verdict, known.get(case.id.as_str())) {
            (Verdict::Passed, None) => passed += 1,
            (Verdict::Passed, Some(reason)) => {
                unexpected_passes.push(format!("{} (listed because: {reason})", case.id))
            }
            (Verdict::Failed(_), Some(_)) => known_failed += 1,
            (Verdict::Failed(message), None) => unexpected_failures.push(format!("{}: {message}", case.id)),
        }
    }
    let stale: Vec<&str> =
        KNOWN_DIFFERENCES.iter().map(|(id, _)| *id).filter(|id| !cases.iter().any(|case| case.id == *id)).collect();

    println!(
        "jsonata test suite: {passed} passed, {known_failed} known differences, {} unexpected failures, {} total",
        unexpected_failures.len(),
        cases.len()
    );
    let mut problems = Vec::new();
    if !unexpected_failures.is_empty() {
        problems.push(format!(
            "{} cases failed that are not in KNOWN_DIFFERENCES:\n  {}",
            unexpected_failures.len(),
            unexpected_failures.join("\n  ")
        ));
    }
    if !unexpected_passes.is_empty() {
        problems.push(format!(
            "{} cases in KNOWN_DIFFERENCES now pass: remove them from the list\n  {}",
            unexpected_passes.len(),
            unexpected_passes.join("\n  ")
        ));
    }
    if !stale.is_empty() {
        problems.push(format!("KNOWN_DIFFERENCES names cases the suite does not have: {stale:?}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

fn suite_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/jsonata-test-suite");
    assert!(
        root.join("groups").is_dir() && root.join("datasets").is_dir(),
        "the JSONata test suite is missing: expected it at {} (shared/reference/jsonata-test-suite beside the workspace)",
        root.display()
    );
    root
}

fn load_cases(root: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    for group_dir in sorted_entries(&root.join("groups")) {
        if !group_dir.is_dir() {
            continue;
        }
        let group = file_name(&group_dir);
        for file in sorted_entries(&group_dir) {
            if file.extension().is_none_or(|extension| extension != "json") {
                continue;
            }
            let stem = file.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
            let text = fs::read_to_string(&file).unwrap_or_else(|error| panic!("reading {}: {error}", file.display()));
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Array(specs)) => {
                    for (index, spec) in specs.into_iter().enumerate() {
                        let id = format!("{group}/{stem}[{index}]");
                        cases.push(Case { id, group_dir: group_dir.clone(), spec: Ok(spec) });
                    }
                }
                Ok(spec) => {
                    cases.push(Case { id: format!("{group}/{stem}"), group_dir: group_dir.clone(), spec: Ok(spec) })
                }
                Err(error) => cases.push(Case {
                    id: format!("{group}/{stem}"),
                    group_dir: group_dir.clone(),
                    spec: Err(format!("the case file is not valid JSON for serde_json: {error}")),
                }),
            }
        }
    }
    cases
}

fn run_case(case: &Case, root: &Path, datasets: &mut HashMap<String, Value>) -> Verdict {
    let spec = match &case.spec {
        Ok(spec) => spec,
        Err(message) => return Verdict::Failed(message.clone()),
    };
    let source = match (spec.get("expr").and_then(Value::as_str), spec.get("expr-file").and_then(Value::as_str)) {
        (Some(source), _) => source.to_string(),
        (None, Some(file)) => fs::read_to_string(case.group_dir.join(file))
            .unwrap_or_else(|error| panic!("{}: reading {file}: {error}", case.id)),
        (None, None) => panic!("{}: the case has neither expr nor expr-file", case.id),
    };
    let input = match (spec.get("data"), spec.get("dataset")) {
        (Some(data), _) => Some(data.clone()),
        (None, Some(Value::String(name))) => Some(
            datasets
                .entry(name.clone())
                .or_insert_with(|| {
                    let path = root.join("datasets").join(format!("{name}.json"));
                    let text =
                        fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
                    serde_json::from_str(&text).unwrap_or_else(|error| panic!("parsing {}: {error}", path.display()))
                })
                .clone(),
        ),
        // A `null` dataset, or none: the input is undefined.
        _ => None,
    };
    let variables: BTreeMap<String, Value> = match spec.get("bindings") {
        Some(Value::Object(bindings)) => bindings.clone().into_iter().collect(),
        _ => BTreeMap::new(),
    };
    let bindings = Bindings { variables, ..Bindings::default() };
    let defaults = Limits::default();
    let limits = Limits {
        timeout_ms: spec.get("timelimit").and_then(Value::as_u64).unwrap_or(defaults.timeout_ms),
        max_stack_depth: spec
            .get("depth")
            .and_then(Value::as_u64)
            .map_or(defaults.max_stack_depth, |depth| usize::try_from(depth).unwrap_or(usize::MAX)),
        ..defaults
    };

    let expected_code =
        spec.get("code").or_else(|| spec.get("error").and_then(|error| error.get("code"))).and_then(Value::as_str);
    let outcome = Expression::compile_with_limits(&source, limits)
        .and_then(|expression| expression.evaluate(input.as_ref(), &bindings));

    match (expected_code, outcome) {
        (Some(code), Err(error)) => match error.code() {
            Some(found) if codes_match(code, found) => Verdict::Passed,
            Some(found) => Verdict::Failed(format!("expected error {code}, got {found}: {error}")),
            None => Verdict::Failed(format!("expected error {code}, got an error without a code: {error}")),
        },
        (Some(code), Ok(result)) => Verdict::Failed(format!("expected error {code}, got {}", shown(&result))),
        (None, Err(error)) => Verdict::Failed(format!("unexpected error: {}", describe(&error))),
        (None, Ok(result)) => {
            if spec.get("undefinedResult").and_then(Value::as_bool) == Some(true) {
                return match result {
                    None => Verdict::Passed,
                    Some(value) => Verdict::Failed(format!("expected no value, got {value}")),
                };
            }
            let Some(expected) = spec.get("result") else {
                panic!("{}: the case has no result, undefinedResult or code", case.id);
            };
            let unordered = spec.get("unordered").and_then(Value::as_bool) == Some(true);
            match result {
                Some(actual) if same(expected, &actual, unordered) => Verdict::Passed,
                actual => Verdict::Failed(format!("expected {expected}, got {}", shown(&actual))),
            }
        }
    }
}

fn describe(error: &ExpressionError) -> String {
    match error.code() {
        Some(code) => format!("[{code}] {error}"),
        None => error.to_string(),
    }
}

fn shown(result: &Option<Value>) -> String {
    match result {
        Some(value) => value.to_string(),
        None => "no value".to_string(),
    }
}

/// Deep equality with numbers compared numerically; `unordered` compares top-level arrays as
/// multisets, as the reference runner does.
fn same(expected: &Value, actual: &Value, unordered: bool) -> bool {
    match (expected, actual) {
        (Value::Number(left), Value::Number(right)) => {
            let (left, right) = (left.as_f64().unwrap_or(f64::NAN), right.as_f64().unwrap_or(f64::NAN));
            left == right || (left - right).abs() <= RELATIVE_TOLERANCE * left.abs().max(right.abs()).max(1.0)
        }
        (Value::Array(left), Value::Array(right)) if unordered => {
            if left.len() != right.len() {
                return false;
            }
            let mut unmatched: Vec<&Value> = right.iter().collect();
            left.iter().all(|item| match unmatched.iter().position(|candidate| same(item, candidate, false)) {
                Some(index) => {
                    unmatched.swap_remove(index);
                    true
                }
                None => false,
            })
        }
        (Value::Array(left), Value::Array(right)) => {
            left.len() == right.len() && left.iter().zip(right).all(|(left, right)| same(left, right, false))
        }
        (Value::Object(left), Value::Object(right)) => {
            left.len() == right.len()
                && left.iter().all(|(key, value)| right.get(key).is_some_and(|other| same(value, other, false)))
        }
        (left, right) => left == right,
    }
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("listing {}: {error}", dir.display()))
        .map(|entry| entry.unwrap_or_else(|error| panic!("listing {}: {error}", dir.display())).path())
        .collect();
    entries.sort();
    entries
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
}
