//! One node's VM: its state directory, the `run-<node>-vm` start script and
//! the QEMU process it execs, and the three channels to it (monitor, QMP,
//! backdoor shell) plus the serial console (reference §2.2–§2.6, §4.2).
//!
//! Lifecycle: `start` (sockets, spawn, accept, QMP, HMP banner) → `connect`
//! (wait for the backdoor's ready marker) → commands → `shutdown` / `crash` /
//! `release` (SIGTERM to the process group, grace period, SIGKILL).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::abort::{Abort, StopReason};
use super::console::{Console, Stream};
use super::log::Log;
use super::monitor::{Monitor, MonitorError, Qmp};
use super::os;
use super::shell::{Protocol, Reply, Shell, ShellError};
use super::snapshot::NodeSnapshot;

/// Longest usable Unix socket path in bytes (`sun_path` is 108 bytes,
/// including the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Console lines attached to failures.
pub const CONSOLE_TAIL: usize = 20;

/// Why a VM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(
        "node {node}: start script exited with {status} before QEMU connected to the driver{}{}",
        format_stderr(stderr),
        format_tail(tail)
    )]
    StartScriptExited { node: String, status: String, stderr: Vec<String>, tail: Vec<String> },
    #[error("node {node}: QEMU exited with {status}{}{}", format_stderr(stderr), format_tail(tail))]
    Exited { node: String, status: String, stderr: Vec<String>, tail: Vec<String> },
    #[error("node {node}: the guest closed the backdoor shell (QEMU is still running)")]
    ShellClosed { node: String },
    #[error("node {node}: {what} did not finish within {secs:.1} seconds")]
    Timeout { node: String, what: String, secs: f64 },
    #[error("node {node}: failed to {action}")]
    Io {
        node: String,
        action: String,
        #[source]
        source: io::Error,
    },
    #[error("node {node}: {source}")]
    Shell {
        node: String,
        #[source]
        source: ShellError,
    },
    #[error("node {node}: {source}")]
    Monitor {
        node: String,
        #[source]
        source: MonitorError,
    },
    #[error("node {node} is not running (start it first)")]
    NotRunning { node: String },
    /// QEMU answered a QMP command with an error.
    #[error("node {node}: QEMU refused `{command}`: {message}")]
    Qemu { node: String, command: String, message: String },
    #[error(transparent)]
    Stopped(#[from] StopReason),
    /// The teardown had to SIGKILL processes of the node's group after the
    /// grace period, or some survived even that.
    #[error("node {node}: {}", not_stopped(*grace_secs, killed, survivors))]
    NotStopped { node: String, grace_secs: f64, killed: Vec<String>, survivors: Vec<String> },
}

/// What a teardown that did not go cleanly had to do, process by process.
fn not_stopped(grace_secs: f64, killed: &[String], survivors: &[String]) -> String {
    let mut s = String::new();
    if !killed.is_empty() {
        s.push_str(&format!(
            "did not stop within the {grace_secs:.1} s grace period after SIGTERM; killed with SIGKILL:"
        ));
        for p in killed {
            s.push_str("\n    ");
            s.push_str(p);
        }
    }
    if !survivors.is_empty() {
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str("still running after SIGKILL (left behind):");
        for p in survivors {
            s.push_str("\n    ");
            s.push_str(p);
        }
    }
    s
}

/// QEMU's (and the start script's) last stderr lines, apart from the console.
fn format_stderr(stderr: &[String]) -> String {
    if stderr.is_empty() {
        return String::new();
    }
    let mut s = String::from("; QEMU's stderr:");
    for line in stderr {
        s.push_str("\n    ");
        s.push_str(line);
    }
    s
}

fn format_tail(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut s = String::from("; last console lines:");
    for line in tail {
        s.push_str("\n    ");
        s.push_str(line);
    }
    s
}

impl VmError {
    /// Whether the VM itself is gone or unusable (as opposed to a slow or
    /// failing command): such failures exit with `VM_FAILED`.
    pub fn is_vm_failure(&self) -> bool {
        matches!(
            self,
            VmError::StartScriptExited { .. }
                | VmError::Exited { .. }
                | VmError::ShellClosed { .. }
                | VmError::Io { .. }
                | VmError::NotRunning { .. }
                | VmError::NotStopped { .. }
        )
    }
}

/// The socket paths a node needs under `tmp_dir`, checked up front.
pub fn socket_paths(tmp_dir: &Path, node: &str) -> Vec<PathBuf> {
    let state = state_dir(tmp_dir, node);
    ["monitor", "shell", "qmp"].iter().map(|s| state.join(s)).collect()
}

/// `<tmp>/vm-state-<node>`.
pub fn state_dir(tmp_dir: &Path, node: &str) -> PathBuf {
    tmp_dir.join(format!("vm-state-{node}"))
}

/// Arguments appended to the start script, in the stock order (§2.3).
pub fn qemu_args(state_dir: &Path, allow_reboot: bool, graphics: bool) -> Vec<String> {
    let s = state_dir.display();
    let mut args = vec![
        "-qmp".to_owned(),
        format!("unix:{s}/qmp,server=on,wait=off"),
        "-monitor".to_owned(),
        format!("unix:{s}/monitor"),
        "-chardev".to_owned(),
        format!("socket,id=shell,path={s}/shell"),
        "-device".to_owned(),
        "virtio-serial".to_owned(),
        "-device".to_owned(),
        "virtconsole,chardev=shell".to_owned(),
        "-device".to_owned(),
        "virtio-rng-pci".to_owned(),
        "-serial".to_owned(),
        "stdio".to_owned(),
    ];
    if !allow_reboot {
        args.push("-no-reboot".to_owned());
    }
    if !graphics {
        args.push("-nographic".to_owned());
    }
    args
}

/// What a VM needs from the run.
#[derive(Clone, Debug)]
pub struct VmSetup {
    pub name: String,
    pub start_script: String,
    pub tmp_dir: PathBuf,
    /// Extra environment for the start script (`QEMU_VDE_SOCKET_<n>`).
    pub env: Vec<(OsString, OsString)>,
    /// Keep an existing state directory (`--keep-machine-state`).
    pub keep_state: bool,
    /// SIGTERM → SIGKILL grace period.
    pub grace: Duration,
}

struct Running {
    child: Child,
    _stdin: Option<ChildStdin>,
    monitor: Monitor,
    qmp: Qmp,
    shell: Shell,
    connected: bool,
    /// The fast protocol is wanted (a fallback to stock is then reported).
    prefer_fast: bool,
    readers: Vec<JoinHandle<()>>,
}

/// One node.
pub struct Machine {
    setup: VmSetup,
    state_dir: PathBuf,
    log: Arc<Log>,
    console: Arc<Console>,
    running: Option<Running>,
    preferred: Protocol,
    /// Whether the first VLAN link is up (`block`/`unblock`); a restore
    /// sets it again (QEMU does not restore the peer's link state).
    link_up: bool,
    /// What the driver needs to restore each snapshot of this node.
    snapshots: BTreeMap<String, NodeSnapshot>,
}

impl Machine {
    /// Prepares the state directory (deleted first unless state is kept).
    pub fn new(setup: VmSetup, log: Arc<Log>) -> Result<Machine, VmError> {
        let state_dir = state_dir(&setup.tmp_dir, &setup.name);
        let io_err = |action: String| {
            let node = setup.name.clone();
            move |source| VmError::Io { node, action, source }
        };
        if state_dir.exists() && !setup.keep_state {
            log.info(None, &format!("deleting machine state directory {}", state_dir.display()));
            log.info(None, "if you want to keep the machine state, pass --keep-machine-state");
            std::fs::remove_dir_all(&state_dir).map_err(io_err(format!("delete {}", state_dir.display())))?;
        }
        std::fs::create_dir_all(&state_dir).map_err(io_err(format!("create {}", state_dir.display())))?;
        set_mode_0700(&state_dir).map_err(io_err(format!("chmod {}", state_dir.display())))?;
        Ok(Machine {
            setup,
            state_dir,
            log,
            console: Arc::default(),
            running: None,
            preferred: Protocol::preferred(),
            link_up: true,
            snapshots: BTreeMap::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.setup.name
    }

    pub fn console(&self) -> &Arc<Console> {
        &self.console
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    pub fn is_connected(&self) -> bool {
        self.running.as_ref().is_some_and(|r| r.connected)
    }

    fn io(&self, action: impl Into<String>) -> impl FnOnce(io::Error) -> VmError {
        let node = self.setup.name.clone();
        let action = action.into();
        move |source| VmError::Io { node, action, source }
    }

    /// Starts QEMU unless it is running (§2.4). Returns once QEMU is up, not
    /// the guest: see [`Machine::connect`].
    pub fn start(&mut self, deadline: Instant, abort: &Abort) -> Result<(), VmError> {
        if self.running.is_some() {
            return Ok(());
        }
        let name = self.setup.name.clone();
        self.log.info(Some(&name), "starting vm");
        let monitor_path = self.state_dir.join("monitor");
        let shell_path = self.state_dir.join("shell");
        let _ = std::fs::remove_file(self.state_dir.join("qmp"));
        let monitor_l =
            listen(&monitor_path).map_err(self.io(format!("listen on {}", monitor_path.display())))?;
        let shell_l = listen(&shell_path).map_err(self.io(format!("listen on {}", shell_path.display())))?;

        let graphics = std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
        // Each argument is quoted like `shlex.quote`, which leaves the usual
        // paths byte-identical to the stock driver's unquoted command line
        // but keeps a temporary directory with spaces in one argument.
        let args: Vec<String> = qemu_args(&self.state_dir, false, graphics)
            .iter()
            .map(|a| super::shell::shell_quote(a))
            .collect();
        let script = format!("{} {}", self.setup.start_script, args.join(" "));
        let shared = self.setup.tmp_dir.join("shared-xchg");
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(&script)
            .current_dir(&self.state_dir)
            .envs(self.setup.env.iter().map(|(k, v)| (k, v)))
            .env("TMPDIR", &self.state_dir)
            .env("USE_TMPDIR", "1")
            .env("SHARED_DIR", &shared)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.log.debug(Some(&name), &format!("running /bin/sh -c {script:?}"));
        let mut child = os::spawn_in_group(&mut cmd).map_err(self.io("run the start script"))?;
        self.console.reset();
        let mut readers = Vec::new();
        // stdout is the serial console; stderr is QEMU's own (kept apart).
        for (stream, source) in [
            (Stream::Serial, child.stdout.take().map(Box::new).map(|b| b as Box<dyn io::Read + Send>)),
            (Stream::Stderr, child.stderr.take().map(Box::new).map(|b| b as Box<dyn io::Read + Send>)),
        ]
        .into_iter()
        .filter_map(|(stream, source)| source.map(|s| (stream, s)))
        {
            match self.console.spawn_reader(name.clone(), stream, source, self.log.clone()) {
                Ok(h) => readers.push(h),
                Err(e) => {
                    let _ = os::terminate_group(&mut child, Duration::ZERO, &|| false);
                    return Err(self.io("start the console reader")(e));
                }
            }
        }
        let stdin = child.stdin.take();

        let accept_started = Instant::now();
        let accepted = accept_both(&monitor_l, &shell_l, &mut child, deadline, abort);
        let (monitor_s, shell_s) = match accepted {
            Ok(pair) => pair,
            Err(failure) => {
                // SIGKILL stragglers at once after an exit; otherwise QEMU gets the grace period.
                let grace =
                    if matches!(failure, Accept::Exited(_)) { Duration::ZERO } else { self.setup.grace };
                let _ = os::terminate_group(&mut child, grace, &|| abort.hurry());
                join_readers(readers, &self.console);
                return Err(match failure {
                    Accept::Exited(status) => VmError::StartScriptExited {
                        node: name,
                        status: os::describe_status(status),
                        stderr: self.console.stderr_tail(CONSOLE_TAIL),
                        tail: self.console.tail(CONSOLE_TAIL),
                    },
                    Accept::Io(e) => self.io("accept QEMU's connections")(e),
                    Accept::Stopped(r) => VmError::Stopped(r),
                    Accept::Timeout => VmError::Timeout {
                        node: name,
                        what: "waiting for QEMU to connect to the monitor and shell sockets".into(),
                        secs: accept_started.elapsed().as_secs_f64(),
                    },
                });
            }
        };
        let channels = Qmp::connect(&self.state_dir.join("qmp"), deadline, abort)
            .and_then(|qmp| Ok((qmp, Monitor::handshake(monitor_s, deadline, abort)?)));
        let (qmp, monitor) = match channels {
            Ok(c) => c,
            Err(e) => {
                let exited = child.try_wait().ok().flatten();
                let _ = os::terminate_group(&mut child, self.setup.grace, &|| abort.hurry());
                join_readers(readers, &self.console);
                return Err(match exited {
                    Some(status) => VmError::Exited {
                        node: name,
                        status: os::describe_status(status),
                        stderr: self.console.stderr_tail(CONSOLE_TAIL),
                        tail: self.console.tail(CONSOLE_TAIL),
                    },
                    // A signal or the global timeout while QEMU was coming up
                    // stops the run; it is no VM failure.
                    None => match e {
                        MonitorError::Stopped(r) => VmError::Stopped(r),
                        e => VmError::Monitor { node: name, source: e },
                    },
                });
            }
        };
        self.log.info(Some(&name), &format!("QEMU running (pid {})", child.id()));
        let mut shell = Shell::new(shell_s);
        shell.prefer(self.preferred);
        self.running = Some(Running {
            child,
            _stdin: stdin,
            monitor,
            qmp,
            shell,
            connected: false,
            prefer_fast: self.preferred == Protocol::Fast,
            readers,
        });
        Ok(())
    }

    /// Waits for the backdoor shell (§3.1), logging like the stock driver.
    pub fn connect(&mut self, deadline: Instant, abort: &Abort) -> Result<(), VmError> {
        let name = self.setup.name.clone();
        let log = self.log.clone();
        let Some(run) = self.running.as_mut() else {
            return Err(VmError::NotRunning { node: name });
        };
        if run.connected {
            return Ok(());
        }
        let started = Instant::now();
        log.header(Some(&name), "waiting for the VM to finish booting");
        loop {
            let slice_end = deadline.min(Instant::now() + Duration::from_secs(30));
            let res = run.shell.wait_ready(slice_end, abort, |chunk| {
                log.debug(Some(&name), &format!("Guest shell says: {:?}", String::from_utf8_lossy(chunk)));
            });
            match res {
                Ok(()) => break,
                Err(ShellError::Timeout { .. }) if Instant::now() < deadline => {
                    log.info(Some(&name), "Guest root shell did not produce any data yet...");
                    log.info(
                        Some(&name),
                        "  To debug, enter the VM and run 'systemctl status backdoor.service'.",
                    );
                }
                Err(ShellError::Timeout { .. }) => {
                    return Err(VmError::Timeout {
                        node: name,
                        what: "waiting for the backdoor shell".into(),
                        secs: started.elapsed().as_secs_f64(),
                    });
                }
                Err(e) => return Err(self.shell_failure(e)),
            }
        }
        if let Err(e) = Self::negotiate(run, &log, &name, deadline, abort) {
            return Err(self.shell_failure(e));
        }
        run.connected = true;
        log.info(Some(&name), "connected to guest root shell");
        log.info(Some(&name), &format!("(connecting took {:.2} seconds)", started.elapsed().as_secs_f64()));
        log.finished(Some(&name), "waiting for the VM to finish booting", started.elapsed());
        Ok(())
    }

    /// Offers the guest the fast protocol (one round trip), and says when it
    /// keeps the stock framing.
    fn negotiate(
        run: &mut Running,
        log: &Log,
        name: &str,
        deadline: Instant,
        abort: &Abort,
    ) -> Result<(), ShellError> {
        match run.shell.negotiate(deadline, abort)? {
            Protocol::Fast => log.debug(Some(name), "backdoor protocol: fast (helpers in the guest's bash)"),
            Protocol::Stock if run.prefer_fast => log.info(
                Some(name),
                "the guest's backdoor shell cannot run the fast protocol (it needs bash >= 5, mktemp, /proc); \
                 using the stock framing",
            ),
            Protocol::Stock => log.debug(Some(name), "backdoor protocol: stock framing"),
        }
        Ok(())
    }

    /// Which backdoor protocol [`Machine::connect`] tries (default: fast,
    /// unless `NIXVM_BACKDOOR_PROTOCOL=stock`).
    pub fn prefer_protocol(&mut self, protocol: Protocol) {
        self.preferred = protocol;
        if let Some(run) = self.running.as_mut() {
            run.shell.prefer(protocol);
            run.prefer_fast = protocol == Protocol::Fast;
        }
    }

    /// The framing in use (stock until connected).
    pub fn protocol(&self) -> Protocol {
        self.running.as_ref().filter(|r| r.connected).map_or(Protocol::Stock, |r| r.shell.protocol())
    }

    /// Maps a shell error; EOF becomes "QEMU exited with …" when it did.
    fn shell_failure(&mut self, err: ShellError) -> VmError {
        let node = self.setup.name.clone();
        match err {
            ShellError::Eof => {
                let Some(run) = self.running.as_mut() else {
                    return VmError::NotRunning { node };
                };
                match os::wait_timeout(&mut run.child, Duration::from_secs(2)) {
                    Ok(Some(status)) => {
                        self.reap();
                        VmError::Exited {
                            node,
                            status: os::describe_status(status),
                            stderr: self.console.stderr_tail(CONSOLE_TAIL),
                            tail: self.console.tail(CONSOLE_TAIL),
                        }
                    }
                    _ => VmError::ShellClosed { node },
                }
            }
            ShellError::Stopped(r) => VmError::Stopped(r),
            other => VmError::Shell { node, source: other },
        }
    }

    /// Runs `command` through the backdoor, bounded in the guest by
    /// `guest_timeout` whole seconds. See [`Machine::execute_within`].
    pub fn execute(
        &mut self,
        command: &str,
        guest_timeout: Option<u64>,
        deadline: Instant,
        abort: &Abort,
    ) -> Result<Reply, VmError> {
        self.execute_within(command, guest_timeout.map(Duration::from_secs), deadline, abort)
    }

    /// Runs `command` through the backdoor. Like the stock driver, a node
    /// that is not running is started first (after `shutdown` or `crash`).
    /// `guest_timeout` ends it in the guest (to the millisecond with the fast
    /// protocol, rounded to whole seconds with the stock framing).
    pub fn execute_within(
        &mut self,
        command: &str,
        guest_timeout: Option<Duration>,
        deadline: Instant,
        abort: &Abort,
    ) -> Result<Reply, VmError> {
        self.start(deadline, abort)?;
        self.connect(deadline, abort)?;
        let name = self.setup.name.clone();
        let Some(run) = self.running.as_mut() else {
            return Err(VmError::NotRunning { node: name });
        };
        match run.shell.execute(command, guest_timeout, deadline, abort) {
            Ok(reply) => Ok(reply),
            Err(e) => Err(self.shell_failure(e)),
        }
    }

    /// Sends an HMP command and returns QEMU's answer.
    pub fn monitor(&mut self, command: &str, deadline: Instant, abort: &Abort) -> Result<String, VmError> {
        let name = self.setup.name.clone();
        let Some(run) = self.running.as_mut() else {
            return Err(VmError::NotRunning { node: name });
        };
        self.log.debug(Some(&name), &format!("sending monitor command: {command}"));
        run.monitor.command(command, deadline, abort).map_err(|e| self.monitor_failure(e))
    }

    /// Runs a QMP command and returns its `return` value.
    pub fn qmp(
        &mut self,
        command: &str,
        arguments: serde_json::Value,
        deadline: Instant,
        abort: &Abort,
    ) -> Result<serde_json::Value, VmError> {
        let name = self.setup.name.clone();
        let Some(run) = self.running.as_mut() else {
            return Err(VmError::NotRunning { node: name });
        };
        self.log.debug(Some(&name), &format!("sending QMP command: {command} {arguments}"));
        match run.qmp.execute(command, arguments, deadline, abort) {
            Ok(v) => Ok(v),
            Err(MonitorError::QmpError(message)) => {
                Err(VmError::Qemu { node: name, command: command.to_owned(), message })
            }
            Err(e) => Err(self.monitor_failure(e)),
        }
    }

    /// Records the first VLAN link's state after `block`/`unblock`.
    pub fn note_link(&mut self, up: bool) {
        self.link_up = up;
    }

    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// The per-node state of each snapshot (kept across QEMU restarts: the
    /// snapshots live in the qcow2 disk, which persists).
    pub fn snapshots_mut(&mut self) -> &mut BTreeMap<String, NodeSnapshot> {
        &mut self.snapshots
    }

    /// Runs `script` directly in the backdoor shell after a snapshot restore
    /// ([`Shell::restored`]) and returns its exit status.
    pub fn restored_shell(&mut self, script: &str, deadline: Instant, abort: &Abort) -> Result<i32, VmError> {
        let name = self.setup.name.clone();
        let Some(run) = self.running.as_mut() else {
            return Err(VmError::NotRunning { node: name });
        };
        run.connected = true;
        match run.shell.restored(script, deadline, abort) {
            Ok(status) => Ok(status),
            Err(e) => Err(self.shell_failure(e)),
        }
    }

    /// The node's own exchange directory (guest `/tmp/xchg`).
    pub fn xchg_dir(&self) -> PathBuf {
        self.state_dir.join("xchg")
    }

    fn monitor_failure(&mut self, err: MonitorError) -> VmError {
        match err {
            MonitorError::Eof => self.shell_failure(ShellError::Eof),
            MonitorError::Stopped(r) => VmError::Stopped(r),
            other => VmError::Monitor { node: self.setup.name.clone(), source: other },
        }
    }

    /// `poweroff` through the shell, then waits for QEMU to exit.
    pub fn shutdown(&mut self, deadline: Instant, abort: &Abort) -> Result<(), VmError> {
        let Some(run) = self.running.as_mut() else { return Ok(()) };
        if let Err(e) = run.shell.send_raw("poweroff\n", deadline, abort) {
            if !matches!(e, ShellError::Eof) {
                return Err(self.shell_failure(e));
            }
        }
        self.wait_for_shutdown(deadline, abort)
    }

    /// Monitor `quit`, then waits for QEMU to exit.
    pub fn crash(&mut self, deadline: Instant, abort: &Abort) -> Result<(), VmError> {
        let name = self.setup.name.clone();
        let Some(run) = self.running.as_mut() else { return Ok(()) };
        self.log.info(Some(&name), "forced crash");
        match run.monitor.send("quit") {
            Ok(()) | Err(MonitorError::Eof) => {}
            Err(e) => return Err(self.monitor_failure(e)),
        }
        self.wait_for_shutdown(deadline, abort)
    }

    /// Waits for QEMU to exit on its own.
    pub fn wait_for_shutdown(&mut self, deadline: Instant, abort: &Abort) -> Result<(), VmError> {
        let name = self.setup.name.clone();
        let started = Instant::now();
        self.log.header(Some(&name), "waiting for the VM to power off");
        let Some(run) = self.running.as_mut() else { return Ok(()) };
        loop {
            abort.check()?;
            match run.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) => {}
                Err(e) => return Err(self.io("wait for QEMU")(e)),
            }
            if Instant::now() >= deadline {
                return Err(VmError::Timeout {
                    node: name,
                    what: "waiting for the VM to power off".into(),
                    secs: started.elapsed().as_secs_f64(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.reap();
        self.log.finished(Some(&name), "waiting for the VM to power off", started.elapsed());
        Ok(())
    }

    /// Ctrl-Alt-Delete, then waits for the guest to come back: with
    /// `-no-reboot` QEMU exits and is started again (the disk persists).
    pub fn reboot(&mut self, deadline: Instant, abort: &Abort) -> Result<(), VmError> {
        let name = self.setup.name.clone();
        let Some(run) = self.running.as_mut() else {
            return Err(VmError::NotRunning { node: name });
        };
        match run.monitor.command("sendkey ctrl-alt-delete", deadline, abort) {
            Ok(_) | Err(MonitorError::Eof) => {}
            Err(e) => return Err(self.monitor_failure(e)),
        }
        run.connected = false;
        let started = Instant::now();
        match run.shell.wait_ready(deadline, abort, |_| {}) {
            Ok(()) => {
                if let Err(e) = Self::negotiate(run, &self.log, &name, deadline, abort) {
                    return Err(self.shell_failure(e));
                }
                if let Some(run) = self.running.as_mut() {
                    run.connected = true;
                }
                return Ok(());
            }
            Err(ShellError::Eof) => {}
            Err(ShellError::Timeout { .. }) => {
                return Err(VmError::Timeout {
                    node: name,
                    what:
                        "the reboot (after ctrl-alt-delete QEMU did not exit and the backdoor did not come back)"
                            .into(),
                    secs: started.elapsed().as_secs_f64(),
                });
            }
            Err(e) => return Err(self.shell_failure(e)),
        }
        match self.shell_failure(ShellError::Eof) {
            VmError::Exited { .. } => {}
            other => return Err(other),
        }
        self.start(deadline, abort)?;
        self.connect(deadline, abort)
    }

    /// Whether QEMU exited on its own since the last look (e.g. `poweroff`
    /// typed at the interactive prompt); if so it is reaped (the node is then
    /// "not started") and its exit status is returned, described.
    pub fn poll_exit(&mut self) -> Option<String> {
        let status = self.running.as_mut()?.child.try_wait().ok().flatten()?;
        self.reap();
        Some(os::describe_status(status))
    }

    /// Forgets a QEMU that has exited (reaps it and its readers).
    fn reap(&mut self) {
        if let Some(mut run) = self.running.take() {
            let _ = os::terminate_group(&mut run.child, Duration::ZERO, &|| false);
            join_readers(std::mem::take(&mut run.readers), &self.console);
        }
    }

    /// Stops QEMU at the end of the run: SIGTERM to its process group, the
    /// grace period, then SIGKILL. An error when the group could not be
    /// signalled, when a process of it had to be SIGKILLed after the grace
    /// period (a QEMU or a start script's helper ignoring SIGTERM; not when
    /// `abort` cut the grace short) or when one survived SIGKILL: the
    /// teardown reports it, as systemd fails a unit whose stop timed out.
    pub fn release(&mut self, abort: &Abort) -> Result<(), VmError> {
        let name = self.setup.name.clone();
        let Some(mut run) = self.running.take() else { return Ok(()) };
        self.log.info(None, &format!("kill QemuMachine {name} (pid {})", run.child.id()));
        let stopped = os::stop_group(&mut run.child, self.setup.grace, &|| abort.hurry());
        join_readers(std::mem::take(&mut run.readers), &self.console);
        match stopped {
            Err(e) => Err(VmError::Io { node: name, action: "stop its process group".into(), source: e }),
            Ok(s) if s.killed.is_empty() && s.survivors.is_empty() => Ok(()),
            Ok(s) => Err(VmError::NotStopped {
                node: name,
                grace_secs: self.setup.grace.as_secs_f64(),
                killed: s.killed,
                survivors: s.survivors,
            }),
        }
    }

    /// The last console lines (failure context), without terminal colour
    /// codes (systemd's `[  OK  ]`), which are noise in reports.
    pub fn console_tail(&self) -> Vec<String> {
        self.console.tail(CONSOLE_TAIL).iter().map(|l| strip_ansi(l)).collect()
    }

    /// The host directory shared with every guest as `/tmp/shared`.
    pub fn shared_dir(&self) -> PathBuf {
        self.setup.tmp_dir.join("shared-xchg")
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The run's temporary directory (state directories, shared directory).
    pub fn tmp_dir(&self) -> &Path {
        &self.setup.tmp_dir
    }
}

impl Drop for Machine {
    /// Backstop for panics and early returns: no QEMU outlives the driver.
    fn drop(&mut self) {
        if let Some(mut run) = self.running.take() {
            let _ = os::signal_group(run.child.id(), libc::SIGKILL);
            let _ = run.child.wait();
        }
    }
}

/// Removes ANSI escape sequences (CSI such as `ESC[0;32m`, and two-byte
/// ones such as SeaBIOS's `ESC c`).
pub fn strip_ansi(line: &str) -> String {
    static CSI: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new("\x1b(?:\\[[0-?]*[ -/]*[@-~]|[0-~])").ok());
    match CSI.as_ref() {
        Some(re) => re.replace_all(line, "").into_owned(),
        None => line.to_owned(),
    }
}

fn set_mode_0700(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

fn listen(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = UnixListener::bind(path)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

enum Accept {
    Exited(ExitStatus),
    Timeout,
    Io(io::Error),
    Stopped(StopReason),
}

/// Accepts QEMU's monitor and shell connections while watching the start
/// script: if it exits first, that is reported at once (the stock driver
/// blocks in `accept()` until the global timeout).
fn accept_both(
    monitor: &UnixListener,
    shell: &UnixListener,
    child: &mut Child,
    deadline: Instant,
    abort: &Abort,
) -> Result<(UnixStream, UnixStream), Accept> {
    let mut mon = None;
    let mut sh = None;
    loop {
        if mon.is_none() {
            mon = try_accept(monitor).map_err(Accept::Io)?;
        }
        if sh.is_none() {
            sh = try_accept(shell).map_err(Accept::Io)?;
        }
        if let (Some(m), Some(s)) = (&mon, &sh) {
            let m = m.try_clone().map_err(Accept::Io)?;
            let s = s.try_clone().map_err(Accept::Io)?;
            return Ok((m, s));
        }
        if let Some(status) = child.try_wait().map_err(Accept::Io)? {
            return Err(Accept::Exited(status));
        }
        abort.check().map_err(Accept::Stopped)?;
        if Instant::now() >= deadline {
            return Err(Accept::Timeout);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn try_accept(l: &UnixListener) -> io::Result<Option<UnixStream>> {
    match l.accept() {
        Ok((s, _)) => {
            s.set_nonblocking(false)?;
            Ok(Some(s))
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// Joins the console readers, waiting at most briefly: a grandchild that
/// still holds QEMU's stdout must not hang the driver.
fn join_readers(readers: Vec<JoinHandle<()>>, console: &Console) {
    let until = Instant::now() + Duration::from_millis(500);
    while !console.is_closed() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    for r in readers {
        if r.is_finished() {
            let _ = r.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_colour_codes() {
        assert_eq!(strip_ansi("[\x1b[0;32m  OK  \x1b[0m] Reached"), "[  OK  ] Reached");
        assert_eq!(strip_ansi("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS"), "SeaBIOS");
    }

    #[test]
    fn extra_qemu_args_match_the_stock_driver() {
        let args = qemu_args(Path::new("/build/vm-state-machine"), false, false).join(" ");
        assert_eq!(
            args,
            "-qmp unix:/build/vm-state-machine/qmp,server=on,wait=off \
             -monitor unix:/build/vm-state-machine/monitor \
             -chardev socket,id=shell,path=/build/vm-state-machine/shell \
             -device virtio-serial -device virtconsole,chardev=shell -device virtio-rng-pci \
             -serial stdio -no-reboot -nographic"
        );
    }
}
