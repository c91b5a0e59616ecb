//! Checks of single values shared by several families: commands, unit
//! names, words the stock driver passes to a shell, ports, regexes.

use super::convert::{Conv, ShellWord, shown_char};
use crate::diagnostic::{Diagnostic, Span};
use crate::spec::computed::{ComputedType, Num};
use crate::spec::value::Value;
use crate::spec::{computed, names, pattern};

/// The longest command accepted: Linux's limit for one argument
/// (`MAX_ARG_STRLEN`, 128 KiB with its NUL) less 1 KiB for the framing both
/// drivers put around it (`set -euo pipefail; …` in `bash -c`).
pub(super) const MAX_COMMAND_BYTES: usize = 127 * 1024;

impl Conv<'_> {
    /// A shell command: a string that does something.
    /// `must_fail` for `fail` and `waitUntilFails`.
    pub(super) fn command(&mut self, v: &Value, what: &str, must_fail: bool) -> Option<String> {
        let command = self.text(v, what, None)?;
        if names::is_blank_command(&command) && !computed::is_placeholder(&command) {
            let label = if command.is_empty() { "empty command" } else { "only whitespace" };
            // `sh -c ''` exits 0: a waiting-for-failure step could never pass.
            let effect = if must_fail { "so this step can never pass" } else { "so it tests nothing" };
            self.diags.push(
                Diagnostic::error("empty_command", Some(v.span), format!("{what} has an empty command"))
                    .with_label(label)
                    .with_hint(format!(
                        "write the shell command to run in the node, e.g. `\"systemctl is-active syshc\"`; \
                         an empty command always succeeds, {effect}"
                    )),
            );
        }
        if !computed::is_placeholder(&command) {
            self.capture_uses(&command, v.span);
        }
        self.command_length(&command, v, what);
        Some(command)
    }

    /// Refuses a command longer than the guest takes as one argument.
    pub(super) fn command_length(&mut self, command: &str, v: &Value, what: &str) {
        if command.len() > MAX_COMMAND_BYTES && !computed::is_placeholder(command) {
            self.diags.push(
                Diagnostic::error(
                    "command_too_long",
                    Some(v.span),
                    format!(
                        "{what} has a command of {} bytes; the limit is {MAX_COMMAND_BYTES} bytes",
                        command.len()
                    ),
                )
                .with_label("longer than one argument may be in the guest")
                .with_hint(
                    "the guest runs each command as one `bash -c` argument, and Linux refuses arguments over \
                     128 KiB (131072 bytes, with the driver's framing) with \"Argument list too long\"; \
                     put the commands in a script file and run it by its store path, \
                     e.g. `succeed = \"bash ${./setup.sh}\";`",
                ),
            );
        }
    }

    /// Refuses unit names the stock driver cannot quote (see
    /// [`names::is_safe_unit_name`]).
    pub(super) fn unit_name(&mut self, unit: &str, span: Span) {
        // Computed names are checked when Nix evaluates them.
        if computed::is_placeholder(unit) {
            return;
        }
        if names::is_safe_unit_name(unit) {
            self.option_like(unit, span);
            return;
        }
        let (message, label) = match names::first_unsafe_unit_char(unit) {
            None => ("the unit name is empty".to_string(), "empty unit name".to_string()),
            Some(c) => (
                format!("unit name `{}` cannot be passed safely to the test driver", unit.escape_debug()),
                format!("{} is not allowed in unit names here", shown_char(c)),
            ),
        };
        self.diags.push(
            Diagnostic::error("unsafe_unit_name", Some(span), message).with_label(label).with_hint(format!(
                "the stock Python driver puts the name into a shell command unescaped; use only {} \
                     (e.g. `\"syshc.service\"`, `\"getty@tty1.service\"`)",
                names::UNIT_NAME_CHARS
            )),
        );
    }

    /// Refuses values the stock driver hands to a shell unquoted (see
    /// [`names::is_shell_safe`]).
    pub(super) fn shell_word(&mut self, what: ShellWord, value: &str, span: Span) {
        if names::is_shell_safe(value) {
            self.option_like(value, span);
            return;
        }
        let (code, noun, example) = match what {
            ShellWord::User => ("unsafe_user_name", "user name", "`user = \"alice\";`"),
            ShellWord::CopySource => {
                ("unsafe_path", "`copyFromVm` path", "`copyFromVm = \"/var/log/syshc.log\";`")
            }
            ShellWord::CopyTarget => {
                ("unsafe_path", "`copyFromHost` target", "`target = \"/etc/app/config.toml\";`")
            }
            ShellWord::SocketPath => {
                ("unsafe_path", "socket path", "`waitForOpenUnixSocket = \"/run/app/app.sock\";`")
            }
            ShellWord::Screenshot => {
                ("unsafe_screenshot_name", "screenshot name", "`screenshot = \"login-screen\";`")
            }
        };
        let (message, label) = match names::first_unsafe_shell_char(value) {
            None => (format!("the {noun} is empty"), format!("empty {noun}")),
            Some(c) => (
                format!("{noun} `{}` cannot be passed safely to the test driver", value.escape_debug()),
                format!("{} is not allowed here", shown_char(c)),
            ),
        };
        self.diags.push(
            Diagnostic::error(code, Some(span), message).with_label(label).with_hint(format!(
                "the stock Python driver passes the {noun} to a shell without quoting; use only {} (e.g. {example})",
                names::SHELL_SAFE_CHARS
            )),
        );
    }

    /// Refuses a value that `systemctl`, `su` or `cp` would take for an
    /// option: both backends pass it as a plain argument.
    fn option_like(&mut self, value: &str, span: Span) {
        if value.starts_with('-') {
            self.diags.push(
                Diagnostic::error("option_like_value", Some(span), format!("`{value}` begins with `-`"))
                    .with_label("would be read as a command-line option")
                    .with_hint("names and paths passed to commands in the VM may not begin with `-`"),
            );
        }
    }

    /// Refuses an output path (`targetDir`, a screenshot name) that would
    /// leave the driver's output directory: absolute, with `..`, or empty.
    pub(super) fn out_path(&mut self, what: &str, value: &str, span: Span) {
        if let Err(e) = crate::fsutil::check_relative(value) {
            self.diags.push(
                Diagnostic::error("path_outside_output", Some(span), format!("{what}: {e}"))
                    .with_label("must stay inside the output directory")
                    .with_hint(
                        "write a relative path without `..`, e.g. `\"logs\"`; files land in the test's output directory",
                    ),
            );
        }
    }

    /// A TCP port, 1 to 65535 (checked by Nix when computed).
    pub(super) fn port(&mut self, v: &Value, what: &str) -> Option<Num<u16>> {
        self.num(v, what, ComputedType::Int { min: 1, max: 65535 }, |c, v| {
            let p = c.int(v, what)?;
            match u16::try_from(p) {
                Ok(port) if port > 0 => Some(port),
                _ => {
                    c.diags.push(
                        Diagnostic::error(
                            "port_out_of_range",
                            Some(v.span),
                            format!("port {p} is out of range"),
                        )
                        .with_label("not in 1..65535")
                        .with_hint("TCP ports are between 1 and 65535"),
                    );
                    None
                }
            }
        })
    }

    pub(super) fn regex(&mut self, pattern: &str, span: Span) {
        if computed::is_placeholder(pattern) {
            return;
        }
        if let Err(e) = check_pattern(pattern) {
            let code = if e.message.starts_with("invalid") { "invalid_regex" } else { "unportable_regex" };
            self.diags.push(
                Diagnostic::error(code, Some(span), e.message)
                    .with_label("in this regular expression")
                    .with_hint(e.hint),
            );
        }
    }
}

/// Patterns [`check_pattern`] remembers as accepted, per thread.
const REMEMBERED_PATTERNS: usize = 1024;

/// [`pattern::check`], remembering on this thread the patterns it
/// accepted: descriptions repeat their patterns, and a check compiles the
/// regex (about 40,000 instructions each, callgrind).
fn check_pattern(pattern: &str) -> Result<(), pattern::PatternError> {
    use std::cell::RefCell;
    use std::collections::HashSet;
    thread_local! {
        static ACCEPTED: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
    }
    ACCEPTED.with_borrow_mut(|accepted| {
        if accepted.contains(pattern) {
            return Ok(());
        }
        pattern::check(pattern)?;
        if accepted.len() < REMEMBERED_PATTERNS {
            accepted.insert(pattern.to_owned());
        }
        Ok(())
    })
}
