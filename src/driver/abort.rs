//! Run-wide stop conditions shared by every blocking wait: a signal flag set
//! by the SIGINT/SIGTERM handler and the global deadline. Waits poll it in
//! short slices, so a stop takes effect within about 100 ms anywhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    signal: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

/// Longest slice a wait sleeps or blocks before it checks [`Abort`] again.
pub const SLICE: Duration = Duration::from_millis(100);

impl Abort {
    /// `signal` is the flag the signal handler sets; `global_timeout` starts now.
    pub fn new(signal: Arc<AtomicBool>, global_timeout: Option<Duration>) -> Abort {
        Abort { signal, deadline: global_timeout.map(|t| Instant::now() + t) }
    }

    /// Never stops (tests).
    pub fn never() -> Abort {
        Abort { signal: Arc::new(AtomicBool::new(false)), deadline: None }
    }

    pub fn check(&self) -> Result<(), StopReason> {
        if self.signal.load(Ordering::Relaxed) {
            return Err(StopReason::Interrupted);
        }
        match self.deadline {
            Some(d) if Instant::now() >= d => Err(StopReason::GlobalTimeout),
            _ => Ok(()),
        }
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
