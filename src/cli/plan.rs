//! `nixvm-gen plan`: instantiate a generated check and show what it builds.
//!
//! `nix eval --raw <flake>#checks.<system>.<test>.drvPath` writes the check's
//! `.drv` closure to the store without building anything; the closure is
//! then read with [`crate::store`] (no further Nix calls), so what is shown
//! is exactly what `nix build` would build.

use anyhow::Context;

use crate::cli::app::{Format, GlobalArgs, UsageError, say};
use crate::config::Config;
use crate::eval::{self, EvalError, NixCommand};
use crate::exit_codes;
use crate::store::{Closure, StorePath, VmTest};

/// Runs `nixvm-gen plan TEST`.
pub fn run(g: &GlobalArgs, config: &Config, test: &str, system: &str) -> anyhow::Result<i32> {
    for (what, value) in [("test name", test), ("system", system)] {
        if !is_plain_attr(value) {
            return Err(UsageError(format!(
                "invalid {what} `{value}`: use letters, digits, `_`, `-` and `'` (an attribute name of `checks`)"
            ))
            .into());
        }
    }
    let attr = format!("checks.{system}.{test}");
    let drv_path = instantiate(g, config, &attr)?;
    if g.verbose {
        say!("reading the closure of {drv_path}");
    }
    let closure =
        Closure::read(&drv_path).with_context(|| format!("failed to read the closure of {drv_path}"))?;
    // A check that is not a VM test is the user's mistake (exit code 2).
    let vm_test = VmTest::from_closure(&closure).map_err(|e| UsageError(format!("`{attr}`: {e}")))?;
    if !vm_test.driver.nixvm && !g.quiet {
        say!(
            "warning: `{attr}` runs the stock NixOS test driver, not nixvm-driver: its test module does not set \
             `driver = lib.mkForce (nixvm-gen.lib.mkDriver {{ … }})` (was it written by hand?)"
        );
    }
    match g.format {
        Format::Json => {
            let mut value = serde_json::to_value(&vm_test)?;
            if let Some(obj) = value.as_object_mut() {
                obj.insert("check".into(), attr.into());
            }
            let text = serde_json::to_string_pretty(&value)? + "\n";
            crate::cli::app::write_stdout(text.as_bytes())?;
        }
        Format::Text | Format::Github | Format::Gitlab => {
            crate::cli::app::write_stdout(render_text(&attr, &vm_test).as_bytes())?
        }
    }
    Ok(exit_codes::OK)
}

/// Attribute names that need no quoting in an installable's attribute path.
fn is_plain_attr(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(['-', '\''])
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '\''))
}

/// `nix eval --raw <flake>#<attr>.drvPath`: instantiates the check.
fn instantiate(g: &GlobalArgs, config: &Config, attr: &str) -> anyhow::Result<StorePath> {
    let installable = format!("{}#{attr}.drvPath", eval::flake_ref(&config.flake_dir)?);
    let mut cmd = NixCommand::new("nix", eval::DEFAULT_TIMEOUT);
    // Flags after the subcommand: Nix 2.8 rejects `--no-write-lock-file` before it.
    cmd.arg("eval").args(eval::OFFLINE_FLAGS).args(["--raw", &installable]);
    if g.verbose {
        say!("$ {cmd}");
    }
    let out = match cmd.run() {
        Ok(out) => out,
        Err(EvalError::Failed { stderr, .. }) if stderr.contains("does not provide attribute") => {
            return Err(UsageError(format!(
                "the flake in {} has no `{attr}`; is the test name right, and is the generated file \
                 up to date (`nixvm-gen generate`) and wired into `checks`?",
                config.flake_dir.display()
            ))
            .into());
        }
        Err(e) => return Err(e).with_context(|| format!("failed to instantiate `{attr}`")),
    };
    let path = out.trim();
    StorePath::from_absolute_path(path).map_err(|e| {
        EvalError::BadOutput {
            command: cmd.to_string(),
            message: format!("expected a .drv store path: {e}"),
            stdout: out.clone(),
        }
        .into()
    })
}

/// The human-readable report (public for the golden test).
pub fn render_text(attr: &str, t: &VmTest) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "check {attr}");
    let _ = writeln!(s, "  test derivation  {}", t.drv);
    if let Some(out) = &t.out {
        let _ = writeln!(s, "  output           {out}");
    }
    let features = if t.required_system_features.is_empty() {
        String::new()
    } else {
        format!(" (builder needs system features: {})", t.required_system_features.join(" "))
    };
    let _ = writeln!(s, "  system           {}{features}", t.system);
    let driver_kind = match (&t.driver.nixvm, &t.driver.nixvm_driver) {
        (true, Some(pkg)) => format!("nixvm-gen wrapper of {pkg}/bin/nixvm-driver"),
        (true, None) => "nixvm-gen wrapper".to_string(),
        (false, _) => "stock NixOS test driver".to_string(),
    };
    let _ = writeln!(s, "  driver           {} ({driver_kind})", t.driver.drv);
    if t.nodes.is_empty() {
        let _ = writeln!(s, "  nodes            (unknown: no driverConfiguration.json in the closure)");
    } else {
        let _ = writeln!(s, "  nodes");
        let width = t.nodes.iter().map(|n| n.node.len()).max().unwrap_or(0);
        for n in &t.nodes {
            let _ = writeln!(s, "    {:<width$}  {}", n.node, n.start_script);
            if let Some(drv) = &n.drv {
                let _ = writeln!(s, "    {:<width$}  built by {drv}", "");
            }
        }
    }
    if let Some(c) = &t.driver_configuration {
        if let Some(vlans) = c.get("vlans").and_then(|v| v.as_array()) {
            let list: Vec<String> = vlans.iter().map(ToString::to_string).collect();
            let _ = writeln!(s, "  vlans            {}", list.join(" "));
        }
        if let Some(timeout) = c.get("global_timeout") {
            let _ = writeln!(s, "  global timeout   {timeout} s");
        }
    }
    let _ = writeln!(s, "  derivations      {} in the closure", t.derivations);
    for (title, value) in [("plan", &t.plan), ("driver configuration", &t.driver_configuration)] {
        if let Some(v) = value {
            let _ = writeln!(s, "{title}:");
            let pretty = serde_json::to_string_pretty(v).unwrap_or_default();
            for line in pretty.lines() {
                let _ = writeln!(s, "  {line}");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_attribute_names_are_accepted() {
        for ok in ["health", "x86_64-linux", "a'b", "my-test_2"] {
            assert!(is_plain_attr(ok), "{ok}");
        }
        for bad in ["", "a.b", "a b", "-x", "'x", "a\"b", "${x}"] {
            assert!(!is_plain_attr(bad), "{bad}");
        }
    }
}
