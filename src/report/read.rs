//! Finding and reading the results of check builds: a `$out` (or its
//! `result` link) holding `report.json`, a `report.json` itself, or a
//! directory of them (a CI job's downloaded artifacts).
//!
//! Everything read is hostile: files are size-bounded, the walk is bounded
//! in depth and entries, and a broken file is an error naming it, with
//! line and column.

use std::path::{Path, PathBuf};

use crate::driver::report::RunReport;

/// Largest `report.json` read (a run's output is capped far below this).
pub const MAX_REPORT_BYTES: u64 = 64 << 20;
/// Largest screenshot inlined into the HTML report.
pub const MAX_SCREENSHOT_BYTES: u64 = 8 << 20;
/// How deep a directory of results is searched (`reports/<job>/result/`).
pub const MAX_DEPTH: usize = 4;
/// Most directory entries looked at in one walk.
pub const MAX_ENTRIES: usize = 100_000;

/// One run read back.
#[derive(Clone, Debug)]
pub struct Run {
    /// Where it was found, as given or joined from what was given; also
    /// the run's label (`reports/web-x86_64-linux`).
    pub dir: PathBuf,
    pub report: RunReport,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}: no such file or directory", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is {size} bytes, more than the {max} bytes a report may have", path.display())]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("{}:{line}:{column}: not a nixvm-driver report.json: {message}", path.display())]
    Parse { path: PathBuf, line: usize, column: usize, message: String },
    #[error(
        "{}: report.json schema version {version} is newer than this nixvm-gen understands (up to {known}); update nixvm-gen",
        path.display()
    )]
    Version { path: PathBuf, version: u32, known: u32 },
    #[error(
        "no report.json under {}: pass the output of check builds (`result`, `result-1`, …) or a directory of them",
        paths
    )]
    NoneFound { paths: String },
    #[error("more than {MAX_ENTRIES} directory entries under {}; pass the result directories themselves", path.display())]
    TooManyEntries { path: PathBuf },
}

impl ReadError {
    /// Whether the user can fix it by passing other paths (exit code 2).
    pub fn is_usage(&self) -> bool {
        !matches!(self, ReadError::Io { .. })
    }
}

/// Reads one `report.json`.
pub fn read_report(path: &Path) -> Result<RunReport, ReadError> {
    let io = |source| ReadError::Io { path: path.to_owned(), source };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_REPORT_BYTES {
        return Err(ReadError::TooLarge { path: path.to_owned(), size, max: MAX_REPORT_BYTES });
    }
    let bytes = read_bounded(path, MAX_REPORT_BYTES).map_err(io)?;
    // The version first, so a newer schema is named as such rather than as
    // a missing field.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Version {
        schema_version: Option<u32>,
    }
    let parse = |e: serde_json::Error| ReadError::Parse {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message: e.to_string().split(" at line ").next().unwrap_or_default().to_owned(),
    };
    let v: Version = serde_json::from_slice(&bytes).map_err(parse)?;
    let known = crate::driver::report::REPORT_SCHEMA_VERSION;
    if let Some(version) = v.schema_version.filter(|v| *v > known) {
        return Err(ReadError::Version { path: path.to_owned(), version, known });
    }
    serde_json::from_slice(&bytes).map_err(parse)
}

/// Reads at most `max` bytes (the file may grow after `metadata`).
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {max} bytes")));
    }
    Ok(bytes)
}

/// Finds and reads every run under `paths`, in path order (a directory's
/// entries sorted by name). Symbolic links are followed (`result` links
/// into the store); the depth bound ends link loops.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<Run>, ReadError> {
    let mut found = Vec::new();
    let mut seen = 0usize;
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ReadError::Missing { path: path.clone() },
            _ => ReadError::Io { path: path.clone(), source },
        })?;
        if meta.is_file() {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            found.push(Run { dir, report: read_report(path)? });
        } else {
            walk(path, 0, &mut seen, &mut found)?;
        }
    }
    if found.is_empty() {
        let paths = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(ReadError::NoneFound { paths });
    }
    Ok(found)
}

fn walk(dir: &Path, depth: usize, seen: &mut usize, found: &mut Vec<Run>) -> Result<(), ReadError> {
    let report = dir.join("report.json");
    if report.is_file() {
        found.push(Run { dir: dir.to_owned(), report: read_report(&report)? });
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    let io = |source| ReadError::Io { path: dir.to_owned(), source };
    let mut children = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        *seen += 1;
        if *seen > MAX_ENTRIES {
            return Err(ReadError::TooManyEntries { path: dir.to_owned() });
        }
        let entry = entry.map_err(io)?;
        // `metadata` follows links: `result` → /nix/store/…
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
            children.push(entry.path());
        }
    }
    children.sort();
    for child in children {
        walk(&child, depth + 1, seen, found)?;
    }
    Ok(())
}

/// The longest measured duration of each test, for `matrix` weights.
pub fn measured_durations(runs: &[Run]) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for run in runs {
        let secs = run.report.duration_secs;
        if secs.is_finite() && secs >= 0.0 {
            let e = out.entry(run.report.name.clone()).or_insert(secs);
            *e = f64::max(*e, secs);
        }
    }
    out
}
