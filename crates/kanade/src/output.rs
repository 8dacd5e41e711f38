//! Rendering: aligned plain tables for people (status words coloured only on a terminal, and
//! never with `NO_COLOR` set), pretty JSON for scripts.

use std::io::IsTerminal;

use serde::Serialize;

use crate::cli::Format;

/// Print `rows` as a table (with `headers`) or as the JSON `json`.
pub fn print<T: Serialize>(format: Format, json: &T, headers: &[&str], rows: Vec<Vec<String>>) {
    match format {
        Format::Json | Format::Yaml => emit(format, json),
        Format::Table | Format::Wide => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let rows = if colour {
                rows.into_iter().map(|r| r.into_iter().map(paint).collect()).collect()
            } else {
                rows
            };
            print!("{}", table(headers, &rows));
        }
    }
}

/// Like [`print`], with `more` columns after the usual ones when the format is wide.
pub fn print_wide<T: Serialize>(
    format: Format,
    json: &T,
    (headers, rows): (&[&str], Vec<Vec<String>>),
    (more_headers, more): (&[&str], Vec<Vec<String>>),
) {
    if format != Format::Wide {
        return print(format, json, headers, rows);
    }
    let (headers, rows) = widen((headers, rows), (more_headers, more));
    print(Format::Table, json, &headers, rows);
}

/// The columns of `more` after those of the first table, row by row.
pub fn widen<'a>(
    (headers, rows): (&[&'a str], Vec<Vec<String>>),
    (more_headers, more): (&[&'a str], Vec<Vec<String>>),
) -> (Vec<&'a str>, Vec<Vec<String>>) {
    let headers = headers.iter().chain(more_headers).copied().collect();
    let rows =
        rows.into_iter().zip(more).map(|(row, extra)| row.into_iter().chain(extra).collect()).collect();
    (headers, rows)
}

/// `value` as JSON or YAML when the format asks for data; returns whether it printed (a table
/// is the caller's to draw).
pub fn structured<T: Serialize>(format: Format, value: &T) -> bool {
    if format.is_table() {
        return false;
    }
    emit(format, value);
    true
}

/// Print `value` as JSON (pretty) or YAML; a table format prints JSON.
pub fn emit<T: Serialize>(format: Format, value: &T) {
    let text = match format {
        Format::Yaml => {
            serde_yaml_ng::to_string(value).map(|t| t.trim_end().to_owned()).map_err(|e| e.to_string())
        }
        Format::Json | Format::Table | Format::Wide => {
            serde_json::to_string_pretty(value).map_err(|e| e.to_string())
        }
    };
    match text {
        Ok(t) => println!("{t}"),
        Err(e) => println!("{}", serde_json::json!({ "error": e })),
    }
}

/// Green for good outcomes, red for bad ones, yellow for in between; other cells unchanged.
pub fn paint(cell: String) -> String {
    let code = match cell.as_str() {
        "succeeded" | "completed" | "online" | "yes" | "pass" => "32",
        "failed" | "killed" | "timed_out" | "unknown" | "offline" | "aborted" | "expired" | "fail" => "31",
        "running" | "pending" | "skipped" | "warn" => "33",
        _ => return cell,
    };
    format!("\x1b[{code}m{cell}\x1b[0m")
}

/// Characters a terminal shows (ANSI colour sequences take no room).
fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(visible_len(cell));
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let parts: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(visible_len(c)))))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// `1.5 GiB`, `512 B`, `-` for unlimited.
pub fn bytes(n: i64) -> String {
    if n < 0 {
        return "-".to_owned();
    }
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_trailing_space() {
        let out =
            table(&["NAME", "N"], &[vec!["EXEC".into(), "1".into()], vec!["KV_jobs".into(), "20".into()]]);
        assert_eq!(out, "NAME     N\nEXEC     1\nKV_jobs  20\n");
    }

    #[test]
    fn colour_takes_no_width() {
        let rows = vec![vec![paint("failed".into()), "x".into()], vec!["succeeded".into(), "y".into()]];
        let out = table(&["STATUS", "N"], &rows);
        assert_eq!(out, "STATUS     N\n\x1b[31mfailed\x1b[0m     x\nsucceeded  y\n");
    }

    /// Compare `text` with `tests/snapshots/<name>`; `KANADE_UPDATE_SNAPSHOTS=1` rewrites it.
    pub fn assert_snapshot(name: &str, text: &str) {
        let file = kanade_testkit::manifest_dir().join("tests/snapshots").join(name);
        if std::env::var("KANADE_UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, text).unwrap();
            return;
        }
        let want = std::fs::read_to_string(&file).unwrap_or_default();
        assert_eq!(text, want, "{} changed (KANADE_UPDATE_SNAPSHOTS=1 to accept)", file.display());
    }

    #[test]
    fn byte_sizes_are_human() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(8 * 1024 * 1024 * 1024), "8.0 GiB");
        assert_eq!(bytes(-1), "-");
    }
}
