//! Processes that left their process group: a start script's helper that
//! called `setsid` or forked twice is out of reach of the teardown's
//! `killpg`, and would outlive the driver. The driver binary makes itself
//! a child subreaper (`PR_SET_CHILD_SUBREAPER`, as service managers do), so
//! such orphans become its children instead of init's; once the teardown
//! has reaped every child it started, any child still alive is one of them:
//! it is killed with its descendants, reaped, and reported.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long children get to exit on their own (a QEMU that was just told
/// to stop may still be ending its helpers) before they count as left behind.
const SETTLE: Duration = Duration::from_secs(1);

/// Makes this process the subreaper of its descendants. Only the driver
/// binary calls it: in a test harness, other tests' processes are children
/// of the same process and must not be swept.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl(2) with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

fn is_subreaper() -> bool {
    let mut on: libc::c_int = 0;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one int through the pointer,
    // which points to a live local.
    let rc = unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut on as *mut libc::c_int, 0, 0, 0) };
    rc == 0 && on != 0
}

/// A process found alive after the teardown (and then killed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Orphan {
    pub pid: i32,
    /// Its command line, cut to 160 bytes.
    pub command: String,
    /// Its `TMPDIR` (the driver gives each start script its node's state
    /// directory), else its working directory: which node it came from.
    pub dir: Option<PathBuf>,
}

/// `(pid, ppid, alive)` of every process.
fn table() -> Vec<(i32, i32, bool)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let mut fields = stat.rsplit_once(") ")?.1.split(' ');
            let alive = fields.next()? != "Z";
            Some((pid, fields.next()?.parse().ok()?, alive))
        })
        .collect()
}

fn describe(pid: i32) -> Orphan {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut command = String::from_utf8_lossy(&raw).replace('\0', " ").trim_end().to_owned();
    if command.len() > 160 {
        let mut end = 160;
        while !command.is_char_boundary(end) {
            end -= 1;
        }
        command.truncate(end);
        command.push_str(" …");
    }
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let tmpdir = environ
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(b"TMPDIR"))
        .and_then(|v| v.strip_prefix(b"="))
        .map(|v| PathBuf::from(String::from_utf8_lossy(v).into_owned()));
    let dir = tmpdir.or_else(|| std::fs::read_link(format!("/proc/{pid}/cwd")).ok());
    Orphan { pid, command, dir }
}

/// Reaps `pid` if it has exited (it is our child).
fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid(2) on one pid, WNOHANG; `status` is a live local.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

/// After the teardown: reaps the children that exited, gives live ones
/// [`SETTLE`] to exit, then kills whatever is left with its descendants
/// (SIGKILL) and returns it. Does nothing unless this process is a
/// subreaper ([`become_subreaper`]), so it only ever sees orphans of the
/// run. Call it only when every child the run started has been reaped.
pub fn sweep() -> Vec<Orphan> {
    if !is_subreaper() {
        return Vec::new();
    }
    let me = std::process::id() as i32;
    let settle = Instant::now() + SETTLE;
    let give_up = settle + Duration::from_secs(2);
    let mut found: Vec<Orphan> = Vec::new();
    loop {
        let procs = table();
        let children: Vec<(i32, bool)> =
            procs.iter().filter(|(_, ppid, _)| *ppid == me).map(|(pid, _, alive)| (*pid, *alive)).collect();
        for (pid, alive) in &children {
            if !alive {
                reap(*pid);
            }
        }
        let live: Vec<i32> = children.iter().filter(|(_, alive)| *alive).map(|(pid, _)| *pid).collect();
        if live.is_empty() || Instant::now() >= give_up {
            return found;
        }
        if Instant::now() >= settle {
            // Left behind: the child and everything below it, described
            // before SIGKILL (its descendants then become our children).
            let mut below = live.clone();
            let mut i = 0;
            while i < below.len() {
                let parent = below[i];
                below.extend(
                    procs.iter().filter(|(_, ppid, alive)| *ppid == parent && *alive).map(|(p, _, _)| *p),
                );
                i += 1;
            }
            for pid in below {
                if !found.iter().any(|o| o.pid == pid) {
                    found.push(describe(pid));
                }
                // SAFETY: kill(2) on a process below this one.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
