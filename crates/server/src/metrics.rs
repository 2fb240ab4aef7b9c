//! `GET /metrics`: Prometheus text. Counters and histograms come from the `metrics` recorder
//! installed here (the engine records them where pages commit, runs end and connectors are
//! called; the webhook receiver and the admin API record theirs); gauges (lag, paused flows,
//! open circuits, open dead letters, inbox and job queues) are read from the store on every scrape, so they
//! are right whichever worker process did the work. Names: [`erpsync_engine::metrics`].

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use erpsync_engine::Engine;
use erpsync_engine::metrics as names;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};

/// Run durations span a second (a webhook-triggered page) to hours (a first full sync).
const RUN_DURATION_BUCKETS: &[f64] = &[0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 10800.0];

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder, once. `None` when
/// another recorder was installed first (an application embedding erpsync with its own):
/// `/metrics` then says so instead of serving numbers that miss everything.
pub fn install() -> Option<PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(names::RUN_DURATION_SECONDS.to_string()), RUN_DURATION_BUCKETS)
                .expect("the bucket list is not empty");
            match builder.install_recorder() {
                Ok(handle) => {
                    names::describe();
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(error = %error, "Another metrics recorder is installed; /metrics is not served.");
                    None
                }
            }
        })
        .clone()
}

pub async fn render(State(engine): State<Arc<Engine>>) -> Response {
    let Some(handle) = install() else {
        return (StatusCode::NOT_FOUND, "metrics are recorded by another recorder in this process\n").into_response();
    };
    if let Err(error) = set_gauges(&engine).await {
        tracing::warn!(error = %error, "Could not read the store for metrics.");
        return (StatusCode::SERVICE_UNAVAILABLE, format!("could not read the store for metrics: {error}\n"))
            .into_response();
    }
    handle.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response()
}

async fn set_gauges(engine: &Engine) -> Result<(), erpsync_engine::EngineError> {
    let statuses = engine.status().await?;
    for status in &statuses {
        let flow = status.name.clone();
        if let Some(lag) = status.lag_seconds {
            metrics::gauge!(names::FLOW_LAG_SECONDS, "flow" => flow.clone()).set(lag as f64);
        }
        metrics::gauge!(names::FLOW_PAUSED, "flow" => flow.clone()).set(if status.paused.is_some() {
            1.0
        } else {
            0.0
        });
        metrics::gauge!(names::DEAD_LETTERS_OPEN, "flow" => flow).set(status.open_failures as f64);
    }
    for circuit in engine.circuits().await? {
        let open = if circuit.is_open() { 1.0 } else { 0.0 };
        metrics::gauge!(names::CIRCUIT_OPEN, "system" => circuit.system).set(open);
    }
    let depths = engine.store().queue_depths().await?;
    metrics::gauge!(names::INBOX_PENDING).set(depths.inbox_pending as f64);
    for (state, count) in
        [("pending", depths.jobs_pending), ("running", depths.jobs_running), ("dead", depths.jobs_dead)]
    {
        metrics::gauge!(names::JOBS, "state" => state).set(count as f64);
    }
    Ok(())
}
