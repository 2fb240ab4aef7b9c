//! Shopify's search syntax for the `query:` argument of connections, and Relay pagination with
//! opaque cursors over a stable order (sort value, then id).
//!
//! Search syntax per shopify.dev "Search syntax": terms joined by spaces (AND), `OR`, `NOT` or
//! `-` to negate, comparators `:`, `:<`, `:>`, `:<=`, `:>=`, quoted values.

use std::cmp::Ordering;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value as Json, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

#[derive(Debug, Clone)]
pub struct Term {
    pub field: Option<String>,
    pub comparator: Comparator,
    pub value: String,
    pub negated: bool,
}

/// A parsed search: a disjunction of conjunctions.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub groups: Vec<Vec<Term>>,
}

/// A value an entity offers for a search field.
#[derive(Debug, Clone)]
pub enum SearchValue {
    Text(String),
    Number(i64),
    Time(DateTime<Utc>),
}

pub fn parse_search(input: &str) -> SearchQuery {
    let mut groups: Vec<Vec<Term>> = vec![vec![]];
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    let mut negate_next = false;
    while i < chars.len() {
        if chars[i].is_whitespace() || chars[i] == '(' || chars[i] == ')' {
            i += 1;
            continue;
        }
        let mut negated = std::mem::take(&mut negate_next);
        if chars[i] == '-' {
            negated = !negated;
            i += 1;
        }
        // A token runs to the next unquoted whitespace.
        let mut token = String::new();
        let mut quote: Option<char> = None;
        while i < chars.len() {
            let c = chars[i];
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => token.push(c),
                None if c == '\'' || c == '"' => quote = Some(c),
                None if c.is_whitespace() || c == ')' => break,
                None => token.push(c),
            }
            i += 1;
        }
        match token.as_str() {
            "AND" => continue,
            "OR" => {
                groups.push(vec![]);
                continue;
            }
            "NOT" => {
                negate_next = true;
                continue;
            }
            _ => {}
        }
        let term = match token.split_once(':') {
            Some((field, rest)) => {
                let (comparator, value) = if let Some(v) = rest.strip_prefix(">=") {
                    (Comparator::GreaterOrEqual, v)
                } else if let Some(v) = rest.strip_prefix("<=") {
                    (Comparator::LessOrEqual, v)
                } else if let Some(v) = rest.strip_prefix('>') {
                    (Comparator::Greater, v)
                } else if let Some(v) = rest.strip_prefix('<') {
                    (Comparator::Less, v)
                } else {
                    (Comparator::Equal, rest)
                };
                Term { field: Some(field.to_ascii_lowercase()), comparator, value: value.to_string(), negated }
            }
            None => Term { field: None, comparator: Comparator::Equal, value: token, negated },
        };
        if let Some(group) = groups.last_mut() {
            group.push(term);
        }
    }
    groups.retain(|g| !g.is_empty());
    SearchQuery { groups }
}

pub fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S") {
        return Some(t.and_utc());
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}

/// Accepts a number or a gid (`gid://shopify/Product/42`) where an id is expected.
pub fn parse_id(value: &str) -> Option<i64> {
    value.rsplit('/').next().and_then(|tail| tail.split('?').next()).and_then(|n| n.parse().ok())
}

impl SearchQuery {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// `lookup(field)` gives the entity's values for a field; `None` field = free text.
    pub fn matches(&self, lookup: &dyn Fn(Option<&str>) -> Vec<SearchValue>) -> bool {
        if self.groups.is_empty() {
            return true;
        }
        self.groups.iter().any(|group| {
            group.iter().all(|term| {
                let values = lookup(term.field.as_deref());
                let hit = values.iter().any(|v| term_matches(term, v));
                hit != term.negated
            })
        })
    }
}

fn compare(comparator: Comparator, ordering: Ordering) -> bool {
    match comparator {
        Comparator::Equal => ordering == Ordering::Equal,
        Comparator::Less => ordering == Ordering::Less,
        Comparator::LessOrEqual => ordering != Ordering::Greater,
        Comparator::Greater => ordering == Ordering::Greater,
        Comparator::GreaterOrEqual => ordering != Ordering::Less,
    }
}

fn term_matches(term: &Term, value: &SearchValue) -> bool {
    match value {
        SearchValue::Time(t) => parse_time(&term.value).is_some_and(|wanted| compare(term.comparator, t.cmp(&wanted))),
        SearchValue::Number(n) => parse_id(&term.value).is_some_and(|wanted| compare(term.comparator, n.cmp(&wanted))),
        SearchValue::Text(text) => {
            let text = text.to_lowercase();
            let wanted = term.value.to_lowercase();
            if term.field.is_none() {
                return text.contains(&wanted);
            }
            match (term.comparator, wanted.strip_suffix('*')) {
                (Comparator::Equal, Some(prefix)) => text.starts_with(prefix),
                (Comparator::Equal, None) => text == wanted || text.split_whitespace().any(|w| w == wanted),
                (comparator, _) => compare(comparator, text.as_str().cmp(wanted.as_str())),
            }
        }
    }
}

/// One candidate of a connection: its id, the value it is sorted by, and the node.
#[derive(Debug, Clone)]
pub struct Candidate<T> {
    pub id: u64,
    pub sort_value: Json,
    pub node: T,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<(String, T)>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
}

#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub first: Option<u64>,
    pub last: Option<u64>,
    pub after: Option<String>,
    pub before: Option<String>,
    pub reverse: bool,
}

fn compare_json(a: &Json, b: &Json) -> Ordering {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            x.as_f64().unwrap_or(0.0).partial_cmp(&y.as_f64().unwrap_or(0.0)).unwrap_or(Ordering::Equal)
        }
        (Json::String(x), Json::String(y)) => x.cmp(y),
        (Json::Null, Json::Null) => Ordering::Equal,
        (Json::Null, _) => Ordering::Less,
        (_, Json::Null) => Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

fn key_order(a: (&Json, u64), b: (&Json, u64)) -> Ordering {
    compare_json(a.0, b.0).then(a.1.cmp(&b.1))
}

/// Cursors are base64 of `{"last_id":…,"last_value":…}`, the shape Shopify's cursors decode to.
pub fn encode_cursor(id: u64, sort_value: &Json) -> String {
    base64::engine::general_purpose::STANDARD.encode(json!({"last_id": id, "last_value": sort_value}).to_string())
}

pub fn decode_cursor(cursor: &str) -> Option<(u64, Json)> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(cursor).ok()?;
    let value: Json = serde_json::from_slice(&bytes).ok()?;
    Some((value.get("last_id")?.as_u64()?, value.get("last_value").cloned().unwrap_or(Json::Null)))
}

/// Sorts, applies the cursors and the page size. `Err` is an invalid cursor.
pub fn paginate<T>(mut candidates: Vec<Candidate<T>>, request: &PageRequest) -> Result<Page<T>, String> {
    candidates.sort_by(|a, b| key_order((&a.sort_value, a.id), (&b.sort_value, b.id)));
    if request.reverse {
        candidates.reverse();
    }
    let direction = |ordering: Ordering| if request.reverse { ordering.reverse() } else { ordering };
    let mut has_previous_page = false;
    let mut has_next_page = false;
    if let Some(after) = &request.after {
        let (id, value) =
            decode_cursor(after).ok_or_else(|| format!("Invalid cursor for current pagination sort: {after}"))?;
        let before_len = candidates.len();
        candidates.retain(|c| direction(key_order((&c.sort_value, c.id), (&value, id))) == Ordering::Greater);
        has_previous_page = candidates.len() < before_len;
    }
    if let Some(before) = &request.before {
        let (id, value) =
            decode_cursor(before).ok_or_else(|| format!("Invalid cursor for current pagination sort: {before}"))?;
        let before_len = candidates.len();
        candidates.retain(|c| direction(key_order((&c.sort_value, c.id), (&value, id))) == Ordering::Less);
        has_next_page = candidates.len() < before_len;
    }
    if let Some(first) = request.first {
        let first = first as usize;
        if candidates.len() > first {
            candidates.truncate(first);
            has_next_page = true;
        }
    }
    if let Some(last) = request.last {
        let last = last as usize;
        if candidates.len() > last {
            candidates.drain(..candidates.len() - last);
            has_previous_page = true;
        }
    }
    let items = candidates.into_iter().map(|c| (encode_cursor(c.id, &c.sort_value), c.node)).collect();
    Ok(Page { items, has_next_page, has_previous_page })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comparators_quotes_and_or() {
        let query = parse_search("updated_at:>'2024-01-01T00:00:00Z' sku:ABC OR -status:draft");
        assert_eq!(query.groups.len(), 2);
        assert_eq!(query.groups[0][0].comparator, Comparator::Greater);
        assert_eq!(query.groups[0][0].value, "2024-01-01T00:00:00Z");
        assert_eq!(query.groups[0][1].field.as_deref(), Some("sku"));
        assert!(query.groups[1][0].negated);
    }

    #[test]
    fn cursors_continue_after_ties_by_id() {
        let candidates =
            |n: u64| (1..=n).map(|id| Candidate { id, sort_value: json!("same"), node: id }).collect::<Vec<_>>();
        let request = PageRequest { first: Some(2), ..Default::default() };
        let page = paginate(candidates(5), &request).unwrap();
        assert!(page.has_next_page);
        let request = PageRequest { first: Some(2), after: Some(page.items[1].0.clone()), ..Default::default() };
        let page = paginate(candidates(5), &request).unwrap();
        assert_eq!(page.items.iter().map(|i| i.1).collect::<Vec<_>>(), vec![3, 4]);
    }
}
