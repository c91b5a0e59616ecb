//! `nixvm-gen matrix`: the CI jobs for the generated checks.

use std::path::PathBuf;

use clap::Args;

use crate::cli::app::{Format, GlobalArgs, UsageError, load_reporting, say, write_stdout};
use crate::config::Config;
use crate::exit_codes;

#[derive(Debug, Args)]
pub struct MatrixArgs {
    /// Only these systems (repeatable; default: every test's own systems).
    #[arg(long = "system", value_name = "SYSTEM")]
    pub systems: Vec<String>,
    /// Earlier results (`report.json`, a check's output, or a directory of
    /// them): weights become measured durations instead of timeouts.
    #[arg(long = "durations-from", value_name = "PATH")]
    pub durations_from: Vec<PathBuf>,
}

pub fn run(g: &GlobalArgs, config: &Config, args: &MatrixArgs) -> anyhow::Result<i32> {
    let measured = if args.durations_from.is_empty() {
        Default::default()
    } else {
        let runs = crate::report::read::collect(&args.durations_from).map_err(|e| {
            if e.is_usage() { anyhow::Error::new(UsageError(e.to_string())) } else { e.into() }
        })?;
        crate::report::read::measured_durations(&runs)
    };
    let Some(project) = load_reporting(g, config)? else {
        return Ok(exit_codes::INVALID_INPUT);
    };
    let entries = crate::matrix::entries(&project, &args.systems, &measured);
    if entries.is_empty() && !args.systems.is_empty() && !project.tests.is_empty() {
        say!("warning: no test runs on {}; the matrix is empty", args.systems.join(", "));
    }
    let text = match g.format {
        Format::Text => crate::matrix::text(&entries),
        Format::Json => crate::matrix::json(&entries),
        Format::Github => {
            if entries.len() > crate::matrix::GITHUB_MAX_JOBS {
                return Err(UsageError(format!(
                    "{} jobs, but a GitHub matrix holds at most {}: split them with --system, \
                     or use several workflows",
                    entries.len(),
                    crate::matrix::GITHUB_MAX_JOBS
                ))
                .into());
            }
            crate::matrix::github(&entries)
        }
        Format::Gitlab => crate::matrix::gitlab(&entries, &config.input_name)?,
    };
    write_stdout(text.as_bytes())?;
    Ok(exit_codes::OK)
}
