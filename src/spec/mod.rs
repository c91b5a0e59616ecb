//! Declarative test descriptions: the plain-data model, its parser
//! ([`parse`]), its validator ([`validate`]) and the rules for names and
//! strings that reach the test driver ([`names`]).
//!
//! A description is a Nix file evaluating to an attribute set:
//!
//! ```nix
//! {
//!   name = "health";
//!   nodes.machine = { pkgs, ... }: { services.syshc.enable = true; };
//!   steps = [
//!     { waitForUnit = "syshc.service"; }
//!     { waitForOpenPort = 3000; }
//!     { succeed = "curl --fail localhost:3000"; expect.contains = "Healthy"; }
//!   ];
//! }
//! ```
//!
//! Nodes are NixOS modules and are never interpreted: the generated code
//! imports them from the description file by reference. Steps must be static
//! data, so they are parsed here and embedded into the generated test.

pub mod captures;
pub mod computed;
pub mod keys;
pub mod names;
pub mod parse;
pub mod pattern;
pub mod strings;
pub mod validate;
pub mod value;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::diagnostic::Span;
pub use computed::Num;

/// Default directory (relative to the flake root) searched for descriptions.
pub const DEFAULT_TESTS_DIR: &str = "tests/vm";
/// Systems a test is generated for when it names none.
pub const DEFAULT_SYSTEMS: &[&str] = &["x86_64-linux", "aarch64-linux"];

/// One parsed test description.
#[derive(Clone, Debug, PartialEq)]
pub struct TestSpec {
    /// Test name (the file stem unless `name` is set); also the check name.
    pub name: String,
    pub name_span: Option<Span>,
    /// The description file, relative to the flake root.
    pub file: PathBuf,
    pub description: Option<String>,
    /// Node names in sorted order, with the span of each definition.
    pub nodes: BTreeMap<String, Span>,
    /// Names of the flake's `nixosModules` to import into every node;
    /// `None` means all of them (aliases counted once).
    pub modules: Option<Vec<(String, Span)>>,
    /// Systems to generate checks for; `None` means [`DEFAULT_SYSTEMS`].
    pub systems: Option<Vec<String>>,
    pub backend: Backend,
    /// Global timeout of the whole test in seconds.
    pub timeout: Option<u64>,
    pub steps: Vec<Step>,
    /// The description is a function (`{ pkgs, lib, nodes, ... }: { … }`),
    /// called with those arguments by the generated check.
    pub function: bool,
    /// Values only Nix can compute; steps hold placeholders for them
    /// ([`computed::placeholder`]).
    pub computed: Vec<computed::Computed>,
    /// The description has a `test` module (more runNixOSTest options),
    /// imported by reference like the nodes.
    pub test_module: bool,
}

/// Which test driver runs the generated test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// nixvm-driver executes the JSON plan.
    #[default]
    Rust,
    /// The stock Python driver executes the generated testScript.
    Python,
}

/// One step of a test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    /// The node the step acts on; filled in by validation when the test has
    /// exactly one node. `None` only for node-less actions (`sleep`, `subtest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Timeout in seconds; `None` means [`Action::default_timeout`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Num<f64>>,
    pub action: Action,
    /// Where the step is written (not part of the plan).
    #[serde(skip)]
    pub span: Option<Span>,
}

/// What a step does. The variant names are the description keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Action {
    WaitForUnit {
        unit: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    WaitForOpenPort {
        port: Num<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        addr: Option<String>,
    },
    WaitForClosedPort {
        port: Num<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        addr: Option<String>,
    },
    WaitForFile {
        path: String,
    },
    /// Something listens on the UNIX-domain socket at `path` (stream, or
    /// datagram with `datagram`; the stock `wait_for_open_unix_socket`).
    WaitForOpenUnixSocket {
        path: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        datagram: bool,
    },
    /// A regular expression searched in the serial console output.
    WaitForConsoleText {
        regex: String,
    },
    Succeed {
        command: String,
        #[serde(default, skip_serializing_if = "Expect::is_empty")]
        expect: Expect,
        /// Stores the output (trailing newlines trimmed) under this name
        /// for every later command ([`crate::guest::captures`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capture: Option<String>,
    },
    Fail {
        command: String,
    },
    WaitUntilSucceeds {
        command: String,
        #[serde(default, skip_serializing_if = "Expect::is_empty")]
        expect: Expect,
        /// Stores the output (trailing newlines trimmed) under this name
        /// for every later command ([`crate::guest::captures`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capture: Option<String>,
    },
    /// Runs a command and accepts any exit status unless `expect.exitCode`
    /// names one (the stock `execute`).
    Execute {
        command: String,
        #[serde(default, skip_serializing_if = "Expect::is_empty")]
        expect: Expect,
        /// Stores the output (trailing newlines trimmed) under this name
        /// for every later command ([`crate::guest::captures`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capture: Option<String>,
    },
    WaitUntilFails {
        command: String,
    },
    /// `systemctl <query>`, as root or (with `user`) in the user's manager
    /// (the stock `systemctl`): any exit status passes unless
    /// `expect.exitCode` names one, as the stock method returns it unchecked.
    Systemctl {
        query: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        #[serde(default, skip_serializing_if = "Expect::is_empty")]
        expect: Expect,
        /// Stores the output (trailing newlines trimmed) under this name
        /// for every later command ([`crate::guest::captures`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capture: Option<String>,
    },
    /// The unit's `ActiveState` must be `state` now (the stock
    /// `require_unit_state`, one query, no waiting).
    RequireUnitState {
        unit: String,
        state: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// `systemctl start <unit>` (the stock `start_job`; its exit status is
    /// not checked, as there).
    StartJob {
        unit: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// `systemctl stop <unit>` (the stock `stop_job`).
    StopJob {
        unit: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    Sleep {
        seconds: Num<f64>,
    },
    /// `curl` inside the node.
    Http {
        url: String,
        #[serde(default = "default_status")]
        status: Num<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contains: Option<String>,
    },
    Start,
    Shutdown,
    /// Waits until the node powers off by itself (the stock
    /// `wait_for_shutdown`; `shutdown` starts the power-off too).
    WaitForShutdown,
    Crash,
    Reboot,
    Block,
    Unblock,
    CopyFromVm {
        source: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_dir: Option<String>,
    },
    /// Copies a host file or directory to `target` in the guest (the stock
    /// `copy_from_host`). In a description the source is a path relative to
    /// the description's directory or a store path Nix computes; in the plan
    /// and the script it is the store path.
    CopyFromHost {
        source: String,
        target: String,
    },
    /// Forwards host TCP port `hostPort` to `guestPort` in the guest
    /// through QEMU's user network (the stock `forward_port`).
    ForwardPort {
        host_port: Num<u16>,
        #[serde(default = "default_guest_port")]
        guest_port: Num<u16>,
    },
    Screenshot {
        name: String,
    },
    /// Keys pressed through the QEMU monitor (`sendkey`), one after the
    /// other: QEMU key names joined by `-`, or single characters mapped as
    /// the stock `send_key` maps them.
    SendKeys {
        keys: Vec<String>,
    },
    /// Text typed on the virtual keyboard, one key per character.
    SendChars {
        chars: String,
    },
    /// A regular expression searched in what virtual console `tty` shows.
    WaitUntilTtyMatches {
        tty: Num<u8>,
        regex: String,
    },
    /// Copies what virtual console `tty` shows to the guest's journal.
    DumpTtyContents {
        tty: Num<u8>,
    },
    /// A regular expression searched in the screen's text, read by OCR.
    WaitForText {
        regex: String,
    },
    /// Waits until the X server is up (the stock `wait_for_x`).
    WaitForX,
    /// A regular expression searched in the names of the X windows.
    WaitForWindow {
        regex: String,
    },
    Subtest {
        title: String,
        steps: Vec<Step>,
    },
    /// Saves the state of every node under a name (QEMU snapshots).
    Snapshot {
        name: String,
    },
    /// Brings every node back to a saved state.
    Restore {
        name: String,
    },
    /// Python for the stock driver, copied into the testScript verbatim
    /// (backend = "python" only; validation refuses it otherwise).
    Python {
        code: String,
    },
}

/// The stock `execute`'s default timeout in seconds, which also bounds the
/// stock methods that run a command but take no timeout (`systemctl`,
/// `start_job`, `require_unit_state`, …; NixOS/nixpkgs
/// `nixos/lib/test-driver/src/test_driver/machine/__init__.py` at
/// 019697db058b6738eda0cb2cdcc9f5c014c914cb).
pub const STOCK_EXECUTE_TIMEOUT: f64 = 900.0;

/// The stock `forward_port`'s default guest port.
fn default_guest_port() -> Num<u16> {
    Num::Lit(80)
}

fn default_status() -> Num<u16> {
    Num::Lit(200)
}

/// Checks on a command's result. All given checks must hold, and a failure
/// reports every one that does not.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expect {
    /// Substrings the output must contain (one string or a list in the plan).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "one_or_many")]
    pub contains: Vec<String>,
    /// Substrings the output must not contain.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "one_or_many")]
    pub not_contains: Vec<String>,
    /// Compared with the output after trimming trailing newlines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// A regular expression (Rust `regex` / Python `re` common subset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    /// Expected exit status; default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<Num<i32>>,
    /// The output parsed as JSON must contain this value: attribute sets
    /// match when every given attribute matches (recursively, also inside
    /// lists, which must have the same length); other values must be equal
    /// (numbers by value). Checked on the host, so the guest needs no `jq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
}

/// A list that is written as a single value when it has one item (plans
/// from before lists stay readable, and one-item plans look as before).
mod one_or_many {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(items: &[String], s: S) -> Result<S::Ok, S::Error> {
        match items {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        })
    }
}

impl Expect {
    pub fn is_empty(&self) -> bool {
        *self == Expect::default()
    }
}

impl Action {
    /// The description key that names this action (e.g. `waitForUnit`).
    pub fn key(&self) -> &'static str {
        match self {
            Action::WaitForUnit { .. } => "waitForUnit",
            Action::WaitForOpenPort { .. } => "waitForOpenPort",
            Action::WaitForClosedPort { .. } => "waitForClosedPort",
            Action::WaitForFile { .. } => "waitForFile",
            Action::WaitForOpenUnixSocket { .. } => "waitForOpenUnixSocket",
            Action::WaitForConsoleText { .. } => "waitForConsoleText",
            Action::Succeed { .. } => "succeed",
            Action::Fail { .. } => "fail",
            Action::WaitUntilSucceeds { .. } => "waitUntilSucceeds",
            Action::Execute { .. } => "execute",
            Action::WaitUntilFails { .. } => "waitUntilFails",
            Action::Systemctl { .. } => "systemctl",
            Action::RequireUnitState { .. } => "requireUnitState",
            Action::StartJob { .. } => "startJob",
            Action::StopJob { .. } => "stopJob",
            Action::Sleep { .. } => "sleep",
            Action::Http { .. } => "http",
            Action::Start => "start",
            Action::Shutdown => "shutdown",
            Action::WaitForShutdown => "waitForShutdown",
            Action::Crash => "crash",
            Action::Reboot => "reboot",
            Action::Block => "block",
            Action::Unblock => "unblock",
            Action::CopyFromVm { .. } => "copyFromVm",
            Action::CopyFromHost { .. } => "copyFromHost",
            Action::ForwardPort { .. } => "forwardPort",
            Action::Screenshot { .. } => "screenshot",
            Action::SendKeys { .. } => "sendKeys",
            Action::SendChars { .. } => "sendChars",
            Action::WaitUntilTtyMatches { .. } => "waitUntilTtyMatches",
            Action::DumpTtyContents { .. } => "dumpTtyContents",
            Action::WaitForText { .. } => "waitForText",
            Action::WaitForX => "waitForX",
            Action::WaitForWindow { .. } => "waitForWindow",
            Action::Subtest { .. } => "subtest",
            Action::Snapshot { .. } => "snapshot",
            Action::Restore { .. } => "restore",
            Action::Python { .. } => "python",
        }
    }

    /// Whether the action acts on one node (everything but `sleep`,
    /// `subtest` and the snapshot steps, which act on all nodes).
    pub fn needs_node(&self) -> bool {
        !matches!(
            self,
            Action::Sleep { .. }
                | Action::Subtest { .. }
                | Action::Snapshot { .. }
                | Action::Restore { .. }
                | Action::Python { .. }
        )
    }

    /// Default timeout in seconds. Waits get generous budgets because boot
    /// under TCG is slow; commands are bounded too (the stock driver's
    /// `succeed` is unbounded, which hangs builds until Hydra kills them).
    pub fn default_timeout(&self) -> Option<f64> {
        match self {
            Action::WaitForUnit { .. }
            | Action::WaitForOpenPort { .. }
            | Action::WaitForClosedPort { .. }
            | Action::WaitForFile { .. }
            | Action::WaitForOpenUnixSocket { .. }
            | Action::WaitForShutdown
            | Action::WaitForConsoleText { .. }
            | Action::WaitUntilSucceeds { .. }
            | Action::WaitUntilFails { .. }
            | Action::WaitUntilTtyMatches { .. }
            | Action::WaitForText { .. }
            | Action::WaitForX
            | Action::WaitForWindow { .. } => Some(300.0),
            Action::SendKeys { .. } | Action::SendChars { .. } | Action::DumpTtyContents { .. } => Some(60.0),
            Action::Succeed { .. } | Action::Execute { .. } | Action::Fail { .. } | Action::Http { .. } => {
                Some(120.0)
            }
            Action::CopyFromVm { .. } | Action::CopyFromHost { .. } | Action::Screenshot { .. } => Some(60.0),
            Action::ForwardPort { .. } => Some(30.0),
            // The stock methods take no timeout: `execute`'s default bounds them.
            Action::Systemctl { .. }
            | Action::RequireUnitState { .. }
            | Action::StartJob { .. }
            | Action::StopJob { .. } => Some(STOCK_EXECUTE_TIMEOUT),
            Action::Start | Action::Reboot => Some(600.0),
            Action::Shutdown | Action::Crash => Some(120.0),
            Action::Block | Action::Unblock => Some(30.0),
            Action::Snapshot { .. } | Action::Restore { .. } => Some(300.0),
            Action::Sleep { .. } | Action::Subtest { .. } | Action::Python { .. } => None,
        }
    }
}

impl Action {
    /// The name this action captures its output under, if any.
    pub fn capture(&self) -> Option<&str> {
        match self {
            Action::Succeed { capture, .. }
            | Action::WaitUntilSucceeds { capture, .. }
            | Action::Execute { capture, .. }
            | Action::Systemctl { capture, .. } => capture.as_deref(),
            _ => None,
        }
    }
}

impl Step {
    /// The effective timeout: the explicit one or the action's default.
    pub fn effective_timeout(&self) -> Option<Num<f64>> {
        self.timeout.or_else(|| self.action.default_timeout().map(Num::Lit))
    }
}

/// Every action key, in documentation order (for "did you mean" hints).
pub const ACTION_KEYS: &[&str] = &[
    "waitForUnit",
    "waitForOpenPort",
    "waitForClosedPort",
    "waitForFile",
    "waitForOpenUnixSocket",
    "waitForConsoleText",
    "succeed",
    "fail",
    "waitUntilSucceeds",
    "waitUntilFails",
    "execute",
    "systemctl",
    "requireUnitState",
    "startJob",
    "stopJob",
    "sleep",
    "http",
    "snapshot",
    "restore",
    "start",
    "shutdown",
    "waitForShutdown",
    "crash",
    "reboot",
    "block",
    "unblock",
    "copyFromVm",
    "copyFromHost",
    "forwardPort",
    "screenshot",
    "sendKeys",
    "sendChars",
    "waitUntilTtyMatches",
    "dumpTtyContents",
    "waitForText",
    "waitForX",
    "waitForWindow",
    "subtest",
    "python",
];
