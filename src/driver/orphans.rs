//! Processes that left their process group: a start script's helper that
//! called `setsid` or forked twice is out of reach of the teardown's
//! `killpg`, and would outlive the driver. The driver binary makes itself
//! a child subreaper (`PR_SET_CHILD_SUBREAPER`, as service managers do), so
//! such orphans become its children instead of init's; once the teardown
//! has reaped every child it started, any child still alive is one of them.
//! They are stopped as the process groups are (SIGTERM, grace period,
//! SIGKILL), reaped, and the ones that needed SIGKILL are reported.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long children get to exit on their own (a QEMU that was just told
/// to stop may still be ending its helpers) before they count as left behind.
pub const SETTLE: Duration = Duration::from_secs(1);

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
    let command = super::os::command_line(pid.unsigned_abs());
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let tmpdir = environ
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(b"TMPDIR="))
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

/// What [`sweep`] found.
#[derive(Debug, Default)]
pub struct Swept {
    /// Left behind, and ended by SIGTERM (or by SIGKILL when `hurry` asked).
    pub stopped: Vec<Orphan>,
    /// Left behind, and still alive when the grace period ran out: killed
    /// with SIGKILL.
    pub killed: Vec<Orphan>,
}

/// The live children of `me`, reaping the ones that exited.
fn live_children(me: i32, procs: &[(i32, i32, bool)]) -> Vec<i32> {
    let mut live = Vec::new();
    for (pid, ppid, alive) in procs {
        if *ppid == me {
            if *alive {
                live.push(*pid);
            } else {
                reap(*pid);
            }
        }
    }
    live
}

/// `roots` and every live process below them, each as `(pid, its root)`,
/// roots first.
fn subtree(roots: &[i32], procs: &[(i32, i32, bool)]) -> Vec<(i32, i32)> {
    let mut below: Vec<(i32, i32)> = roots.iter().map(|r| (*r, *r)).collect();
    let mut i = 0;
    while i < below.len() {
        let (parent, root) = below[i];
        below.extend(
            procs.iter().filter(|(_, ppid, alive)| *ppid == parent && *alive).map(|(p, _, _)| (*p, root)),
        );
        i += 1;
    }
    below
}

/// [`describe`] for the processes of [`subtree`]: one whose directory
/// cannot be read (it just forked, or is exiting) gets its root's, so that
/// it is still put with its node.
/// `known` holds roots described before.
fn describe_all(procs: &[(i32, i32)], known: &[Orphan]) -> Vec<Orphan> {
    let mut out: Vec<Orphan> = Vec::new();
    for (pid, root) in procs {
        let mut o = describe(*pid);
        if o.dir.is_none() {
            o.dir = out.iter().chain(known).find(|r| r.pid == *root).and_then(|r| r.dir.clone());
        }
        out.push(o);
    }
    out
}

/// Sends `signal` to `pid` and, when it leads its own process group (as
/// after `setsid`), to that group.
fn signal(pid: i32, signal: i32) {
    // SAFETY: getpgid(2) and kill(2) on a process below this one.
    unsafe {
        if libc::getpgid(pid) == pid {
            libc::kill(-pid, signal);
        }
        libc::kill(pid, signal);
    }
}

/// After the teardown, as a service manager stops what is left of a
/// service: reaps the children that exited, gives live ones [`SETTLE`] to
/// exit on their own (a helper that ends when QEMU's connection closes,
/// like a `swtpm --daemon`), then sends what is left and everything below
/// it SIGTERM, waits up to `grace`, and SIGKILLs the rest; `hurry` cuts
/// both waits short (and what it kills is no failure). Does nothing unless this process is a subreaper
/// ([`become_subreaper`]), so it only ever sees orphans of the run. Call it
/// only when every child the run started has been reaped.
pub fn sweep(grace: Duration, hurry: &dyn Fn() -> bool) -> Swept {
    let mut swept = Swept::default();
    if !is_subreaper() {
        return swept;
    }
    let me = std::process::id() as i32;
    let settle = Instant::now() + SETTLE;
    let mut live = live_children(me, &table());
    while !live.is_empty() && Instant::now() < settle && !hurry() {
        std::thread::sleep(Duration::from_millis(20));
        live = live_children(me, &table());
    }
    if live.is_empty() {
        return swept;
    }
    let procs = subtree(&live, &table());
    swept.stopped = describe_all(&procs, &[]);
    for (pid, _) in procs {
        signal(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while !live.is_empty() && Instant::now() < deadline && !hurry() {
        std::thread::sleep(Duration::from_millis(20));
        live = live_children(me, &table());
    }
    let hurried = hurry();
    let give_up = Instant::now() + Duration::from_secs(2);
    while !live.is_empty() && Instant::now() < give_up {
        let procs = subtree(&live, &table());
        if !hurried {
            let new: Vec<(i32, i32)> = procs
                .iter()
                .copied()
                .filter(|(pid, _)| !swept.killed.iter().any(|o| o.pid == *pid))
                .collect();
            let known: Vec<Orphan> = swept.killed.iter().chain(&swept.stopped).cloned().collect();
            swept.killed.extend(describe_all(&new, &known));
        }
        for (pid, _) in procs {
            signal(pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
        live = live_children(me, &table());
    }
    swept.stopped.retain(|o| !swept.killed.iter().any(|k| k.pid == o.pid));
    swept
}
