//! Cron expressions: 6 fields with seconds or the standard 5, names for months and weekdays,
//! `*`, `?`, ranges, steps and lists, and the `@daily`-style shorthands. Parsing yields the set
//! of allowed values per field (`CronSpec`); turning that into instants in a time zone is the
//! scheduler's job.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CronExpr(String);

impl CronExpr {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The expression with all 6 fields (a 5-field one fires at second 0).
    pub fn six_fields(&self) -> String {
        let expanded = expand_shorthand(&self.0).unwrap_or(&self.0);
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() == 5 { format!("0 {}", fields.join(" ")) } else { fields.join(" ") }
    }
}

/// The allowed values of each field as bit sets (bit n = value n).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CronSpec {
    pub seconds: u64,
    pub minutes: u64,
    pub hours: u64,
    /// Bits 1..=31.
    pub days: u64,
    /// Bits 1..=12.
    pub months: u64,
    /// Bits 0..=6, Sunday = 0.
    pub weekdays: u64,
    /// Whether day of month and day of week were restricted (not `*` or `?`): when both are,
    /// a date matching either fires, as in classic cron.
    pub days_restricted: bool,
    pub weekdays_restricted: bool,
}

impl CronSpec {
    pub fn has(set: u64, value: u32) -> bool {
        value < 64 && set & (1 << value) != 0
    }

    /// Whether a date (month 1..=12, day 1..=31, weekday 0..=6 with Sunday 0) can fire.
    pub fn matches_date(&self, month: u32, day: u32, weekday: u32) -> bool {
        if !Self::has(self.months, month) {
            return false;
        }
        let by_day = Self::has(self.days, day);
        let by_weekday = Self::has(self.weekdays, weekday);
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => by_day || by_weekday,
            _ => by_day && by_weekday,
        }
    }

    /// The values of a set in ascending order.
    pub fn values(set: u64) -> impl Iterator<Item = u32> {
        (0..64).filter(move |v| set & (1u64 << v) != 0)
    }
}

impl CronExpr {
    /// The allowed values per field. Infallible: a `CronExpr` exists only after validation.
    pub fn spec(&self) -> CronSpec {
        let six = self.six_fields();
        let fields: Vec<&str> = six.split_whitespace().collect();
        let layout = [&SECOND, &MINUTE, &HOUR, &DAY, &MONTH, &WEEKDAY];
        let mut bits = [0u64; 6];
        for (i, (text, field)) in fields.iter().zip(layout).enumerate() {
            bits[i] = field_bits(text, field).unwrap_or(0);
        }
        // Sunday may be written 7.
        if bits[5] & (1 << 7) != 0 {
            bits[5] = (bits[5] & !(1 << 7)) | 1;
        }
        let restricted = |t: &str| t != "*" && t != "?";
        CronSpec {
            seconds: bits[0],
            minutes: bits[1],
            hours: bits[2],
            days: bits[3],
            months: bits[4],
            weekdays: bits[5],
            days_restricted: restricted(fields[3]),
            weekdays_restricted: restricted(fields[5]),
        }
    }
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    question: bool,
}

const SECOND: Field = Field { name: "second", min: 0, max: 59, names: &[], question: false };
const MINUTE: Field = Field { name: "minute", min: 0, max: 59, names: &[], question: false };
const HOUR: Field = Field { name: "hour", min: 0, max: 23, names: &[], question: false };
const DAY: Field = Field { name: "day of month", min: 1, max: 31, names: &[], question: true };
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
    question: false,
};
// 0 and 7 are both Sunday.
const WEEKDAY: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    question: true,
};

fn expand_shorthand(expr: &str) -> Option<&'static str> {
    Some(match expr.trim() {
        "@yearly" | "@annually" => "0 0 0 1 1 *",
        "@monthly" => "0 0 0 1 * *",
        "@weekly" => "0 0 0 * * SUN",
        "@daily" | "@midnight" => "0 0 0 * * *",
        "@hourly" => "0 0 * * * *",
        _ => return None,
    })
}

pub fn parse_cron(expr: &str) -> Result<CronExpr, String> {
    let text = expand_shorthand(expr).unwrap_or(expr);
    let fields: Vec<&str> = text.split_whitespace().collect();
    let layout: &[&Field] = match fields.len() {
        6 => &[&SECOND, &MINUTE, &HOUR, &DAY, &MONTH, &WEEKDAY],
        5 => &[&MINUTE, &HOUR, &DAY, &MONTH, &WEEKDAY],
        n => {
            return Err(format!(
                "{expr:?} has {n} fields; use 6 (sec min hour day month weekday) or 5 (min hour day month weekday)"
            ));
        }
    };
    for (i, (text, field)) in fields.iter().zip(layout).enumerate() {
        field_bits(text, field).map_err(|why| format!("{expr:?}: field {} ({}) {why}", i + 1, field.name))?;
    }
    Ok(CronExpr(expr.trim().to_owned()))
}

/// The values one field allows, or why it is malformed.
fn field_bits(text: &str, f: &Field) -> Result<u64, String> {
    let mut bits = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let step = match step {
            None => 1,
            Some(step) => match step.parse::<u32>() {
                Ok(s) if s >= 1 && s <= f.max.max(1) => s,
                _ => {
                    return Err(format!("step {step:?} must be a number from 1 to {}", f.max.max(1)));
                }
            },
        };
        let (lo, hi) = match range {
            "*" => (f.min, f.max),
            "?" if f.question => (f.min, f.max),
            "?" => return Err("\"?\" is only allowed in day of month and day of week".to_owned()),
            r => {
                let (lo, hi) = match r.split_once('-') {
                    Some((a, b)) => (value(a, f)?, Some(value(b, f)?)),
                    None => (value(r, f)?, None),
                };
                if let Some(hi) = hi.filter(|hi| *hi < lo) {
                    return Err(format!("range {r:?} runs backwards ({lo} > {hi})"));
                }
                // `5/15` means from 5 to the end in steps of 15.
                (lo, hi.unwrap_or(if item.contains('/') { f.max } else { lo }))
            }
        };
        for v in (lo..=hi).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok(bits)
}

fn value(text: &str, f: &Field) -> Result<u32, String> {
    if let Some(pos) = f.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(f.min + pos as u32);
    }
    match text.parse::<u32>() {
        Ok(v) if (f.min..=f.max).contains(&v) => Ok(v),
        Ok(v) => Err(format!("value {v} is out of range {}-{}", f.min, f.max)),
        Err(_) => {
            Err(format!("{text:?} is not a number{}", if f.names.is_empty() { "" } else { " or name" }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_expressions() {
        for ok in [
            "0 0 3 * * *",
            "*/5 * * * *",
            "0 30 9 * * MON-FRI",
            "0 0 0 1 JAN,JUL ?",
            "@daily",
            "* * * * * *",
            "0 0 12 * * 7",
        ] {
            parse_cron(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn names_the_field_and_reason() {
        let check = |expr: &str, want: &str| assert_eq!(parse_cron(expr).unwrap_err(), want);
        check("0 0 25 * * *", r#""0 0 25 * * *": field 3 (hour) value 25 is out of range 0-23"#);
        check(
            "* * *",
            r#""* * *" has 3 fields; use 6 (sec min hour day month weekday) or 5 (min hour day month weekday)"#,
        );
        check("0 0 * * FOO", r#""0 0 * * FOO": field 5 (day of week) "FOO" is not a number or name"#);
        check("*/0 * * * *", r#""*/0 * * * *": field 1 (minute) step "0" must be a number from 1 to 59"#);
        check("0 10-5 * * *", r#""0 10-5 * * *": field 2 (hour) range "10-5" runs backwards (10 > 5)"#);
        check(
            "? * * * *",
            r#""? * * * *": field 1 (minute) "?" is only allowed in day of month and day of week"#,
        );
    }

    #[test]
    fn spec_lists_the_allowed_values() {
        let spec = parse_cron("*/20 5-7,9 0 1,15 JAN-MAR MON,7").unwrap().spec();
        let values = |set| CronSpec::values(set).collect::<Vec<_>>();
        assert_eq!(values(spec.seconds), [0, 20, 40]);
        assert_eq!(values(spec.minutes), [5, 6, 7, 9]);
        assert_eq!(values(spec.hours), [0]);
        assert_eq!(values(spec.days), [1, 15]);
        assert_eq!(values(spec.months), [1, 2, 3]);
        assert_eq!(values(spec.weekdays), [0, 1]);
        assert!(spec.days_restricted && spec.weekdays_restricted);
        // Both day fields restricted: either matches. Otherwise both must.
        assert!(spec.matches_date(1, 2, 1) && spec.matches_date(1, 15, 3) && !spec.matches_date(1, 2, 3));
        assert!(!spec.matches_date(4, 1, 1));
        let weekdays_only = parse_cron("0 0 9 ? * MON-FRI").unwrap().spec();
        assert!(weekdays_only.matches_date(6, 3, 1) && !weekdays_only.matches_date(6, 7, 0));
        assert_eq!(values(parse_cron("0 10/20 * * * *").unwrap().spec().minutes), [10, 30, 50]);
        assert_eq!(values(parse_cron("@daily").unwrap().spec().hours), [0]);
    }

    #[test]
    fn five_fields_expand_to_six() {
        assert_eq!(parse_cron("*/5 * * * *").unwrap().six_fields(), "0 */5 * * * *");
        assert_eq!(parse_cron("@hourly").unwrap().six_fields(), "0 0 * * * *");
    }
}
