//! The overview's chart: records written and failed per time bucket as bars, and the lag (time
//! since the last successful run of the flow furthest behind) as a line, rendered as inline
//! SVG on the server from the runs in the store.

use chrono::{DateTime, Utc};
use erpsync_store::{Run, RunStatus};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Per-bucket figures, oldest bucket first.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub start: DateTime<Utc>,
    pub bucket_seconds: i64,
    /// Records created, updated or deleted by runs started in the bucket.
    pub written: Vec<i64>,
    pub failed: Vec<i64>,
    /// At the end of each bucket: seconds since the flow furthest behind last finished a
    /// successful run (none before any flow has).
    pub lag_seconds: Vec<Option<i64>>,
}

impl Series {
    /// `runs` in any order; `buckets` equal buckets from `start` to `end`.
    pub fn from_runs(runs: &[Run], start: DateTime<Utc>, end: DateTime<Utc>, buckets: usize) -> Self {
        let buckets = buckets.max(1);
        let bucket_seconds = ((end - start).num_seconds() / buckets as i64).max(1);
        let mut written = vec![0; buckets];
        let mut failed = vec![0; buckets];
        for run in runs {
            let offset = (run.started_at - start).num_seconds();
            if offset < 0 {
                continue;
            }
            let index = usize::try_from(offset / bucket_seconds).unwrap_or(usize::MAX).min(buckets - 1);
            written[index] += run.counts.created + run.counts.updated + run.counts.deleted;
            failed[index] += run.counts.failed;
        }
        // Successful finishes per flow, to know each flow's lag at any moment.
        let mut finishes: BTreeMap<&str, Vec<DateTime<Utc>>> = BTreeMap::new();
        for run in runs {
            if matches!(run.status, RunStatus::Succeeded | RunStatus::PartiallyFailed)
                && !run.dry_run
                && let Some(finished) = run.finished_at
            {
                finishes.entry(run.flow.as_str()).or_default().push(finished);
            }
        }
        for times in finishes.values_mut() {
            times.sort();
        }
        let lag_seconds = (0..buckets)
            .map(|index| {
                let at = start + chrono::Duration::seconds(bucket_seconds * (index as i64 + 1));
                finishes
                    .values()
                    .filter_map(|times| times.iter().rev().find(|finished| **finished <= at))
                    .map(|finished| (at - *finished).num_seconds())
                    .max()
            })
            .collect();
        Self { start, bucket_seconds, written, failed, lag_seconds }
    }
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 48.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 24.0;

/// The chart as an `<svg>` element. Only numbers and fixed words go into it.
pub(crate) fn render(series: &Series) -> String {
    let buckets = series.written.len().max(1);
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let slot = plot_width / buckets as f64;
    let max_count = series.written.iter().chain(&series.failed).copied().max().unwrap_or(0).max(1);
    let max_lag = series.lag_seconds.iter().flatten().copied().max().unwrap_or(0).max(60);
    let y_count = |value: i64| TOP + plot_height - plot_height * value as f64 / max_count as f64;
    let y_lag = |value: i64| TOP + plot_height - plot_height * value as f64 / max_lag as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="Records written and failed per hour, and lag">"#
    );
    let _ =
        write!(svg, r#"<line class="axis" x1="{LEFT}" y1="{0}" x2="{1}" y2="{0}"/>"#, TOP + plot_height, WIDTH - RIGHT);
    for (index, (written, failed)) in series.written.iter().zip(&series.failed).enumerate() {
        let x = LEFT + slot * index as f64;
        let bar = (slot * 0.42).max(1.0);
        let _ = write!(
            svg,
            r#"<rect class="written" x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{:.1}"><title>{written} written</title></rect>"#,
            y_count(*written),
            TOP + plot_height - y_count(*written)
        );
        let _ = write!(
            svg,
            r#"<rect class="failed" x="{:.1}" y="{:.1}" width="{bar:.1}" height="{:.1}"><title>{failed} failed</title></rect>"#,
            x + bar,
            y_count(*failed),
            TOP + plot_height - y_count(*failed)
        );
    }
    let points: Vec<String> = series
        .lag_seconds
        .iter()
        .enumerate()
        .filter_map(|(index, lag)| {
            lag.map(|lag| format!("{:.1},{:.1}", LEFT + slot * (index as f64 + 1.0), y_lag(lag)))
        })
        .collect();
    if !points.is_empty() {
        let _ = write!(svg, r#"<polyline class="lag" points="{}"/>"#, points.join(" "));
    }
    let _ = write!(
        svg,
        r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="end">{max_count}</text>"#,
        LEFT - 4.0,
        TOP + 10.0
    );
    let _ = write!(
        svg,
        r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="end">0</text>"#,
        LEFT - 4.0,
        TOP + plot_height
    );
    let _ = write!(
        svg,
        r#"<text class="label lag-label" x="{:.1}" y="{:.1}">{}</text>"#,
        WIDTH - RIGHT + 4.0,
        TOP + 10.0,
        super::pages::span_text(max_lag)
    );
    for index in (0..=buckets).step_by((buckets / 4).max(1)) {
        let at = series.start + chrono::Duration::seconds(series.bucket_seconds * index as i64);
        let _ = write!(
            svg,
            r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + slot * index as f64,
            HEIGHT - 6.0,
            at.format("%H:%M")
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use erpsync_store::RunCounts;

    fn run(flow: &str, started: DateTime<Utc>, seconds: i64, status: RunStatus, written: i64, failed: i64) -> Run {
        Run {
            id: 1,
            flow: flow.into(),
            trigger: "schedule".into(),
            full: false,
            dry_run: false,
            status,
            counts: RunCounts { created: written, failed, ..Default::default() },
            error: None,
            started_at: started,
            finished_at: Some(started + chrono::Duration::seconds(seconds)),
        }
    }

    #[test]
    fn runs_fall_into_buckets_and_lag_follows_the_flow_furthest_behind() {
        let start = DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z").unwrap().with_timezone(&Utc);
        let hour = chrono::Duration::hours(1);
        let runs = vec![
            run("products", start + chrono::Duration::minutes(10), 60, RunStatus::Succeeded, 5, 0),
            run("products", start + hour + chrono::Duration::minutes(10), 60, RunStatus::PartiallyFailed, 3, 2),
            run("orders", start + chrono::Duration::minutes(30), 60, RunStatus::Succeeded, 1, 0),
            run("orders", start + hour * 2 + chrono::Duration::minutes(5), 60, RunStatus::Failed, 0, 0),
        ];
        let series = Series::from_runs(&runs, start, start + hour * 3, 3);
        assert_eq!(series.written, vec![6, 3, 0]);
        assert_eq!(series.failed, vec![0, 2, 0]);
        // End of hour 1: products finished at 00:11, orders at 00:31 -> 49 minutes.
        // End of hour 2: orders still at 00:31 -> 89 minutes; end of hour 3 -> 149 minutes.
        assert_eq!(series.lag_seconds, vec![Some(49 * 60), Some(89 * 60), Some(149 * 60)]);
        let svg = render(&series);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert_eq!(svg.matches("class=\"written\"").count(), 3);
        assert!(svg.contains("<polyline class=\"lag\""), "{svg}");
    }
}
