//! Odoo's search domain language: parsing the Polish-notation list (`&`, `|`, `!` prefix
//! operators, implicit `&` between consecutive terms), evaluating it against stored records,
//! and the `order` specification.

use std::cmp::Ordering;
use std::collections::HashSet;

use serde_json::Value;

use super::business::ComputeCache;
use super::error::{OdooError, OdooResult};
use super::schema::{FieldDef, FieldKind, ModelDef, registry};
use super::store::{Context, OdooState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    In,
    NotIn,
    Like,
    NotLike,
    ILike,
    NotILike,
    EqualLike,
    EqualILike,
    /// `=?`: true when the value is unset, `=` otherwise.
    EqualIfSet,
    ChildOf,
    ParentOf,
}

impl Operator {
    fn parse(text: &str) -> Option<Operator> {
        Some(match text.to_ascii_lowercase().as_str() {
            "=" | "==" => Operator::Equal,
            "!=" | "<>" => Operator::NotEqual,
            "<" => Operator::Less,
            "<=" => Operator::LessOrEqual,
            ">" => Operator::Greater,
            ">=" => Operator::GreaterOrEqual,
            "in" => Operator::In,
            "not in" => Operator::NotIn,
            "like" => Operator::Like,
            "not like" => Operator::NotLike,
            "ilike" => Operator::ILike,
            "not ilike" => Operator::NotILike,
            "=like" => Operator::EqualLike,
            "=ilike" => Operator::EqualILike,
            "=?" => Operator::EqualIfSet,
            "child_of" => Operator::ChildOf,
            "parent_of" => Operator::ParentOf,
            _ => return None,
        })
    }

    /// Negative operators also match records where the field is unset, as Odoo adds
    /// `OR field IS NULL` to their SQL.
    fn is_negative(self) -> bool {
        matches!(self, Operator::NotEqual | Operator::NotIn | Operator::NotLike | Operator::NotILike)
    }
}

#[derive(Debug, Clone)]
pub enum Domain {
    True,
    False,
    And(Box<Domain>, Box<Domain>),
    Or(Box<Domain>, Box<Domain>),
    Not(Box<Domain>),
    Leaf { path: Vec<&'static FieldDef>, operator: Operator, value: Value },
}

fn leaf_text(item: &Value) -> String {
    let parts: Vec<String> = match item.as_array() {
        Some(parts) => parts.iter().map(python_repr).collect(),
        None => vec![python_repr(item)],
    };
    format!("({})", parts.join(", "))
}

/// Values printed the way Python prints them in Odoo's messages.
pub fn python_repr(value: &Value) -> String {
    match value {
        Value::String(text) => format!("'{text}'"),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        Value::Array(items) => format!("[{}]", items.iter().map(python_repr).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

/// Parses a domain given as JSON (`null` or `[]` mean "everything").
pub fn parse(model: &'static ModelDef, domain: &Value) -> OdooResult<Domain> {
    let items: &[Value] = match domain {
        Value::Null | Value::Bool(false) => &[],
        Value::Array(items) => items,
        other => return Err(OdooError::value(format!("Invalid domain: {}", python_repr(other)))),
    };
    let mut stack: Vec<Domain> = Vec::new();
    let underflow = || OdooError::value(format!("Invalid domain: {}", python_repr(domain)));
    for item in items.iter().rev() {
        match item {
            Value::String(operator) if operator == "&" || operator == "|" => {
                let first = stack.pop().ok_or_else(underflow)?;
                let second = stack.pop().ok_or_else(underflow)?;
                stack.push(if operator == "&" {
                    Domain::And(Box::new(first), Box::new(second))
                } else {
                    Domain::Or(Box::new(first), Box::new(second))
                });
            }
            Value::String(operator) if operator == "!" => {
                let operand = stack.pop().ok_or_else(underflow)?;
                stack.push(Domain::Not(Box::new(operand)));
            }
            Value::Array(term) if term.len() == 3 => stack.push(parse_leaf(model, item, term)?),
            _ => return Err(OdooError::value(format!("Invalid leaf {}", leaf_text(item)))),
        }
    }
    // Consecutive terms left on the stack are joined by an implicit `&`.
    let mut result = stack.pop().unwrap_or(Domain::True);
    while let Some(next) = stack.pop() {
        result = Domain::And(Box::new(result), Box::new(next));
    }
    Ok(result)
}

fn parse_leaf(model: &'static ModelDef, item: &Value, term: &[Value]) -> OdooResult<Domain> {
    // Odoo's TRUE_LEAF (1, '=', 1) and FALSE_LEAF (0, '=', 1).
    if let (Some(left), Some("="), Some(1)) = (term[0].as_i64(), term[1].as_str(), term[2].as_i64()) {
        return Ok(if left == 1 { Domain::True } else { Domain::False });
    }
    let Some(path_text) = term[0].as_str() else {
        return Err(OdooError::value(format!("Invalid leaf {}", leaf_text(item))));
    };
    let operator = term[1].as_str().and_then(Operator::parse).ok_or_else(|| {
        OdooError::value(format!("Invalid operator {} in leaf {}", python_repr(&term[1]), leaf_text(item)))
    })?;
    let mut path = Vec::new();
    let mut current = model;
    let segments: Vec<&str> = path_text.split('.').collect();
    for (position, segment) in segments.iter().enumerate() {
        let field = current.field(segment).ok_or_else(|| {
            OdooError::value(format!("Invalid field {}.{} in leaf {}", current.name, segment, leaf_text(item)))
        })?;
        path.push(field);
        if position + 1 < segments.len() {
            let comodel = field.kind.comodel().and_then(|name| registry().model(name)).ok_or_else(|| {
                OdooError::value(format!("Invalid field {}.{} in leaf {}", current.name, path_text, leaf_text(item)))
            })?;
            current = comodel;
        }
    }
    let last = path[path.len() - 1];
    let hierarchy = match last.kind.comodel() {
        Some(comodel) => registry().model(comodel),
        None => Some(current),
    };
    if matches!(operator, Operator::ChildOf | Operator::ParentOf)
        && hierarchy.is_none_or(|model| model.parent_field.is_none())
    {
        // Odoo falls back to plain `in` when the model has no hierarchy.
        return Ok(Domain::Leaf { path, operator: Operator::In, value: term[2].clone() });
    }
    Ok(Domain::Leaf { path, operator, value: term[2].clone() })
}

impl Domain {
    /// Ids that may match, taken from an index when the domain requires an indexed field to
    /// equal a value (or one of a list); `None` when every record must be examined. The full
    /// domain is still evaluated on the candidates.
    pub fn candidates(&self, state: &OdooState, model: &ModelDef) -> Option<Vec<i64>> {
        match self {
            Domain::And(left, right) => left.candidates(state, model).or_else(|| right.candidates(state, model)),
            Domain::Leaf { path, operator, value } if path.len() == 1 && state.is_indexed(model.name, path[0].name) => {
                let values: Vec<&Value> = match (operator, value) {
                    (Operator::Equal, Value::String(_) | Value::Number(_)) => vec![value],
                    (Operator::In, Value::Array(items))
                        if items.iter().all(|item| matches!(item, Value::String(_) | Value::Number(_))) =>
                    {
                        items.iter().collect()
                    }
                    _ => return None,
                };
                // A string compared with a many2one is a name search, which no index answers.
                if matches!(path[0].kind, FieldKind::Many2one(_)) && values.iter().any(|value| value.is_string()) {
                    return None;
                }
                let mut ids: Vec<i64> =
                    values.into_iter().flat_map(|value| state.lookup(model.name, path[0].name, value)).collect();
                ids.sort_unstable();
                ids.dedup();
                Some(ids)
            }
            _ => None,
        }
    }

    /// Whether the domain names `field` at its top model, which switches off `active_test`.
    pub fn mentions(&self, field: &str) -> bool {
        match self {
            Domain::True | Domain::False => false,
            Domain::And(left, right) | Domain::Or(left, right) => left.mentions(field) || right.mentions(field),
            Domain::Not(inner) => inner.mentions(field),
            Domain::Leaf { path, .. } => path.first().is_some_and(|first| first.name == field),
        }
    }

    pub fn matches(
        &self,
        state: &OdooState,
        model: &'static ModelDef,
        id: i64,
        ctx: &Context,
        cache: &mut ComputeCache,
    ) -> bool {
        match self {
            Domain::True => true,
            Domain::False => false,
            Domain::And(left, right) => {
                left.matches(state, model, id, ctx, cache) && right.matches(state, model, id, ctx, cache)
            }
            Domain::Or(left, right) => {
                left.matches(state, model, id, ctx, cache) || right.matches(state, model, id, ctx, cache)
            }
            Domain::Not(inner) => !inner.matches(state, model, id, ctx, cache),
            Domain::Leaf { path, operator, value } => {
                leaf_matches(state, model, id, path, *operator, value, ctx, cache)
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn leaf_matches(
    state: &OdooState,
    model: &'static ModelDef,
    id: i64,
    path: &[&'static FieldDef],
    operator: Operator,
    value: &Value,
    ctx: &Context,
    cache: &mut ComputeCache,
) -> bool {
    let field = path[0];
    let stored = state.field_value(model, id, field, ctx, cache);
    if path.len() > 1 {
        let Some(comodel) = field.kind.comodel().and_then(|name| registry().model(name)) else {
            return false;
        };
        let related_ids = ids_of(&stored);
        if related_ids.is_empty() {
            // Like the LEFT JOIN Odoo emits: the missing record's fields are all unset.
            return scalar_matches(state, path[path.len() - 1], &Value::Bool(false), operator, value);
        }
        let any = related_ids.iter().any(|related| {
            state.exists(comodel.name, *related)
                && leaf_matches(state, comodel, *related, &path[1..], operator, value, ctx, cache)
        });
        return any;
    }
    match operator {
        Operator::ChildOf | Operator::ParentOf => {
            let targets = ids_of(value);
            let Some(parent_field) = (match field.name {
                "id" => model.parent_field,
                _ => field.kind.comodel().and_then(|name| registry().model(name)).and_then(|m| m.parent_field),
            }) else {
                return false;
            };
            let hierarchy_model = match field.name {
                "id" => model.name,
                _ => field.kind.comodel().unwrap_or(model.name),
            };
            let own_ids = if field.name == "id" { vec![id] } else { ids_of(&stored) };
            let closure = if operator == Operator::ChildOf {
                state.descendants(hierarchy_model, parent_field, &targets)
            } else {
                state.ancestors(hierarchy_model, parent_field, &targets)
            };
            own_ids.iter().any(|own| closure.contains(own))
        }
        _ => match field.kind {
            FieldKind::Many2one(comodel) => relational_matches(state, comodel, &ids_of(&stored), operator, value),
            FieldKind::One2many { comodel, .. } | FieldKind::Many2many(comodel) => {
                relational_matches(state, comodel, &ids_of(&stored), operator, value)
            }
            _ => scalar_matches(state, field, &stored, operator, value),
        },
    }
}

/// Ids held by a relational value: a many2one id, an id list, or nothing.
pub fn ids_of(value: &Value) -> Vec<i64> {
    match value {
        Value::Number(number) => number.as_i64().into_iter().collect(),
        Value::Array(items) => items.iter().filter_map(Value::as_i64).collect(),
        _ => Vec::new(),
    }
}

fn relational_matches(state: &OdooState, comodel: &str, ids: &[i64], operator: Operator, value: &Value) -> bool {
    // A string value is matched against the related records' names (Odoo's `_name_search`).
    let names_match = |text_operator: Operator, text: &Value| {
        ids.iter().any(|id| {
            let name = Value::String(state.display_name(comodel, *id));
            compare_scalar(&name, text_operator, text)
        })
    };
    match operator {
        Operator::Equal | Operator::EqualIfSet => match value {
            Value::Bool(false) | Value::Null => ids.is_empty(),
            Value::String(_) => names_match(Operator::Equal, value),
            Value::Array(_) => ids_of(value).iter().any(|wanted| ids.contains(wanted)),
            _ => ids_of(value).iter().any(|wanted| ids.contains(wanted)),
        },
        Operator::NotEqual => !relational_matches(state, comodel, ids, Operator::Equal, value),
        Operator::In => {
            let wanted = match value {
                Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            };
            wanted.iter().any(|item| match item {
                Value::Bool(false) | Value::Null => ids.is_empty(),
                Value::String(_) => names_match(Operator::Equal, item),
                _ => item.as_i64().is_some_and(|wanted| ids.contains(&wanted)),
            })
        }
        Operator::NotIn => !relational_matches(state, comodel, ids, Operator::In, value),
        Operator::Like | Operator::ILike | Operator::EqualLike | Operator::EqualILike => names_match(operator, value),
        Operator::NotLike => !names_match(Operator::Like, value),
        Operator::NotILike => !names_match(Operator::ILike, value),
        Operator::Less
        | Operator::LessOrEqual
        | Operator::Greater
        | Operator::GreaterOrEqual
        | Operator::ChildOf
        | Operator::ParentOf => ids.iter().any(|id| compare_scalar(&Value::from(*id), operator, value)),
    }
}

fn is_unset(field: &FieldDef, value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(false) => !matches!(field.kind, FieldKind::Boolean),
        Value::String(text) => text.is_empty(),
        _ => false,
    }
}

fn scalar_matches(_state: &OdooState, field: &FieldDef, stored: &Value, operator: Operator, value: &Value) -> bool {
    let value = normalize_value(field, value);
    let unset = is_unset(field, stored);
    if unset && operator.is_negative() {
        return match operator {
            // `field != False` and `field not in [False, …]` exclude unset records.
            Operator::NotEqual => !matches!(value, Value::Bool(false) | Value::Null),
            Operator::NotIn => !value.as_array().is_some_and(|items| items.iter().any(item_is_false)),
            _ => true,
        };
    }
    match operator {
        Operator::Equal | Operator::EqualIfSet if matches!(value, Value::Bool(false) | Value::Null) => {
            if operator == Operator::EqualIfSet {
                return true;
            }
            match field.kind {
                FieldKind::Boolean => !stored.as_bool().unwrap_or(false),
                _ => unset,
            }
        }
        Operator::NotEqual if matches!(value, Value::Bool(false) | Value::Null) => match field.kind {
            FieldKind::Boolean => stored.as_bool().unwrap_or(false),
            _ => !unset,
        },
        Operator::In | Operator::NotIn => {
            let items = match &value {
                Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            };
            let found = items.iter().any(|item| {
                if item_is_false(item) {
                    return unset || (matches!(field.kind, FieldKind::Boolean) && stored == &Value::Bool(false));
                }
                compare_scalar(stored, Operator::Equal, &normalize_value(field, item))
            });
            if operator == Operator::In { found } else { !found }
        }
        _ => !unset && compare_scalar(stored, operator, &value),
    }
}

fn item_is_false(item: &Value) -> bool {
    matches!(item, Value::Bool(false) | Value::Null)
}

/// Datetime values may be given as a date alone or in ISO form; Odoo converts them to its
/// `YYYY-MM-DD HH:MM:SS` before comparing.
fn normalize_value(field: &FieldDef, value: &Value) -> Value {
    match (field.kind, value) {
        (FieldKind::Datetime, Value::String(text)) => {
            let mut normalized = text.replace('T', " ");
            if normalized.len() == 10 {
                normalized.push_str(" 00:00:00");
            }
            normalized.truncate(19);
            Value::String(normalized)
        }
        _ => value.clone(),
    }
}

fn compare_scalar(stored: &Value, operator: Operator, value: &Value) -> bool {
    match operator {
        Operator::Like | Operator::NotLike | Operator::ILike | Operator::NotILike => {
            let (Some(text), Some(pattern)) = (scalar_text(stored), scalar_text(value)) else {
                return operator.is_negative();
            };
            let insensitive = matches!(operator, Operator::ILike | Operator::NotILike);
            let found = like(&text, &format!("%{pattern}%"), insensitive);
            if operator.is_negative() { !found } else { found }
        }
        Operator::EqualLike | Operator::EqualILike => {
            let (Some(text), Some(pattern)) = (scalar_text(stored), scalar_text(value)) else {
                return false;
            };
            like(&text, &pattern, operator == Operator::EqualILike)
        }
        _ => {
            let ordering = compare_values(stored, value);
            match operator {
                Operator::Equal | Operator::EqualIfSet | Operator::In => ordering == Some(Ordering::Equal),
                Operator::NotEqual | Operator::NotIn => ordering != Some(Ordering::Equal),
                Operator::Less => ordering == Some(Ordering::Less),
                Operator::LessOrEqual => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
                Operator::Greater => ordering == Some(Ordering::Greater),
                Operator::GreaterOrEqual => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
                _ => false,
            }
        }
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Compares two stored values of the same type; `None` when they cannot be compared.
pub fn compare_values(left: &Value, right: &Value) -> Option<Ordering> {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Number(a), Value::String(b)) => a.as_f64()?.partial_cmp(&b.parse::<f64>().ok()?),
        (Value::String(a), Value::Number(b)) => a.parse::<f64>().ok()?.partial_cmp(&b.as_f64()?),
        _ => None,
    }
}

/// SQL `LIKE`: `%` any run of characters, `_` one character.
pub fn like(text: &str, pattern: &str, case_insensitive: bool) -> bool {
    let (text, pattern): (Vec<char>, Vec<char>) = if case_insensitive {
        (text.to_lowercase().chars().collect(), pattern.to_lowercase().chars().collect())
    } else {
        (text.chars().collect(), pattern.chars().collect())
    };
    // Dynamic programming over (pattern position, text position), one row at a time.
    let mut row = vec![false; text.len() + 1];
    row[0] = true;
    for symbol in &pattern {
        let mut next = vec![false; text.len() + 1];
        match symbol {
            '%' => {
                let mut reachable = false;
                for position in 0..=text.len() {
                    reachable |= row[position];
                    next[position] = reachable;
                }
            }
            _ => {
                for position in 0..text.len() {
                    if row[position] && (*symbol == '_' || *symbol == text[position]) {
                        next[position + 1] = true;
                    }
                }
            }
        }
        row = next;
    }
    row[text.len()]
}

/// One term of an `order` specification.
#[derive(Debug, Clone)]
pub struct OrderTerm {
    pub field: &'static FieldDef,
    pub descending: bool,
}

/// Parses `"write_date asc, id asc"`.
pub fn parse_order(model: &'static ModelDef, order: &str) -> OdooResult<Vec<OrderTerm>> {
    let invalid = || {
        OdooError::value(format!(
            "Invalid \"order\" specified ({order}). A valid \"order\" specification is a comma-separated list of valid field names (optionally followed by asc/desc for the direction)"
        ))
    };
    let mut terms = Vec::new();
    for part in order.split(',') {
        let words: Vec<&str> = part.split_whitespace().collect();
        let (name, rest) = match words.split_first() {
            Some((name, rest)) => (*name, rest),
            None => continue,
        };
        let descending = match rest.first().map(|word| word.to_ascii_lowercase()) {
            None => false,
            Some(direction) if direction == "asc" => false,
            Some(direction) if direction == "desc" => true,
            Some(_) => return Err(invalid()),
        };
        if rest.len() > 1 && !matches!(rest[1].to_ascii_lowercase().as_str(), "nulls") {
            return Err(invalid());
        }
        let field = model.field(name).ok_or_else(invalid)?;
        if field.kind.is_x2many() {
            return Err(invalid());
        }
        terms.push(OrderTerm { field, descending });
    }
    Ok(terms)
}

/// Sorts ids by the order terms; unset values sort last ascending and first descending, as
/// PostgreSQL does, and ties keep the incoming (id) order.
pub fn sort_ids(
    state: &OdooState,
    model: &'static ModelDef,
    ids: &mut Vec<i64>,
    terms: &[OrderTerm],
    ctx: &Context,
    cache: &mut ComputeCache,
) {
    if terms.is_empty() {
        return;
    }
    let mut keyed: Vec<(i64, Vec<Value>)> = ids
        .iter()
        .map(|id| {
            let keys = terms
                .iter()
                .map(|term| {
                    let value = state.field_value(model, *id, term.field, ctx, cache);
                    match term.field.kind {
                        FieldKind::Many2one(comodel) => match value.as_i64() {
                            Some(related) => Value::String(state.display_name(comodel, related)),
                            None => Value::Null,
                        },
                        FieldKind::Boolean => value,
                        _ if is_unset(term.field, &value) => Value::Null,
                        _ => value,
                    }
                })
                .collect();
            (*id, keys)
        })
        .collect();
    keyed.sort_by(|(_, left), (_, right)| {
        for (position, term) in terms.iter().enumerate() {
            let ordering = match (&left[position], &right[position]) {
                (Value::Null, Value::Null) => Ordering::Equal,
                (Value::Null, _) => Ordering::Greater,
                (_, Value::Null) => Ordering::Less,
                (a, b) => compare_values(a, b).unwrap_or(Ordering::Equal),
            };
            let ordering = if term.descending { ordering.reverse() } else { ordering };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    });
    *ids = keyed.into_iter().map(|(id, _)| id).collect();
}

/// All ids below `roots` in a hierarchy, `roots` included.
pub fn closure(children_of: impl Fn(i64) -> Vec<i64>, roots: &[i64]) -> HashSet<i64> {
    let mut seen: HashSet<i64> = HashSet::new();
    let mut pending: Vec<i64> = roots.to_vec();
    while let Some(next) = pending.pop() {
        if seen.insert(next) {
            pending.extend(children_of(next));
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_patterns() {
        assert!(like("Blue Shirt", "%shirt%", true));
        assert!(!like("Blue Shirt", "%shirt%", false));
        assert!(like("SKU-001", "SKU-___", false));
        assert!(!like("SKU-0011", "SKU-___", false));
        assert!(like("", "%", false));
    }
}
