//! Shopify's cost-based throttling: the static cost of a query, the actual cost of what it
//! returned, and the leaky bucket per app and shop, on a clock tests can scale or advance.
//!
//! Rules from shopify.dev "GraphQL Admin API rate limits": scalars and enums cost 0, objects 1,
//! connections 2 plus `first` (or `last`) times the cost of one node, mutations 10; the
//! requested cost is debited up front and the difference to the actual cost refunded.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use super::graphql::{OperationKind, ResolvedField};

/// A simulated clock: `now = start + elapsed_real × scale + advanced`. Scale 0 freezes time,
/// which tests use to make timestamps equal (ties) and advance it by hand.
#[derive(Debug)]
pub struct SimClock {
    start: DateTime<Utc>,
    real_start: Instant,
    inner: Mutex<ClockInner>,
}

#[derive(Debug)]
struct ClockInner {
    scale: f64,
    /// Simulated time accumulated before the last change of scale, plus manual advances.
    banked: Duration,
    since: Instant,
}

impl SimClock {
    pub fn new(start: DateTime<Utc>, scale: f64) -> Self {
        let now = Instant::now();
        Self {
            start,
            real_start: now,
            inner: Mutex::new(ClockInner { scale: scale.max(0.0), banked: Duration::ZERO, since: now }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockInner> {
        // A poisoned clock still holds valid numbers; keep going rather than panic.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Simulated time since the clock started.
    pub fn elapsed(&self) -> Duration {
        let inner = self.lock();
        inner.banked + inner.since.elapsed().mul_f64(inner.scale)
    }

    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.elapsed()).unwrap_or(chrono::Duration::zero());
        self.start + elapsed
    }

    pub fn advance(&self, by: Duration) {
        self.lock().banked += by;
    }

    pub fn set_scale(&self, scale: f64) {
        let mut inner = self.lock();
        let now = Instant::now();
        let run = now.duration_since(inner.since).mul_f64(inner.scale);
        inner.banked += run;
        inner.since = now;
        inner.scale = scale.max(0.0);
    }

    pub fn real_elapsed(&self) -> Duration {
        self.real_start.elapsed()
    }
}

/// A plan's bucket: `maximumAvailable` points, restoring `restore_rate` per simulated second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanLimits {
    pub maximum_available: f64,
    pub restore_rate: f64,
}

impl PlanLimits {
    /// Standard plan (and Basic/Shopify): 2000 points restoring 100/s.
    pub const STANDARD: PlanLimits = PlanLimits { maximum_available: 2000.0, restore_rate: 100.0 };
    /// Advanced: restore 200/s; bucket 4000 inferred as 20 × restore rate (unverified).
    pub const ADVANCED: PlanLimits = PlanLimits { maximum_available: 4000.0, restore_rate: 200.0 };
    /// Shopify Plus: 20000 restoring 1000/s.
    pub const PLUS: PlanLimits = PlanLimits { maximum_available: 20000.0, restore_rate: 1000.0 };
    /// Enterprise / Commerce Components: restore 2000/s; bucket 40000 inferred (unverified).
    pub const ENTERPRISE: PlanLimits = PlanLimits { maximum_available: 40000.0, restore_rate: 2000.0 };

    pub fn by_name(name: &str) -> Option<PlanLimits> {
        match name.to_ascii_lowercase().as_str() {
            "standard" | "basic" | "shopify" => Some(Self::STANDARD),
            "advanced" => Some(Self::ADVANCED),
            "plus" => Some(Self::PLUS),
            "enterprise" | "commerce_components" => Some(Self::ENTERPRISE),
            _ => None,
        }
    }
}

/// One query may not cost more than this, whatever the plan.
pub const MAX_QUERY_COST: u64 = 1000;
pub const MUTATION_COST: u64 = 10;

/// The leaky bucket of one app on one shop.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub limits: PlanLimits,
    available: f64,
    /// Simulated time of the last restore.
    at: Duration,
}

impl Bucket {
    pub fn new(limits: PlanLimits, now: Duration) -> Self {
        Self { limits, available: limits.maximum_available, at: now }
    }

    fn restore(&mut self, now: Duration) {
        let seconds = now.saturating_sub(self.at).as_secs_f64();
        self.available = (self.available + seconds * self.limits.restore_rate).min(self.limits.maximum_available);
        self.at = now.max(self.at);
    }

    pub fn available(&mut self, now: Duration) -> f64 {
        self.restore(now);
        self.available
    }

    /// Debits `cost` up front; `false` (and no debit) when the bucket does not hold enough.
    pub fn try_debit(&mut self, cost: u64, now: Duration) -> bool {
        self.restore(now);
        if self.available < cost as f64 {
            return false;
        }
        self.available -= cost as f64;
        true
    }

    pub fn refund(&mut self, points: u64, now: Duration) {
        self.restore(now);
        self.available = (self.available + points as f64).min(self.limits.maximum_available);
    }

    pub fn set_limits(&mut self, limits: PlanLimits, now: Duration) {
        self.restore(now);
        self.limits = limits;
        self.available = self.available.min(limits.maximum_available);
    }

    pub fn drain(&mut self, now: Duration) {
        self.restore(now);
        self.available = 0.0;
    }

    /// `throttleStatus` as Shopify prints it: `currentlyAvailable` is a whole number of points.
    pub fn throttle_status(&mut self, now: Duration) -> Json {
        let available = self.available(now).floor() as u64;
        json!({
            "maximumAvailable": self.limits.maximum_available,
            "currentlyAvailable": available,
            "restoreRate": self.limits.restore_rate,
        })
    }
}

/// Whether a field is a Relay connection: a selection over `edges`, `nodes` or `pageInfo`.
/// The simulator has no schema, and a connection cannot be selected any other way.
pub fn is_connection(field: &ResolvedField) -> bool {
    field.selections.iter().any(|s| matches!(s.name.as_str(), "edges" | "nodes" | "pageInfo"))
}

/// The page size a connection asks for (`first` or `last`).
pub fn page_size(field: &ResolvedField) -> u64 {
    field.argument("first").or_else(|| field.argument("last")).and_then(Json::as_u64).unwrap_or(0)
}

/// The requested (static) cost of an operation.
pub fn requested_cost(kind: OperationKind, fields: &[ResolvedField]) -> u64 {
    match kind {
        OperationKind::Mutation => fields.iter().filter(|f| !f.name.starts_with("__")).count() as u64 * MUTATION_COST,
        _ => fields.iter().map(field_cost).sum(),
    }
}

fn field_cost(field: &ResolvedField) -> u64 {
    if field.name.starts_with("__") || field.selections.is_empty() {
        return 0;
    }
    if is_connection(field) {
        return 2 + page_size(field).saturating_mul(node_cost(field));
    }
    // `nodes(ids:)` returns one object per id: its size is known before execution.
    if let Some(ids) = field.argument("ids").and_then(Json::as_array) {
        return (ids.len() as u64).saturating_mul(object_cost(field));
    }
    object_cost(field)
}

/// One object: 1 plus its selections. Selections made under `... on Type` apply to one type
/// only, so an interface or union costs the most expensive of its types ("maximum of possible
/// selections"), not their sum.
fn object_cost(field: &ResolvedField) -> u64 {
    let mut common = 0u64;
    let mut by_type: std::collections::BTreeMap<&str, u64> = Default::default();
    for selection in &field.selections {
        let cost = field_cost(selection);
        match selection.type_condition.as_deref() {
            Some(kind) => *by_type.entry(kind).or_default() += cost,
            None => common += cost,
        }
    }
    1 + common + by_type.values().copied().max().unwrap_or(0)
}

/// The cost of one node of a connection: what is selected under `edges { node }` or `nodes`
/// (the edge itself is free).
fn node_cost(connection: &ResolvedField) -> u64 {
    connection
        .selections
        .iter()
        .map(|s| match s.name.as_str() {
            "nodes" => field_cost(s),
            "edges" => s.selections.iter().filter(|e| e.name == "node").map(field_cost).sum(),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// The actual cost: the same rules, with the number of nodes actually returned in place of
/// `first`.
pub fn actual_cost(kind: OperationKind, fields: &[ResolvedField], data: &Json) -> u64 {
    match kind {
        OperationKind::Mutation => requested_cost(kind, fields),
        _ => fields.iter().map(|f| actual_field_cost(f, data.get(&f.key).unwrap_or(&Json::Null))).sum(),
    }
}

fn actual_field_cost(field: &ResolvedField, value: &Json) -> u64 {
    if field.name.starts_with("__") || field.selections.is_empty() {
        return 0;
    }
    match value {
        Json::Null => 0,
        Json::Array(items) => items.iter().map(|item| actual_field_cost(field, item)).sum(),
        _ if is_connection(field) => {
            let mut nodes: Vec<(&ResolvedField, &Json)> = Vec::new();
            for selection in &field.selections {
                match selection.name.as_str() {
                    "nodes" => {
                        if let Some(items) = value.get(&selection.key).and_then(Json::as_array) {
                            nodes.extend(items.iter().map(|n| (selection, n)));
                        }
                    }
                    "edges" => {
                        let Some(edges) = value.get(&selection.key).and_then(Json::as_array) else { continue };
                        for node_field in selection.selections.iter().filter(|e| e.name == "node") {
                            nodes.extend(edges.iter().filter_map(|e| e.get(&node_field.key)).map(|n| (node_field, n)));
                        }
                    }
                    _ => {}
                }
            }
            // `edges` and `nodes` on one connection return the same nodes; count them once.
            let mut per_selection: std::collections::BTreeMap<String, u64> = Default::default();
            for (selection, node) in nodes {
                *per_selection.entry(selection.key.clone()).or_default() += actual_field_cost(selection, node);
            }
            2 + per_selection.values().copied().max().unwrap_or(0)
        }
        _ => {
            1 + field
                .selections
                .iter()
                .map(|s| actual_field_cost(s, value.get(&s.key).unwrap_or(&Json::Null)))
                .sum::<u64>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shopify::graphql::{parse, prepare};

    fn cost(source: &str) -> u64 {
        let prepared = prepare(&parse(source).unwrap(), None, &Default::default()).unwrap();
        requested_cost(prepared.kind, &prepared.fields)
    }

    #[test]
    fn costs_follow_the_documented_rules() {
        assert_eq!(cost("{ shop { id name } }"), 1);
        assert_eq!(cost("{ products(first: 10) { edges { node { id title } } } }"), 12);
        assert_eq!(
            cost("{ products(first: 10) { nodes { id variants(first: 5) { nodes { sku } } } } }"),
            2 + 10 * (1 + 2 + 5)
        );
        // One object per id; an interface costs its most expensive type.
        assert_eq!(
            cost(
                r#"{ nodes(ids: ["gid://shopify/Order/1", "gid://shopify/Order/2", "gid://shopify/Product/3"]) { id ... on Order { customer { id } lineItems(first: 5) { nodes { sku } } } ... on Product { title } } }"#
            ),
            3 * (1 + 1 + 2 + 5)
        );
        assert_eq!(cost("mutation { a: productSet(input: {}) { product { id } } }"), 10);
    }

    #[test]
    fn the_bucket_restores_at_the_plan_rate_up_to_its_maximum() {
        let mut bucket = Bucket::new(PlanLimits::STANDARD, Duration::ZERO);
        assert!(bucket.try_debit(1500, Duration::ZERO));
        assert!(!bucket.try_debit(600, Duration::ZERO));
        assert_eq!(bucket.available(Duration::from_secs(1)), 600.0);
        assert_eq!(bucket.available(Duration::from_secs(100)), 2000.0);
    }
}
