//! Which top-level fields of its input an expression can read, found in its syntax tree.
//!
//! A mapping converts the record it maps into jsonata-core's values once per record, and for an
//! order that conversion cost as much as evaluating the expressions. Most expressions read one or
//! two fields (`$lookup_payment_methods(payments[0].gateway)`), so the mapping converts only the
//! fields its expressions can name. The analysis is conservative: whenever an expression can
//! reach the input other than through a field name, it reads [`Reads::Everything`].

use jsonata_core::ast::AstNode;
use serde_json::Value;
use std::collections::BTreeSet;

/// The top-level input fields an expression may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reads {
    /// Only fields with these names. Names are collected at every depth of every path, so the
    /// set may hold names that are not top-level fields; keeping those costs nothing.
    Fields(BTreeSet<String>),
    /// The whole input: the expression uses `$`, `$$`, `*`, `**`, `%`, `$eval`, a function that
    /// falls back to its context when an argument is left out, or something the analysis does
    /// not know.
    Everything,
}

impl Reads {
    /// What reading both `self` and `other` reads.
    pub(crate) fn union(self, other: Reads) -> Reads {
        match (self, other) {
            (Reads::Fields(mut names), Reads::Fields(more)) => {
                names.extend(more);
                Reads::Fields(names)
            }
            _ => Reads::Everything,
        }
    }

    /// Whether a top-level field of this name must be given to the expression.
    pub(crate) fn includes(&self, name: &str) -> bool {
        match self {
            Reads::Fields(names) => names.contains(name),
            Reads::Everything => true,
        }
    }
}

/// Built-in functions that take their context as the first argument when a call leaves it out
/// (a `-` in the signature), with the number of parameters they declare. A call with fewer
/// arguments than that may read the context, which at the top of an expression is the whole
/// input. From jsonata-core's table of built-ins, as pinned.
const CONTEXT_FUNCTIONS: &[(&str, usize)] = &[
    ("abs", 1),
    ("base64decode", 1),
    ("base64encode", 1),
    ("boolean", 1),
    ("ceil", 1),
    ("contains", 2),
    ("decodeUrl", 1),
    ("decodeUrlComponent", 1),
    ("encodeUrl", 1),
    ("encodeUrlComponent", 1),
    ("floor", 1),
    ("formatBase", 2),
    ("formatInteger", 2),
    ("formatNumber", 3),
    ("fromMillis", 3),
    ("keys", 1),
    ("length", 1),
    ("lookup", 2),
    ("lowercase", 1),
    ("match", 3),
    ("not", 1),
    ("number", 1),
    ("pad", 3),
    ("parseInteger", 2),
    ("power", 2),
    ("replace", 4),
    ("round", 2),
    ("split", 3),
    ("spread", 1),
    ("sqrt", 1),
    ("string", 1),
    ("substring", 3),
    ("substringAfter", 2),
    ("substringBefore", 2),
    ("toMillis", 2),
    ("trim", 1),
    ("uppercase", 1),
];

/// Built-ins that read the input whole whatever their arguments: `$eval` evaluates a text, which
/// may be built at run time, against the input (also when its second argument is undefined), and
/// `$sift` and `$each` take the context when their optional or last argument is left out or
/// turns out undefined (`$sift(f, missing)` runs as `$sift(f)`).
const WHOLE_INPUT_FUNCTIONS: &[&str] = &["eval", "sift", "each"];

/// The fields `ast` may read. The tree is walked in its serialized form, which names every
/// variant: a construct this analysis does not list cannot slip through as a field read.
pub(crate) fn of(ast: &AstNode) -> Reads {
    let Ok(tree) = serde_json::to_value(ast) else {
        return Reads::Everything;
    };
    let mut names = BTreeSet::new();
    if walk(&tree, &mut names) { Reads::Fields(names) } else { Reads::Everything }
}

/// Collects field names; `false` when the expression can read the input some other way.
fn walk(tree: &Value, names: &mut BTreeSet<String>) -> bool {
    match tree {
        // The unit variants that read the input: `Wildcard`, `Descendant` and `Placeholder` (a
        // partial application may leave out the context argument). Other strings are operators,
        // parameter names and the like.
        Value::String(variant) => !matches!(variant.as_str(), "Wildcard" | "Descendant" | "Placeholder"),
        Value::Array(items) => items.iter().all(|item| walk(item, names)),
        Value::Object(map) => {
            if map.len() == 1 {
                let (variant, body) = map.iter().next().expect("one entry");
                if let Some(verdict) = variant_reads(variant, body, names) {
                    return verdict;
                }
            }
            // A struct (a path step, a lambda's fields) or a variant without special rules:
            // everything inside it counts.
            map.values().all(|value| walk(value, names))
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
    }
}

/// The rule for one tagged variant, or `None` to walk its body.
fn variant_reads(variant: &str, body: &Value, names: &mut BTreeSet<String>) -> Option<bool> {
    Some(match variant {
        "Name" => match body {
            Value::String(name) => {
                names.insert(name.clone());
                true
            }
            _ => false,
        },
        // Literals.
        "String" | "Number" | "Boolean" | "Regex" => true,
        // `$` is the context; `$name` is harmless unless it names a context-taking built-in,
        // which can then be called under another name without the argument.
        "Variable" => match body.as_str() {
            Some(name) => !name.is_empty() && !is_context_function(name),
            None => false,
        },
        // `$$` (the root), `%` (a parent) and the transform operator read the input whole.
        "ParentVariable" | "Parent" | "Transform" => false,
        "Function" => {
            let name = body.get("name").and_then(Value::as_str);
            let args = body.get("args").and_then(Value::as_array);
            let (Some(name), Some(args)) = (name, args) else {
                return Some(false);
            };
            let takes_context = WHOLE_INPUT_FUNCTIONS.contains(&name)
                || CONTEXT_FUNCTIONS.iter().any(|(function, parameters)| *function == name && args.len() < *parameters);
            !takes_context && args.iter().all(|arg| walk(arg, names))
        }
        // A call of a computed function may call a context-taking built-in.
        "Call" => false,
        "Lambda" => {
            let signature = body.get("signature").and_then(Value::as_str).unwrap_or("");
            !signature.contains('-') && body.get("body").is_some_and(|inner| walk(inner, names))
        }
        _ => return None,
    })
}

fn is_context_function(name: &str) -> bool {
    WHOLE_INPUT_FUNCTIONS.contains(&name) || CONTEXT_FUNCTIONS.iter().any(|(function, _)| *function == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(source: &str) -> Reads {
        let parsed = jsonata_core::Expression::compile(source).expect("valid expression");
        of(parsed.ast())
    }

    fn fields(names: &[&str]) -> Reads {
        Reads::Fields(names.iter().map(|name| name.to_string()).collect())
    }

    #[test]
    fn paths_read_the_names_they_contain() {
        assert_eq!(reads("payments[0].gateway"), fields(&["gateway", "payments"]));
        assert_eq!(reads("$lookup_payment_methods(payments[0].gateway)"), fields(&["gateway", "payments"]));
        assert_eq!(reads("$sum(lines.(quantity * unit_price))"), fields(&["lines", "quantity", "unit_price"]));
        assert_eq!(reads("status = 'paid' ? 'P' : 'O'"), fields(&["status"]));
        assert_eq!(reads("$uppercase(customer.email)"), fields(&["customer", "email"]));
        assert_eq!(reads("{'a': number, 'b': $string(total, false)}"), fields(&["number", "total"]));
        assert_eq!(reads("$string(total)"), fields(&["total"]));
        assert_eq!(reads("'constant'"), fields(&[]));
    }

    #[test]
    fn anything_that_reaches_the_input_otherwise_reads_everything() {
        for source in [
            "$",
            "$$.number",
            "$keys($)",
            "*",
            "**.sku",
            "lines.%.number",
            "$string()",
            "$keys()",
            "$uppercase()",
            "$eval('number')",
            "$eval('customer', missing)",
            "$eval('$$.customer', {})",
            "$sift(function($v){true}, missing)",
            "$each(missing, function($v, $k){$k})",
            "$lookup($, 'number')",
            "($f := $string; $f())",
            "$substring(?, 1)",
            "$ ~> |lines|{'x': 1}|",
            "(function($x){$x})(number)",
            "$sift(function($v, $k){$k = 'number'})",
        ] {
            assert_eq!(reads(source), Reads::Everything, "{source}");
        }
    }

    #[test]
    fn a_union_with_everything_is_everything() {
        assert_eq!(fields(&["a"]).union(fields(&["b"])), fields(&["a", "b"]));
        assert_eq!(fields(&["a"]).union(Reads::Everything), Reads::Everything);
        assert!(Reads::Everything.includes("anything"));
        assert!(!fields(&["a"]).includes("b"));
    }
}
