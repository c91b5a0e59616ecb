//! The serial console (QEMU's stdout): a reader thread splits it into lines,
//! logs them as `<node> # <line>` and keeps them for `waitForConsoleText` and
//! for the context of failures. QEMU's (and the start script's) stderr is
//! read apart: logged as `<node>: qemu: <line>` and kept for failures, but
//! never console output, so `waitForConsoleText` cannot match QEMU's own
//! messages (the stock driver leaves stderr to its own stderr).

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use regex::Regex;

use super::abort::{Abort, SLICE, StopReason};
use super::log::Log;

/// Lines kept in memory; older ones are dropped (a chatty guest must not grow
/// the driver without bound).
const MAX_LINES: usize = 20_000;

/// Lines of QEMU's stderr kept for failures.
const MAX_STDERR_LINES: usize = 200;

/// Which of QEMU's outputs a reader reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// stdout: the serial console (`-serial stdio`).
    Serial,
    /// stderr: QEMU's and the start script's own messages.
    Stderr,
}

#[derive(Default)]
struct State {
    lines: VecDeque<String>,
    /// Number of lines dropped from the front of `lines`.
    dropped: usize,
    /// Absolute index of the first line not yet consumed by a console wait.
    consumed: usize,
    /// Reader threads still running.
    open_readers: usize,
    /// The last lines of QEMU's stderr (not console output).
    stderr: VecDeque<String>,
    /// Absolute line ranges no console wait may match: what the guest printed
    /// in a timeline a snapshot restore abandoned.
    hidden: Vec<(usize, usize)>,
    /// Bumped by every [`Console::reset`] (a new QEMU), so a [`ConsoleMark`]
    /// of an earlier QEMU is recognised.
    generation: u64,
}

/// Where a console stood when a snapshot was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleMark {
    generation: u64,
    consumed: usize,
    total: usize,
}

/// Lines of one node's console since its last start.
#[derive(Default)]
pub struct Console {
    state: Mutex<State>,
    changed: Condvar,
}

/// Outcome of [`Console::wait_for`].
#[derive(Debug, PartialEq, Eq)]
pub enum ConsoleWait {
    Found(String),
    TimedOut,
}

impl Console {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets everything (on each start, like the stock driver).
    pub fn reset(&self) {
        let mut st = self.lock();
        let open_readers = st.open_readers;
        let generation = st.generation + 1;
        *st = State { open_readers, generation, ..State::default() };
    }

    /// The current position, for [`Console::rewind`].
    pub fn mark(&self) -> ConsoleMark {
        let st = self.lock();
        ConsoleMark { generation: st.generation, consumed: st.consumed, total: st.dropped + st.lines.len() }
    }

    /// After a snapshot restore: console waits see again what they saw when
    /// `mark` was taken (the lines printed before the snapshot that no wait
    /// had consumed), and never what the guest printed since (that timeline
    /// is gone). The lines stay in the log and in failure context. If QEMU
    /// was restarted since the mark, everything printed so far is hidden.
    pub fn rewind(&self, mark: ConsoleMark) {
        let mut st = self.lock();
        let total = st.dropped + st.lines.len();
        if mark.generation == st.generation && mark.total <= total {
            st.hidden.push((mark.total, total));
            st.consumed = mark.consumed;
        } else {
            st.consumed = total;
        }
        let dropped = st.dropped;
        st.hidden.retain(|&(_, end)| end > dropped);
    }

    pub fn push(&self, line: String) {
        let mut st = self.lock();
        st.lines.push_back(line);
        if st.lines.len() > MAX_LINES {
            st.lines.pop_front();
            st.dropped += 1;
        }
        drop(st);
        self.changed.notify_all();
    }

    fn close(&self) {
        let mut st = self.lock();
        st.open_readers = st.open_readers.saturating_sub(1);
        drop(st);
        self.changed.notify_all();
    }

    /// Keeps a line of QEMU's stderr.
    pub fn push_stderr(&self, line: String) {
        let mut st = self.lock();
        st.stderr.push_back(line);
        if st.stderr.len() > MAX_STDERR_LINES {
            st.stderr.pop_front();
        }
    }

    /// The last `n` lines of QEMU's stderr.
    pub fn stderr_tail(&self, n: usize) -> Vec<String> {
        let st = self.lock();
        st.stderr.iter().skip(st.stderr.len().saturating_sub(n)).cloned().collect()
    }

    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let st = self.lock();
        st.lines.iter().skip(st.lines.len().saturating_sub(n)).cloned().collect()
    }

    /// Waits until `regex` matches the not yet consumed lines (joined with
    /// `\n`, so one pattern may span lines); the lines up to the match are then
    /// consumed. Unlike the stock driver this sees every line at once and
    /// wakes up as soon as a line arrives.
    pub fn wait_for(
        &self,
        regex: &Regex,
        deadline: Instant,
        abort: &Abort,
    ) -> Result<ConsoleWait, StopReason> {
        let mut st = self.lock();
        loop {
            let start = st.consumed.saturating_sub(st.dropped);
            let mut text = String::new();
            // (end of the line in `text`, absolute index of the line)
            let mut ends = Vec::new();
            for (i, line) in st.lines.iter().enumerate().skip(start) {
                let abs = st.dropped + i;
                if st.hidden.iter().any(|&(from, to)| (from..to).contains(&abs)) {
                    continue;
                }
                text.push_str(line);
                ends.push((text.len(), abs));
                text.push('\n');
            }
            if let Some(m) = crate::spec::pattern::find(regex, &text) {
                let after = ends.iter().find(|&&(e, _)| e >= m.end()).or(ends.last());
                st.consumed = after.map_or(st.consumed, |&(_, abs)| abs + 1);
                return Ok(ConsoleWait::Found(m.as_str().to_owned()));
            }
            // The lock is held from the scan into `wait_timeout`, so a line
            // pushed in between cannot be missed until the next slice.
            abort.check()?;
            let now = Instant::now();
            if now >= deadline {
                return Ok(ConsoleWait::TimedOut);
            }
            let (guard, _) =
                self.changed.wait_timeout(st, (deadline - now).min(SLICE)).unwrap_or_else(|e| e.into_inner());
            st = guard;
        }
    }

    /// Whether every reader saw EOF (QEMU closed its stdout and stderr).
    pub fn is_closed(&self) -> bool {
        self.lock().open_readers == 0
    }

    /// Starts the reader thread over `source` (QEMU's stdout or stderr).
    pub fn spawn_reader(
        self: &Arc<Self>,
        node: String,
        stream: Stream,
        mut source: impl Read + Send + 'static,
        log: Arc<Log>,
    ) -> std::io::Result<JoinHandle<()>> {
        let console = Arc::clone(self);
        console.lock().open_readers += 1;
        let name = match stream {
            Stream::Serial => format!("serial-{node}"),
            Stream::Stderr => format!("stderr-{node}"),
        };
        let res = std::thread::Builder::new().name(name).spawn(move || {
            let mut pending: Vec<u8> = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = match source.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                pending.extend_from_slice(&chunk[..n]);
                while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                    let raw: Vec<u8> = pending.drain(..=pos).collect();
                    console.emit(&node, stream, &raw, &log);
                }
            }
            if !pending.is_empty() {
                console.emit(&node, stream, &pending, &log);
            }
            console.close();
        });
        if res.is_err() {
            self.close();
        }
        res
    }

    fn emit(&self, node: &str, stream: Stream, raw: &[u8], log: &Log) {
        let text = String::from_utf8_lossy(raw).replace('\r', "");
        let line = text.trim_end().to_owned();
        match stream {
            Stream::Serial => {
                log.serial(node, &line);
                self.push(line);
            }
            Stream::Stderr => {
                log.info(Some(node), &format!("qemu: {line}"));
                self.push_stderr(line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::log::Level;
    use std::time::Duration;

    #[test]
    fn matches_across_lines_and_consumes() {
        let c = Console::default();
        c.push("booting".into());
        c.push("login: ready".into());
        let far = Instant::now() + Duration::from_secs(5);
        let re = Regex::new("booting\nlogin").unwrap();
        assert_eq!(
            c.wait_for(&re, far, &Abort::never()).unwrap(),
            ConsoleWait::Found("booting\nlogin".into())
        );
        // Consumed: the same text is not found twice.
        let soon = Instant::now() + Duration::from_millis(50);
        assert_eq!(c.wait_for(&re, soon, &Abort::never()).unwrap(), ConsoleWait::TimedOut);
    }

    /// As in the stock driver, whose buffer ends with the last line's text,
    /// `$` matches at the end of the last line (issue 11).
    #[test]
    fn dollar_matches_at_the_end_of_the_last_line() {
        let c = Console::default();
        c.push("machine login:".into());
        let soon = Instant::now() + Duration::from_millis(50);
        let re = Regex::new("login:$").unwrap();
        assert_eq!(c.wait_for(&re, soon, &Abort::never()).unwrap(), ConsoleWait::Found("login:".into()));
    }

    #[test]
    fn rewind_shows_unconsumed_lines_again_and_hides_the_abandoned_timeline() {
        let c = Console::default();
        let soon = || Instant::now() + Duration::from_millis(30);
        let never = Abort::never();
        c.push("booted".into());
        c.push("ready A".into());
        let a = Regex::new("ready A").unwrap();
        // "booted" is consumed before the mark, "ready A" is not.
        assert!(matches!(
            c.wait_for(&Regex::new("booted").unwrap(), soon(), &never),
            Ok(ConsoleWait::Found(_))
        ));
        let mark = c.mark();
        assert!(matches!(c.wait_for(&a, soon(), &never), Ok(ConsoleWait::Found(_))));
        c.push("after snapshot B".into());
        c.rewind(mark);
        c.push("after restore C".into());
        let b = Regex::new("after snapshot B").unwrap();
        assert_eq!(c.wait_for(&b, soon(), &never).unwrap(), ConsoleWait::TimedOut);
        assert!(matches!(c.wait_for(&a, soon(), &never), Ok(ConsoleWait::Found(_))));
        assert!(matches!(
            c.wait_for(&Regex::new("after restore C").unwrap(), soon(), &never),
            Ok(ConsoleWait::Found(_))
        ));
        assert_eq!(
            c.wait_for(&Regex::new("booted").unwrap(), soon(), &never).unwrap(),
            ConsoleWait::TimedOut
        );
        // A mark from before a restart hides everything of the new QEMU so far.
        c.reset();
        c.push("new boot".into());
        c.rewind(mark);
        assert_eq!(
            c.wait_for(&Regex::new("new boot").unwrap(), soon(), &never).unwrap(),
            ConsoleWait::TimedOut
        );
    }

    #[test]
    fn wakes_up_when_a_line_arrives() {
        let c = Arc::new(Console::default());
        let c2 = c.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            let at = Instant::now();
            c2.push("Reached target Multi-User".into());
            at
        });
        let re = Regex::new("Multi-User").unwrap();
        let far = Instant::now() + Duration::from_secs(5);
        assert!(matches!(c.wait_for(&re, far, &Abort::never()).unwrap(), ConsoleWait::Found(_)));
        let seen = Instant::now();
        let pushed = t.join().unwrap();
        assert!(seen.duration_since(pushed) < Duration::from_millis(50), "latency {:?}", seen - pushed);
    }

    #[test]
    fn reader_splits_lines_and_strips_cr() {
        let (log, buf) = Log::capture(Level::Info);
        let c = Arc::new(Console::default());
        let src = std::io::Cursor::new(b"a\r\nb\xff  \npartial".to_vec());
        c.spawn_reader("m".into(), Stream::Serial, src, Arc::new(log)).unwrap().join().unwrap();
        assert_eq!(c.tail(10), vec!["a".to_owned(), "b\u{fffd}".to_owned(), "partial".to_owned()]);
        assert!(c.is_closed());
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "m # a\nm # b\u{fffd}\nm # partial\n");
    }

    #[test]
    fn stderr_is_logged_and_kept_but_is_not_console_output() {
        let (log, buf) = Log::capture(Level::Info);
        let log = Arc::new(log);
        let c = Arc::new(Console::default());
        let err =
            std::io::Cursor::new(b"qemu-system-x86_64: warning: host doesn't support feature\n".to_vec());
        c.spawn_reader("m".into(), Stream::Stderr, err, log.clone()).unwrap().join().unwrap();
        c.spawn_reader("m".into(), Stream::Serial, std::io::Cursor::new(b"login\n".to_vec()), log)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(c.tail(10), ["login"]);
        assert_eq!(c.stderr_tail(10), ["qemu-system-x86_64: warning: host doesn't support feature"]);
        let re = Regex::new("warning").unwrap();
        let soon = Instant::now() + Duration::from_millis(50);
        assert_eq!(c.wait_for(&re, soon, &Abort::never()).unwrap(), ConsoleWait::TimedOut);
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert!(text.contains("m: qemu: qemu-system-x86_64: warning"), "{text}");
        assert!(text.contains("m # login"), "{text}");
    }
}
