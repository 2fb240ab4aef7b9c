//! Running one flow: pull pages from the checkpoint, validate, resolve links, skip unchanged
//! records by hash, write in batches, record every outcome, and advance the checkpoint only
//! when the whole page is durable.

use crate::EngineError;
use crate::config::FlowConfig;
use crate::shutdown::Shutdown;
use chrono::Utc;
use erpsync_connectors::{
    ConnectorError, DeleteItem, DeleteMode, ReadRequest, Sink, Source, SourcePage, SourceRecord, WriteBatch, WriteItem,
    WriteOutcome,
};
use erpsync_mapping::Applied;
use erpsync_model::{Checkpoint, ContentHash, Record, envelope};
use erpsync_store::{
    LinkQuery, LinkQueryItem, NewDeadLetter, NewRun, PageCommit, RecordAction, RecordOutcome, RecordUid, RunCounts,
    RunId, RunStatus, StateWrite, Store,
};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything one flow needs to run.
#[derive(Clone)]
pub struct FlowContext {
    pub flow: FlowConfig,
    pub store: Arc<dyn Store>,
    pub source: Arc<dyn Source>,
    pub sink: Arc<dyn Sink>,
    /// The target read as a source, for two-way merges that fetch the target's current state
    /// of a record before writing it. `None` for one-way flows.
    pub target_reader: Option<Arc<dyn Source>>,
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Read everything from the start instead of from the checkpoint.
    pub full: bool,
    /// Read, map and compare, but write nothing and store nothing but the run.
    pub dry_run: bool,
    /// `manual`, `schedule`, `retry`, ...
    pub trigger: String,
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: RunId,
    pub flow: String,
    pub status: RunStatus,
    pub counts: RunCounts,
    pub pages: u64,
    pub duration: Duration,
    pub error: Option<String>,
    pub dry_run: bool,
}

/// Called after every committed page with the run's counts so far.
pub type ProgressFn<'a> = &'a (dyn Fn(&RunCounts) + Send + Sync);

/// Runs a flow to the end of its source (or until shutdown is requested, in which case the
/// current page is finished first and the run ends as interrupted).
pub async fn run_flow(
    ctx: &FlowContext,
    options: &RunOptions,
    shutdown: &Shutdown,
    progress: ProgressFn<'_>,
) -> Result<RunSummary, EngineError> {
    run(ctx, options, Input::Pages, shutdown, progress).await
}

/// Runs a flow over the named source records only, read by id in their current state (the
/// records webhook events were about); the checkpoint does not move. A record the source no
/// longer has is skipped (a full reconciliation handles deletes).
///
/// `bodies` are records of `ids` that webhook bodies carried whole: one the flow has never
/// processed (no link of its source id, whatever the outcome was) is taken as it is, every
/// other is fetched (a body may be older than what was processed: deliveries arrive
/// unordered).
pub async fn run_records(
    ctx: &FlowContext,
    ids: &[String],
    bodies: HashMap<String, Record>,
    options: &RunOptions,
    shutdown: &Shutdown,
) -> Result<RunSummary, EngineError> {
    run(ctx, options, Input::Ids(ids, bodies), shutdown, &|_| {}).await
}

/// Runs a flow over records already in hand (dead letters taken up again), in pages; the
/// checkpoint does not move.
pub async fn run_given(
    ctx: &FlowContext,
    records: Vec<SourceRecord>,
    options: &RunOptions,
    shutdown: &Shutdown,
) -> Result<RunSummary, EngineError> {
    run(ctx, options, Input::Records(records), shutdown, &|_| {}).await
}

/// What a run processes.
enum Input<'a> {
    /// Pages from the checkpoint (or the start, for a full run).
    Pages,
    /// These source ids, fetched in their current state, or taken from the webhook bodies.
    Ids(&'a [String], HashMap<String, Record>),
    Records(Vec<SourceRecord>),
}

async fn run(
    ctx: &FlowContext,
    options: &RunOptions,
    input: Input<'_>,
    shutdown: &Shutdown,
    progress: ProgressFn<'_>,
) -> Result<RunSummary, EngineError> {
    let started = Instant::now();
    let flow = &ctx.flow;
    let run_id = ctx
        .store
        .start_run(&NewRun {
            flow: flow.name.clone(),
            trigger: options.trigger.clone(),
            full: options.full,
            dry_run: options.dry_run,
            started_at: Utc::now(),
        })
        .await?;
    tracing::info!(flow = %flow.name, run_id, full = options.full, dry_run = options.dry_run, "Run started.");

    let result = match input {
        Input::Pages => run_pages(ctx, run_id, options, shutdown, progress).await,
        Input::Ids(ids, bodies) => run_ids(ctx, run_id, ids, bodies, options, shutdown).await,
        Input::Records(records) => run_in_pages(ctx, run_id, records, options, shutdown).await,
    };
    let (status, counts, pages, error) = match result {
        Ok((counts, pages, interrupted)) => {
            let status = if interrupted {
                RunStatus::Interrupted
            } else if counts.failed > 0 {
                RunStatus::PartiallyFailed
            } else {
                RunStatus::Succeeded
            };
            (status, counts, pages, None)
        }
        Err((error, counts, pages)) => (RunStatus::Failed, counts, pages, Some(error.to_string())),
    };
    ctx.store.finish_run(run_id, status, error.as_deref()).await?;
    if !options.dry_run {
        crate::metrics::run_finished(&flow.name, status, started.elapsed());
    }
    let summary = RunSummary {
        run_id,
        flow: flow.name.clone(),
        status,
        counts,
        pages,
        duration: started.elapsed(),
        error,
        dry_run: options.dry_run,
    };
    match &summary.error {
        None => tracing::info!(
            flow = %flow.name,
            run_id,
            status = status.as_str(),
            read = counts.read,
            created = counts.created,
            updated = counts.updated,
            unchanged = counts.unchanged,
            failed = counts.failed,
            seconds = summary.duration.as_secs_f64(),
            "Run finished."
        ),
        Some(error) => tracing::error!(flow = %flow.name, run_id, error = %error, "Run failed."),
    }
    Ok(summary)
}

type PagesResult = Result<(RunCounts, u64, bool), (EngineError, RunCounts, u64)>;

async fn run_pages(
    ctx: &FlowContext,
    run_id: RunId,
    options: &RunOptions,
    shutdown: &Shutdown,
    progress: ProgressFn<'_>,
) -> PagesResult {
    let flow = &ctx.flow;
    let mut counts = RunCounts::default();
    let mut pages = 0u64;
    let checkpoint = if options.full {
        Checkpoint::default()
    } else {
        match ctx.store.checkpoint(&flow.name, &flow.source).await {
            Ok(checkpoint) => checkpoint.unwrap_or_default(),
            Err(error) => return Err((error.into(), counts, pages)),
        }
    };
    if options.full && !options.dry_run {
        // Persist the reset so that a full run interrupted by a crash resumes as a full run.
        if let Err(error) = ctx.store.reset_checkpoint(&flow.name, &flow.source).await {
            return Err((error.into(), counts, pages));
        }
    }
    // Pages flow through three stages at once: the source reads a page, the page before it is
    // prepared (mapped, validated, hashed), and the one before that goes to the store and the
    // target. Reading only depends on the checkpoint the previous page ends at, and preparing
    // on nothing stored, so neither waits for what processing stores.
    let track_seen = options.full && !options.dry_run && flow.on_delete != DeleteMode::Ignore;
    let mut pipeline = Pipeline::start(ctx, checkpoint, shutdown, track_seen);
    // A full run that reads to the end sees every record of the source: what is linked but
    // was not seen was deleted there.
    // Kept as 64-bit hashes of the source ids (8 bytes each, not the ids): a collision could
    // only keep a deleted record, never delete a present one.
    let mut seen: Option<HashSet<u64>> = track_seen.then(HashSet::new);
    loop {
        if shutdown.is_requested() {
            return Ok((counts, pages, true));
        }
        let page = match pipeline.next().await {
            Ok(Some(page)) => page,
            Ok(None) => return Ok((counts, pages, true)),
            Err(error) => return Err((error, counts, pages)),
        };
        if let Some(seen) = seen.as_mut() {
            seen.extend(page.seen);
        }
        let processed =
            finish_page(ctx, run_id, page.prepared, Some(page.checkpoint.clone()), options.dry_run, shutdown).await;
        match processed {
            Ok(page_counts) => {
                add_counts(&mut counts, &page_counts);
                pages += 1;
                progress(&counts);
            }
            Err(error) => return Err((error, counts, pages)),
        }
        if page.done {
            // A run with failures may have missed records, so it never deletes.
            if let Some(seen) = seen
                && counts.failed == 0
            {
                match delete_missing(ctx, run_id, &seen).await {
                    Ok(page_counts) => add_counts(&mut counts, &page_counts),
                    Err(error) => return Err((error, counts, pages)),
                }
            }
            return Ok((counts, pages, false));
        }
    }
}

/// A page out of the read and prepare stages.
struct PipelinedPage {
    prepared: PreparedPage,
    /// Where the source goes on after this page.
    checkpoint: Checkpoint,
    done: bool,
    /// Hashes of the page's source ids, when the run looks for deleted records.
    seen: Vec<u64>,
}

type StageResult<T> = Result<Option<T>, EngineError>;

/// The read and prepare stages of a run, each a task, handing pages on through channels of one
/// page. Each stage takes its channel's slot before it starts on a page, so besides the page the
/// run is storing at most one page is being read or waits, and one is being prepared or waits. `Ok(None)`: stopped by a shutdown while waiting to
/// retry a read. Dropping the pipeline (the run ended early) stops both tasks.
struct Pipeline {
    pages: tokio::sync::mpsc::Receiver<StageResult<PipelinedPage>>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Pipeline {
    fn start(ctx: &FlowContext, checkpoint: Checkpoint, shutdown: &Shutdown, track_seen: bool) -> Pipeline {
        let (read_tx, mut read_rx) = tokio::sync::mpsc::channel::<StageResult<SourcePage>>(1);
        let (page_tx, pages) = tokio::sync::mpsc::channel(1);
        let reader = {
            let ctx = ctx.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut checkpoint = checkpoint;
                loop {
                    // The slot first, then the read: a page is read only once the one before
                    // it went on to be prepared, which bounds the pages in memory.
                    let Ok(slot) = read_tx.reserve().await else { return };
                    let read = read_page_with_retry(ctx.clone(), checkpoint.clone(), shutdown.clone()).await;
                    let last = !matches!(&read, Ok(Some(page)) if !page.done);
                    if let Ok(Some(page)) = &read {
                        checkpoint = page.checkpoint.clone();
                    }
                    slot.send(read);
                    if last {
                        return;
                    }
                }
            })
        };
        let flow = ctx.flow.clone();
        let preparer = tokio::spawn(async move {
            loop {
                let Ok(slot) = page_tx.reserve().await else { return };
                let Some(read) = read_rx.recv().await else { return };
                let page = match read {
                    Ok(Some(page)) => {
                        let SourcePage { records, checkpoint, done } = page;
                        let seen = if track_seen {
                            records.iter().map(|record| id_hash(&record.source_id)).collect()
                        } else {
                            Vec::new()
                        };
                        prepare_page(&flow, records)
                            .await
                            .map(|prepared| Some(PipelinedPage { prepared, checkpoint, done, seen }))
                    }
                    Ok(None) => Ok(None),
                    Err(error) => Err(error),
                };
                slot.send(page);
            }
        });
        Pipeline { pages, tasks: [reader, preparer] }
    }

    async fn next(&mut self) -> StageResult<PipelinedPage> {
        match self.pages.recv().await {
            Some(page) => page,
            // Each stage sends its last page or error before it ends, so the channel closes
            // early only after a panic: the preparer's, or the reader's, which ends the
            // preparer. Both tasks are ending then: wait for them and surface the panic.
            None => {
                for task in self.tasks.iter_mut().rev() {
                    if let Err(error) = task.await
                        && error.is_panic()
                    {
                        std::panic::resume_unwind(error.into_panic());
                    }
                }
                Err(EngineError::Stopped { flow: String::new(), reason: "the read and prepare stages ended".into() })
            }
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn run_ids(
    ctx: &FlowContext,
    run_id: RunId,
    ids: &[String],
    mut bodies: HashMap<String, Record>,
    options: &RunOptions,
    shutdown: &Shutdown,
) -> PagesResult {
    let flow = &ctx.flow;
    let mut counts = RunCounts::default();
    let mut pages = 0u64;
    for chunk in ids.chunks(flow.page_size.max(1)) {
        if shutdown.is_requested() {
            return Ok((counts, pages, true));
        }
        let given = match take_unsynced_bodies(ctx, chunk, &mut bodies).await {
            Ok(given) => given,
            Err(error) => return Err((error, counts, pages)),
        };
        let to_fetch: Vec<String> = chunk.iter().filter(|id| !given.contains_key(*id)).cloned().collect();
        let mut attempt = 0;
        let fetched = loop {
            if to_fetch.is_empty() {
                break Vec::new();
            }
            match ctx.source.fetch(flow.entity, &to_fetch).await {
                Ok(found) => break found,
                Err(error) if error.retryable && attempt + 1 < flow.retry.max_attempts => {
                    let delay = flow.retry.delay_for(attempt, &error);
                    attempt += 1;
                    if !shutdown.clone().sleep(delay).await {
                        return Ok((counts, pages, true));
                    }
                }
                Err(error) => return Err((error.into(), counts, pages)),
            }
        };
        let missing = fetched.iter().filter(|record| record.is_none()).count();
        if missing > 0 {
            tracing::info!(flow = %flow.name, missing, "Records named by events are gone from the source; skipped.");
        }
        let mut given = given;
        let mut records: Vec<SourceRecord> = chunk.iter().filter_map(|id| given.remove(id)).collect();
        records.extend(fetched.into_iter().flatten());
        match process_page(ctx, run_id, records, None, options.dry_run, shutdown).await {
            Ok(page_counts) => {
                add_counts(&mut counts, &page_counts);
                pages += 1;
            }
            Err(error) => return Err((error, counts, pages)),
        }
    }
    Ok((counts, pages, false))
}

/// The records of `chunk` given in `bodies` that the flow never processed (no link of their
/// source id), as source records; the others stay to be fetched.
async fn take_unsynced_bodies(
    ctx: &FlowContext,
    chunk: &[String],
    bodies: &mut HashMap<String, Record>,
) -> Result<HashMap<String, SourceRecord>, EngineError> {
    let with_body: Vec<&String> = chunk.iter().filter(|id| bodies.contains_key(*id)).collect();
    if with_body.is_empty() {
        return Ok(HashMap::new());
    }
    let flow = &ctx.flow;
    let query = LinkQuery {
        entity: flow.entity,
        source_system: &flow.source,
        target_system: &flow.target,
        items: with_body.iter().map(|id| LinkQueryItem { source_id: id, natural_key: None }).collect(),
    };
    let states = ctx.store.lookup_links(&query).await?;
    let mut given = HashMap::new();
    for (id, state) in with_body.into_iter().zip(states) {
        let Some(record) = bodies.remove(id) else { continue };
        // No link of this source id at all: the flow never processed the record, whatever the
        // outcome (a record skipped by a filter, failed, or written has a link). A record it
        // did process may have been at a newer state than this body: fetched.
        if state.record_uid.is_none() {
            let source_record = SourceRecord {
                source_id: id.clone(),
                origin: Some(format!("webhook body of {id}")),
                origin_group: None,
                content: Ok(record),
            };
            given.insert(id.clone(), source_record);
        }
    }
    Ok(given)
}

async fn run_in_pages(
    ctx: &FlowContext,
    run_id: RunId,
    mut records: Vec<SourceRecord>,
    options: &RunOptions,
    shutdown: &Shutdown,
) -> PagesResult {
    let mut counts = RunCounts::default();
    let mut pages = 0u64;
    while !records.is_empty() {
        if shutdown.is_requested() {
            return Ok((counts, pages, true));
        }
        let rest = records.split_off(records.len().min(ctx.flow.page_size.max(1)));
        let page = std::mem::replace(&mut records, rest);
        match process_page(ctx, run_id, page, None, options.dry_run, shutdown).await {
            Ok(page_counts) => {
                add_counts(&mut counts, &page_counts);
                pages += 1;
            }
            Err(error) => return Err((error, counts, pages)),
        }
    }
    Ok((counts, pages, false))
}

fn add_counts(total: &mut RunCounts, page: &RunCounts) {
    total.read += page.read;
    total.created += page.created;
    total.updated += page.updated;
    total.unchanged += page.unchanged;
    total.skipped += page.skipped;
    total.failed += page.failed;
    total.deleted += page.deleted;
}

async fn read_page_with_retry(
    ctx: FlowContext,
    checkpoint: Checkpoint,
    shutdown: Shutdown,
) -> Result<Option<SourcePage>, EngineError> {
    let flow = &ctx.flow;
    let request = ReadRequest { entity: flow.entity, checkpoint: &checkpoint, page_size: flow.page_size };
    let mut attempt = 0;
    loop {
        let result = ctx.source.read_page(&request).await;
        crate::metrics::connector_call(&flow.source, "read", result.as_ref().map(|_| ()));
        match result {
            Ok(page) => return Ok(Some(page)),
            Err(error) if error.retryable && attempt + 1 < flow.retry.max_attempts => {
                let delay = flow.retry.delay_for(attempt, &error);
                tracing::warn!(flow = %flow.name, attempt, delay_ms = delay.as_millis() as u64, error = %error, "Read failed, retrying.");
                attempt += 1;
                if !shutdown.clone().sleep(delay).await {
                    return Ok(None);
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// A record that passed reading and validation and needs a decision.
struct Candidate {
    index: usize,
    source_id: String,
    natural_key: String,
    origin: Option<String>,
    origin_key: Option<String>,
    record: Record,
    /// The record before mapping, when the flow maps: what a dead letter keeps.
    original: Option<Record>,
    hash: ContentHash,
    /// What the record log says about a successful write (two-way conflicts).
    note: Option<String>,
}

impl Candidate {
    /// What a dead letter of this record keeps: the record as the source gave it.
    fn dead_letter_payload(&self) -> serde_json::Value {
        envelope::to_value(self.original.as_ref().unwrap_or(&self.record))
    }
}

/// Processes one page and commits it. `checkpoint_after` is stored with the page (`None` for
/// retries of single dead letters, which must not move the flow's checkpoint).
pub(crate) async fn process_page(
    ctx: &FlowContext,
    run_id: RunId,
    records: Vec<SourceRecord>,
    checkpoint_after: Option<Checkpoint>,
    dry_run: bool,
    shutdown: &Shutdown,
) -> Result<RunCounts, EngineError> {
    let prepared = prepare_page(&ctx.flow, records).await?;
    finish_page(ctx, run_id, prepared, checkpoint_after, dry_run, shutdown).await
}

/// A page made ready for the store: each record mapped, validated, keyed and hashed (a
/// candidate), or already given its outcome (unreadable, not mappable, invalid, twice in the
/// page, skipped by the filter). Nothing in it depends on the store or the target.
pub(crate) struct PreparedPage {
    outcomes: Vec<Option<RecordOutcome>>,
    candidates: Vec<Candidate>,
}

/// Prepares a page on a blocking thread: mapping evaluates JSONata with a time limit per
/// expression, and hashing a page is milliseconds of CPU, so neither belongs on the async
/// threads; and a full run prepares the next page while the store takes the current one.
async fn prepare_page(flow: &FlowConfig, records: Vec<SourceRecord>) -> Result<PreparedPage, EngineError> {
    let flow = flow.clone();
    let task = tokio::task::spawn_blocking(move || prepare_records(&flow, records));
    match task.await {
        Ok(prepared) => Ok(prepared),
        // The mapping crate contains panics of the expression engine itself; anything else is
        // a bug worth its backtrace.
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(EngineError::Stopped { flow: String::new(), reason: format!("preparing a page: {error}") }),
    }
}

fn prepare_records(flow: &FlowConfig, records: Vec<SourceRecord>) -> PreparedPage {
    let mut outcomes: Vec<Option<RecordOutcome>> = (0..records.len()).map(|_| None).collect();
    let mut candidates: Vec<Candidate> = Vec::with_capacity(records.len());
    let mut first_in_page: HashMap<String, Option<String>> = HashMap::with_capacity(records.len());
    for (index, source_record) in records.into_iter().enumerate() {
        // `None`: nothing to map (the identity mapping, or an unreadable record).
        let applied = match &source_record.content {
            Ok(record) if !flow.mapping.is_identity() => Some(flow.mapping.apply(record)),
            _ => None,
        };
        let SourceRecord { source_id, origin, origin_group, content } = source_record;
        let where_ = origin.clone().unwrap_or_else(|| source_id.clone());
        let source_record = match content {
            Ok(record) => record,
            Err(problem) => {
                outcomes[index] = Some(failed(
                    None,
                    &source_id,
                    None,
                    origin,
                    &problem.kind,
                    format!("{where_}: {}", problem.message),
                    serde_json::json!({ "raw": problem.raw }),
                ));
                continue;
            }
        };
        // Dead letters keep the record as the source gave it, so a retry maps it again.
        let (record, original) = match applied {
            None => (source_record, None),
            Some(Ok(Applied::Mapped(mapped))) => (mapped, Some(source_record)),
            Some(Ok(Applied::Skipped { reason })) => {
                outcomes[index] = Some(RecordOutcome {
                    record_uid: None,
                    source_id,
                    natural_key: source_record.natural_key(),
                    target_id: None,
                    action: RecordAction::Skipped,
                    target_hash: None,
                    origin: None,
                    message: Some(reason),
                    dead_letter: None,
                    log: false,
                });
                continue;
            }
            Some(Err(error)) => {
                outcomes[index] = Some(failed(
                    None,
                    &source_id,
                    source_record.natural_key(),
                    origin,
                    "mapping",
                    format!("{where_}: mapping of flow {:?}: {error}", flow.name),
                    envelope::to_value(&source_record),
                ));
                continue;
            }
        };
        if record.kind() != flow.entity {
            outcomes[index] = Some(failed(
                None,
                &source_id,
                None,
                origin,
                "mapping",
                format!(
                    "{where_}: the source produced a {} record, but flow {:?} moves {}",
                    record.kind(),
                    flow.name,
                    flow.entity
                ),
                envelope::to_value(original.as_ref().unwrap_or(&record)),
            ));
            continue;
        }
        if let Err(errors) = record.validate() {
            outcomes[index] = Some(failed(
                None,
                &source_id,
                record.natural_key(),
                origin,
                "validation",
                format!("{where_}: {errors}"),
                envelope::to_value(original.as_ref().unwrap_or(&record)),
            ));
            continue;
        }
        let Some(natural_key) = record.natural_key() else {
            outcomes[index] = Some(failed(
                None,
                &source_id,
                None,
                origin,
                "validation",
                format!("{where_}: the record has no natural key"),
                envelope::to_value(original.as_ref().unwrap_or(&record)),
            ));
            continue;
        };
        if let Some(first_origin) = first_in_page.get(&source_id) {
            let first = first_origin.clone().unwrap_or_default();
            outcomes[index] = Some(failed(
                None,
                &source_id,
                Some(natural_key),
                origin,
                "duplicate",
                format!("{where_}: duplicate of {first}: {source_id:?} appears twice in one page; the first was kept"),
                envelope::to_value(original.as_ref().unwrap_or(&record)),
            ));
            continue;
        }
        first_in_page.insert(source_id.clone(), origin.clone());
        let origin_key = match (&origin_group, &origin) {
            (Some(group), Some(origin)) => Some(format!("{group}|{origin}")),
            _ => None,
        };
        let hash = record.content_hash();
        candidates.push(Candidate {
            index,
            source_id,
            natural_key,
            origin,
            origin_key,
            record,
            original,
            hash,
            note: None,
        });
    }
    PreparedPage { outcomes, candidates }
}

/// Takes a prepared page to the store and the target: resolves links, skips what is unchanged,
/// writes the rest, and commits every outcome with the checkpoint.
async fn finish_page(
    ctx: &FlowContext,
    run_id: RunId,
    prepared: PreparedPage,
    checkpoint_after: Option<Checkpoint>,
    dry_run: bool,
    shutdown: &Shutdown,
) -> Result<RunCounts, EngineError> {
    let flow = &ctx.flow;
    let PreparedPage { mut outcomes, candidates } = prepared;
    let states = if candidates.is_empty() {
        Vec::new()
    } else {
        let query = LinkQuery {
            entity: flow.entity,
            source_system: &flow.source,
            target_system: &flow.target,
            items: candidates
                .iter()
                .map(|candidate| LinkQueryItem {
                    source_id: &candidate.source_id,
                    natural_key: Some(&candidate.natural_key),
                })
                .collect(),
        };
        ctx.store.lookup_links(&query).await?
    };

    // Two-way flows merge with what each system had at the last sync.
    let merging = flow.fields.is_some();
    let (source_states, target_states) = if merging {
        let uids: Vec<RecordUid> = states.iter().filter_map(|state| state.record_uid).collect();
        (ctx.store.record_states(&flow.source, &uids).await?, ctx.store.record_states(&flow.target, &uids).await?)
    } else {
        Default::default()
    };
    let mut to_merge: Vec<(Candidate, RecordUid, String)> = Vec::new();

    // Decide per candidate: duplicate of an earlier row of the same file, unchanged, or write.
    let mut to_write: Vec<(Candidate, Option<RecordUid>, Option<String>)> = Vec::new();
    for (candidate, state) in candidates.into_iter().zip(states) {
        if let (Some(last), Some(current)) = (&state.last_origin, &candidate.origin_key) {
            let same_group =
                last.split_once('|').map(|(group, _)| group) == current.split_once('|').map(|(group, _)| group);
            if same_group && last != current {
                let first = last.split_once('|').map(|(_, origin)| origin).unwrap_or(last);
                let where_ = candidate.origin.clone().unwrap_or_default();
                outcomes[candidate.index] = Some(failed(
                    state.record_uid,
                    &candidate.source_id,
                    Some(candidate.natural_key.clone()),
                    candidate.origin.clone(),
                    "duplicate",
                    format!(
                        "{where_}: duplicate of {first}: {:?} appears twice in one file; the first was kept",
                        candidate.source_id
                    ),
                    candidate.dead_letter_payload(),
                ));
                continue;
            }
        }
        // Two-way merges: a record that reads as it was at the last sync, when both systems
        // had the same, has nothing to merge (this is also how an echo of erpsync's own write
        // is recognised). A merged write the other system has not received yet is not in
        // step, and goes on to the merge, which sends it there.
        if merging && let Some(uid) = state.record_uid {
            let now = serde_json::to_value(&candidate.record).ok();
            if now.is_some() && source_states.get(&uid) == now.as_ref() && target_states.get(&uid) == now.as_ref() {
                outcomes[candidate.index] = Some(RecordOutcome {
                    record_uid: Some(uid),
                    source_id: candidate.source_id,
                    natural_key: Some(candidate.natural_key),
                    target_id: None,
                    action: RecordAction::Unchanged,
                    target_hash: None,
                    origin: None,
                    message: None,
                    dead_letter: None,
                    log: false,
                });
                continue;
            }
        }
        // Echo suppression for two-way flows: a record that reads exactly as erpsync last wrote
        // it to this source (by the flow in the other direction) is that write coming back,
        // not a change; syncing it back would ping-pong.
        if let Some(written) = state.source_hash {
            let read = match &candidate.original {
                Some(original) => original.content_hash(),
                None => candidate.hash,
            };
            if read == written && !merging {
                outcomes[candidate.index] = Some(RecordOutcome {
                    record_uid: state.record_uid,
                    source_id: candidate.source_id,
                    natural_key: Some(candidate.natural_key),
                    target_id: None,
                    action: RecordAction::Skipped,
                    target_hash: None,
                    origin: None,
                    message: Some(format!("echo of erpsync's own write to {}", flow.source)),
                    dead_letter: None,
                    log: false,
                });
                continue;
            }
        }
        if merging && let (Some(uid), Some(target_id)) = (state.record_uid, state.target_id.clone()) {
            to_merge.push((candidate, uid, target_id));
            continue;
        }
        if state.target_hash == Some(candidate.hash) {
            // Unchanged: no write. Only refresh where it was last seen when that changed, so a
            // re-sync of an unchanged catalog costs no store writes either.
            let origin_changed = candidate.origin_key.is_some() && candidate.origin_key != state.last_origin;
            outcomes[candidate.index] = Some(RecordOutcome {
                record_uid: state.record_uid,
                source_id: candidate.source_id,
                natural_key: Some(candidate.natural_key),
                target_id: None,
                action: RecordAction::Unchanged,
                target_hash: None,
                origin: if origin_changed { candidate.origin_key } else { None },
                message: None,
                dead_letter: None,
                log: false,
            });
            continue;
        }
        to_write.push((candidate, state.record_uid, state.target_id));
    }

    // The record states a two-way flow stores: per outcome, the source's record as read and
    // the record the target has after this page.
    let mut new_states: HashMap<usize, (serde_json::Value, serde_json::Value)> = HashMap::new();
    if merging {
        merge_with_target(ctx, to_merge, &source_states, &target_states, &mut outcomes, &mut to_write, &mut new_states)
            .await?;
        for (candidate, _, _) in &to_write {
            new_states.entry(candidate.index).or_insert_with(|| {
                let value = serde_json::to_value(&candidate.record).unwrap_or_default();
                (value.clone(), value)
            });
        }
    }

    // First sync matches before it creates: ask the target for records without a target id.
    let entity = flow.entity;
    if ctx.sink.capabilities(entity).lookup {
        let missing: Vec<usize> =
            to_write.iter().enumerate().filter(|(_, item)| item.2.is_none()).map(|(i, _)| i).collect();
        if !missing.is_empty() {
            let keys: Vec<String> = missing.iter().map(|&i| to_write[i].0.natural_key.clone()).collect();
            let found = ctx.sink.lookup(entity, &keys).await?;
            for (&i, target_id) in missing.iter().zip(found) {
                to_write[i].2 = target_id;
            }
        }
    }

    if dry_run {
        let mut counts = RunCounts::default();
        for outcome in outcomes.iter().flatten() {
            counts.add(outcome.action);
        }
        for (_, _, target_id) in &to_write {
            counts.add(if target_id.is_some() { RecordAction::Updated } else { RecordAction::Created });
        }
        return Ok(counts);
    }

    write_all(ctx, to_write, &mut outcomes, shutdown).await?;

    let outcomes: Vec<RecordOutcome> =
        outcomes.into_iter().map(|outcome| outcome.expect("every record of the page got an outcome")).collect();
    let mut states = Vec::new();
    for (index, (source_state, target_state)) in new_states {
        if matches!(outcomes[index].action, RecordAction::Created | RecordAction::Updated | RecordAction::Unchanged) {
            states.push(StateWrite { outcome: index, system: flow.source.clone(), payload: source_state });
            states.push(StateWrite { outcome: index, system: flow.target.clone(), payload: target_state });
        }
    }
    let mut counts = RunCounts::default();
    for outcome in &outcomes {
        counts.add(outcome.action);
    }
    ctx.store
        .commit_page(&PageCommit {
            run_id,
            flow: flow.name.clone(),
            entity,
            source_system: flow.source.clone(),
            target_system: flow.target.clone(),
            outcomes,
            checkpoint: checkpoint_after,
            states,
            at: Utc::now(),
        })
        .await?;
    crate::metrics::page_committed(&flow.name, entity.as_str(), &counts);
    Ok(counts)
}

/// Writes the records in batches the sink accepts, retrying transient failures with backoff,
/// and fills in one outcome per record.
async fn write_all(
    ctx: &FlowContext,
    to_write: Vec<(Candidate, Option<RecordUid>, Option<String>)>,
    outcomes: &mut [Option<RecordOutcome>],
    shutdown: &Shutdown,
) -> Result<(), EngineError> {
    let flow = &ctx.flow;
    let batch_size = ctx.sink.max_batch_size(flow.entity).max(1);
    let mut pending = to_write;
    while !pending.is_empty() {
        let rest = if pending.len() > batch_size { pending.split_off(batch_size) } else { Vec::new() };
        let mut chunk = std::mem::replace(&mut pending, rest);
        let mut attempt = 0u32;
        loop {
            // The id is derived from what the batch contains: a batch replayed after a crash
            // (same records, same content) gets the same id and an idempotent sink overwrites
            // it, while a batch with other content, of another run or of a retry of only the
            // records that failed, never reuses an id and cannot overwrite earlier writes.
            let batch_id = batch_id(flow, &chunk);
            let batch = WriteBatch {
                entity: flow.entity,
                batch_id,
                items: chunk
                    .iter()
                    .map(|(candidate, _, target_id)| WriteItem {
                        target_id: target_id.clone(),
                        natural_key: candidate.natural_key.clone(),
                        record: candidate.record.clone(),
                    })
                    .collect(),
            };
            let written = ctx.sink.write_batch(&batch).await;
            crate::metrics::connector_call(&flow.target, "write", written.as_ref().map(|_| ()));
            let results = match written {
                Ok(results) if results.len() == chunk.len() => results,
                Ok(results) => {
                    return Err(ConnectorError::new(
                        erpsync_connectors::ErrorKind::InvalidResponse,
                        format!("writing {} to {:?}", flow.entity, flow.target),
                        format!("the connector returned {} outcomes for {} records", results.len(), chunk.len()),
                    )
                    .into());
                }
                Err(error) if error.retryable && attempt + 1 < flow.retry.max_attempts => {
                    let delay = flow.retry.delay_for(attempt, &error);
                    tracing::warn!(flow = %flow.name, attempt, delay_ms = delay.as_millis() as u64, error = %error, "Write failed, retrying.");
                    attempt += 1;
                    if !shutdown.clone().sleep(delay).await {
                        return Err(EngineError::Stopped {
                            flow: flow.name.clone(),
                            reason: "shutdown during a retry wait".into(),
                        });
                    }
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            let mut retry = Vec::new();
            let mut retry_delay = Duration::ZERO;
            for ((candidate, record_uid, target_id), result) in chunk.into_iter().zip(results) {
                match result {
                    WriteOutcome::Created { target_id: new_id } | WriteOutcome::Updated { target_id: new_id } => {
                        let action = if target_id.is_some() { RecordAction::Updated } else { RecordAction::Created };
                        outcomes[candidate.index] = Some(RecordOutcome {
                            record_uid,
                            source_id: candidate.source_id,
                            natural_key: Some(candidate.natural_key),
                            target_id: Some(new_id),
                            action,
                            target_hash: Some(candidate.hash),
                            origin: candidate.origin_key,
                            message: candidate.note,
                            dead_letter: None,
                            log: true,
                        });
                    }
                    WriteOutcome::Failed(error) if error.retryable && attempt + 1 < flow.retry.max_attempts => {
                        retry_delay = retry_delay.max(flow.retry.delay_for(attempt, &error));
                        retry.push((candidate, record_uid, target_id));
                    }
                    WriteOutcome::Failed(error) => {
                        let where_ = candidate.origin.clone().unwrap_or_else(|| candidate.source_id.clone());
                        let payload = candidate.dead_letter_payload();
                        outcomes[candidate.index] = Some(failed(
                            record_uid,
                            &candidate.source_id,
                            Some(candidate.natural_key),
                            candidate.origin,
                            error.kind.as_str(),
                            format!("{where_}: {error}"),
                            payload,
                        ));
                    }
                }
            }
            if retry.is_empty() {
                break;
            }
            attempt += 1;
            if !shutdown.clone().sleep(retry_delay).await {
                return Err(EngineError::Stopped {
                    flow: flow.name.clone(),
                    reason: "shutdown during a retry wait".into(),
                });
            }
            chunk = retry;
        }
    }
    Ok(())
}

/// Two-way flows: merges each linked record with the target's current state (fetched when the
/// target can read by id, else as stored at the last sync). A merged record the target already
/// has is unchanged; the others join `to_write`, with their conflicts as the log's note.
async fn merge_with_target(
    ctx: &FlowContext,
    to_merge: Vec<(Candidate, RecordUid, String)>,
    source_states: &HashMap<RecordUid, serde_json::Value>,
    target_states: &HashMap<RecordUid, serde_json::Value>,
    outcomes: &mut [Option<RecordOutcome>],
    to_write: &mut Vec<(Candidate, Option<RecordUid>, Option<String>)>,
    new_states: &mut HashMap<usize, (serde_json::Value, serde_json::Value)>,
) -> Result<(), EngineError> {
    let flow = &ctx.flow;
    let Some(rules) = &flow.fields else { return Ok(()) };
    if to_merge.is_empty() {
        return Ok(());
    }
    let fetched: Option<Vec<Option<SourceRecord>>> = match &ctx.target_reader {
        Some(reader) if reader.can_fetch(flow.entity) => {
            let ids: Vec<String> = to_merge.iter().map(|(_, _, target_id)| target_id.clone()).collect();
            let mut found = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(250) {
                found.extend(reader.fetch(flow.entity, chunk).await?);
            }
            Some(found)
        }
        _ => None,
    };
    for (position, (mut candidate, uid, target_id)) in to_merge.into_iter().enumerate() {
        let source_now = serde_json::to_value(&candidate.record).unwrap_or_default();
        let target_record: Option<Record> = match &fetched {
            Some(found) => found.get(position).and_then(Option::as_ref).and_then(|r| r.content.clone().ok()),
            None => target_states.get(&uid).and_then(|value| serde_json::from_value(value.clone()).ok()),
        };
        let Some(target_record) = target_record else {
            // Nothing known of the target's record: write the source's.
            new_states.insert(candidate.index, (source_now.clone(), source_now));
            to_write.push((candidate, Some(uid), Some(target_id)));
            continue;
        };
        let target_now = serde_json::to_value(&target_record).unwrap_or_default();
        let merged = crate::merge::merge(
            rules,
            &crate::merge::Side {
                system: &flow.source,
                now: &source_now,
                base: source_states.get(&uid),
                changed_at: candidate.record.updated_at(),
            },
            &crate::merge::Side {
                system: &flow.target,
                now: &target_now,
                base: target_states.get(&uid),
                changed_at: target_record.updated_at(),
            },
        );
        let record: Record = match serde_json::from_value(merged.value.clone()) {
            Ok(record) => record,
            Err(error) => {
                outcomes[candidate.index] = Some(failed(
                    Some(uid),
                    &candidate.source_id,
                    Some(candidate.natural_key.clone()),
                    candidate.origin.clone(),
                    "merge",
                    format!("merging with {}'s record {target_id}: {error}", flow.target),
                    candidate.dead_letter_payload(),
                ));
                continue;
            }
        };
        let note = (!merged.conflicts.is_empty()).then(|| {
            merged
                .conflicts
                .iter()
                .map(|conflict| conflict.describe(&flow.source, &flow.target))
                .collect::<Vec<_>>()
                .join("; ")
        });
        if !merged.conflicts.is_empty() {
            tracing::warn!(flow = %flow.name, record = %candidate.natural_key, conflicts = note.as_deref().unwrap_or_default(), "Two-way conflict settled.");
        }
        let hash = record.content_hash();
        new_states.insert(candidate.index, (source_now, merged.value));
        if hash == target_record.content_hash() {
            // The target has the merged record already.
            outcomes[candidate.index] = Some(RecordOutcome {
                record_uid: Some(uid),
                source_id: candidate.source_id,
                natural_key: Some(candidate.natural_key),
                target_id: None,
                action: RecordAction::Unchanged,
                target_hash: Some(hash),
                origin: None,
                message: note.clone(),
                dead_letter: None,
                log: note.is_some(),
            });
            continue;
        }
        candidate.record = record;
        candidate.hash = hash;
        candidate.note = note;
        to_write.push((candidate, Some(uid), Some(target_id)));
    }
    Ok(())
}

/// The hash a full run keeps of each source id it saw (SipHash with fixed keys: the same in
/// every run and process).
fn id_hash(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
}

/// Full reconciliation: archives or deletes in the target the records linked from the source
/// that the source no longer has. Refuses when more than half of them would go (with at least
/// ten linked): a source that returned too little (a wrong filter, an emptied export) must not
/// empty a shop.
async fn delete_missing(ctx: &FlowContext, run_id: RunId, seen: &HashSet<u64>) -> Result<RunCounts, EngineError> {
    let flow = &ctx.flow;
    let linked = ctx.store.linked_records(flow.entity, &flow.source, &flow.target).await?;
    let missing: Vec<_> = linked.iter().filter(|record| !seen.contains(&id_hash(&record.source_id))).collect();
    let mut counts = RunCounts::default();
    if missing.is_empty() {
        return Ok(counts);
    }
    if linked.len() >= 10 && missing.len() * 2 > linked.len() {
        return Err(EngineError::Stopped {
            flow: flow.name.clone(),
            reason: format!(
                "the source no longer has {} of the {} records linked in {}; that looks like a partial \
                 source, not deletes, so nothing was deleted (delete by hand if it is right)",
                missing.len(),
                linked.len(),
                flow.target
            ),
        });
    }
    let verb = match flow.on_delete {
        DeleteMode::Archive => "archived",
        DeleteMode::Delete => "deleted",
        DeleteMode::Ignore => return Ok(counts),
    };
    let batch_size = ctx.sink.max_batch_size(flow.entity).max(1);
    for chunk in missing.chunks(batch_size) {
        let items: Vec<DeleteItem> = chunk
            .iter()
            .map(|record| DeleteItem { target_id: record.target_id.clone(), natural_key: record.natural_key.clone() })
            .collect();
        let results = ctx.sink.delete_batch(flow.entity, &items, flow.on_delete).await?;
        let mut outcomes = Vec::with_capacity(chunk.len());
        let mut page_counts = RunCounts::default();
        for (record, result) in chunk.iter().zip(results) {
            let (action, message) = match result {
                WriteOutcome::Created { .. } | WriteOutcome::Updated { .. } => (
                    RecordAction::Deleted,
                    format!("no longer in {}: {verb} in {} ({})", flow.source, flow.target, record.target_id),
                ),
                // Logged and counted; the next reconciliation tries again.
                WriteOutcome::Failed(error) => (
                    RecordAction::Failed,
                    format!("no longer in {}, but could not be {verb} in {}: {error}", flow.source, flow.target),
                ),
            };
            counts.add(action);
            page_counts.add(action);
            outcomes.push(RecordOutcome {
                record_uid: Some(record.record_uid),
                source_id: record.source_id.clone(),
                natural_key: None,
                target_id: None,
                action,
                target_hash: None,
                origin: None,
                message: Some(message),
                dead_letter: None,
                log: true,
            });
        }
        ctx.store
            .commit_page(&PageCommit {
                run_id,
                flow: flow.name.clone(),
                entity: flow.entity,
                source_system: flow.source.clone(),
                target_system: flow.target.clone(),
                outcomes,
                checkpoint: None,
                states: Vec::new(),
                at: Utc::now(),
            })
            .await?;
        crate::metrics::page_committed(&flow.name, flow.entity.as_str(), &page_counts);
    }
    Ok(counts)
}

/// The id of a batch: a digest of the flow, the target, and every record's key, target id and
/// content hash, in order.
fn batch_id(flow: &FlowConfig, chunk: &[(Candidate, Option<RecordUid>, Option<String>)]) -> String {
    let mut hasher = Sha256::new();
    for part in [flow.name.as_bytes(), flow.target.as_bytes()] {
        hasher.update(part);
        hasher.update([0]);
    }
    for (candidate, _, target_id) in chunk {
        hasher.update(candidate.natural_key.as_bytes());
        hasher.update([0]);
        hasher.update(target_id.as_deref().unwrap_or_default().as_bytes());
        hasher.update([0]);
        hasher.update(candidate.hash.as_bytes());
    }
    hex::encode(&hasher.finalize()[..12])
}

fn failed(
    record_uid: Option<RecordUid>,
    source_id: &str,
    natural_key: Option<String>,
    origin: Option<String>,
    kind: &str,
    message: String,
    payload: serde_json::Value,
) -> RecordOutcome {
    RecordOutcome {
        record_uid,
        source_id: source_id.to_string(),
        natural_key,
        target_id: None,
        action: RecordAction::Failed,
        target_hash: None,
        // For a failure the store keeps the human-readable origin with the dead letter; it
        // does not become the snapshot's last origin (only successful outcomes move that).
        origin,
        message: Some(message.clone()),
        dead_letter: Some(NewDeadLetter { payload, error_kind: kind.to_string(), error: message }),
        log: true,
    }
}
