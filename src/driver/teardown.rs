//! The end of a run: every VM and VLAN switch stopped (SIGTERM to its
//! process group, the grace period, SIGKILL), then the processes that left
//! their groups ([`orphans`]). What did not stop cleanly comes back as
//! failures of phase `teardown`, naming the node or VLAN.

use std::collections::BTreeMap;
use std::time::Instant;

use super::abort::Abort;
use super::events::{Failure, Phase};
use super::log::Log;
use super::orphans;
use super::run::RunOptions;
use super::vlan::Vlan;
use super::vm::{self, Machine, VmError};

/// [`cleanup`], then [`orphans::sweep`]: everything the run started is
/// gone when it returns. Returns what did not stop cleanly, as [`cleanup`].
pub(super) fn stop_all(
    machines: &mut BTreeMap<String, Machine>,
    vlans: Vec<Vlan>,
    abort: &Abort,
    opts: &RunOptions,
    log: &Log,
) -> Vec<(String, Failure)> {
    let mut failures = cleanup(machines, vlans, abort, opts, log);
    failures.extend(left_behind(orphans::sweep(opts.grace, &|| abort.hurry()), opts, log));
    failures
}

/// Stops every VM (in parallel: each may use the grace period) and the
/// switches. Returns what did not stop cleanly, as `(who, failure)` with
/// `who` "node NAME" or "vlan N" and the failure's phase `teardown`.
pub(super) fn cleanup(
    machines: &mut BTreeMap<String, Machine>,
    vlans: Vec<Vlan>,
    abort: &Abort,
    opts: &RunOptions,
    log: &Log,
) -> Vec<(String, Failure)> {
    let t = Instant::now();
    log.header(None, "cleanup");
    let released: Vec<(String, Result<(), VmError>)> = std::thread::scope(|s| {
        let handles: Vec<_> =
            machines.values_mut().map(|m| (m.name().to_owned(), s.spawn(move || m.release(abort)))).collect();
        handles.into_iter().map(|(name, h)| (name, h.join().unwrap_or(Ok(())))).collect()
    });
    let mut failures = Vec::new();
    for (node, r) in released {
        if let Err(e) = r {
            let mut f = Failure::new(e.to_string());
            f.node = Some(node.clone());
            f.phase = Some(Phase::Teardown);
            failures.push((format!("node {node}"), f));
        }
    }
    for v in vlans {
        let nr = v.nr;
        if let Err(e) = v.stop(opts.grace, log, &|| abort.hurry()) {
            let mut f = Failure::new(e.to_string());
            f.phase = Some(Phase::Teardown);
            failures.push((format!("vlan {nr}"), f));
        }
    }
    log.finished(None, "cleanup", t.elapsed());
    failures
}

/// The processes [`orphans::sweep`] found after the teardown: the ones it
/// had to SIGKILL as one failure per node they came from (by their
/// `TMPDIR` or working directory, the node's state directory), as
/// [`cleanup`] returns them; the ones SIGTERM ended as log warnings.
fn left_behind(swept: orphans::Swept, opts: &RunOptions, log: &Log) -> Vec<(String, Failure)> {
    let node_of = |o: &orphans::Orphan| {
        opts.config.vms.iter().map(|v| v.name.clone()).find(|name| {
            let state = vm::state_dir(&opts.tmp_dir, name);
            o.dir.as_ref().is_some_and(|d| d.starts_with(&state))
        })
    };
    let from = |node: &Option<String>, what: &str| match node {
        Some(node) => format!("node {node}: {what} that had left its start script's process group"),
        None => format!("{what} of the run that had left the process groups the teardown stops"),
    };
    for o in &swept.stopped {
        log.warning(
            None,
            &format!(
                "{} outlived the teardown; stopped with SIGTERM: {} {}",
                from(&node_of(o), "a process"),
                o.pid,
                o.command
            ),
        );
    }
    let mut by_node: BTreeMap<Option<String>, Vec<orphans::Orphan>> = BTreeMap::new();
    for o in swept.killed {
        by_node.entry(node_of(&o)).or_default().push(o);
    }
    by_node
        .into_iter()
        .map(|(node, procs)| {
            let who = node.as_ref().map_or_else(|| "processes of the run".to_owned(), |n| format!("node {n}"));
            let mut message = format!(
                "{} (setsid or a double fork) outlived the teardown and did not stop within the {:.1} s grace \
                 period after SIGTERM; killed with SIGKILL:",
                from(&node, "processes"),
                opts.grace.as_secs_f64()
            );
            for p in &procs {
                message.push_str(&format!("\n    {} {}", p.pid, p.command));
            }
            let mut f = Failure::new(message);
            f.node = node;
            f.phase = Some(Phase::Teardown);
            (who, f)
        })
        .collect()
}
