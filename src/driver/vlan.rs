//! VLANs: one `vde_switch` hub per VLAN number (reference §5.1). Its control
//! directory is exported to the start scripts as `QEMU_VDE_SOCKET_<n>`.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use super::log::Log;
use super::os;
use super::tools::{self, MissingTool};

/// How long `vde_switch` gets to answer `showinfo`.
pub const SWITCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a switch could not be started.
#[derive(Debug, thiserror::Error)]
pub enum VlanError {
    #[error("vlan {nr}: {source}")]
    Missing {
        nr: u32,
        #[source]
        source: MissingTool,
    },
    #[error("vlan {nr}: failed to run {}", program.display())]
    Spawn {
        nr: u32,
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "vlan {nr}: `vde_switch` did not answer `showinfo` with `1000 Success` within {secs} seconds{}",
        describe(output)
    )]
    NoAnswer { nr: u32, secs: u64, output: String },
    #[error("vlan {nr}: control socket {} is missing after start", path.display())]
    NoSocket { nr: u32, path: PathBuf },
    #[error("vlan {nr}: cannot stop its switch (vde_switch, pid {pid})")]
    Stop {
        nr: u32,
        pid: u32,
        #[source]
        source: io::Error,
    },
    /// The teardown had to SIGKILL the switch after the grace period, or
    /// it survived that.
    #[error(
        "vlan {nr}: its switch did not stop within the {grace_secs:.1} s grace period after SIGTERM; {}",
        if survivors.is_empty() { format!("killed with SIGKILL: {}", killed.join(", ")) }
        else { format!("still running after SIGKILL: {}", survivors.join(", ")) }
    )]
    NotStopped { nr: u32, grace_secs: f64, killed: Vec<String>, survivors: Vec<String> },
}

fn describe(output: &str) -> String {
    if output.trim().is_empty() { String::new() } else { format!("; it said: {}", output.trim()) }
}

/// `<tmp>/vde<n>.ctl`.
pub fn socket_dir(tmp_dir: &Path, nr: u32) -> PathBuf {
    tmp_dir.join(format!("vde{nr}.ctl"))
}

/// A running switch.
pub struct Vlan {
    pub nr: u32,
    pub socket_dir: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Vlan {
    /// Starts the switch and waits for it to answer. Its stderr goes to the
    /// log at debug level (its greetings and cleanup notes are noise in a
    /// passing run) and into the error when it does not start.
    pub fn start(nr: u32, tmp_dir: &Path, log: &Arc<Log>) -> Result<Vlan, VlanError> {
        let socket_dir = socket_dir(tmp_dir, nr);
        log.info(None, "start vlan");
        let program = tools::find(tools::VDE_SWITCH).map_err(|source| VlanError::Missing { nr, source })?;
        let mut cmd = Command::new(&program);
        cmd.arg("--sock")
            .arg(&socket_dir)
            .args(["--dirmode", "0700", "--hub"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child =
            os::spawn_in_group(&mut cmd).map_err(|source| VlanError::Spawn { nr, program, source })?;
        let stderr = child.stderr.take().map(|e| drain_stderr(nr, e, Arc::clone(log)));
        let said = |out: String| {
            let err = stderr.as_ref().map(|s| s.lock().map(|l| l.join("\n")).unwrap_or_default());
            [out.trim().to_owned(), err.unwrap_or_default()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let mut stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let answered = match (stdin.as_mut(), stdout) {
            (Some(input), Some(out)) => {
                input.write_all(b"showinfo\n").and_then(|()| input.flush()).ok().map(|()| wait_success(out))
            }
            _ => None,
        };
        let ok = match answered {
            Some((true, _)) => true,
            Some((false, output)) => {
                let _ = os::terminate_group(&mut child, Duration::from_secs(1), &|| false);
                return Err(VlanError::NoAnswer { nr, secs: SWITCH_TIMEOUT.as_secs(), output: said(output) });
            }
            None => false,
        };
        let ctl = socket_dir.join("ctl");
        if !ok || !ctl.exists() {
            let _ = os::terminate_group(&mut child, Duration::from_secs(1), &|| false);
            return Err(VlanError::NoSocket { nr, path: ctl });
        }
        log.info(None, &format!("running vlan (pid {}; ctl {})", child.id(), socket_dir.display()));
        Ok(Vlan { nr, socket_dir, child, stdin })
    }

    /// Why the switch is gone, if it exited during the run (it should live
    /// until the teardown): the nodes on this VLAN are then cut off.
    pub fn died(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok().flatten()?;
        let how = match status.code() {
            Some(_) => format!("exited with {}", os::describe_status(status)),
            None => format!("was killed by {}", os::describe_status(status)),
        };
        Some(format!(
            "vlan {}: its switch (vde_switch, pid {}) {} during the run: the nodes on VLAN {} can no longer reach \
             each other",
            self.nr,
            self.child.id(),
            how,
            self.nr
        ))
    }

    /// The variable a start script reads.
    pub fn env(&self) -> (OsString, OsString) {
        (format!("QEMU_VDE_SOCKET_{}", self.nr).into(), self.socket_dir.clone().into_os_string())
    }

    /// Closes stdin, on which the switch cleans up and exits by itself; only
    /// if it has not within [`EOF_EXIT`] (or `grace`, if shorter): SIGTERM,
    /// grace period, SIGKILL. Signalling a switch that is already cleaning
    /// up after EOF made it print "Could not remove ctl socket" at every
    /// normal cleanup. An error when it had to be SIGKILLed after the grace
    /// period (not when `hurry` cut it short) or could not be stopped.
    pub fn stop(mut self, grace: Duration, log: &Log, hurry: &dyn Fn() -> bool) -> Result<(), VlanError> {
        let (nr, pid) = (self.nr, self.child.id());
        log.info(None, &format!("kill vlan (pid {pid})"));
        self.stdin.take();
        if !hurry() && matches!(os::wait_timeout(&mut self.child, EOF_EXIT.min(grace)), Ok(Some(_))) {
            // Its group may still hold nothing else; reap for certain.
            let _ = os::signal_group(pid, libc::SIGKILL);
            return Ok(());
        }
        match os::stop_group(&mut self.child, grace, hurry) {
            Err(source) => Err(VlanError::Stop { nr, pid, source }),
            Ok(s) if s.killed.is_empty() && s.survivors.is_empty() => Ok(()),
            Ok(s) => Err(VlanError::NotStopped {
                nr,
                grace_secs: grace.as_secs_f64(),
                killed: s.killed,
                survivors: s.survivors,
            }),
        }
    }
}

/// How long a switch gets to exit on its own after EOF on stdin.
pub const EOF_EXIT: Duration = Duration::from_millis(500);

/// Logs the switch's stderr lines at debug level and keeps them (for the
/// error when the switch does not start).
fn drain_stderr(nr: u32, err: impl Read + Send + 'static, log: Arc<Log>) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&lines);
    let _ = std::thread::Builder::new().name(format!("vlan{nr}-stderr")).spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            log.debug(None, &format!("vlan{nr}: vde_switch: {line}"));
            if let Ok(mut l) = keep.lock() {
                if l.len() < 50 {
                    l.push(line);
                }
            }
        }
    });
    lines
}

impl Drop for Vlan {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = os::signal_group(self.child.id(), libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Reads the switch's stdout in a thread until `1000 Success` (bounded by
/// [`SWITCH_TIMEOUT`]); returns whether it came and what was read.
fn wait_success(mut out: impl Read + Send + 'static) -> (bool, String) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            match out.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    seen.extend_from_slice(&chunk[..n]);
                    if String::from_utf8_lossy(&seen).contains("1000 Success") {
                        let _ = tx.send((true, String::from_utf8_lossy(&seen).into_owned()));
                        // Keep draining so the switch never blocks on a full pipe.
                        while matches!(out.read(&mut chunk), Ok(n) if n > 0) {}
                        return;
                    }
                }
            }
        }
        let _ = tx.send((false, String::from_utf8_lossy(&seen).into_owned()));
    });
    rx.recv_timeout(SWITCH_TIMEOUT).unwrap_or((false, String::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::log::Level;

    #[test]
    fn starts_and_stops_a_switch() {
        if !crate::driver::testing::require("vde_switch", "VLAN switches") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        // Debug level: the switch's own stderr is logged there.
        let (log, lines) = Log::capture(Level::Debug);
        let log = Arc::new(log);
        let vlan = Vlan::start(1, tmp.path(), &log).unwrap();
        assert!(vlan.socket_dir.join("ctl").exists());
        assert_eq!(vlan.env().0, "QEMU_VDE_SOCKET_1");
        let pid = vlan.child.id() as i32;
        vlan.stop(Duration::from_secs(2), &log, &|| false).unwrap();
        // SAFETY: signal 0 only probes for existence.
        assert_ne!(unsafe { libc::kill(pid, 0) }, 0, "switch must be gone");
        // Give the stderr thread a moment to log what the switch said last.
        std::thread::sleep(Duration::from_millis(100));
        let said = String::from_utf8_lossy(&lines.lock().unwrap()).into_owned();
        assert!(said.contains("vlan1: vde_switch: "), "its stderr is logged at debug level: {said}");
        assert!(!said.contains("Could not remove"), "a normal cleanup is quiet: {said}");
    }

    #[test]
    fn a_missing_switch_names_its_package() {
        let err = tools::find_on(tools::VDE_SWITCH, Some(std::ffi::OsStr::new("/path-not-set")))
            .map_err(|source| VlanError::Missing { nr: 2, source })
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("vlan 2: `vde_switch` (from the vde2 package"), "{text}");
    }
}
