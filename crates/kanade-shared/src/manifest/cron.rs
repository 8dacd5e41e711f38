//! Cron expression syntax check: 6 fields with seconds or the standard 5, names for months and
//! weekdays, `*`, `?`, ranges, steps and lists, and the `@daily`-style shorthands. Validation
//! only; computing fire times is the scheduler's job.

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
        check_field(text, field)
            .map_err(|why| format!("{expr:?}: field {} ({}) {why}", i + 1, field.name))?;
    }
    Ok(CronExpr(expr.trim().to_owned()))
}

fn check_field(text: &str, f: &Field) -> Result<(), String> {
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(s) if s >= 1 && s <= f.max.max(1) => {}
                _ => {
                    return Err(format!("step {step:?} must be a number from 1 to {}", f.max.max(1)));
                }
            }
        }
        match range {
            "*" => {}
            "?" if f.question => {}
            "?" => return Err("\"?\" is only allowed in day of month and day of week".to_owned()),
            r => {
                let (lo, hi) = match r.split_once('-') {
                    Some((a, b)) => (value(a, f)?, Some(value(b, f)?)),
                    None => (value(r, f)?, None),
                };
                if let Some(hi) = hi.filter(|hi| *hi < lo) {
                    return Err(format!("range {r:?} runs backwards ({lo} > {hi})"));
                }
            }
        }
    }
    Ok(())
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
    fn five_fields_expand_to_six() {
        assert_eq!(parse_cron("*/5 * * * *").unwrap().six_fields(), "0 */5 * * * *");
        assert_eq!(parse_cron("@hourly").unwrap().six_fields(), "0 0 * * * *");
    }
}
