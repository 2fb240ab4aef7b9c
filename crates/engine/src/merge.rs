//! Two-way merges: which system's value of each field a flow writes, from field rules and the
//! state each system had at the last sync (a three-way merge per field).
//!
//! A field is a top-level field of the canonical record (`email`, `phone`, `addresses`,
//! `variants`) or one key of its `extra` (`extra.loyalty_tier`). For each field the merge knows
//! the source's value now, the target's value now, and each system's value at the last sync
//! (its *base*). A side whose value differs from its base changed the field since that sync.
//! - only one side changed it: that side's value, whatever the rule (nobody's edit is lost);
//! - both changed it to different values: a conflict, settled by the field's rule (its owner,
//!   or the side whose record changed last) and reported with both values;
//! - neither changed it: the source's value (the target lags behind an earlier merge).
//!
//! An owner rule also decides when there is no base yet (the first sync of a linked pair).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Who decides a field when both systems changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRule {
    /// This system is the source of truth for the field.
    Owner(String),
    /// The side whose record changed last wins.
    Newest,
}

/// A flow's field rules: per field, and a default for the others (the flow's source owns
/// fields without a rule when there is no default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldRules {
    pub default: Option<FieldRule>,
    pub fields: BTreeMap<String, FieldRule>,
}

impl FieldRules {
    fn rule(&self, field: &str) -> Option<&FieldRule> {
        self.fields.get(field).or(self.default.as_ref())
    }
}

/// Both systems changed `field` since the last sync.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub field: String,
    pub source_value: Value,
    pub target_value: Value,
    /// The system whose value was kept.
    pub winner: String,
    /// Why: `owner` or `newest`.
    pub rule: &'static str,
}

impl Conflict {
    pub fn describe(&self, source: &str, target: &str) -> String {
        format!(
            "conflict on {}: {source} has {}, {target} has {}; {} kept ({})",
            self.field, self.source_value, self.target_value, self.winner, self.rule
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// The record to write, in the canonical JSON form.
    pub value: Value,
    pub conflicts: Vec<Conflict>,
}

/// The two sides of a merge: a system's name, its record now, its record at the last sync,
/// and when its record last changed.
pub struct Side<'a> {
    pub system: &'a str,
    pub now: &'a Value,
    pub base: Option<&'a Value>,
    pub changed_at: Option<DateTime<Utc>>,
}

/// Merges `source` into `target` field by field. Both are canonical records as JSON objects
/// (`{"entity": "customer", ...}`).
pub fn merge(rules: &FieldRules, source: &Side<'_>, target: &Side<'_>) -> Merged {
    let mut out = Map::new();
    let mut conflicts = Vec::new();
    let empty = Map::new();
    let s_now = source.now.as_object().unwrap_or(&empty);
    let t_now = target.now.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = s_now.keys().chain(t_now.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        match key.as_str() {
            "entity" => {
                out.insert(key.clone(), s_now.get(key).cloned().unwrap_or(Value::Null));
            }
            // When the record last changed: the later of the two.
            "updated_at" => {
                let value = match (s_now.get(key), t_now.get(key)) {
                    (Some(Value::String(s)), Some(Value::String(t))) => {
                        if later(t, s) {
                            Value::String(t.clone())
                        } else {
                            Value::String(s.clone())
                        }
                    }
                    (Some(s), _) if !s.is_null() => s.clone(),
                    (_, Some(t)) => t.clone(),
                    (s, _) => s.cloned().unwrap_or(Value::Null),
                };
                out.insert(key.clone(), value);
            }
            "extra" => {
                let s_extra = s_now.get(key).and_then(Value::as_object).unwrap_or(&empty);
                let t_extra = t_now.get(key).and_then(Value::as_object).unwrap_or(&empty);
                let s_base = base_field(source.base, key);
                let t_base = base_field(target.base, key);
                let mut extra_keys: Vec<&String> = s_extra.keys().chain(t_extra.keys()).collect();
                extra_keys.sort();
                extra_keys.dedup();
                let mut merged_extra = Map::new();
                for extra_key in extra_keys {
                    let field = format!("extra.{extra_key}");
                    let value = merge_field(
                        rules,
                        &field,
                        source,
                        target,
                        s_extra.get(extra_key),
                        t_extra.get(extra_key),
                        s_base.map(|base| base.get(extra_key)),
                        t_base.map(|base| base.get(extra_key)),
                        &mut conflicts,
                    );
                    if !value.is_null() {
                        merged_extra.insert(extra_key.clone(), value);
                    }
                }
                out.insert(key.clone(), Value::Object(merged_extra));
            }
            _ => {
                let value = merge_field(
                    rules,
                    key,
                    source,
                    target,
                    s_now.get(key),
                    t_now.get(key),
                    source.base.map(|base| base.get(key)),
                    target.base.map(|base| base.get(key)),
                    &mut conflicts,
                );
                out.insert(key.clone(), value);
            }
        }
    }
    Merged { value: Value::Object(out), conflicts }
}

fn base_field<'a>(base: Option<&'a Value>, key: &str) -> Option<&'a Map<String, Value>> {
    base.map(|base| base.get(key).and_then(Value::as_object).unwrap_or(&EMPTY_MAP))
}

static EMPTY_MAP: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

/// `a` is a later RFC 3339 time than `b` (texts that do not parse are not later).
fn later(a: &str, b: &str) -> bool {
    match (DateTime::parse_from_rfc3339(a), DateTime::parse_from_rfc3339(b)) {
        (Ok(a), Ok(b)) => a > b,
        _ => false,
    }
}

/// One field. A missing value and `null` are the same; `base` is `None` when the side has no
/// stored state at all, `Some(None)` when its state lacks the field.
#[allow(clippy::too_many_arguments)]
fn merge_field(
    rules: &FieldRules,
    field: &str,
    source: &Side<'_>,
    target: &Side<'_>,
    s_now: Option<&Value>,
    t_now: Option<&Value>,
    s_base: Option<Option<&Value>>,
    t_base: Option<Option<&Value>>,
    conflicts: &mut Vec<Conflict>,
) -> Value {
    let null = Value::Null;
    let s_now = s_now.unwrap_or(&null);
    let t_now = t_now.unwrap_or(&null);
    if s_now == t_now {
        return s_now.clone();
    }
    let s_changed = s_base.is_none_or(|base| base.unwrap_or(&null) != s_now);
    let t_changed = t_base.is_none_or(|base| base.unwrap_or(&null) != t_now);
    let rule = rules.rule(field);
    let owner_is = |system: &str| matches!(rule, Some(FieldRule::Owner(owner)) if owner == system);
    // Without a rule the flow's source owns the field.
    let source_owns = rule.is_none() || owner_is(source.system);
    match (s_changed, t_changed) {
        (true, false) => s_now.clone(),
        (false, true) => t_now.clone(),
        (false, false) => s_now.clone(),
        (true, true) => {
            let (take_source, why) = match rule {
                Some(FieldRule::Newest) => {
                    let target_newer = matches!((source.changed_at, target.changed_at), (Some(s), Some(t)) if t > s)
                        || (source.changed_at.is_none() && target.changed_at.is_some());
                    (!target_newer, "newest")
                }
                _ => (source_owns, "owner"),
            };
            // Only a real conflict (both sides had a base and edited) is reported; the first
            // sync of a linked pair has no base and simply applies the rule.
            if s_base.is_some() && t_base.is_some() {
                conflicts.push(Conflict {
                    field: field.to_string(),
                    source_value: s_now.clone(),
                    target_value: t_now.clone(),
                    winner: if take_source { source.system } else { target.system }.to_string(),
                    rule: why,
                });
            }
            if take_source { s_now.clone() } else { t_now.clone() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn side<'a>(system: &'a str, now: &'a Value, base: Option<&'a Value>, at: Option<&str>) -> Side<'a> {
        Side {
            system,
            now,
            base,
            changed_at: at.map(|at| DateTime::parse_from_rfc3339(at).unwrap().with_timezone(&Utc)),
        }
    }

    fn newest() -> FieldRules {
        FieldRules { default: Some(FieldRule::Newest), fields: BTreeMap::new() }
    }

    #[test]
    fn edits_of_different_fields_on_both_sides_are_both_kept() {
        let base = json!({ "entity": "customer", "email": "a@x", "phone": "1" });
        let erp = json!({ "entity": "customer", "email": "a@x", "phone": "2" });
        let shop = json!({ "entity": "customer", "email": "b@x", "phone": "1" });
        let merged = merge(&newest(), &side("erp", &erp, Some(&base), None), &side("shop", &shop, Some(&base), None));
        assert_eq!(merged.value, json!({ "entity": "customer", "email": "b@x", "phone": "2" }));
        assert!(merged.conflicts.is_empty());
    }

    #[test]
    fn the_same_field_edited_on_both_sides_is_a_conflict_settled_by_the_rule() {
        let base = json!({ "entity": "customer", "phone": "1" });
        let erp = json!({ "entity": "customer", "phone": "2" });
        let shop = json!({ "entity": "customer", "phone": "3" });
        let erp_side = side("erp", &erp, Some(&base), Some("2026-11-26T10:00:00Z"));
        let shop_side = side("shop", &shop, Some(&base), Some("2026-11-26T11:00:00Z"));
        let merged = merge(&newest(), &erp_side, &shop_side);
        assert_eq!(merged.value["phone"], json!("3"), "the shop's edit is newer");
        assert_eq!(merged.conflicts.len(), 1);
        let conflict = &merged.conflicts[0];
        assert_eq!((conflict.winner.as_str(), conflict.rule), ("shop", "newest"));
        assert_eq!((conflict.source_value.clone(), conflict.target_value.clone()), (json!("2"), json!("3")));
        assert!(conflict.describe("erp", "shop").contains("erp has \"2\", shop has \"3\""));

        let mut owned = newest();
        owned.fields.insert("phone".into(), FieldRule::Owner("erp".into()));
        let merged = merge(&owned, &erp_side, &shop_side);
        assert_eq!(merged.value["phone"], json!("2"), "the owner wins");
        assert_eq!(merged.conflicts[0].rule, "owner");
    }

    #[test]
    fn an_owner_does_not_erase_an_edit_it_did_not_make() {
        // The ERP owns prices; the shop changed its title; the ERP changed nothing.
        let base = json!({ "entity": "product", "title": "A", "price": "1" });
        let shop = json!({ "entity": "product", "title": "A2", "price": "1" });
        let rules = FieldRules { default: Some(FieldRule::Owner("erp".into())), fields: BTreeMap::new() };
        let merged = merge(&rules, &side("erp", &base, Some(&base), None), &side("shop", &shop, Some(&base), None));
        assert_eq!(merged.value["title"], json!("A2"));
    }

    #[test]
    fn a_target_that_lags_behind_gets_the_source_value() {
        // The source holds an earlier merge the target never received.
        let merged_before = json!({ "entity": "customer", "email": "new@x" });
        let stale = json!({ "entity": "customer", "email": "old@x" });
        let merged = merge(
            &newest(),
            &side("shop", &merged_before, Some(&merged_before), None),
            &side("erp", &stale, Some(&stale), None),
        );
        assert_eq!(merged.value["email"], json!("new@x"));
        assert!(merged.conflicts.is_empty());
    }

    #[test]
    fn extra_keys_are_fields_of_their_own() {
        let base = json!({ "entity": "customer", "extra": { "tier": "gold", "note": "n" } });
        let erp = json!({ "entity": "customer", "extra": { "tier": "silver", "note": "n" } });
        let shop = json!({ "entity": "customer", "extra": { "tier": "gold", "note": "n2", "new": 1 } });
        let merged = merge(&newest(), &side("erp", &erp, Some(&base), None), &side("shop", &shop, Some(&base), None));
        assert_eq!(merged.value["extra"], json!({ "tier": "silver", "note": "n2", "new": 1 }));
    }

    #[test]
    fn the_first_sync_of_a_linked_pair_applies_the_rule_without_reporting_a_conflict() {
        let erp = json!({ "entity": "customer", "phone": "2" });
        let shop = json!({ "entity": "customer", "phone": "3" });
        let merged = merge(&FieldRules::default(), &side("erp", &erp, None, None), &side("shop", &shop, None, None));
        assert_eq!(merged.value["phone"], json!("2"), "without a rule the source owns the field");
        assert!(merged.conflicts.is_empty());
    }
}
