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
    stop_group(child, grace, hurry).map(|s| s.status)
}

/// How [`stop_group`] ended a process group.
#[derive(Debug)]
pub struct GroupStop {
    /// The leader's exit status.
    pub status: ExitStatus,
    /// Members that were still alive when the grace period ran out (not
    /// when `hurry` cut it short) and so were ended by SIGKILL, as
    /// `pid command line`: a process that ignores SIGTERM.
    pub killed: Vec<String>,
    /// Members still alive a second after SIGKILL (stuck in the kernel).
    pub survivors: Vec<String>,
}

/// [`terminate_group`], telling which processes needed SIGKILL after the
/// grace period and which survived even that (the teardown reports them).
pub fn stop_group(child: &mut Child, grace: Duration, hurry: &dyn Fn() -> bool) -> io::Result<GroupStop> {
    let pgid = child.id();
    if let Some(status) = child.try_wait()? {
        let _ = signal_group(pgid, libc::SIGKILL);
        return Ok(GroupStop { status, killed: Vec::new(), survivors: survivors(pgid) });
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
    let mut killed = Vec::new();
    let mut status = None;
    while status.is_none() && Instant::now() < deadline && !hurry() {
        status = wait_timeout(child, Duration::from_millis(25).min(grace))?;
    }
    let status = match status {
        Some(status) => status,
        None => {
            if !hurry() {
                killed = describe_members(pgid);
            }
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
    if killed.is_empty() && !hurry() {
        killed = describe_members(pgid);
    }
    let _ = signal_group(pgid, libc::SIGKILL);
    Ok(GroupStop { status, killed, survivors: survivors(pgid) })
}

/// The members of group `pgid` still alive up to a second after SIGKILL.
fn survivors(pgid: u32) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(1);
    while group_alive(pgid) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    describe_members(pgid)
}

/// `pid command line` of each live member of group `pgid`.
fn describe_members(pgid: u32) -> Vec<String> {
    group_members(pgid).into_iter().map(|pid| format!("{pid} {}", command_line(pid))).collect()
}

/// The command line of `pid` for a message, cut to 160 bytes (QEMU's runs
/// to kilobytes); `[name]` when it has none yet or any more (just forked,
/// exiting).
pub fn command_line(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut cmd = String::from_utf8_lossy(&raw).replace('\0', " ").trim_end().to_owned();
    if cmd.is_empty() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        return format!("[{}]", comm.trim_end());
    }
    if cmd.len() > 160 {
        let mut end = 160;
        while !cmd.is_char_boundary(end) {
            end -= 1;
        }
        cmd.truncate(end);
        cmd.push_str(" …");
    }
    cmd
}

/// Whether a live (non-zombie) process is left in the group. Zombies are
/// ignored: an orphan whose parent died waits for PID 1 to reap it, which
/// may take a while and must not hold up cleanup.
fn group_alive(pgid: u32) -> bool {
    !group_members(pgid).is_empty()
}

/// The live (non-zombie) members of group `pgid`, by pid.
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // Fields after the command name: state, ppid, pgrp, …
                let mut fields = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or("").split(' ');
                let state = fields.next().unwrap_or("Z");
                let pgrp = fields.nth(1).and_then(|p| p.parse::<u32>().ok());
                state != "Z" && pgrp == Some(pgid)
            })
        })
        .collect()
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
    fn members_that_ignore_sigterm_are_named_as_killed() {
        // The leader exits on SIGTERM; a member it started ignores it, as a
        // start script's helper might.
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "sh -c 'trap \"\" TERM; echo ready; while :; do sleep 0.05; done' & exec sleep 30"]);
        let mut child = spawn_in_group(cmd.stdout(Stdio::piped())).unwrap();
        let mut line = String::new();
        let mut out = io::BufReader::new(child.stdout.take().unwrap());
        io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert_eq!(line, "ready\n", "the helper ignores SIGTERM from now on");
        let stop = stop_group(&mut child, Duration::from_millis(500), &|| false).unwrap();
        assert_eq!(describe_status(stop.status), "signal 15 (SIGTERM)", "the leader obeyed");
        assert!(stop.killed.iter().any(|p| p.contains("trap")), "{:?}", stop.killed);
        assert!(stop.survivors.is_empty(), "{:?}", stop.survivors);
        // A group that obeys SIGTERM needs no SIGKILL.
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "sleep 30 & exec sleep 30"]);
        let mut child = spawn_in_group(&mut cmd).unwrap();
        let stop = stop_group(&mut child, Duration::from_secs(5), &|| false).unwrap();
        assert!(stop.killed.is_empty() && stop.survivors.is_empty(), "{stop:?}");
        // Cut short by `hurry`: SIGKILL as asked, nothing to report.
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "trap '' TERM; while :; do sleep 0.05; done"]);
        let mut child = spawn_in_group(&mut cmd).unwrap();
        let stop = stop_group(&mut child, Duration::from_secs(30), &|| true).unwrap();
        assert!(stop.killed.is_empty(), "{stop:?}");
    }

    #[test]
    fn describes_exit_statuses() {
        let st = Command::new("/bin/sh").args(["-c", "exit 3"]).status().unwrap();
        assert_eq!(describe_status(st), "status 3");
        let st = Command::new("/bin/sh").args(["-c", "kill -9 $$"]).status().unwrap();
        assert_eq!(describe_status(st), "signal 9 (SIGKILL)");
    }
}
