//! Triggers and their times: intervals, cron expressions in a time zone, and when a trigger is
//! first due after a start (stored next-run time, catch-up after downtime).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use std::time::Duration;

/// What starts a flow's runs on its own.
#[derive(Debug, Clone)]
pub enum Trigger {
    Interval(Duration),
    /// A cron expression evaluated in a time zone: `0 6 * * *` in `Europe/Berlin` is 06:00 on
    /// the wall clock in Berlin, in winter and in summer.
    Cron {
        cron: Box<Cron>,
        text: String,
        zone: Tz,
    },
}

impl Trigger {
    /// The trigger as configured, in words: stored with the next-run time, so a changed
    /// configuration is noticed.
    pub fn spec(&self) -> String {
        match self {
            Trigger::Interval(every) => format!("every {}", crate::config::format_duration(*every)),
            Trigger::Cron { text, zone, .. } => format!("cron {text} {zone}"),
        }
    }

    /// The first time after `after` (strictly) the trigger fires.
    ///
    /// Across daylight-saving changes a cron time that does not exist that day (02:30 when the
    /// clocks jump from 02:00 to 03:00) fires once at the first existing minute after it, and a
    /// time that exists twice (02:30 when the clocks fall back) fires once, at its first
    /// occurrence.
    pub fn next_after(&self, after: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Trigger::Interval(every) => {
                after + chrono::Duration::from_std(*every).unwrap_or(chrono::Duration::hours(1))
            }
            Trigger::Cron { cron, zone, .. } => {
                let local = after.with_timezone(zone);
                match cron.find_next_occurrence(&local, false) {
                    Ok(next) => next.with_timezone(&Utc),
                    // No occurrence in the years croner searches (e.g. 30 February): an hour
                    // later, so the scheduler neither spins nor stops.
                    Err(_) => after + chrono::Duration::hours(1),
                }
            }
        }
    }
}

/// When a trigger is first due after a start.
///
/// A stored next-run time for the same spec is kept: if it has passed, the trigger is due now,
/// once, however many times were missed while the process was down (catch-up). Without one (a
/// new or changed trigger) the last run decides: due now if a run was missed since it, else at
/// the next time after it; never run before means due now.
pub fn first_due(
    trigger: &Trigger,
    stored: Option<(&str, DateTime<Utc>)>,
    last_started: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let due = match stored {
        Some((spec, next)) if spec == trigger.spec() => next,
        _ => match last_started {
            None => now,
            Some(last) => trigger.next_after(last),
        },
    };
    if due <= now { now } else { due }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn cron(text: &str, zone: &str) -> Trigger {
        Trigger::Cron { cron: Box::new(Cron::from_str(text).unwrap()), text: text.into(), zone: zone.parse().unwrap() }
    }

    #[test]
    fn catch_up_runs_once_at_start_when_a_run_was_missed() {
        let trigger = Trigger::Interval(Duration::from_secs(300));
        let now = at("2026-11-26T12:00:00Z");
        assert_eq!(first_due(&trigger, None, Some(now - chrono::Duration::hours(5)), now), now);
        let recent = now - chrono::Duration::seconds(60);
        assert_eq!(first_due(&trigger, None, Some(recent), now), recent + chrono::Duration::seconds(300));
        assert_eq!(first_due(&trigger, None, None, now), now);
    }

    #[test]
    fn a_stored_next_run_is_kept_unless_the_trigger_changed() {
        let trigger = Trigger::Interval(Duration::from_secs(3600));
        let now = at("2026-11-26T12:00:00Z");
        let later = at("2026-11-26T12:40:00Z");
        assert_eq!(first_due(&trigger, Some(("every 1h", later)), Some(now), now), later);
        // Passed while the process was down: due now, once.
        let missed = at("2026-11-26T09:00:00Z");
        assert_eq!(first_due(&trigger, Some(("every 1h", missed)), None, now), now);
        // The configuration changed from every 1h to every 5m: the stored time is not trusted.
        let changed = Trigger::Interval(Duration::from_secs(300));
        let last = at("2026-11-26T11:58:00Z");
        assert_eq!(first_due(&changed, Some(("every 1h", later)), Some(last), now), at("2026-11-26T12:03:00Z"));
    }

    #[test]
    fn cron_in_utc() {
        let trigger = cron("*/15 * * * *", "UTC");
        assert_eq!(trigger.next_after(at("2026-11-26T10:07:00Z")), at("2026-11-26T10:15:00Z"));
        assert_eq!(trigger.next_after(at("2026-11-26T10:15:00Z")), at("2026-11-26T10:30:00Z"));
    }

    #[test]
    fn cron_keeps_the_wall_clock_time_across_daylight_saving_changes() {
        let trigger = cron("0 6 * * *", "Europe/Berlin");
        // Winter: UTC+1.
        assert_eq!(trigger.next_after(at("2026-03-28T06:00:00Z")), at("2026-03-29T04:00:00Z"));
        // 29 March 2026 the clocks go forward: from then on 06:00 in Berlin is 04:00 UTC.
        assert_eq!(trigger.next_after(at("2026-03-27T12:00:00Z")), at("2026-03-28T05:00:00Z"));
        // 25 October 2026 they go back: 06:00 is 05:00 UTC again.
        assert_eq!(trigger.next_after(at("2026-10-24T12:00:00Z")), at("2026-10-25T05:00:00Z"));
        assert_eq!(trigger.next_after(at("2026-10-23T12:00:00Z")), at("2026-10-24T04:00:00Z"));
    }

    #[test]
    fn cron_at_a_time_that_is_skipped_or_repeated() {
        let trigger = cron("30 2 * * *", "Europe/Berlin");
        // 29 March 2026 has no 02:30 in Berlin: the run happens once that day, not never.
        let spring = trigger.next_after(at("2026-03-28T12:00:00Z"));
        assert!(spring > at("2026-03-28T12:00:00Z") && spring < at("2026-03-29T12:00:00Z"), "{spring}");
        let after_spring = trigger.next_after(spring);
        assert_eq!(after_spring, at("2026-03-30T00:30:00Z"));
        // 25 October 2026 has 02:30 twice: one run, not two.
        let autumn = trigger.next_after(at("2026-10-24T12:00:00Z"));
        assert_eq!(autumn, at("2026-10-25T00:30:00Z"));
        assert_eq!(trigger.next_after(autumn), at("2026-10-26T01:30:00Z"));
    }
}
