//! Column lists selected by both backends, as macros so that queries stay `&'static str`
//! (built with `concat!`) and keep one cached prepared statement each.

macro_rules! run_columns {
    () => {
        "id, flow, triggered_by, full_sync, dry_run, status, count_read, count_created, \
         count_updated, count_unchanged, count_skipped, count_failed, count_deleted, error, \
         started_at, finished_at"
    };
}

macro_rules! dead_letter_columns {
    () => {
        "id, flow, entity, source_system, source_id, target_system, record_uid, natural_key, \
         origin, status, error_kind, error, payload, history, attempts, created_at, updated_at"
    };
}

macro_rules! job_columns {
    () => {
        "id, kind, dedupe_key, payload, state, attempts, max_attempts, run_at, lease_owner, \
         lease_until, last_error, created_at, updated_at"
    };
}
