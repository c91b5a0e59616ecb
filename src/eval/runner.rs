//! Running one Nix command: stdin closed, stdout and stderr captured (read
//! on threads so a chatty child cannot block on a full pipe), killed when it
//! exceeds its time limit.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::eval::EvalError;

/// How often a running child is polled for exit.
const POLL: Duration = Duration::from_millis(10);

/// A Nix command line with a time limit.
#[derive(Clone, Debug)]
pub struct NixCommand {
    program: String,
    args: Vec<OsString>,
    timeout: Duration,
}

impl NixCommand {
    pub fn new(program: &str, timeout: Duration) -> Self {
        NixCommand { program: program.to_string(), args: Vec::new(), timeout }
    }

    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self.arg(a);
        }
        self
    }

    /// Runs the command; returns its stdout when it exits with status 0.
    pub fn run(&self) -> Result<String, EvalError> {
        let command = self.to_string();
        use std::os::unix::process::CommandExt;
        // Own process group: on timeout the whole group is killed, so
        // helpers Nix started (git, curl) cannot keep the pipes open.
        let mut child = match Command::new(&self.program)
            .args(&self.args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EvalError::NotInstalled { command: self.program.clone() });
            }
            Err(source) => return Err(EvalError::Io { command, source }),
        };
        let stdout = reader(child.stdout.take());
        let stderr = reader(child.stderr.take());
        let status = match wait_with_timeout(&mut child, self.timeout) {
            Ok(Some(status)) => status,
            Ok(None) => {
                // Kill the group, then reap so no zombie is left. The reader
                // threads are left to finish on their own.
                kill_group(&mut child);
                let _ = child.wait();
                drop((stdout, stderr));
                return Err(EvalError::Timeout { command, seconds: self.timeout.as_secs().max(1) });
            }
            Err(source) => {
                kill_group(&mut child);
                let _ = child.wait();
                return Err(EvalError::Io { command, source });
            }
        };
        let stdout = join(stdout);
        let stderr = clean_stderr(&join(stderr));
        if status.success() {
            return Ok(stdout);
        }
        if needs_network(&stderr) {
            return Err(EvalError::NeedsNetwork { command, stderr });
        }
        let status = match status.code() {
            Some(code) => format!("exit status {code}"),
            None => {
                use std::os::unix::process::ExitStatusExt;
                format!("killed by signal {}", status.signal().unwrap_or(0))
            }
        };
        Err(EvalError::Failed { command, status, stderr })
    }
}

impl std::fmt::Display for NixCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&command_line(&self.program, &self.args))
    }
}

/// A shell-quoted command line, for messages the user can copy and run.
pub fn command_line(program: &str, args: &[OsString]) -> String {
    let mut out = shell_word(program);
    for a in args {
        out.push(' ');
        out.push_str(&shell_word(&a.to_string_lossy()));
    }
    out
}

/// One shell word, for command lines shown to the user to copy: unchanged
/// when it is plain, single-quoted otherwise (a `#` that starts a word
/// would begin a comment, so only a later one counts as plain).
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && !s.starts_with('#')
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.' | '/' | ':' | '#' | '=' | '%' | '+' | ',' | '@')
        });
    if plain { s.to_string() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> Option<JoinHandle<Vec<u8>>> {
    let mut pipe = pipe?;
    Some(std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    }))
}

fn join(h: Option<JoinHandle<Vec<u8>>>) -> String {
    h.and_then(|h| h.join().ok()).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

fn kill_group(child: &mut Child) {
    match i32::try_from(child.id()) {
        // SAFETY: kill(2) with a negative pid signals the process group we
        // created with `process_group(0)`; no memory is involved.
        Ok(pid) if pid > 0 => unsafe {
            libc::kill(-pid, libc::SIGKILL);
        },
        _ => {
            let _ = child.kill();
        }
    }
}

fn wait_with_timeout(
    child: &mut Child,
    timeout: Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

/// Drops the warning Nix prints on every command on machines without the
/// `nixbld` group; it says nothing about the evaluation.
fn clean_stderr(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !(l.starts_with("warning: the group '") && l.contains("build-users-group")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether Nix failed because it could not download something.
fn needs_network(stderr: &str) -> bool {
    ["unable to download", "Couldn't resolve host", "Could not resolve host", "unable to access 'https://"]
        .iter()
        .any(|p| stderr.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_word("nix"), "nix");
        assert_eq!(shell_word("nix-command flakes"), "'nix-command flakes'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("path:/a#b"), "path:/a#b");
        assert_eq!(shell_word("#b"), "'#b'");
    }

    #[test]
    fn captures_output_and_status() {
        let mut ok = NixCommand::new("sh", Duration::from_secs(10));
        ok.args(["-c", "echo out; echo err >&2"]);
        assert_eq!(ok.run().expect("runs"), "out\n");
        let mut bad = NixCommand::new("sh", Duration::from_secs(10));
        bad.args(["-c", "echo boom >&2; exit 7"]);
        match bad.run() {
            Err(EvalError::Failed { status, stderr, command }) => {
                assert_eq!(status, "exit status 7");
                assert_eq!(stderr, "boom");
                assert!(command.starts_with("sh -c"), "{command}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn stdin_is_closed() {
        let cat = NixCommand::new("cat", Duration::from_secs(10));
        assert_eq!(cat.run().expect("cat ends at EOF"), "");
    }

    #[test]
    fn kills_on_timeout() {
        let start = Instant::now();
        // A grandchild holding the pipes must not keep us waiting.
        let mut slow = NixCommand::new("sh", Duration::from_millis(200));
        slow.args(["-c", "sleep 30 & sleep 30"]);
        assert!(matches!(slow.run(), Err(EvalError::Timeout { .. })));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn missing_program() {
        let cmd = NixCommand::new("nixvm-gen-surely-not-a-program", Duration::from_secs(1));
        assert!(matches!(cmd.run(), Err(EvalError::NotInstalled { .. })));
    }

    #[test]
    fn recognizes_network_failures() {
        let mut cmd = NixCommand::new("sh", Duration::from_secs(10));
        cmd.args(["-c", "echo \"error: unable to download 'https://api.github.com/x': Couldn't resolve host name (6)\" >&2; exit 1"]);
        assert!(matches!(cmd.run(), Err(EvalError::NeedsNetwork { .. })));
    }
}
