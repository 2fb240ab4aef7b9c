//! Planning of one page commit, shared by both backends: which rows must be written.
//!
//! `commit_page` runs in three steps inside one transaction: the backend reads what the store
//! already holds for the page's records ([`ExistingState`], one batched query), this module
//! decides what changes ([`PagePlan`]), and the backend writes only that, in a few batched
//! statements. Deciding in Rust keeps the rules in one place for SQLite and PostgreSQL, and
//! makes the common case cheap: a re-sync of an unchanged catalog writes no link, no snapshot
//! and no record row at all, only the run's counts and the checkpoint.

use crate::{PageCommit, RecordAction, RecordOutcome, RecordUid, Result, RunCounts, StoreError};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

/// What the store holds for one outcome of a page, read inside the commit's transaction.
///
/// The "effective" record is the outcome's `record_uid` when it has one, else the record its
/// source id is linked to; `record_found`, `natural_key`, `target_id`, `target_hash` and
/// `last_origin` describe that record.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExistingState {
    /// Record linked to `(entity, source_system, source_id)`.
    pub source_link_uid: Option<RecordUid>,
    pub record_found: bool,
    pub natural_key: Option<String>,
    /// Link of the effective record in the target system.
    pub target_id: Option<String>,
    pub target_hash: Option<Vec<u8>>,
    pub last_origin: Option<String>,
}

impl ExistingState {
    fn effective_uid(&self, outcome: &RecordOutcome) -> Option<RecordUid> {
        outcome.record_uid.or(self.source_link_uid)
    }
}

/// Number of record identities the page needs; the backend allocates that many and passes
/// them to [`plan_page`], which hands them out in outcome order.
///
/// An outcome without `record_uid` gets the record its source id is already linked to (for
/// example by an earlier page of the same run), else the identity given to an earlier outcome
/// of this page with the same source id, else a new one. So a source id never gets two records.
pub(crate) fn count_new_records(page: &PageCommit, existing: &[ExistingState]) -> usize {
    let mut seen: HashMap<&str, ()> = HashMap::new();
    let mut count = 0;
    for (outcome, state) in page.outcomes.iter().zip(existing) {
        let known = state.effective_uid(outcome).is_some();
        if seen.insert(outcome.source_id.as_str(), ()).is_none() && !known {
            count += 1;
        }
    }
    count
}

/// One link to write: `(entity, system, external_id) -> record_uid`.
///
/// Writing a link replaces whatever conflicts with it: the link of another record with the same
/// external id, and the link of this record in the same system with another external id (the
/// record was re-created there). The last write wins; a page never fails because of a stale
/// identity. Within one plan no two writes conflict with each other, so the backend may apply
/// them as one set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkWrite {
    pub record_uid: RecordUid,
    pub system: String,
    pub external_id: String,
    /// Another record may hold this external id: the backend must delete that link first.
    pub may_replace_external: bool,
    /// This record may have another id in this system: the backend must delete that link first.
    /// Never for a record created by this page, which has no links yet.
    pub may_replace_record: bool,
}

/// The new state of one snapshot row (insert or replace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotWrite {
    pub record_uid: RecordUid,
    pub target_hash: Option<Vec<u8>>,
    pub last_origin: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadLetterOp {
    /// The outcome at this index carries a dead letter: open a new one or update the
    /// unresolved one of the same record.
    Fail(usize),
    /// The outcome at this index succeeded: resolve the unresolved one, if any.
    Resolve(usize),
}

/// Everything one page commit writes.
#[derive(Debug, Default)]
pub(crate) struct PagePlan {
    /// Identity of every outcome, in order.
    pub record_uids: Vec<RecordUid>,
    /// New records: `(record_uid, natural_key)`.
    pub new_records: Vec<(RecordUid, Option<String>)>,
    /// Existing records whose natural key changed.
    pub natural_key_updates: Vec<(RecordUid, String)>,
    pub links: Vec<LinkWrite>,
    pub snapshots: Vec<SnapshotWrite>,
    /// Indexes of the outcomes logged in the record log.
    pub log: Vec<usize>,
    /// Dead-letter changes, to be applied in this order.
    pub dead_letters: Vec<DeadLetterOp>,
    pub counts: RunCounts,
}

impl PagePlan {
    /// Whether some outcome opens or updates a dead letter.
    pub fn has_failures(&self) -> bool {
        self.dead_letters.iter().any(|op| matches!(op, DeadLetterOp::Fail(_)))
    }

    /// Source ids of the outcomes that touch dead letters: the only ones whose unresolved dead
    /// letters the backend needs to read.
    pub fn dead_letter_source_ids<'p>(&self, page: &'p PageCommit) -> Vec<&'p str> {
        self.dead_letters
            .iter()
            .map(|op| match op {
                DeadLetterOp::Fail(index) | DeadLetterOp::Resolve(index) => page.outcomes[*index].source_id.as_str(),
            })
            .collect()
    }
}

/// Whether the outcome counts as the record being in step with the target: it resolves dead
/// letters and may update the snapshot.
pub(crate) fn is_success(action: RecordAction) -> bool {
    match action {
        RecordAction::Created | RecordAction::Updated | RecordAction::Unchanged | RecordAction::Deleted => true,
        RecordAction::Skipped | RecordAction::Failed => false,
    }
}

/// What one outcome does to its record's snapshot.
///
/// - created, updated, unchanged: the hash becomes `target_hash` when it is `Some` and stays as
///   it was otherwise; the origin becomes `origin` when it is `Some`;
/// - deleted: the hash becomes `target_hash`, so `None` clears it and the record is written
///   again should it come back; the origin as above;
/// - skipped, failed: the snapshot is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotChange<'a> {
    /// `Some(new hash)` when the hash is set (`Some(None)` clears it).
    pub hash: Option<Option<&'a [u8]>>,
    pub origin: Option<&'a str>,
}

impl<'a> SnapshotChange<'a> {
    pub fn of(outcome: &'a RecordOutcome) -> Self {
        let hash = outcome.target_hash.as_ref().map(|hash| hash.as_bytes());
        match outcome.action {
            RecordAction::Created | RecordAction::Updated | RecordAction::Unchanged => {
                SnapshotChange { hash: hash.map(Some), origin: outcome.origin.as_deref() }
            }
            RecordAction::Deleted => SnapshotChange { hash: Some(hash), origin: outcome.origin.as_deref() },
            RecordAction::Skipped | RecordAction::Failed => SnapshotChange { hash: None, origin: None },
        }
    }
}

/// Whether the commit may read only the outcomes whose stored state differs from what they say
/// (the backend filters in SQL, and [`assumed_state`] stands in for the rest).
///
/// Only when every outcome names its record and no record or source id appears twice: then
/// each outcome is planned against its own record alone, and an outcome that matches what is
/// stored plans no write whatever the fields the read left out. This is the common case of a
/// re-sync, where nearly every record is unchanged, and it saves returning a row per record.
pub(crate) fn can_read_differences_only(page: &PageCommit) -> bool {
    let mut source_ids: HashSet<&str> = HashSet::with_capacity(page.outcomes.len());
    let mut record_uids: HashSet<RecordUid> = HashSet::with_capacity(page.outcomes.len());
    page.outcomes.iter().all(|outcome| match outcome.record_uid {
        Some(uid) => record_uids.insert(uid) && source_ids.insert(outcome.source_id.as_str()),
        None => false,
    })
}

/// The stored state of an outcome that the read found to match it in every respect the
/// outcome touches (see [`can_read_differences_only`]).
pub(crate) fn assumed_state(outcome: &RecordOutcome) -> ExistingState {
    let change = SnapshotChange::of(outcome);
    ExistingState {
        source_link_uid: outcome.record_uid,
        record_found: true,
        natural_key: outcome.natural_key.clone(),
        target_id: outcome.target_id.clone(),
        target_hash: change.hash.flatten().map(<[u8]>::to_vec),
        last_origin: change.origin.map(str::to_string),
    }
}

/// Decides what the page writes. `existing` has one entry per outcome; `new_uids` holds
/// exactly [`count_new_records`] fresh identities. A snapshot row is written only when its hash
/// or origin actually changes (see [`SnapshotChange`] for the rules).
pub(crate) fn plan_page(page: &PageCommit, existing: &[ExistingState], new_uids: &[RecordUid]) -> Result<PagePlan> {
    debug_assert_eq!(page.outcomes.len(), existing.len());
    let mut plan = PagePlan { record_uids: Vec::with_capacity(page.outcomes.len()), ..PagePlan::default() };
    let mut new_uids = new_uids.iter().copied();

    // Working copies of the stored state, updated outcome by outcome so that a record appearing
    // twice in one page ends as its last outcome says. They borrow from the page and the read.
    let mut uid_by_source_id: HashMap<&str, RecordUid> = HashMap::with_capacity(page.outcomes.len());
    let mut source_link_by_id: HashMap<&str, Option<RecordUid>> = HashMap::with_capacity(page.outcomes.len());
    let mut records: HashMap<RecordUid, RecordState<'_>> = HashMap::with_capacity(page.outcomes.len());

    for (index, (outcome, state)) in page.outcomes.iter().zip(existing).enumerate() {
        let record_uid = match (state.effective_uid(outcome), uid_by_source_id.get(outcome.source_id.as_str())) {
            (Some(uid), _) => uid,
            (None, Some(uid)) => *uid,
            (None, None) => {
                let uid = new_uids.next().ok_or(StoreError::Corrupt {
                    what: "page plan",
                    detail: "fewer new record identities than records to create".to_string(),
                })?;
                records.insert(uid, RecordState::new_record(outcome.natural_key.as_deref()));
                uid
            }
        };
        uid_by_source_id.insert(outcome.source_id.as_str(), record_uid);
        plan.record_uids.push(record_uid);

        let record = match records.entry(record_uid) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                // First time this page touches an existing record: `state` describes it,
                // since its effective uid is this one.
                if !state.record_found {
                    return Err(StoreError::NotFound { what: "record", id: record_uid });
                }
                entry.insert(RecordState::stored(state))
            }
        };

        if let Some(natural_key) = outcome.natural_key.as_deref() {
            record.natural_key = Some(natural_key);
        }

        let source_link = source_link_by_id.entry(outcome.source_id.as_str()).or_insert(state.source_link_uid);
        if *source_link != Some(record_uid) {
            *source_link = Some(record_uid);
            plan.links.push(LinkWrite {
                record_uid,
                system: page.source_system.clone(),
                external_id: outcome.source_id.clone(),
                // The read found which record holds this source id, if any.
                may_replace_external: state.source_link_uid.is_some(),
                may_replace_record: !record.is_new,
            });
        }

        if let Some(target_id) = outcome.target_id.as_deref()
            && record.target_id != Some(target_id)
        {
            record.target_id = Some(target_id);
            plan.links.push(LinkWrite {
                record_uid,
                system: page.target_system.clone(),
                external_id: target_id.to_string(),
                // Who holds a target id is not read: a duplicate may have been matched to it.
                may_replace_external: true,
                may_replace_record: record.stored_target_id.is_some(),
            });
        }

        let change = SnapshotChange::of(outcome);
        if let Some(hash) = change.hash {
            record.target_hash = hash;
        }
        if let Some(origin) = change.origin {
            record.last_origin = Some(origin);
        }

        if outcome.log {
            plan.log.push(index);
        }
        if outcome.dead_letter.is_some() {
            plan.dead_letters.push(DeadLetterOp::Fail(index));
        } else if is_success(outcome.action) {
            plan.dead_letters.push(DeadLetterOp::Resolve(index));
        }
        plan.counts.add(outcome.action);
    }

    // Emit the final state of every touched record that changed, in a stable order.
    let mut touched: Vec<(RecordUid, RecordState<'_>)> =
        records.into_iter().filter(|(_, record)| record.is_changed()).collect();
    touched.sort_unstable_by_key(|(uid, _)| *uid);
    for (record_uid, record) in touched {
        if record.is_new {
            plan.new_records.push((record_uid, record.natural_key.map(str::to_string)));
        } else if record.natural_key != record.stored_natural_key
            && let Some(natural_key) = record.natural_key
        {
            plan.natural_key_updates.push((record_uid, natural_key.to_string()));
        }
        if record.target_hash != record.stored_target_hash || record.last_origin != record.stored_last_origin {
            plan.snapshots.push(SnapshotWrite {
                record_uid,
                target_hash: record.target_hash.map(<[u8]>::to_vec),
                last_origin: record.last_origin.map(str::to_string),
            });
        }
    }
    plan.links = without_superseded_links(plan.links);
    Ok(plan)
}

/// Keeps, of link writes that conflict with each other, only the last one, so that the
/// remaining set can be applied at once with the same result as applying them in order.
fn without_superseded_links(links: Vec<LinkWrite>) -> Vec<LinkWrite> {
    if links.len() < 2 {
        return links;
    }
    let mut claimed_external: HashSet<(&str, &str)> = HashSet::with_capacity(links.len());
    let mut claimed_record: HashSet<(RecordUid, &str)> = HashSet::with_capacity(links.len());
    let mut keep = vec![false; links.len()];
    for (index, link) in links.iter().enumerate().rev() {
        let external_key = (link.system.as_str(), link.external_id.as_str());
        let record_key = (link.record_uid, link.system.as_str());
        if claimed_external.contains(&external_key) || claimed_record.contains(&record_key) {
            continue;
        }
        claimed_external.insert(external_key);
        claimed_record.insert(record_key);
        keep[index] = true;
    }
    links.into_iter().zip(keep).filter_map(|(link, keep)| keep.then_some(link)).collect()
}

/// The working copy of one record touched by the page: its stored values (to tell what
/// changed) and its values after the outcomes seen so far.
#[derive(Debug)]
struct RecordState<'a> {
    is_new: bool,
    stored_natural_key: Option<&'a str>,
    stored_target_hash: Option<&'a [u8]>,
    stored_last_origin: Option<&'a str>,
    stored_target_id: Option<&'a str>,
    natural_key: Option<&'a str>,
    target_id: Option<&'a str>,
    target_hash: Option<&'a [u8]>,
    last_origin: Option<&'a str>,
}

impl<'a> RecordState<'a> {
    fn new_record(natural_key: Option<&'a str>) -> Self {
        RecordState {
            is_new: true,
            stored_natural_key: None,
            stored_target_hash: None,
            stored_last_origin: None,
            stored_target_id: None,
            natural_key,
            target_id: None,
            target_hash: None,
            last_origin: None,
        }
    }

    fn stored(state: &'a ExistingState) -> Self {
        RecordState {
            is_new: false,
            stored_natural_key: state.natural_key.as_deref(),
            stored_target_hash: state.target_hash.as_deref(),
            stored_last_origin: state.last_origin.as_deref(),
            stored_target_id: state.target_id.as_deref(),
            natural_key: state.natural_key.as_deref(),
            target_id: state.target_id.as_deref(),
            target_hash: state.target_hash.as_deref(),
            last_origin: state.last_origin.as_deref(),
        }
    }

    /// Whether the record or its snapshot must be written (links are planned separately).
    fn is_changed(&self) -> bool {
        self.is_new
            || self.natural_key != self.stored_natural_key
            || self.target_hash != self.stored_target_hash
            || self.last_origin != self.stored_last_origin
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use erpsync_model::{ContentHash, EntityKind};

    fn outcome(source_id: &str, record_uid: Option<RecordUid>, action: RecordAction) -> RecordOutcome {
        RecordOutcome {
            record_uid,
            source_id: source_id.to_string(),
            natural_key: None,
            target_id: None,
            action,
            target_hash: None,
            origin: None,
            message: None,
            dead_letter: None,
            log: false,
        }
    }

    fn page(outcomes: Vec<RecordOutcome>) -> PageCommit {
        PageCommit {
            run_id: 1,
            flow: "products".to_string(),
            entity: EntityKind::Product,
            source_system: "erp".to_string(),
            target_system: "shop".to_string(),
            outcomes,
            checkpoint: None,
            states: Vec::new(),
            at: Utc::now(),
        }
    }

    #[test]
    fn unchanged_page_writes_nothing() {
        let hash = ContentHash([7; 32]);
        let page = page(vec![RecordOutcome {
            target_id: Some("s1".to_string()),
            ..outcome("e1", Some(10), RecordAction::Unchanged)
        }]);
        let existing = vec![ExistingState {
            source_link_uid: Some(10),
            record_found: true,
            natural_key: None,
            target_id: Some("s1".to_string()),
            target_hash: Some(hash.as_bytes().to_vec()),
            last_origin: None,
        }];
        assert_eq!(count_new_records(&page, &existing), 0);
        let plan = plan_page(&page, &existing, &[]).unwrap();
        assert_eq!(plan.record_uids, vec![10]);
        assert!(plan.new_records.is_empty());
        assert!(plan.links.is_empty());
        assert!(plan.snapshots.is_empty());
        assert!(plan.natural_key_updates.is_empty());
        assert_eq!(plan.counts.unchanged, 1);
    }

    #[test]
    fn same_source_id_twice_gets_one_new_record() {
        let page = page(vec![outcome("e1", None, RecordAction::Created), outcome("e1", None, RecordAction::Updated)]);
        let existing = vec![ExistingState::default(), ExistingState::default()];
        assert_eq!(count_new_records(&page, &existing), 1);
        let plan = plan_page(&page, &existing, &[5]).unwrap();
        assert_eq!(plan.record_uids, vec![5, 5]);
        assert_eq!(plan.new_records, vec![(5, None)]);
        assert_eq!(plan.links.len(), 1);
    }

    fn link(record_uid: RecordUid, external_id: &str) -> LinkWrite {
        LinkWrite {
            record_uid,
            system: "shop".to_string(),
            external_id: external_id.to_string(),
            may_replace_external: true,
            may_replace_record: true,
        }
    }

    #[test]
    fn conflicting_link_writes_keep_the_last() {
        let links = vec![link(1, "x"), link(2, "x"), link(3, "y")];
        let kept = without_superseded_links(links);
        assert_eq!(kept.iter().map(|link| link.record_uid).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn unknown_record_uid_is_an_error() {
        let page = page(vec![outcome("e1", Some(99), RecordAction::Created)]);
        let existing = vec![ExistingState::default()];
        assert!(matches!(plan_page(&page, &existing, &[]), Err(StoreError::NotFound { what: "record", id: 99 })));
    }
}
