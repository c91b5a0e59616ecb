//! Unix process plumbing: every child (start script → QEMU, `vde_switch`) runs
//! in its own process group so that one `killpg` reaches QEMU even when the
//! start script did not `exec` it, and so that a terminal's ^C reaches only the
//! driver, which then shuts the guests down in order (nextest `runner/unix.rs`).

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Spawns `cmd` as the leader of a new process group.
pub fn spawn_in_group(cmd: &mut Command) -> io::Result<Child> {
    cmd.process_group(0).spawn()
}

/// Sends `signal` to the process group led by `pid`; a group that is already
/// gone is not an error.
pub fn signal_group(pid: u32, signal: i32) -> io::Result<()> {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"));
    };
    // SAFETY: killpg has no memory-safety preconditions.
    let rc = unsafe { libc::killpg(pgid, signal) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) { Ok(()) } else { Err(err) }
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

/// Stops a process group: SIGTERM, up to `grace` for the leader and then the
/// rest of the group to exit, then SIGKILL to whatever is left. The leader
/// (usually `sh -c`, with QEMU as its child) often dies first; QEMU must
/// still get its grace period. Always reaps the leader.
/// `hurry` ends the grace period early (a second ^C).
pub fn terminate_group(
    child: &mut Child,
    grace: Duration,
    hurry: &dyn Fn() -> bool,
) -> io::Result<ExitStatus> {
    let pgid = child.id();
    if let Some(status) = child.try_wait()? {
        let _ = signal_group(pgid, libc::SIGKILL);
        return Ok(status);
    }
    let deadline = Instant::now() + grace;
    if let Err(e) = signal_group(pgid, libc::SIGTERM) {
        // Still reap the leader (no zombie, no QEMU left behind when the
        // group can be killed after all), then report the error.
        let _ = signal_group(pgid, libc::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    let mut status = None;
    while status.is_none() && Instant::now() < deadline && !hurry() {
        status = wait_timeout(child, Duration::from_millis(25).min(grace))?;
    }
    let status = match status {
        Some(status) => status,
        None => {
            // The leader is SIGKILLed directly too, so it is reaped even if
            // killpg failed.
            let _ = signal_group(pgid, libc::SIGKILL);
            let _ = child.kill();
            child.wait()?
        }
    };
    while group_alive(pgid) && Instant::now() < deadline && !hurry() {
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = signal_group(pgid, libc::SIGKILL);
    Ok(status)
}

/// Whether a live (non-zombie) process is left in the group. Zombies are
/// ignored: an orphan whose parent died waits for PID 1 to reap it, which
/// may take a while and must not hold up cleanup.
fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let is_pid = e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        is_pid
            && std::fs::read_to_string(e.path().join("stat")).is_ok_and(|stat| {
                // Fields after the command name: state, ppid, pgrp, …
                let mut fields = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or("").split(' ');
                let state = fields.next().unwrap_or("Z");
                let pgrp = fields.nth(1).and_then(|p| p.parse::<u32>().ok());
                state != "Z" && pgrp == Some(pgid)
            })
    })
}

/// Human-readable exit status: `status 3` or `signal 9 (SIGKILL)`.
pub fn describe_status(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("status {code}");
    }
    match status.signal() {
        Some(sig) => format!("signal {sig} ({})", signal_name(sig)),
        None => "an unknown status".to_owned(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    #[test]
    fn terminate_group_kills_grandchildren() {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "sleep 30 & echo $!; wait"]).stdout(Stdio::piped());
        let mut child = spawn_in_group(&mut cmd).unwrap();
        let mut line = String::new();
        let mut out = io::BufReader::new(child.stdout.take().unwrap());
        io::BufRead::read_line(&mut out, &mut line).unwrap();
        let grandchild: i32 = line.trim().parse().unwrap();
        let started = Instant::now();
        terminate_group(&mut child, Duration::from_secs(5), &|| false).unwrap();
        assert!(started.elapsed() < Duration::from_secs(4), "SIGTERM should end sh and sleep at once");
        std::thread::sleep(Duration::from_millis(100));
        // Gone, or a zombie waiting for a PID 1 that may never reap it.
        let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
        assert!(
            matches!(state, None | Some('Z')),
            "the background sleep must be gone with its group: {stat}"
        );
    }

    #[test]
    fn hurry_skips_the_grace_period() {
        // The shell ignores SIGTERM, so only SIGKILL ends it.
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "trap '' TERM; while :; do sleep 0.05; done"]);
        let mut child = spawn_in_group(&mut cmd).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let status = terminate_group(&mut child, Duration::from_secs(30), &|| true).unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert_eq!(describe_status(status), "signal 9 (SIGKILL)");
    }

    #[test]
    fn describes_exit_statuses() {
        let st = Command::new("/bin/sh").args(["-c", "exit 3"]).status().unwrap();
        assert_eq!(describe_status(st), "status 3");
        let st = Command::new("/bin/sh").args(["-c", "kill -9 $$"]).status().unwrap();
        assert_eq!(describe_status(st), "signal 9 (SIGKILL)");
    }
}
