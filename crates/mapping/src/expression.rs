//! `Expression`: one JSONata expression, checked when the configuration loads and evaluated with
//! limits, contained panics and a per-thread cache of the parsed form.
//!
//! jsonata-core's parsed expressions hold `Rc`s and are neither `Send` nor `Sync`, while the engine
//! shares a compiled configuration between threads. So an [`Expression`] holds only its text and
//! settings; each thread parses the text once, on first use, into a thread-local cache keyed by a
//! stable hash of the text. Evaluation is synchronous and can take up to the time limit: the
//! engine runs it off its async threads.
//!
//! Limits are always on (see [`Limits`]). jsonata-core enforces three of them itself: wall-clock
//! time (checked at every evaluation step and loop iteration, not inside one built-in call such as
//! a regular expression over a huge string), nesting depth and the length of the sequences that
//! paths, ranges and higher-order functions build (not of literal arrays written `[...]`). We add a
//! bound on the nesting of the output when it is converted back to JSON. Panics inside
//! jsonata-core become errors naming the expression; stack overflows cannot be caught, and
//! jsonata-core avoids them by moving deep evaluation onto heap-allocated stack segments.

use crate::json::{self, NotJson};
use crate::lookup::{self, LOOKUP_FUNCTION_PREFIX, LookupMiss, Lookups, MissSlot};
use crate::position::{self, TextPosition};
use crate::reads::{self, Reads};
use jsonata_core::evaluator::{Context, Evaluator, EvaluatorError, EvaluatorOptions};
use jsonata_core::parser::{Lexer, ParserError, Token};
use jsonata_core::value::JValue;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;

/// The limits every evaluation runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time for one evaluation, in milliseconds (JSONata error D1012).
    pub timeout_ms: u64,
    /// Evaluation nesting: each operator, path step and function call is a level, so a
    /// recursive function uses about three per call (D1011).
    pub max_stack_depth: usize,
    /// Items in one sequence built by a path, range or higher-order function (D2015).
    pub max_sequence_length: usize,
}

impl Default for Limits {
    /// One mapping expression runs once per record: a second is generous, and anything slower is
    /// a runaway loop. The depth allows ordinary nesting and a few hundred recursive calls. The
    /// sequence limit leaves room for price lists of a million entries while stopping `[1..1e9]`.
    fn default() -> Self {
        Limits { timeout_ms: 1_000, max_stack_depth: 1_000, max_sequence_length: 1_000_000 }
    }
}

impl Limits {
    fn options(&self) -> EvaluatorOptions {
        EvaluatorOptions {
            timeout_ms: Some(self.timeout_ms),
            max_stack_depth: Some(self.max_stack_depth),
            max_sequence_length: Some(self.max_sequence_length),
            cancel: None,
        }
    }
}

/// Whether a panic happened while parsing or while evaluating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Compiling,
    Evaluating,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Compiling => "compiling",
            Phase::Evaluating => "evaluating",
        })
    }
}

/// Why an expression did not compile or did not evaluate. `expression` is the expression's text,
/// shortened for messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpressionError {
    #[error("syntax error in `{expression}` at {position}: {message}")]
    Syntax { expression: String, message: String, code: Option<String>, position: TextPosition },
    #[error("`{expression}` calls `${LOOKUP_FUNCTION_PREFIX}{lookup}`, but there is no lookup table `{lookup}`")]
    UnknownLookup { expression: String, lookup: String },
    #[error("evaluating `{expression}`: value {value:?} is not in lookup `{lookup}`, which has no default")]
    UnknownLookupValue { expression: String, lookup: String, value: String },
    #[error("evaluating `{expression}`: ran longer than the limit of {timeout_ms} ms")]
    Timeout { expression: String, timeout_ms: u64 },
    #[error("evaluating `{expression}`: nested deeper than the limit of {limit} levels (a runaway recursion?)")]
    TooDeep { expression: String, limit: usize, code: &'static str },
    #[error("evaluating `{expression}`: built a sequence longer than the limit of {limit} items")]
    TooLong { expression: String, limit: usize },
    #[error("evaluating `{expression}`: {message}")]
    Evaluation { expression: String, code: Option<String>, message: String },
    #[error("evaluating `{expression}`: the result is {what}")]
    NotJson { expression: String, what: String },
    #[error("jsonata-core panicked while {phase} `{expression}`: {message}")]
    Panic { expression: String, phase: Phase, message: String },
}

impl ExpressionError {
    /// The JSONata error code (`S0201`, `T2002`, `D1012`, …), when there is one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ExpressionError::Syntax { code, .. } | ExpressionError::Evaluation { code, .. } => code.as_deref(),
            ExpressionError::Timeout { .. } => Some("D1012"),
            ExpressionError::TooDeep { code, .. } => Some(code),
            ExpressionError::TooLong { .. } => Some("D2015"),
            ExpressionError::UnknownLookup { .. }
            | ExpressionError::UnknownLookupValue { .. }
            | ExpressionError::NotJson { .. }
            | ExpressionError::Panic { .. } => None,
        }
    }

    /// Where in the expression a syntax error is.
    pub fn position(&self) -> Option<TextPosition> {
        match self {
            ExpressionError::Syntax { position, .. } => Some(*position),
            _ => None,
        }
    }
}

/// Variables and lookup tables an evaluation can see.
#[derive(Debug, Clone, Default)]
pub struct Bindings {
    /// Bound as `$name` (without the `$` here).
    pub variables: BTreeMap<String, Value>,
    pub lookups: Lookups,
}

/// A JSONata expression: compiled once when the configuration loads, so syntax errors surface
/// then, and evaluated any number of times on any thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Expression {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    source: Arc<str>,
    id: u64,
    limits: Limits,
    /// Tables called as `$lookup_<name>`, found in the tokens of the text.
    lookups_used: Vec<String>,
    /// Table names passed as a string to the built-in `$lookup`, a likely mix-up.
    builtin_lookup_names: Vec<String>,
    /// The top-level input fields the expression can read.
    reads: Reads,
}

impl Expression {
    /// Parses `source` with the default [`Limits`].
    pub fn compile(source: &str) -> Result<Expression, ExpressionError> {
        Expression::compile_with_limits(source, Limits::default())
    }

    /// Parses `source` (on this thread, which keeps the parsed form), reporting a syntax error
    /// with its line and column inside `source`.
    pub fn compile_with_limits(source: &str, limits: Limits) -> Result<Expression, ExpressionError> {
        let (lookups_used, builtin_lookup_names) = scan_lookup_calls(source);
        let mut expression = Expression {
            inner: Arc::new(Inner {
                source: Arc::from(source),
                id: stable_id(source),
                limits,
                lookups_used,
                builtin_lookup_names,
                reads: Reads::Everything,
            }),
        };
        let reads = reads::of(expression.parsed()?.ast());
        Arc::get_mut(&mut expression.inner).expect("not shared yet").reads = reads;
        Ok(expression)
    }

    pub fn source(&self) -> &str {
        &self.inner.source
    }

    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// The top-level fields of its input the expression can read.
    pub(crate) fn reads(&self) -> &Reads {
        &self.inner.reads
    }

    /// The lookup tables this expression calls, by name.
    pub fn lookups_used(&self) -> &[String] {
        &self.inner.lookups_used
    }

    /// Strings passed as the first argument of JSONata's built-in `$lookup`: someone meaning a
    /// lookup table writes `$lookup('tax_codes', x)`, which JSONata reads as a key of a string.
    pub fn builtin_lookup_names(&self) -> &[String] {
        &self.inner.builtin_lookup_names
    }

    /// Evaluates against `input` (`None`: JSONata's `undefined`). `Ok(None)` means the expression
    /// produced no value.
    pub fn evaluate(&self, input: Option<&Value>, bindings: &Bindings) -> Result<Option<Value>, ExpressionError> {
        let input = input.map_or(JValue::Undefined, json::to_jvalue);
        let variables: Vec<(String, JValue)> =
            bindings.variables.iter().map(|(name, value)| (name.clone(), json::to_jvalue(value))).collect();
        let result = self.evaluate_jvalue(&input, &variables, &bindings.lookups)?;
        self.to_json(&result)
    }

    /// The evaluation itself, on jsonata-core's values, so that a mapping converts a record once
    /// for all its fields.
    pub(crate) fn evaluate_jvalue(
        &self,
        input: &JValue,
        variables: &[(String, JValue)],
        lookups: &Lookups,
    ) -> Result<JValue, ExpressionError> {
        let parsed = self.parsed()?;
        let mut tables = Vec::with_capacity(self.inner.lookups_used.len());
        for name in &self.inner.lookups_used {
            match lookups.get(name) {
                Some(table) => tables.push(Arc::clone(table)),
                None => {
                    return Err(ExpressionError::UnknownLookup { expression: self.shown(), lookup: name.clone() });
                }
            }
        }
        let options = self.inner.limits.options();
        let miss: MissSlot = Rc::new(RefCell::new(None));
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            #[cfg(test)]
            test_hooks::panic_if_marked(&self.inner.source);
            // The bytecode VM is the fast path, but only the tree-walking evaluator sees
            // variables and host functions.
            if variables.is_empty() && tables.is_empty() {
                return parsed.evaluate_with_options(input, options);
            }
            let mut context = Context::new();
            for (name, value) in variables {
                context.bind(name.clone(), value.clone());
            }
            let mut evaluator = Evaluator::with_options(context, options);
            for table in &tables {
                let name = format!("{LOOKUP_FUNCTION_PREFIX}{}", table.name());
                evaluator.register_fn(name, lookup::table_function(Arc::clone(table), Rc::clone(&miss)))?;
            }
            evaluator.evaluate(parsed.ast(), input)
        }));
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(match miss.take() {
                Some(LookupMiss { lookup, value }) => {
                    ExpressionError::UnknownLookupValue { expression: self.shown(), lookup, value }
                }
                None => self.classify(&error),
            }),
            Err(panic) => {
                // The parsed form may have been left half-updated (its lazily built bytecode):
                // parse afresh next time.
                forget(self.inner.id);
                Err(ExpressionError::Panic {
                    expression: self.shown(),
                    phase: Phase::Evaluating,
                    message: panic_message(panic.as_ref()),
                })
            }
        }
    }

    pub(crate) fn to_json(&self, value: &JValue) -> Result<Option<Value>, ExpressionError> {
        json::from_jvalue(value)
            .map_err(|reason: NotJson| ExpressionError::NotJson { expression: self.shown(), what: reason.describe() })
    }

    /// The text for messages: long expressions are cut.
    pub(crate) fn shown(&self) -> String {
        json::shorten(&self.inner.source, 80)
    }

    fn classify(&self, error: &EvaluatorError) -> ExpressionError {
        let message = error.message().to_string();
        let code = find_code(&message);
        let expression = self.shown();
        let limits = self.inner.limits;
        match code {
            Some("D1012") => ExpressionError::Timeout { expression, timeout_ms: limits.timeout_ms },
            Some("D1011") => ExpressionError::TooDeep { expression, limit: limits.max_stack_depth, code: "D1011" },
            // jsonata-core's own backstop, beneath any limit we set.
            Some("U1001") => ExpressionError::TooDeep { expression, limit: limits.max_stack_depth, code: "U1001" },
            Some("D2015") => ExpressionError::TooLong { expression, limit: limits.max_sequence_length },
            _ => ExpressionError::Evaluation { expression, code: code.map(str::to_string), message },
        }
    }

    /// This thread's parsed form, parsing the text on first use.
    fn parsed(&self) -> Result<Rc<jsonata_core::Expression>, ExpressionError> {
        let inner = &self.inner;
        let cached = PARSED.with(|cache| {
            cache
                .borrow()
                .get(&inner.id)
                .filter(|entry| Arc::ptr_eq(&entry.source, &inner.source) || entry.source == inner.source)
                .map(|entry| Rc::clone(&entry.parsed))
        });
        if let Some(parsed) = cached {
            return Ok(parsed);
        }
        let parsed = match catch_unwind(|| {
            #[cfg(test)]
            test_hooks::panic_if_marked_for_parsing(&inner.source);
            jsonata_core::Expression::compile(&inner.source)
        }) {
            Ok(Ok(parsed)) => Rc::new(parsed),
            Ok(Err(error)) => return Err(self.syntax_error(&error)),
            Err(panic) => {
                return Err(ExpressionError::Panic {
                    expression: self.shown(),
                    phase: Phase::Compiling,
                    message: panic_message(panic.as_ref()),
                });
            }
        };
        PARSED.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.len() >= MAX_PARSED_PER_THREAD {
                // Configurations hold far fewer expressions; only repeated reloads with new texts
                // get here, and starting over is the simplest bound.
                cache.clear();
            }
            cache.insert(inner.id, CacheEntry { source: Arc::clone(&inner.source), parsed: Rc::clone(&parsed) });
        });
        Ok(parsed)
    }

    fn syntax_error(&self, error: &ParserError) -> ExpressionError {
        let message = error.to_string();
        let offset = position::locate_syntax_error(&self.inner.source);
        // jsonata-core gives an unclosed comment no code; jsonata-js calls it S0106.
        let code = match error {
            ParserError::UnclosedComment => Some("S0106"),
            _ => find_code(&message),
        };
        ExpressionError::Syntax {
            expression: self.shown(),
            code: code.map(str::to_string),
            message,
            position: TextPosition::of_char_offset(&self.inner.source, offset),
        }
    }
}

const MAX_PARSED_PER_THREAD: usize = 4_096;

struct CacheEntry {
    source: Arc<str>,
    parsed: Rc<jsonata_core::Expression>,
}

thread_local! {
    static PARSED: RefCell<HashMap<u64, CacheEntry>> = RefCell::new(HashMap::new());
}

fn forget(id: u64) {
    PARSED.with(|cache| cache.borrow_mut().remove(&id));
}

/// FNV-1a of the text: the same in every process and build, unlike `std`'s hasher, so the id
/// can be logged and compared.
fn stable_id(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The first JSONata code (`X0000:`) in a message: parser messages put a prefix before it.
fn find_code(message: &str) -> Option<&str> {
    let bytes = message.as_bytes();
    (0..bytes.len().saturating_sub(5)).find_map(|start| {
        let candidate = &bytes[start..start + 6];
        let at_word_start = start == 0 || !bytes[start - 1].is_ascii_alphanumeric();
        (at_word_start
            && candidate[0].is_ascii_uppercase()
            && candidate[1..5].iter().all(u8::is_ascii_digit)
            && candidate[5] == b':')
            .then(|| &message[start..start + 5])
    })
}

/// Finds `$lookup_<name>` calls and the built-in `$lookup('<name>', …)` in the tokens of `source`.
/// Tokens, not text, so that strings and comments mentioning them do not count.
fn scan_lookup_calls(source: &str) -> (Vec<String>, Vec<String>) {
    let mut used = Vec::new();
    let mut builtin = Vec::new();
    let mut lexer = Lexer::new(source.to_string());
    let mut recent: [Option<Token>; 2] = [None, None];
    loop {
        let token = match catch_unwind(AssertUnwindSafe(|| lexer.next_token())) {
            Ok(Ok(Token::Eof)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(token)) => token,
        };
        if let Token::Variable(name) = &token
            && let Some(table) = name.strip_prefix(LOOKUP_FUNCTION_PREFIX)
            && !table.is_empty()
            && !used.iter().any(|known| known == table)
        {
            used.push(table.to_string());
        }
        if let (Some(Token::Variable(name)), Some(Token::LeftParen), Token::String(table)) =
            (&recent[0], &recent[1], &token)
            && name == "lookup"
        {
            builtin.push(table.clone());
        }
        recent = [recent[1].take(), Some(token)];
    }
    (used, builtin)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        return (*text).to_string();
    }
    if let Some(text) = panic.downcast_ref::<String>() {
        return text.clone();
    }
    "a panic without a message".to_string()
}

/// A way to make jsonata-core "panic" on demand, since no known expression does.
#[cfg(test)]
pub(crate) mod test_hooks {
    /// An expression whose text contains this panics during evaluation.
    pub(crate) const PANIC_MARKER: &str = "/* test: panic here */";

    /// An expression whose text contains this panics while it is parsed.
    pub(crate) const PARSE_PANIC_MARKER: &str = "/* test: panic while parsing */";

    pub(crate) fn panic_if_marked(source: &str) {
        if source.contains(PANIC_MARKER) {
            panic!("injected panic for a test");
        }
    }

    pub(crate) fn panic_if_marked_for_parsing(source: &str) {
        if source.contains(PARSE_PANIC_MARKER) {
            panic!("injected parser panic for a test");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(source: &str, input: Value, expected: Option<Value>) {
        let expression = Expression::compile(source).unwrap();
        let result = expression.evaluate(Some(&input), &Bindings::default()).unwrap();
        assert_eq!(result, expected, "{source}");
    }

    fn check_error(source: &str, limits: Limits, input: Value, expected_code: &str) -> ExpressionError {
        let expression = Expression::compile_with_limits(source, limits).unwrap();
        let error = expression.evaluate(Some(&input), &Bindings::default()).unwrap_err();
        assert_eq!(error.code(), Some(expected_code), "{error}");
        error
    }

    #[test]
    fn evaluates_and_reports_no_value_as_none() {
        check("$uppercase(title)", json!({"title": "shirt"}), Some(json!("SHIRT")));
        check("missing.field", json!({"title": "shirt"}), None);
        check("$count(variants)", json!({"variants": [{}, {}]}), Some(json!(2)));
    }

    #[test]
    fn syntax_errors_carry_code_line_and_column() {
        let error = Expression::compile("(\n  $a := title;\n  $a & )\n)").unwrap_err();
        assert_eq!(error.position(), Some(TextPosition { line: 3, column: 8 }), "{error}");
        assert!(error.to_string().starts_with("syntax error in `"), "{error}");
        assert!(error.code().is_some(), "{error}");
    }

    #[test]
    fn runaway_recursion_hits_the_depth_limit() {
        let limits = Limits { max_stack_depth: 200, ..Limits::default() };
        let error = check_error("($f := function($n){ $f($n + 1) + 1 }; $f(0))", limits, json!({}), "D1011");
        assert!(error.to_string().contains("nested deeper than the limit of 200 levels"), "{error}");
    }

    #[test]
    fn tail_recursion_without_end_hits_the_time_limit() {
        // A tail call does not nest (jsonata-core runs it in a loop), so only the clock stops it.
        let limits = Limits { timeout_ms: 100, ..Limits::default() };
        let started = std::time::Instant::now();
        let error = check_error("($f := function($n){ $f($n + 1) }; $f(0))", limits, json!({}), "D1012");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
        assert!(error.to_string().contains("ran longer than the limit of 100 ms"), "{error}");
    }

    #[test]
    fn long_sequences_hit_the_sequence_limit() {
        let limits = Limits { max_sequence_length: 1_000, ..Limits::default() };
        check_error("$count([1..100000].($ * 2))", limits, json!({}), "D2015");
    }

    #[test]
    fn a_panic_becomes_an_error_naming_the_expression_and_the_thread_goes_on() {
        let source = format!("title {}", test_hooks::PANIC_MARKER);
        let expression = Expression::compile(&source).unwrap();
        let error = expression.evaluate(Some(&json!({"title": "x"})), &Bindings::default()).unwrap_err();
        assert!(matches!(error, ExpressionError::Panic { phase: Phase::Evaluating, .. }), "{error:?}");
        assert!(error.to_string().contains("title /* test: panic here */"), "{error}");
        assert!(error.to_string().contains("injected panic for a test"), "{error}");
        check("title", json!({"title": "x"}), Some(json!("x")));
    }

    #[test]
    fn a_panic_while_parsing_becomes_an_error_too() {
        let source = format!("title {}", test_hooks::PARSE_PANIC_MARKER);
        let error = Expression::compile(&source).unwrap_err();
        assert!(matches!(error, ExpressionError::Panic { phase: Phase::Compiling, .. }), "{error:?}");
        assert!(error.to_string().starts_with("jsonata-core panicked while compiling `title /*"), "{error}");
    }

    #[test]
    fn functions_are_not_values() {
        let expression = Expression::compile("function($x){ $x }").unwrap();
        let error = expression.evaluate(Some(&json!({})), &Bindings::default()).unwrap_err();
        assert!(error.to_string().contains("a function, which is not a json value"), "{error}");
    }

    #[test]
    fn variables_are_bound() {
        let expression = Expression::compile("$rate * price").unwrap();
        let bindings = Bindings { variables: BTreeMap::from([("rate".to_string(), json!(2))]), ..Bindings::default() };
        assert_eq!(expression.evaluate(Some(&json!({"price": 21})), &bindings).unwrap(), Some(json!(42)));
    }

    #[test]
    fn expressions_move_between_threads_and_each_thread_parses_its_own() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Expression>();
        let expression = Expression::compile("a + 1").unwrap();
        let handle = std::thread::spawn(move || expression.evaluate(Some(&json!({"a": 1})), &Bindings::default()));
        assert_eq!(handle.join().unwrap().unwrap(), Some(json!(2)));
    }

    #[test]
    fn lookup_calls_are_found_in_tokens_not_strings() {
        let expression =
            Expression::compile("$lookup_tax_codes(tax_class) & '$lookup_other(x)' & $lookup('payment', x)").unwrap();
        assert_eq!(expression.lookups_used(), ["tax_codes"]);
        assert_eq!(expression.builtin_lookup_names(), ["payment"]);
    }

    #[test]
    fn codes_are_found_after_a_prefix() {
        assert_eq!(find_code("Invalid syntax: S0213: The literal"), Some("S0213"));
        assert_eq!(find_code("T2002: The left side"), Some("T2002"));
        assert_eq!(find_code("no code here"), None);
    }

    #[test]
    fn stable_ids_do_not_depend_on_the_process() {
        assert_eq!(stable_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_id("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
