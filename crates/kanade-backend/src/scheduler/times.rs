//! Fire times: a validated cron expression in a time zone → the next instants it fires.
//! Daylight-saving gaps fire at the first instant after the gap; a repeated hour fires once.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use kanade_shared::manifest::{CronExpr, CronSpec};

/// Five years covers every expression that can fire at all (29 February included).
const HORIZON_DAYS: usize = 5 * 366;

/// The time zone of a schedule, or a message naming it.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name)
        .map_err(|_| format!("{name:?} is not a known time zone (e.g. UTC, Europe/Paris, Asia/Tokyo)"))
}

/// The first fire strictly after `after_ms` (epoch ms), or None if the expression never fires.
pub fn next_after(cron: &CronExpr, tz: &TimeZone, after_ms: i64) -> Option<i64> {
    let spec = cron.spec();
    let after = jiff::Timestamp::from_millisecond(after_ms).ok()?;
    let start = after.to_zoned(tz.clone()).datetime();
    let mut date = start.date();
    for day in 0..HORIZON_DAYS {
        if spec.matches_date(date.month() as u32, date.day() as u32, weekday(date)) {
            // On the first day, times before the start cannot fire; skipping them by civil time
            // keeps "every second" expressions cheap.
            let floor = (day == 0).then_some(start);
            if let Some(ms) = first_on(&spec, tz, date, floor, after_ms) {
                return Some(ms);
            }
        }
        date = date.tomorrow().ok()?;
    }
    None
}

/// The next `n` fires after `after_ms`.
pub fn preview(cron: &CronExpr, tz: &TimeZone, after_ms: i64, n: usize) -> Vec<i64> {
    let mut out = Vec::with_capacity(n);
    let mut at = after_ms;
    while out.len() < n {
        match next_after(cron, tz, at) {
            Some(next) => {
                out.push(next);
                at = next;
            }
            None => break,
        }
    }
    out
}

fn weekday(date: Date) -> u32 {
    date.weekday().to_sunday_zero_offset() as u32
}

fn first_on(
    spec: &CronSpec,
    tz: &TimeZone,
    date: Date,
    floor: Option<DateTime>,
    after_ms: i64,
) -> Option<i64> {
    for h in CronSpec::values(spec.hours) {
        if floor.is_some_and(|f| (h as i8) < f.hour()) {
            continue;
        }
        for m in CronSpec::values(spec.minutes) {
            if floor.is_some_and(|f| (h as i8) == f.hour() && (m as i8) < f.minute()) {
                continue;
            }
            for s in CronSpec::values(spec.seconds) {
                let civil = date.at(h as i8, m as i8, s as i8, 0);
                let Ok(ts) = tz.to_ambiguous_timestamp(civil).compatible() else { continue };
                let ms = ts.as_millisecond();
                if ms > after_ms {
                    return Some(ms);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use kanade_shared::manifest::parse_cron;

    fn ms(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    fn fmt(ms: i64) -> String {
        jiff::Timestamp::from_millisecond(ms).unwrap().to_string()
    }

    fn next(expr: &str, tz: &str, after: &str) -> String {
        fmt(next_after(&parse_cron(expr).unwrap(), &zone(tz).unwrap(), ms(after)).unwrap())
    }

    #[test]
    fn next_fire_times() {
        let cases = [
            ("* * * * * *", "UTC", "2026-11-24T03:00:00.500Z", "2026-11-24T03:00:01Z"),
            ("0 0 3 * * *", "UTC", "2026-11-24T03:00:00Z", "2026-11-25T03:00:00Z"),
            ("0 0 3 * * *", "UTC", "2026-11-24T02:59:59.999Z", "2026-11-24T03:00:00Z"),
            ("*/15 * * * *", "UTC", "2026-11-24T23:59:00Z", "2026-11-25T00:00:00Z"),
            ("0 30 9 * * MON-FRI", "UTC", "2026-11-27T10:00:00Z", "2026-11-30T09:30:00Z"),
            ("0 0 0 29 2 *", "UTC", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z"),
            // 03:00 in Tokyo (UTC+9) is 18:00 UTC the day before.
            ("0 0 3 * * *", "Asia/Tokyo", "2026-11-24T00:00:00Z", "2026-11-24T18:00:00Z"),
            // Paris springs forward 2027-03-28 02:00 → 03:00: 02:30 does not exist that day and
            // fires at the first instant after the gap, 03:30 CEST = 01:30 UTC.
            ("0 30 2 * * *", "Europe/Paris", "2027-03-28T00:00:00Z", "2027-03-28T01:30:00Z"),
            // Paris falls back 2027-10-31 03:00 → 02:00: 02:30 happens twice and fires once.
            ("0 30 2 * * *", "Europe/Paris", "2027-10-31T00:00:00Z", "2027-10-31T00:30:00Z"),
            ("0 30 2 * * *", "Europe/Paris", "2027-10-31T00:30:00Z", "2027-11-01T01:30:00Z"),
        ];
        for (expr, tz, after, want) in cases {
            assert_eq!(next(expr, tz, after), want, "{expr} in {tz} after {after}");
        }
    }

    #[test]
    fn preview_and_impossible_dates() {
        let cron = parse_cron("0 0 12 * * *").unwrap();
        let got: Vec<String> = preview(&cron, &zone("UTC").unwrap(), ms("2026-11-24T13:00:00Z"), 3)
            .into_iter()
            .map(fmt)
            .collect();
        assert_eq!(got, ["2026-11-25T12:00:00Z", "2026-11-26T12:00:00Z", "2026-11-27T12:00:00Z"]);
        let never = parse_cron("0 0 0 31 2 *").unwrap();
        assert_eq!(next_after(&never, &zone("UTC").unwrap(), ms("2026-01-01T00:00:00Z")), None);
        assert_eq!(
            zone("Mars/Olympus").unwrap_err(),
            r#""Mars/Olympus" is not a known time zone (e.g. UTC, Europe/Paris, Asia/Tokyo)"#
        );
    }
}
