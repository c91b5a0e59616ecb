//! Which processes a fake-guest run left behind, found by pid and process
//! group, never by name (other tests, and other users of the machine, run
//! `sleep 500` too).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Samples, while a run goes on, every process whose working directory is
/// inside the run's temporary directory (the start scripts, QEMU and the
/// guest's commands run in the state directories), and keeps their pids
/// and process groups. Names are not used: other tests run the same
/// programs at the same time.
pub(super) struct Survivors {
    seen: Arc<Mutex<BTreeSet<(i32, i32)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// `(pid, pgid)` of the live processes whose cwd is under `dir`.
fn processes_in(dir: &Path) -> Vec<(i32, i32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir)))
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = stat.rsplit_once(") ")?.1;
            let mut fields = rest.split(' ');
            let state = fields.next()?;
            let pgid = fields.nth(1)?.parse().ok()?;
            (state != "Z").then_some((pid, pgid))
        })
        .collect()
}

/// Whether `pid` is alive (a zombie is not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

impl Survivors {
    pub(super) fn watch(dir: &Path) -> Survivors {
        let dir = dir.canonicalize().unwrap();
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                s.lock().unwrap().extend(processes_in(&dir));
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Survivors { seen, stop, thread: Some(thread) }
    }

    /// Stops watching; asserts that something was seen (the check can fail)
    /// and that none of it lives on: no pid, no member of its process group.
    pub(super) fn assert_none_left(mut self, at_least: usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let seen = self.seen.lock().unwrap().clone();
        assert!(seen.len() >= at_least, "only {} process(es) seen: {seen:?}", seen.len());
        let gone = wait_for(Duration::from_secs(2), || seen.iter().all(|(pid, _)| !alive(*pid)));
        let left: Vec<_> = seen
            .iter()
            .filter(|(pid, _)| alive(*pid))
            .map(|(pid, pgid)| (pid, pgid, std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()))
            .map(|(pid, pgid, cmd)| {
                format!("{pid} (group {pgid}): {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
            })
            .collect();
        assert!(gone, "processes left: {left:?}");
        for (_, pgid) in &seen {
            // SAFETY: signal 0 only probes whether the group has a member.
            let r = unsafe { libc::kill(-pgid, 0) };
            let zombies_only = r != 0 || group_members(*pgid).iter().all(|p| !alive(*p));
            assert!(zombies_only, "process group {pgid} still has members: {:?}", group_members(*pgid));
        }
    }
}

fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|s| {
                s.rsplit_once(") ").and_then(|(_, r)| r.split(' ').nth(2)?.parse::<i32>().ok()) == Some(pgid)
            })
        })
        .collect()
}

fn wait_for(bound: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + bound;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}
