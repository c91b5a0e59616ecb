//! `nixvm-gen report`: merges the results of check builds.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::cli::app::{Format, GlobalArgs, UsageError, say, write_stdout};
use crate::exit_codes;
use crate::report::{html, junit, read, summary, view};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Outputs of check builds (`result`, `result-1`, a `report.json`), or
    /// directories holding them (a CI job's downloaded artifacts).
    #[arg(required = true, value_name = "RESULT")]
    pub results: Vec<PathBuf>,
    /// Write one JUnit XML file of every run.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write one self-contained HTML report.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// Exit code 0 when every run passed, 1 when any failed.
pub fn run(g: &GlobalArgs, args: &ReportArgs) -> anyhow::Result<i32> {
    let runs = read::collect(&args.results)
        .map_err(|e| if e.is_usage() { anyhow::Error::new(UsageError(e.to_string())) } else { e.into() })?;
    let overview = view::overview(&runs);
    if let Some(path) = &args.junit {
        crate::fsutil::write_atomic(path, junit::render(&runs).as_bytes())
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        let page = html::render(&overview).context("failed to render the HTML report")?;
        crate::fsutil::write_atomic(path, page.as_bytes())
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    let text = match g.format {
        Format::Json => {
            let runs: Vec<_> = overview
                .runs
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "name": r.name,
                        "dir": r.label,
                        "passed": r.passed,
                        "result": r.verdict,
                        "duration": r.duration,
                        "failure": r.failure.as_ref().map(|f| serde_json::json!({
                            "step": f.title, "node": f.node, "message": f.message, "command": f.command,
                        })),
                    })
                })
                .collect();
            let value = serde_json::json!({
                "total": overview.total, "passed": overview.passed, "failed": overview.failed, "runs": runs,
            });
            format!("{value:#}\n")
        }
        _ => summary::render(&overview),
    };
    write_stdout(text.as_bytes())?;
    if !g.quiet {
        for (what, path) in [("JUnit", &args.junit), ("HTML report", &args.html)] {
            if let Some(p) = path {
                say!("wrote the {what} {}", p.display());
            }
        }
    }
    Ok(if overview.ok { exit_codes::OK } else { exit_codes::STALE_OR_FAILED })
}
