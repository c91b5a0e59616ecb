//! Snapshots of every node of a test at once: the `snapshot` and `restore`
//! steps (and `isolate`, which the description expands into them).
//!
//! ```text
//! save:    unmount shares ─► QEMU blockers? ─► stop all ─► snapshot-save each ─► copy host dirs ─► cont all ─► remount
//! restore: stop all ─► snapshot-load each ─► host dirs back ─► links, console ─► cont all ─► clock + remount (one shell line)
//! ```
//!
//! QEMU refuses to save a VM while a 9p export is mounted in the guest: the
//! 9p server adds a migration blocker when the guest attaches the export's
//! root and removes it when the root fid is clunked, i.e. on unmount
//! (qemu/qemu `hw/9pfs/9p.c`, `v9fs_attach` and `put_fid`), and
//! `save_snapshot` fails while any blocker exists (`migration/savevm.c`,
//! `migration_is_blocked`). So the `shared` and `xchg` shares are unmounted
//! before the save and mounted again afterwards; the store cannot be
//! unmounted while the guest runs from it, so a node whose store is the
//! host's 9p share (qemu-vm.nix's default) cannot be snapshotted: it needs
//! `virtualisation.useNixStoreImage` (docs/snapshots.md). A restore needs no
//! unmount: `snapshot-load` resets the devices, and the restored guest has
//! the shares unmounted, as when it was saved.
//!
//! The snapshots are QEMU internal snapshots (QMP `snapshot-save` /
//! `snapshot-load`) in the node's writable qcow2 disks (`NIX_DISK_IMAGE`);
//! other writable disks (NixOS's raw `store.img`, whose content the guest
//! mounts read-only) are left out, which `savevm` would refuse. They live in
//! the disk image, so a restore also works after `shutdown` and `start`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::abort::Abort;
use super::console::ConsoleMark;
use super::events::Failure;
use super::log::Log;
use super::shell::shell_quote;
use super::steps::StepError;
use super::vm::{Machine, VmError};

/// Prefix of the QEMU snapshot tags the driver creates.
pub const TAG_PREFIX: &str = "nixvm-";

/// How often a snapshot job's state is polled.
const JOB_POLL: Duration = Duration::from_millis(5);

/// A 9p share the guest had mounted when the snapshot was taken (and
/// unmounted for it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    pub tag: String,
    pub dir: String,
    /// `mount -o` options.
    pub options: String,
}

/// What a restore needs besides QEMU's snapshot.
#[derive(Clone, Debug)]
pub struct NodeSnapshot {
    pub shares: Vec<Share>,
    pub link_up: bool,
    pub console: ConsoleMark,
    /// The saved disks (QEMU drive ids, or node names for drives without
    /// one); the first also holds the VM state.
    pub disks: Vec<String>,
    /// Host time when the save paused the VMs: the guest clock stands still
    /// from then until a restore resumes them (see [`clock_script`]).
    pub paused_at: SystemTime,
}

/// The guest command that lists the mounted 9p shares other than the store
/// (`<tag> <dir> <options>` per line) and unmounts them (last mounted first).
pub const UNSHARE_SCRIPT: &str = "__m=; while read -r __s __d __t __o __r; do \
     if [ \"$__t\" = 9p ] && [ \"$__s\" != nix-store ]; then printf '%s %s %s\\n' \"$__s\" \"$__d\" \"$__o\"; \
     __m=\"$__d $__m\"; fi; done < /proc/mounts; sync; if [ -n \"$__m\" ]; then umount $__m; fi";

/// Parses [`UNSHARE_SCRIPT`]'s output. The mount options are rebuilt the way
/// qemu-vm.nix writes them (`trans=virtio,version=9p2000.L,msize=…`, plus the
/// cache mode and `ro` when the mount had them).
pub fn parse_shares(output: &str) -> Vec<Share> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (tag, dir, opts) = (words.next()?, words.next()?, words.next().unwrap_or(""));
            let mut options = vec!["trans=virtio".to_owned(), "version=9p2000.L".to_owned()];
            for o in opts.split(',') {
                match o {
                    "ro" => options.push("ro".to_owned()),
                    "loose" | "fscache" | "mmap" => options.push(format!("cache={o}")),
                    _ if o.starts_with("msize=") || o.starts_with("cache=") => options.push(o.to_owned()),
                    _ => {}
                }
            }
            Some(Share { tag: tag.to_owned(), dir: unescape_mount_path(dir), options: options.join(",") })
        })
        .collect()
}

/// `/proc/mounts` writes space, tab, newline and backslash as octal escapes.
fn unescape_mount_path(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let code = rest.get(pos + 1..pos + 4).and_then(|d| u8::from_str_radix(d, 8).ok());
        match code {
            Some(c) => {
                out.push(c as char);
                rest = &rest[pos + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[pos + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The shell lines that mount `shares` again, after `first` (a command run
/// alongside whose status does not count): every command is a background
/// job, so the guest's vCPUs share the work (each `mount` is a program start,
/// the costly part after a restore under TCG, where every code path is
/// translated again); the status is the last failing `mount`'s. Waits for
/// its own jobs by pid only: a bare `wait` would also wait for the fast
/// protocol's watchdog.
pub fn remount_script(first: Option<&str>, shares: &[Share]) -> String {
    let mut s = String::from("__nixvm_s=0; __nixvm_p=;");
    if let Some(first) = first {
        s.push_str(&format!(" {first} & __nixvm_f=$!;"));
    }
    for sh in shares {
        s.push_str(&format!(
            " mount -t 9p -o {} {} {} & __nixvm_p=\"$__nixvm_p $!\";",
            shell_quote(&sh.options),
            shell_quote(&sh.tag),
            shell_quote(&sh.dir)
        ));
    }
    s.push_str(" for __nixvm_j in $__nixvm_p; do wait \"$__nixvm_j\" || __nixvm_s=$?; done;");
    if first.is_some() {
        s.push_str(" wait \"$__nixvm_f\";");
    }
    s.push_str(" (exit $__nixvm_s)");
    s
}

/// Moves a restored guest's wall clock forward by `paused`, the host time
/// between the save's pause and the restore's resume: the guest clock runs
/// with the host's while the VM runs and stands still while it is paused or
/// saved. The guest adds the offset to its own clock when the line runs, so
/// however long the first command after a load takes to arrive (seconds on a
/// loaded host, while every code path is translated again), the clock ends
/// up right; a host timestamp taken before sending would be late by that
/// delay. Nanoseconds with coreutils `date +%s%N`; whole seconds where `%N`
/// is not understood (busybox without it), and busybox's `date -s` takes
/// only whole seconds.
pub fn clock_script(paused: Duration) -> String {
    format!(
        "{{ __nixvm_n=$(date +%s%N); case $__nixvm_n in ''|*[!0-9]*) __nixvm_n=$(( $(date +%s) * 1000000000 ));; esac; \
         __nixvm_n=$(( __nixvm_n + {} )); __nixvm_t=$(( __nixvm_n / 1000000000 )); \
         date -s @$__nixvm_t.$(printf %09d $(( __nixvm_n % 1000000000 ))) || date -s @$__nixvm_t; }} >/dev/null 2>&1",
        paused.as_nanos()
    )
}

/// The QEMU tag of snapshot `name`.
pub fn tag(name: &str) -> String {
    format!("{TAG_PREFIX}{name}")
}

/// Runs `f` on every machine, in parallel; results in name order.
fn each<T: Send>(
    machines: &mut BTreeMap<String, Machine>,
    f: impl Fn(&mut Machine) -> T + Sync,
) -> Vec<(String, T)> {
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> =
            machines.iter_mut().map(|(name, m)| (name.clone(), s.spawn(move || f(m)))).collect();
        handles
            .into_iter()
            .map(|(name, h)| match h.join() {
                Ok(v) => (name, v),
                Err(p) => std::panic::resume_unwind(p),
            })
            .collect()
    })
}

fn failure(node: &str, message: String, m: Option<&Machine>) -> Failure {
    let mut f = Failure::new(message);
    f.node = Some(node.to_owned());
    if let Some(m) = m {
        f.console = m.console_tail();
    }
    f
}

fn vm_step_error(node: &str, err: VmError, m: Option<&Machine>) -> StepError {
    match err {
        VmError::Stopped(r) => StepError::Stopped(r),
        e => {
            let f = failure(node, e.to_string(), m);
            if e.is_vm_failure() { StepError::Vm(Box::new(f)) } else { StepError::Failed(Box::new(f)) }
        }
    }
}

/// `(key, node-name)` of a disk: the key (drive id) stays the same across
/// QEMU restarts, the generated node name does not.
type Disk = (String, String);

/// The writable qcow2 disks of a node (what a snapshot can hold) and the
/// keys of the other writable disks (left out).
fn snapshot_disks(
    m: &mut Machine,
    deadline: Instant,
    abort: &Abort,
) -> Result<(Vec<Disk>, Vec<String>), VmError> {
    let blocks = m.qmp("query-block", Value::Null, deadline, abort)?;
    let mut disks = Vec::new();
    let mut skipped = Vec::new();
    for b in blocks.as_array().into_iter().flatten() {
        let Some(inserted) = b.get("inserted") else { continue };
        if inserted.get("ro").and_then(Value::as_bool).unwrap_or(true) {
            continue;
        }
        let node_name = inserted.get("node-name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let device = b.get("device").and_then(Value::as_str).filter(|d| !d.is_empty());
        let key = device.map_or_else(|| node_name.clone(), str::to_owned);
        if inserted.get("drv").and_then(Value::as_str) == Some("qcow2") {
            disks.push((key, node_name));
        } else {
            skipped.push(key);
        }
    }
    Ok((disks, skipped))
}

/// Runs a snapshot job (`snapshot-save` / `snapshot-load`) to its end.
fn run_job(
    m: &mut Machine,
    command: &str,
    mut args: Value,
    deadline: Instant,
    abort: &Abort,
) -> Result<(), VmError> {
    let id = format!("nixvm-{command}");
    args["job-id"] = json!(id);
    m.qmp(command, args, deadline, abort)?;
    loop {
        let jobs = m.qmp("query-jobs", Value::Null, deadline, abort)?;
        let job = jobs.as_array().into_iter().flatten().find(|j| j.get("id") == Some(&json!(id))).cloned();
        let status = job.as_ref().and_then(|j| j.get("status")).and_then(Value::as_str).unwrap_or("");
        if job.is_none() || status == "concluded" || status == "null" {
            if job.is_some() {
                m.qmp("job-dismiss", json!({ "id": id }), deadline, abort)?;
            }
            if let Some(err) = job.as_ref().and_then(|j| j.get("error")).and_then(Value::as_str) {
                return Err(VmError::Qemu {
                    node: m.name().to_owned(),
                    command: command.to_owned(),
                    message: err.to_owned(),
                });
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(VmError::Timeout {
                node: m.name().to_owned(),
                what: format!("QEMU's {command}"),
                secs: 0.0,
            });
        }
        abort.sleep(JOB_POLL)?;
    }
}

/// `stop` or `cont` on every machine; the first error.
fn run_state(
    machines: &mut BTreeMap<String, Machine>,
    command: &str,
    deadline: Instant,
    abort: &Abort,
) -> Result<(), StepError> {
    let mut first = None;
    for (name, m) in machines.iter_mut() {
        if let Err(e) = m.qmp(command, Value::Null, deadline, abort) {
            first.get_or_insert_with(|| vm_step_error(name, e, Some(m)));
        }
    }
    first.map_or(Ok(()), Err)
}

/// Where the host-side copies of snapshot `name` live.
fn copies_dir(machines: &BTreeMap<String, Machine>, name: &str) -> Option<PathBuf> {
    let m = machines.values().next()?;
    Some(m.tmp_dir().join("nixvm-snapshots").join(name))
}

/// The host directories the guests see (`/tmp/shared`, each `/tmp/xchg`)
/// with the name of their copy.
fn host_dirs(machines: &BTreeMap<String, Machine>) -> Vec<(PathBuf, String)> {
    let mut dirs = Vec::new();
    if let Some(m) = machines.values().next() {
        dirs.push((m.shared_dir(), "shared".to_owned()));
    }
    for (name, m) in machines {
        dirs.push((m.xchg_dir(), format!("xchg-{name}")));
    }
    dirs
}

/// Copies a directory tree (files, directories, symlinks).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let ty = entry.file_type()?;
        if ty.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Empties a directory in place: QEMU's 9p server holds the export root
/// open, so the directory itself must stay.
fn clear_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Saves snapshot `name` of every node.
pub fn save(
    machines: &mut BTreeMap<String, Machine>,
    name: &str,
    deadline: Instant,
    abort: &Abort,
    log: &Log,
) -> Result<(), StepError> {
    let started = Instant::now();
    if let Some((node, _)) = machines.iter().find(|(_, m)| !m.is_running()) {
        return Err(StepError::Failed(Box::new(failure(
            node,
            format!(
                "node {node} is not running: a snapshot needs every node running (add `start = \"{node}\";` before it)"
            ),
            None,
        ))));
    }
    // 1. Unmount the shares (their 9p exports block the save).
    let unshared = each(machines, |m| {
        m.execute(UNSHARE_SCRIPT, Some(60), deadline, abort).map(|reply| (reply.status, reply.text().0))
    });
    let mut shares: BTreeMap<String, Vec<Share>> = BTreeMap::new();
    let mut problem: Option<StepError> = None;
    for (node, r) in unshared {
        match r {
            Ok((0, out)) => {
                shares.insert(node, parse_shares(&out));
            }
            Ok((status, out)) => {
                shares.insert(node.clone(), parse_shares(&out));
                problem.get_or_insert_with(|| {
                    StepError::Failed(Box::new(failure(
                        &node,
                        format!(
                            "node {node}: unmounting the shared directories for the snapshot failed (exit code \
                             {status}); a process in the guest may be using them"
                        ),
                        machines.get(&node),
                    )))
                });
            }
            Err(e) => {
                problem.get_or_insert_with(|| vm_step_error(&node, e, machines.get(&node)));
            }
        }
    }
    let unmounted = started.elapsed();
    // 2. What QEMU would refuse, asked before anything is paused.
    let mut disks: BTreeMap<String, Vec<Disk>> = BTreeMap::new();
    if problem.is_none() {
        for (node, m) in machines.iter_mut() {
            let checked = m.qmp("query-migrate", Value::Null, deadline, abort).and_then(|info| {
                let reasons: Vec<String> = info
                    .get("blocked-reasons")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect();
                Ok((reasons, snapshot_disks(m, deadline, abort)?))
            });
            match checked {
                Ok((reasons, _)) if !reasons.is_empty() => {
                    let store = reasons.iter().any(|r| r.contains("mount_tag 'nix-store'"));
                    let hint = if store {
                        " The Nix store is the host's 9p share and cannot be unmounted while the guest runs: \
                         set `virtualisation.useNixStoreImage = true;` on this node (nixvm-gen generates it \
                         for tests that use snapshots); see docs/snapshots.md."
                    } else {
                        " See docs/snapshots.md for what QEMU can snapshot."
                    };
                    problem = Some(StepError::Failed(Box::new(failure(
                        node,
                        format!("node {node}: QEMU cannot snapshot this VM: {}.{hint}", reasons.join("; ")),
                        Some(m),
                    ))));
                    break;
                }
                Ok((_, (found, skipped))) if found.is_empty() => {
                    problem = Some(StepError::Failed(Box::new(failure(
                        node,
                        format!(
                            "node {node} has no snapshot-capable disk: QEMU keeps snapshots in a writable qcow2 \
                             image (NixOS's root disk, NIX_DISK_IMAGE; `virtualisation.diskImage = null` gives a \
                             tmpfs root without one){}",
                            if skipped.is_empty() {
                                String::new()
                            } else {
                                format!("; writable disks that cannot hold one: {}", skipped.join(", "))
                            }
                        ),
                        Some(m),
                    ))));
                    break;
                }
                Ok((_, (found, skipped))) => {
                    if !skipped.is_empty() {
                        log.info(
                            Some(node),
                            &format!(
                                "not in the snapshot (not qcow2, restores leave them as they are): {}",
                                skipped.join(", ")
                            ),
                        );
                    }
                    disks.insert(node.clone(), found);
                }
                Err(e) => {
                    problem = Some(vm_step_error(node, e, Some(m)));
                    break;
                }
            }
        }
    }
    // 3. Pause all, save each, copy the host side, resume all.
    let qtag = tag(name);
    let mut saved = Duration::ZERO;
    let mut paused_at = SystemTime::now();
    if problem.is_none() {
        let t = Instant::now();
        let result = run_state(machines, "stop", deadline, abort).and_then(|()| {
            paused_at = SystemTime::now();
            let disks = &disks;
            let jobs = each(machines, |m| {
                let nodes: Vec<&String> = disks.get(m.name()).into_iter().flatten().map(|(_, n)| n).collect();
                let args = json!({ "tag": qtag, "vmstate": nodes.first(), "devices": nodes });
                run_job(m, "snapshot-save", args, deadline, abort)
            });
            for (node, r) in jobs {
                r.map_err(|e| vm_step_error(&node, e, machines.get(&node)))?;
            }
            copy_host_dirs(machines, name)
        });
        let resumed = run_state(machines, "cont", deadline, abort);
        saved = t.elapsed();
        problem = result.and(resumed).err();
    }
    if problem.is_none() {
        for (node, m) in machines.iter_mut() {
            let snap = NodeSnapshot {
                shares: shares.get(node).cloned().unwrap_or_default(),
                link_up: m.link_up(),
                console: m.console().mark(),
                disks: disks.get(node).into_iter().flatten().map(|(k, _)| k.clone()).collect(),
                paused_at,
            };
            m.snapshots_mut().insert(name.to_owned(), snap);
        }
    }
    // 4. Mount the shares again, also after a failure.
    let t = Instant::now();
    let shares = &shares;
    let remounted = each(machines, |m| {
        let list = shares.get(m.name()).cloned().unwrap_or_default();
        if list.is_empty() {
            return Ok(0);
        }
        m.execute(&remount_script(None, &list), Some(60), deadline, abort).map(|r| r.status)
    });
    for (node, r) in remounted {
        let err = match r {
            Ok(0) => continue,
            Ok(status) => StepError::Failed(Box::new(failure(
                &node,
                format!("node {node}: mounting the shared directories again failed (exit code {status})"),
                machines.get(&node),
            ))),
            Err(e) => vm_step_error(&node, e, machines.get(&node)),
        };
        problem.get_or_insert(err);
    }
    if let Some(e) = problem {
        return Err(e);
    }
    log.info(
        None,
        &format!(
            "saved snapshot `{name}` of {} node(s) in {:.2} seconds (unmounting shares {:.2} s, paused {:.2} s, \
             remounting {:.2} s)",
            machines.len(),
            started.elapsed().as_secs_f64(),
            unmounted.as_secs_f64(),
            saved.as_secs_f64(),
            t.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

fn copy_host_dirs(machines: &BTreeMap<String, Machine>, name: &str) -> Result<(), StepError> {
    let Some(root) = copies_dir(machines, name) else { return Ok(()) };
    let io = |what: String, e: std::io::Error| {
        StepError::Failed(Box::new(Failure::new(format!("cannot {what}: {e}"))))
    };
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(|e| io(format!("remove {}", root.display()), e))?;
    }
    for (dir, copy) in host_dirs(machines) {
        let to = root.join(copy);
        if dir.exists() {
            copy_tree(&dir, &to).map_err(|e| io(format!("copy {} to {}", dir.display(), to.display()), e))?;
        }
    }
    Ok(())
}

fn restore_host_dirs(machines: &BTreeMap<String, Machine>, name: &str) -> Result<(), StepError> {
    let Some(root) = copies_dir(machines, name) else { return Ok(()) };
    let io = |what: String, e: std::io::Error| {
        StepError::Failed(Box::new(Failure::new(format!("cannot {what}: {e}"))))
    };
    for (dir, copy) in host_dirs(machines) {
        let from = root.join(copy);
        if dir.exists() {
            clear_dir(&dir).map_err(|e| io(format!("empty {}", dir.display()), e))?;
        }
        if from.exists() {
            copy_tree(&from, &dir)
                .map_err(|e| io(format!("copy {} to {}", from.display(), dir.display()), e))?;
        }
    }
    Ok(())
}

/// Restores snapshot `name` on every node.
pub fn restore(
    machines: &mut BTreeMap<String, Machine>,
    name: &str,
    deadline: Instant,
    abort: &Abort,
    log: &Log,
) -> Result<(), StepError> {
    let started = Instant::now();
    for (node, m) in machines.iter_mut() {
        let message = if !m.snapshots_mut().contains_key(name) {
            format!("node {node} has no snapshot `{name}`: take it first with `snapshot = \"{name}\";`")
        } else if !m.is_running() {
            format!(
                "node {node} is not running: a restore needs QEMU running (add `start = \"{node}\";` before it)"
            )
        } else {
            continue;
        };
        return Err(StepError::Failed(Box::new(failure(node, message, None))));
    }
    let qtag = tag(name);
    let result = run_state(machines, "stop", deadline, abort).and_then(|()| {
        let jobs = each(machines, |m| {
            let keys = m.snapshots_mut().get(name).map(|s| s.disks.clone()).unwrap_or_default();
            let (current, _) = snapshot_disks(m, deadline, abort)?;
            let nodes: Vec<String> = keys
                .iter()
                .filter_map(|k| current.iter().find(|(key, _)| key == k).map(|(_, n)| n.clone()))
                .collect();
            if nodes.len() != keys.len() {
                return Err(VmError::Qemu {
                    node: m.name().to_owned(),
                    command: "snapshot-load".into(),
                    message: format!("the snapshot's disks ({}) are no longer attached", keys.join(", ")),
                });
            }
            let args = json!({ "tag": qtag, "vmstate": nodes.first(), "devices": nodes });
            run_job(m, "snapshot-load", args, deadline, abort)
        });
        for (node, r) in jobs {
            r.map_err(|e| vm_step_error(&node, e, machines.get(&node)))?;
        }
        restore_host_dirs(machines, name)?;
        for (node, m) in machines.iter_mut() {
            let Some(snap) = m.snapshots_mut().get(name).cloned() else { continue };
            let cmd = format!("set_link virtio-net-pci.1 {}", if snap.link_up { "on" } else { "off" });
            let out = m.monitor(&cmd, deadline, abort).map_err(|e| vm_step_error(node, e, Some(m)))?;
            // A node without a VLAN has no such NIC; only a blocked link must be set.
            if !snap.link_up && out.contains("not found") {
                return Err(StepError::Failed(Box::new(failure(
                    node,
                    format!("node {node}: cannot block the link again after the restore: {}", out.trim()),
                    Some(m),
                ))));
            }
            m.note_link(snap.link_up);
            m.console().rewind(snap.console);
        }
        Ok(())
    });
    // Resume even after a failure: a paused VM would only hide the cause.
    let resumed = run_state(machines, "cont", deadline, abort);
    let resumed_at = SystemTime::now();
    result?;
    resumed?;
    let loaded = started.elapsed();
    // The clock and the shares, in one line per node; its answer is the
    // first sign of a responsive shell.
    let fixed = each(machines, |m| {
        let snap = m.snapshots_mut().get(name);
        let shares = snap.map(|s| s.shares.clone()).unwrap_or_default();
        let paused = snap.and_then(|s| resumed_at.duration_since(s.paused_at).ok()).unwrap_or_default();
        let script = remount_script(Some(&clock_script(paused)), &shares);
        m.restored_shell(&script, deadline, abort)
    });
    for (node, r) in fixed {
        match r {
            Ok(0) => {}
            Ok(status) => {
                return Err(StepError::Failed(Box::new(failure(
                    &node,
                    format!(
                        "node {node}: mounting the shared directories after the restore failed (exit code {status})"
                    ),
                    machines.get(&node),
                ))));
            }
            Err(e) => return Err(vm_step_error(&node, e, machines.get(&node))),
        }
    }
    log.info(
        None,
        &format!(
            "restored snapshot `{name}` of {} node(s) in {:.2} seconds (loading {:.2} s, shell answering with \
             clock set and shares mounted {:.2} s)",
            machines.len(),
            started.elapsed().as_secs_f64(),
            loaded.as_secs_f64(),
            (started.elapsed() - loaded).as_secs_f64()
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_parsed_from_proc_mounts() {
        let out = "shared /tmp/shared rw,sync,dirsync,relatime,access=client,msize=16384,trans=virtio\n\
                   data /mnt/my\\040data ro,relatime,loose,access=client,msize=512000,trans=virtio\n";
        let shares = parse_shares(out);
        assert_eq!(
            shares,
            vec![
                Share {
                    tag: "shared".into(),
                    dir: "/tmp/shared".into(),
                    options: "trans=virtio,version=9p2000.L,msize=16384".into()
                },
                Share {
                    tag: "data".into(),
                    dir: "/mnt/my data".into(),
                    options: "trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000".into()
                },
            ]
        );
        assert_eq!(
            remount_script(None, &shares[1..]),
            "__nixvm_s=0; __nixvm_p=; mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 data \
             '/mnt/my data' & __nixvm_p=\"$__nixvm_p $!\"; for __nixvm_j in $__nixvm_p; do wait \"$__nixvm_j\" || \
             __nixvm_s=$?; done; (exit $__nixvm_s)"
        );
    }

    /// Runs the script in bash with `mount` and `date` stubbed, next to an
    /// unrelated background job (the fast protocol's watchdog).
    fn run_remount(first: Option<&str>, shares: &[Share]) -> (i32, String, Duration) {
        let stubs = "mount() { echo \"mount ${@: -2}\" >> \"$LOG\"; [ \"${@: -2:1}\" != bad ]; }; \
                     sleep 30 & __w=$!; ";
        let log = tempfile::NamedTempFile::new().unwrap();
        let t = Instant::now();
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("{stubs}{}; __r=$?; kill $__w; exit $__r", remount_script(first, shares)))
            .env("LOG", log.path())
            .output()
            .unwrap();
        (out.status.code().unwrap(), std::fs::read_to_string(log.path()).unwrap(), t.elapsed())
    }

    #[test]
    fn remount_runs_every_mount_and_keeps_the_failing_status() {
        let share =
            |tag: &str| Share { tag: tag.into(), dir: format!("/tmp/{tag}"), options: "trans=virtio".into() };
        let (status, log, took) =
            run_remount(Some("echo clock >> \"$LOG\""), &[share("shared"), share("xchg")]);
        assert_eq!(status, 0);
        assert!(took < Duration::from_secs(20), "waited for the unrelated job: {took:?}");
        let mut lines: Vec<&str> = log.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines, ["clock", "mount shared /tmp/shared", "mount xchg /tmp/xchg"]);
        let (status, log, _) = run_remount(None, &[share("bad"), share("xchg")]);
        assert_eq!(status, 1);
        assert_eq!(log.lines().count(), 2);
        assert_eq!(run_remount(Some("false"), &[]).0, 0);
    }

    /// Runs the clock line in bash with `date` stubbed: `now` is what
    /// `date +%s%N` prints; returns the `date -s` arguments.
    fn run_clock(paused: Duration, now: &str) -> String {
        let stub = format!(
            "date() {{ case $1 in +%s%N) echo '{now}';; +%s) echo 1796098706;; \
             *) echo \"$*\" >> \"$LOG\"; [[ $2 != *.* ]] || [ -z \"$WHOLE\" ];; esac; }}; "
        );
        let log = tempfile::NamedTempFile::new().unwrap();
        let run = |whole: &str| {
            let out = std::process::Command::new("bash")
                .arg("-c")
                .arg(format!("{stub}{}", clock_script(paused)))
                .env("LOG", log.path())
                .env("WHOLE", whole)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        };
        run("");
        run("yes");
        std::fs::read_to_string(log.path()).unwrap()
    }

    #[test]
    fn the_clock_moves_on_by_the_pause_when_the_line_runs() {
        let paused = Duration::new(6, 500_000_000);
        // coreutils: nanoseconds; a `date -s` refusing fractions gets whole seconds.
        assert_eq!(
            run_clock(paused, "1796098706655000000"),
            "-s @1796098713.155000000\n-s @1796098713.155000000\n-s @1796098713\n"
        );
        // A `date` without `%N` (it prints it back, or nothing): whole seconds.
        assert_eq!(
            run_clock(paused, "1796098706%N"),
            "-s @1796098712.500000000\n-s @1796098712.500000000\n-s @1796098712\n"
        );
        assert!(run_clock(Duration::ZERO, "").starts_with("-s @1796098706.000000000\n"));
    }

    #[test]
    fn host_dirs_are_emptied_in_place_and_copied_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("shared");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/a"), "1").unwrap();
        std::os::unix::fs::symlink("sub/a", dir.join("link")).unwrap();
        let copy = tmp.path().join("copy");
        copy_tree(&dir, &copy).unwrap();
        std::fs::write(dir.join("new"), "2").unwrap();
        clear_dir(&dir).unwrap();
        copy_tree(&copy, &dir).unwrap();
        assert!(!dir.join("new").exists());
        assert_eq!(std::fs::read_to_string(dir.join("link")).unwrap(), "1");
    }
}
