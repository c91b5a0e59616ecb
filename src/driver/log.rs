//! The live log on stderr, in the stock driver's format (reference §6.1):
//! `<node>: <msg>` lines, nested blocks closed by
//! `(finished: <msg>, in N.NN seconds)`, serial lines as `<node> # <line>`
//! and test errors prefixed with `!!! `.

use std::io::Write;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `--log-level`: lines below it are not printed (errors always are).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    #[default]
    Info,
    Warning,
    Error,
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Level, String> {
        match s.to_ascii_lowercase().as_str() {
            "debug" => Ok(Level::Debug),
            "info" => Ok(Level::Info),
            "warning" | "warn" => Ok(Level::Warning),
            "error" => Ok(Level::Error),
            other => Err(format!("unknown log level `{other}` (expected debug, info, warning or error)")),
        }
    }
}

type Sink = Box<dyn Write + Send>;

/// Shared, line-atomic writer for every thread of the driver.
pub struct Log {
    level: Level,
    color: bool,
    out: Mutex<Sink>,
}

/// Text captured by [`Log::capture`].
pub type Captured = Arc<Mutex<Vec<u8>>>;

struct CaptureWriter(Captured);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    pub fn stderr(level: Level, color: bool) -> Log {
        Log { level, color, out: Mutex::new(Box::new(std::io::stderr())) }
    }

    /// A log writing into memory, without colour (tests, goldens).
    pub fn capture(level: Level) -> (Log, Captured) {
        let buf: Captured = Arc::default();
        (Log { level, color: false, out: Mutex::new(Box::new(CaptureWriter(buf.clone()))) }, buf)
    }

    fn write(&self, level: Level, line: &str) {
        if level < self.level && level != Level::Error {
            return;
        }
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // A closed stderr must not abort the run; the reports still get written.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    fn prefix(node: Option<&str>) -> String {
        node.map(|n| format!("{n}: ")).unwrap_or_default()
    }

    pub fn debug(&self, node: Option<&str>, msg: &str) {
        let line = format!("{}{msg}", Self::prefix(node));
        self.write(Level::Debug, &self.paint("2", &line));
    }

    pub fn info(&self, node: Option<&str>, msg: &str) {
        self.write(Level::Info, &format!("{}{msg}", Self::prefix(node)));
    }

    pub fn warning(&self, node: Option<&str>, msg: &str) {
        self.write(Level::Warning, &format!("{}{msg}", Self::prefix(node)));
    }

    /// A test error: every line prefixed with a red `!!! `.
    pub fn test_error(&self, msg: &str) {
        for line in msg.lines() {
            self.write(Level::Warning, &format!("{}{line}", self.paint("31", "!!! ")));
        }
    }

    /// The header of a nested block (bold green, the node prefix outside).
    pub fn header(&self, node: Option<&str>, msg: &str) {
        self.write(Level::Info, &format!("{}{}", Self::prefix(node), self.paint("1;32", msg)));
    }

    /// The end of a nested block.
    pub fn finished(&self, node: Option<&str>, msg: &str, took: Duration) {
        let secs = took.as_secs_f64();
        self.write(Level::Info, &format!("{}(finished: {msg}, in {secs:.2} seconds)", Self::prefix(node)));
    }

    /// One line of a node's serial console.
    pub fn serial(&self, node: &str, line: &str) {
        self.write(Level::Info, &self.paint("2", &format!("{node} # {line}")));
    }

    /// A line printed as is at `level`.
    pub fn plain(&self, level: Level, line: &str) {
        self.write(level, line);
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_stock_driver() {
        let (log, buf) = Log::capture(Level::Info);
        log.header(Some("machine"), "waiting for unit a.service");
        log.serial("machine", "hello");
        log.finished(Some("machine"), "waiting for unit a.service", Duration::from_millis(1234));
        log.debug(None, "hidden");
        log.test_error("one\ntwo");
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "machine: waiting for unit a.service\nmachine # hello\n\
             machine: (finished: waiting for unit a.service, in 1.23 seconds)\n!!! one\n!!! two\n"
        );
    }

    #[test]
    fn parses_levels() {
        assert_eq!("WARNING".parse::<Level>(), Ok(Level::Warning));
        assert!("loud".parse::<Level>().is_err());
    }
}
