//! `report.json`: the [`RunReport`] as pretty JSON (schema in `docs/driver.md`).

use std::path::Path;

use super::RunReport;

pub fn render(report: &RunReport) -> String {
    let mut s = serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// Writes the report atomically.
pub fn write(report: &RunReport, path: &Path) -> std::io::Result<()> {
    crate::fsutil::replace_atomic(path, render(report).as_bytes())
}
