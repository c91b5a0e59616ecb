//! `nixvm-gen import FILE…`: hand-written NixOS tests to descriptions.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::cli::app::{Format, GlobalArgs, UsageError, say, write_stdout};
use crate::codegen::escape::nix_string;
use crate::exit_codes;
use crate::import::{self, Imported, Target};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Nix files holding NixOS tests (`runNixOSTest { … }`, `makeTest`,
    /// nixpkgs `nixos/tests/*.nix`).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Where to write the descriptions (default: the flake's tests directory).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Write nothing; print the descriptions (or, with --format json, the
    /// whole report) to stdout.
    #[arg(long)]
    pub dry_run: bool,
    /// Exit 1 and write nothing when anything could not be converted.
    #[arg(long)]
    pub strict: bool,
    /// Overwrite descriptions that exist already.
    #[arg(long)]
    pub force: bool,
    /// Keep the statements that cannot be converted as `python` steps (the
    /// description gets `backend = "python"`, the stock driver) instead of
    /// commented TODOs. They are still reported, and --strict still fails.
    #[arg(long)]
    pub python_steps: bool,
}

pub fn run(g: &GlobalArgs, args: &ImportArgs) -> anyhow::Result<i32> {
    let out_dir = args.out.clone().unwrap_or_else(|| g.flake.join(&g.tests_dir));
    let abs_out =
        std::path::absolute(&out_dir).with_context(|| format!("bad --out {}", out_dir.display()))?;
    let target = Target { out_dir: abs_out, python_steps: args.python_steps };
    let mut imported: Vec<Imported> = Vec::new();
    let mut failed = Vec::new();
    for file in &args.files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                failed.push(format!("{}: not UTF-8 text", file.display()));
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("failed to read {}", file.display())),
        };
        match import::import_file(file, &text, &target) {
            Ok(tests) => imported.extend(tests),
            Err(err) => failed.push(err.to_string()),
        }
    }
    // Two tests must not land in one file.
    let mut seen = std::collections::BTreeMap::new();
    for t in &mut imported {
        let n = seen.entry(t.name.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            let old = format!("\n  name = {};\n", nix_string(&t.name));
            t.name = format!("{}-{}", t.name, n);
            t.file_name = format!("{}.nix", t.name);
            t.description =
                t.description.replacen(&old, &format!("\n  name = {};\n", nix_string(&t.name)), 1);
        }
    }
    let leftovers: usize = imported.iter().map(|t| t.leftovers.len() + t.description_errors.len()).sum();
    let strict_fail = args.strict && (leftovers > 0 || !failed.is_empty());

    let mut written = Vec::new();
    if !args.dry_run && !strict_fail {
        for t in &imported {
            let path = out_dir.join(&t.file_name);
            if path.exists() && !args.force {
                return Err(UsageError(format!(
                    "{} exists already; pass --force to overwrite it (nothing was written)",
                    path.display()
                ))
                .into());
            }
        }
        if !imported.is_empty() {
            std::fs::create_dir_all(&out_dir)
                .with_context(|| format!("failed to create {}", out_dir.display()))?;
        }
        for t in &imported {
            let path = out_dir.join(&t.file_name);
            crate::fsutil::write_atomic(&path, t.description.as_bytes())
                .with_context(|| format!("failed to write {}", path.display()))?;
            written.push(path);
        }
    }

    if g.format == Format::Json {
        let report = serde_json::json!({
            "tests": imported.iter().map(|t| {
                let mut v = serde_json::to_value(t).unwrap_or_default();
                v["full"] = serde_json::Value::Bool(t.is_full());
                v["runnable"] = serde_json::Value::Bool(t.is_runnable());
                v
            }).collect::<Vec<_>>(),
            "failed": failed,
            "written": written,
        });
        let mut text = serde_json::to_string_pretty(&report)?;
        text.push('\n');
        write_stdout(text.as_bytes())?;
    } else {
        if args.dry_run {
            for t in &imported {
                let mut text = format!("# ---- {} ----\n", t.file_name);
                text.push_str(&t.description);
                write_stdout(text.as_bytes())?;
            }
        }
        for f in &failed {
            say!("error: {f}");
        }
        for t in &imported {
            if !g.quiet {
                let verdict = if t.is_full() {
                    "converted fully"
                } else if t.is_runnable() {
                    "converted with leftovers kept as python steps"
                } else {
                    "converted with leftovers"
                };
                say!(
                    "{}:{}: test `{}` → {}: {} step(s), {verdict}",
                    t.source.display(),
                    t.line,
                    t.name,
                    out_dir.join(&t.file_name).display(),
                    t.steps
                );
            }
            for l in &t.leftovers {
                let what = if l.python { "kept as a python step" } else { "not converted" };
                say!("  {}:{}: {what}: {}: {}", t.source.display(), l.line, l.construct, l.why);
            }
            for e in &t.description_errors {
                say!("  {}: the description needs editing: {e}", t.file_name);
            }
            if g.verbose {
                for n in &t.notes {
                    say!("  {}:{}: note: {}", t.source.display(), n.line, n.message);
                }
            }
        }
        if !g.quiet {
            let full = imported.iter().filter(|t| t.is_full()).count();
            say!("{} test(s) imported, {full} fully; {leftovers} thing(s) left over", imported.len());
        }
        if strict_fail {
            say!("error: --strict: not everything was converted; nothing was written");
        }
    }
    Ok(if strict_fail {
        exit_codes::STALE_OR_FAILED
    } else if !failed.is_empty() {
        exit_codes::INVALID_INPUT
    } else {
        exit_codes::OK
    })
}
