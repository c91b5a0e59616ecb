//! Run-wide stop conditions shared by every blocking wait: a count of
//! SIGINT/SIGTERM/SIGHUP received and the global deadline. Waits poll it in
//! short slices, so a stop takes effect within about 100 ms anywhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Why the run stops early.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StopReason {
    #[error("interrupted by a signal")]
    Interrupted,
    #[error("the global timeout expired")]
    GlobalTimeout,
}

/// Cloneable handle checked by every wait.
#[derive(Clone, Debug)]
pub struct Abort {
    signals: Arc<AtomicUsize>,
    deadline: Option<Instant>,
}

/// Longest slice a wait sleeps or blocks before it checks [`Abort`] again.
pub const SLICE: Duration = Duration::from_millis(100);

impl Abort {
    /// `signals` counts the signals received; `global_timeout` starts now.
    pub fn new(signals: Arc<AtomicUsize>, global_timeout: Option<Duration>) -> Abort {
        Abort { signals, deadline: global_timeout.map(|t| Instant::now() + t) }
    }

    /// Never stops (tests).
    pub fn never() -> Abort {
        Abort { signals: Arc::new(AtomicUsize::new(0)), deadline: None }
    }

    pub fn check(&self) -> Result<(), StopReason> {
        if self.signals.load(Ordering::Relaxed) > 0 {
            return Err(StopReason::Interrupted);
        }
        match self.deadline {
            Some(d) if Instant::now() >= d => Err(StopReason::GlobalTimeout),
            _ => Ok(()),
        }
    }

    /// A second signal: cleanup skips the grace period (nextest style).
    pub fn hurry(&self) -> bool {
        self.signals.load(Ordering::Relaxed) > 1
    }

    /// The global deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Sleeps `d` in slices, returning early when the run stops.
    pub fn sleep(&self, d: Duration) -> Result<(), StopReason> {
        let end = Instant::now() + d;
        loop {
            self.check()?;
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            std::thread::sleep((end - now).min(SLICE));
        }
    }
}
