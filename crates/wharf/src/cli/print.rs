//! Output: aligned tables, operations with their actions, pretty JSON.

use serde::Serialize;
use wharf_client::dto::{Changed, OperationView};

pub(crate) fn json(v: &impl Serialize) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let widths = widths(headers, &rows);
    table_rows(
        &widths,
        vec![headers.iter().map(|h| h.to_string()).collect()],
    );
    table_rows(&widths, rows);
}

/// Column widths fitting the headers and `rows`.
pub(crate) fn widths(headers: &[&str], rows: &[Vec<String>]) -> Vec<usize> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    widths
}

/// Rows aligned on `widths` (a wider cell pushes its line only), for tables printed a page
/// at a time.
pub(crate) fn table_rows(widths: &[usize], rows: Vec<Vec<String>>) {
    for cells in rows {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        outln!("{}", out.trim_end());
    }
}

pub(crate) fn operation(op: &OperationView) {
    for a in &op.actions {
        let mark = if a.status == "failed" { "✗" } else { "✓" };
        outln!("  {mark} {}: {}", a.name, a.message);
    }
    outln!("{}", op.message);
}

/// Prints a change's outcome; a failed operation becomes an error (exit status 1).
pub(crate) fn changed(conn: &super::Conn, c: Changed) -> anyhow::Result<()> {
    if conn.json {
        json(&c)?;
    } else {
        operation(&c.operation);
    }
    if c.operation.status == "failed" {
        anyhow::bail!("{}", c.operation.message);
    }
    Ok(())
}

pub(crate) fn bytes(n: Option<u64>) -> String {
    match n {
        None => "-".into(),
        Some(b) if b >= 1 << 30 => format!("{:.1}G", b as f64 / f64::from(1 << 30)),
        Some(b) if b >= 1 << 20 => format!("{:.1}M", b as f64 / f64::from(1 << 20)),
        Some(b) => format!("{}K", b / 1024),
    }
}

/// Unix seconds as an HTTP-style date (`Tue, 15 Nov 1994 08:12:31 GMT`).
pub(crate) fn date(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    httpdate::fmt_http_date(t)
}

/// Unix seconds as a UTC time to the second, for listings: `2026-11-26 19:20:01`.
pub(crate) fn when(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| "-".into())
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// "3 s ago", "5 min ago", "2 h ago".
pub(crate) fn ago(secs: u64) -> String {
    let d = unix_now().saturating_sub(secs);
    match d {
        0..=119 => format!("{d} s ago"),
        120..=7199 => format!("{} min ago", d / 60),
        _ => format!("{} h ago", d / 3600),
    }
}
