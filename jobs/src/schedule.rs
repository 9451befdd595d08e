//! When timed jobs fire: ISO 8601 durations for `INTERVAL`, 5-field cron expressions (UTC) for
//! `CRON`.

use chrono::{Duration as Span, TimeDelta};
use fleetgate_storage::Timestamp;
use fleetgate_storage::jobs::Schedule;

use crate::JobsError;

/// The shortest interval: firings closer than this would only queue behind each other.
pub const MIN_INTERVAL: Span = Span::seconds(1);

/// The longest interval taken (a year of days).
pub const MAX_INTERVAL: Span = Span::days(366);

/// A parsed timed schedule.
#[derive(Clone, Debug)]
pub enum Timer {
    /// Every `every`, on the grid starting at `anchor`.
    Interval {
        /// The first firing.
        anchor: Timestamp,
        /// The period.
        every: Span,
    },
    /// Whenever the expression matches (UTC).
    Cron(Box<croner::Cron>),
}

/// Parses an ISO 8601 duration of weeks, days, hours, minutes and seconds (`PT1H`, `P1DT12H`,
/// `PT90S`, `P2W`). Years and months are refused: their length varies.
pub fn parse_duration(s: &str) -> Result<Span, JobsError> {
    let bad = |why: &str| JobsError::Duration(format!("{s:?}: {why}"));
    let rest = s
        .strip_prefix('P')
        .ok_or_else(|| bad("must start with P (e.g. PT1H)"))?;
    let (date, time) = match rest.split_once('T') {
        Some((_, "")) => return Err(bad("nothing after T")),
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total = Span::zero();
    let mut any = false;
    for (part, units) in [(date, "WD"), (time.unwrap_or(""), "HMS")] {
        let mut number = String::new();
        let mut last_unit = None;
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let position = units.find(c).ok_or_else(|| {
                if units == "WD" && (c == 'Y' || c == 'M') {
                    bad("years and months are not fixed lengths: use weeks or days")
                } else {
                    bad(&format!("unexpected {c:?}"))
                }
            })?;
            if last_unit.is_some_and(|l| l >= position) {
                return Err(bad("units out of order or repeated"));
            }
            last_unit = Some(position);
            let n: i64 = number
                .parse()
                .map_err(|_| bad("each unit needs a whole number before it"))?;
            number.clear();
            let unit = match c {
                'W' => Span::try_weeks(n),
                'D' => Span::try_days(n),
                'H' => Span::try_hours(n),
                'M' => Span::try_minutes(n),
                _ => Span::try_seconds(n),
            }
            .ok_or_else(|| bad("too long"))?;
            total = total.checked_add(&unit).ok_or_else(|| bad("too long"))?;
            any = true;
        }
        if !number.is_empty() {
            return Err(bad("a number without its unit"));
        }
    }
    if !any {
        return Err(bad("no duration given"));
    }
    if total < MIN_INTERVAL || total > MAX_INTERVAL {
        return Err(bad("must be 1 second to 366 days"));
    }
    Ok(total)
}

/// Parses a 5-field cron expression (minute hour day-of-month month day-of-week, UTC).
pub fn parse_cron(s: &str) -> Result<croner::Cron, JobsError> {
    if s.split_whitespace().count() != 5 {
        return Err(JobsError::Cron(format!(
            "{s:?}: must have 5 fields (minute hour day-of-month month day-of-week)"
        )));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .build()
        .parse(s)
        .map_err(|e| JobsError::Cron(format!("{s:?}: {e}")))
}

impl Timer {
    /// The timer of a timed schedule created at `created_on`; `None` for `NOW` and
    /// `DEVICE_CONNECT`. Without `startsOn`, an interval first fires one period after creation.
    pub fn of(schedule: &Schedule, created_on: Timestamp) -> Result<Option<Timer>, JobsError> {
        Ok(match schedule {
            Schedule::Now | Schedule::DeviceConnect => None,
            Schedule::Interval { every, starts_on } => {
                let every = parse_duration(every)?;
                Some(Timer::Interval {
                    anchor: starts_on.unwrap_or(created_on + every),
                    every,
                })
            }
            Schedule::Cron { cron } => Some(Timer::Cron(Box::new(parse_cron(cron)?))),
        })
    }

    /// The next firing: the first time on the schedule that is at or after `now` and after
    /// the last firing. Firings missed while Fleetgate was down are not replayed.
    pub fn next(&self, fired_on: Option<Timestamp>, now: Timestamp) -> Option<Timestamp> {
        let after = fired_on.map_or(now, |f| now.max(f + TimeDelta::milliseconds(1)));
        match self {
            Timer::Interval { anchor, every } => {
                if after <= *anchor {
                    return Some(*anchor);
                }
                let period = every.num_milliseconds().max(1);
                let since = (after - *anchor).num_milliseconds();
                let k = (since + period - 1) / period;
                anchor.checked_add_signed(TimeDelta::milliseconds(k.checked_mul(period)?))
            }
            Timer::Cron(cron) => cron
                .find_next_occurrence(&(after - TimeDelta::milliseconds(1)), false)
                .ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn t(h: u32, m: u32, s: u32) -> Timestamp {
        Utc.with_ymd_and_hms(2026, 12, 2, h, m, s).unwrap()
    }

    #[test]
    fn durations_parse_and_bad_ones_say_why() {
        assert_eq!(parse_duration("PT1H").unwrap(), Span::hours(1));
        assert_eq!(parse_duration("PT90S").unwrap(), Span::seconds(90));
        assert_eq!(
            parse_duration("P1DT12H30M").unwrap(),
            Span::days(1) + Span::hours(12) + Span::minutes(30)
        );
        assert_eq!(parse_duration("P2W").unwrap(), Span::weeks(2));
        for (bad, why) in [
            ("1H", "must start with P"),
            ("P", "no duration"),
            ("PT", "nothing after T"),
            ("P1M", "years and months"),
            ("P1Y", "years and months"),
            ("PT1M1H", "out of order"),
            ("PT1H1H", "out of order"),
            ("PT0S", "1 second to 366 days"),
            ("P400D", "1 second to 366 days"),
            ("PT1.5S", "unexpected"),
            ("PT5", "without its unit"),
            ("PTH", "whole number"),
            ("PT99999999999999999999S", "whole number"),
        ] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn cron_takes_five_fields_only() {
        assert!(parse_cron("0 3 * * *").is_ok());
        assert!(parse_cron("*/15 * * * 1-5").is_ok());
        for bad in [
            "0 3 * *",
            "0 0 3 * * *",
            "61 * * * *",
            "* 25 * * *",
            "x * * * *",
            "",
        ] {
            assert!(parse_cron(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn intervals_fire_on_their_grid_and_skip_what_was_missed() {
        let timer = Timer::Interval {
            anchor: t(3, 0, 0),
            every: Span::hours(1),
        };
        assert_eq!(timer.next(None, t(2, 0, 0)), Some(t(3, 0, 0)));
        assert_eq!(timer.next(None, t(3, 0, 0)), Some(t(3, 0, 0)));
        assert_eq!(timer.next(Some(t(3, 0, 0)), t(3, 0, 0)), Some(t(4, 0, 0)));
        assert_eq!(timer.next(Some(t(3, 0, 0)), t(6, 30, 0)), Some(t(7, 0, 0)));
        let created = Timer::of(
            &Schedule::Interval {
                every: "PT2S".into(),
                starts_on: None,
            },
            t(1, 0, 0),
        )
        .unwrap()
        .unwrap();
        assert_eq!(created.next(None, t(1, 0, 0)), Some(t(1, 0, 2)));
    }

    #[test]
    fn cron_fires_at_matching_minutes_in_utc() {
        let timer = Timer::of(
            &Schedule::Cron {
                cron: "0 3 * * *".into(),
            },
            t(0, 0, 0),
        )
        .unwrap()
        .unwrap();
        assert_eq!(timer.next(None, t(2, 59, 59)), Some(t(3, 0, 0)));
        assert_eq!(timer.next(None, t(3, 0, 0)), Some(t(3, 0, 0)));
        let tomorrow = Utc.with_ymd_and_hms(2026, 12, 3, 3, 0, 0).unwrap();
        assert_eq!(timer.next(Some(t(3, 0, 0)), t(3, 0, 0)), Some(tomorrow));
        assert_eq!(timer.next(None, t(3, 0, 1)), Some(tomorrow));
    }
}
