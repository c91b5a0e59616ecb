//! nixvm-driver: boots the nodes' VMs through their `run-<node>-vm` scripts,
//! speaks the NixOS backdoor protocol and executes a [`crate::plan::Plan`].
//!
//! Layout: [`mod@run`] orchestrates; [`vm`] owns one QEMU (with [`shell`],
//! [`monitor`] and [`console`] as its channels); [`vlan`] runs the switches;
//! [`steps`] executes actions; [`events`] feed the [`report`] sinks; [`os`]
//! holds the process-group plumbing, [`teardown`] stops everything at the
//! end ([`orphans`]: processes that left their group), and [`abort`] holds
//! the run-wide stop conditions. See `docs/driver.md`.

pub mod abort;
pub mod config;
pub mod console;
pub mod events;
pub mod interactive;
pub mod log;
pub mod monitor;
pub mod orphans;
pub mod os;
pub mod report;
pub mod run;
pub mod shell;
pub mod snapshot;
pub mod steps;
pub mod stream;
pub mod teardown;
pub mod tools;
pub mod vlan;
pub mod vm;

#[cfg(test)]
mod fake_guest;
#[cfg(test)]
pub(crate) mod testing;

pub use run::{Outcome, RunOptions, SetupError, run};
