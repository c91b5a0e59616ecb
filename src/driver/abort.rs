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
    /// [`Abort::hurry`] once more signals than this arrived.
    hurry_above: usize,
    /// [`Abort::hurry`] also once the deadline passed (a teardown that
    /// began before it).
    hurry_at_deadline: bool,
}

/// Longest slice a wait sleeps or blocks before it checks [`Abort`] again.
pub const SLICE: Duration = Duration::from_millis(100);

/// Longest wait the driver arms: timeouts from the plan or the
/// configuration beyond it are clamped, so no deadline overflows `Instant`
/// (which panics).
pub const MAX_WAIT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// `now + d`, with `d` clamped to [`MAX_WAIT`].
pub fn deadline_after(d: Duration) -> Instant {
    Instant::now() + d.min(MAX_WAIT)
}

/// Seconds read from JSON as a duration: negative becomes zero and
/// anything beyond [`MAX_WAIT`] is clamped (`Duration::from_secs_f64`
/// panics on both).
pub fn secs_f64(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).map_or(MAX_WAIT, |d| d.min(MAX_WAIT))
}

impl Abort {
    /// `signals` counts the signals received; `global_timeout` starts now.
    pub fn new(signals: Arc<AtomicUsize>, global_timeout: Option<Duration>) -> Abort {
        Abort {
            signals,
            deadline: global_timeout.map(deadline_after),
            hurry_above: 1,
            hurry_at_deadline: false,
        }
    }

    /// Never stops (tests).
    pub fn never() -> Abort {
        Abort {
            signals: Arc::new(AtomicUsize::new(0)),
            deadline: None,
            hurry_above: 1,
            hurry_at_deadline: false,
        }
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
        self.signals.load(Ordering::Relaxed) > self.hurry_above
            || (self.hurry_at_deadline && self.deadline_passed())
    }

    /// The handle for the teardown: when no signal stopped the run, the
    /// first one that arrives during the teardown already skips the grace
    /// period (the teardown is what the user asks to stop); so does the
    /// global deadline when it passes during the teardown. What stopped the
    /// run leaves the teardown its grace period, so that QEMU and the start
    /// scripts can end their own processes.
    pub fn for_teardown(&self) -> Abort {
        Abort {
            hurry_above: self.signals.load(Ordering::Relaxed).min(1),
            hurry_at_deadline: !self.deadline_passed(),
            ..self.clone()
        }
    }

    /// Whether the global deadline has passed.
    pub fn deadline_passed(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Whether a signal arrived (at any time).
    pub fn interrupted(&self) -> bool {
        self.signals.load(Ordering::Relaxed) > 0
    }

    /// The global deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Sleeps `d` in slices, returning early when the run stops.
    pub fn sleep(&self, d: Duration) -> Result<(), StopReason> {
        let end = deadline_after(d);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_timeouts_are_clamped_not_panics() {
        assert_eq!(secs_f64(-1.0), Duration::ZERO);
        assert_eq!(secs_f64(f64::NAN), Duration::ZERO);
        assert_eq!(secs_f64(1e300), MAX_WAIT);
        assert_eq!(secs_f64(1.5), Duration::from_millis(1500));
        let abort = Abort::new(Arc::new(AtomicUsize::new(0)), Some(Duration::from_secs(u64::MAX)));
        assert!(abort.check().is_ok());
    }

    #[test]
    fn the_teardown_hurries_at_the_first_signal_or_the_deadline() {
        let signals = Arc::new(AtomicUsize::new(0));
        let run = Abort::new(signals.clone(), Some(Duration::from_millis(200)));
        let teardown = run.for_teardown();
        assert!(!teardown.hurry());
        std::thread::sleep(Duration::from_millis(300));
        assert!(!run.hurry(), "a passed deadline stops the steps, it does not hurry them");
        assert!(teardown.hurry(), "a deadline passing in the teardown cuts it short");
        assert!(!run.for_teardown().hurry(), "a run the deadline stopped gets its grace period");
        let run = Abort::new(signals.clone(), None);
        let teardown = run.for_teardown();
        assert!(!teardown.hurry());
        signals.fetch_add(1, Ordering::Relaxed);
        assert!(teardown.hurry() && !run.hurry());
        // A signal that stopped the run: the teardown hurries at the second.
        let teardown = run.for_teardown();
        assert!(!teardown.hurry());
        signals.fetch_add(1, Ordering::Relaxed);
        assert!(teardown.hurry());
    }
}
