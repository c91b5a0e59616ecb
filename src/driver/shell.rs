//! The backdoor shell protocol over the `shell` socket (QEMU's virtconsole,
//! the guest's `/dev/hvc0`): after the ready marker the driver offers the
//! guest its helpers ([`crate::guest::backdoor`]) and uses them when the
//! guest can ([`Protocol::Fast`]); otherwise commands are framed exactly like
//! the stock driver (reference §3.2). Either way with what the stock driver
//! lacks: a host-side deadline on every read, EOF detection, a rolling buffer
//! for the ready marker, and resynchronisation after a command that never
//! answered.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use base64::Engine;

use super::abort::{Abort, StopReason};
use super::stream::{ReadError, read_chunk};
use crate::guest::backdoor::{self, REPLY_MARK, STOCK_ANSWER};

/// Printed by the guest's `backdoor.service` right before `exec bash`.
pub const READY_MARKER: &[u8] = b"Spawning backdoor root shell...";

/// Quoting identical to Python's `shlex.quote` (shared with the generated
/// Python scripts, so both backends send byte-identical command lines).
pub use crate::guest::shell_quote;

/// How commands are framed on one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// The stock driver's framing: `timeout`, `bash -c`, `base64`, then
    /// `echo ${PIPESTATUS[0]}`.
    Stock,
    /// The helpers of [`crate::guest::backdoor`]: one fork and one round trip.
    Fast,
}

impl Protocol {
    /// The protocol asked for by `NIXVM_BACKDOOR_PROTOCOL` (`stock` or
    /// `fast`, the default: fast when the guest can).
    pub fn preferred() -> Protocol {
        match std::env::var("NIXVM_BACKDOOR_PROTOCOL").as_deref() {
            Ok("stock") => Protocol::Stock,
            _ => Protocol::Fast,
        }
    }
}

/// Whole seconds for the stock framing's `timeout` (busybox's takes integers
/// only): rounded to the nearest second, at least 1. The host waits longer,
/// which covers the rounding.
pub fn whole_secs(d: Duration) -> u64 {
    (d.as_secs_f64().round() as u64).max(1)
}

/// The line sent for one command: the guest runs it under `timeout`, in a
/// fresh `bash -c` with `set -euo pipefail`, and answers with its stdout as
/// one base64 line.
pub fn frame_command(command: &str, timeout_secs: Option<u64>) -> String {
    let inner = format!("set -euo pipefail; {command}");
    let prefix = timeout_secs.map(|t| format!("timeout {t}")).unwrap_or_default();
    format!("{prefix} bash -c {} | (base64 -w 0; echo)\n", shell_quote(&inner))
}

/// Why talking to the guest shell failed.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("no reply from the guest shell within {:.1} seconds", waited.as_secs_f64())]
    Timeout { waited: Duration },
    #[error("the guest closed the shell connection")]
    Eof,
    #[error("I/O error on the shell socket")]
    Io(#[from] io::Error),
    #[error("unexpected reply from the guest shell: {0}")]
    Protocol(String),
    #[error("the guest shell is still busy with an earlier command that never finished")]
    Busy,
    #[error(transparent)]
    Stopped(#[from] StopReason),
}

impl From<ReadError> for ShellError {
    fn from(e: ReadError) -> ShellError {
        match e {
            ReadError::Timeout(waited) => ShellError::Timeout { waited },
            ReadError::Eof => ShellError::Eof,
            ReadError::Io(e) => ShellError::Io(e),
            ReadError::Stopped(r) => ShellError::Stopped(r),
        }
    }
}

/// A finished command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Exit status of the command (124 when its deadline ended it).
    pub status: i32,
    pub stdout: Vec<u8>,
}

impl Reply {
    /// The output as text; the flag tells whether invalid UTF-8 was replaced.
    pub fn text(&self) -> (String, bool) {
        match String::from_utf8(self.stdout.clone()) {
            Ok(s) => (s, false),
            Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), true),
        }
    }
}

/// Client side of one backdoor connection.
pub struct Shell {
    stream: UnixStream,
    buf: Vec<u8>,
    /// A reply is still outstanding from a command the host gave up on.
    desynced: bool,
    /// The newline after the ready marker may still be in flight.
    skip_newline: bool,
    syncs: u64,
    /// The framing in use since the last ready marker.
    protocol: Protocol,
    /// What [`Shell::negotiate`] tries.
    preferred: Protocol,
    /// Number of the last fast-protocol command.
    seq: u64,
    /// Random offset of this connection's reply numbers: the guest echoes
    /// `base + seq`, so a header printed by a guest program (a fake marker,
    /// a log of an earlier session) does not carry a number the driver
    /// expects and is skipped instead of ending a command early.
    base: u64,
    /// The reply whose header starts the buffer and how many of its body
    /// bytes the host has acknowledged ([`backdoor::window_ack`]).
    acked: Option<(u64, usize)>,
}

/// Longest header line (`\x01NIXVM <seq> <status> <len>`) a reply can have:
/// a mark followed by more bytes without a newline is not a header.
const MAX_HEADER: usize = 80;

/// A fresh random reply-number base in `[2^62, 2^63)` (from the standard
/// library's per-process random hash keys: unpredictable, no extra crate).
fn random_base() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 2) | (1 << 62)
}

impl Shell {
    pub fn new(stream: UnixStream) -> Shell {
        Shell {
            stream,
            buf: Vec::new(),
            desynced: false,
            skip_newline: false,
            syncs: 0,
            protocol: Protocol::Stock,
            preferred: Protocol::preferred(),
            seq: 0,
            base: random_base(),
            acked: None,
        }
    }

    /// Sets what [`Shell::negotiate`] tries (tests, benchmarks).
    pub fn prefer(&mut self, protocol: Protocol) {
        self.preferred = protocol;
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Right after the ready marker: offers the guest the fast helpers and
    /// uses them if it accepts; stays with the stock framing if the guest
    /// answers `nixvm-stock` (no bash ≥ 5, no `mktemp`, …) or the fast
    /// protocol is not wanted.
    pub fn negotiate(&mut self, deadline: Instant, abort: &Abort) -> Result<Protocol, ShellError> {
        self.protocol = Protocol::Stock;
        if self.preferred == Protocol::Stock {
            return Ok(Protocol::Stock);
        }
        self.seq = 0;
        self.base = random_base();
        self.acked = None;
        self.send(&backdoor::negotiation_line())?;
        let started = Instant::now();
        let accept = [REPLY_MARK, b"0 0 0\n"].concat();
        loop {
            if let Some(pos) = find(&self.buf, &accept) {
                self.buf.drain(..pos + accept.len());
                self.protocol = Protocol::Fast;
                return Ok(Protocol::Fast);
            }
            if let Some(pos) = find(&self.buf, STOCK_ANSWER) {
                self.buf.drain(..pos + STOCK_ANSWER.len());
                return Ok(Protocol::Stock);
            }
            self.fill(deadline, abort, started)?;
        }
    }

    /// Reads one chunk into the buffer, waiting at most until `deadline`.
    fn fill(&mut self, deadline: Instant, abort: &Abort, started: Instant) -> Result<usize, ShellError> {
        let before = self.buf.len();
        let n = read_chunk(&mut self.stream, &mut self.buf, deadline, abort, started)?;
        if std::mem::take(&mut self.skip_newline) && self.buf.get(before) == Some(&b'\n') {
            self.buf.remove(before);
        }
        Ok(n)
    }

    /// Waits for the ready marker. The marker may arrive split across reads
    /// and after arbitrary noise; everything up to it is discarded.
    /// `on_chunk` sees the raw bytes (for debug logging).
    pub fn wait_ready(
        &mut self,
        deadline: Instant,
        abort: &Abort,
        mut on_chunk: impl FnMut(&[u8]),
    ) -> Result<(), ShellError> {
        let started = Instant::now();
        loop {
            if let Some(pos) = find(&self.buf, READY_MARKER) {
                let mut rest = self.buf.split_off(pos + READY_MARKER.len());
                if rest.first() == Some(&b'\n') {
                    rest.remove(0);
                } else if rest.is_empty() {
                    self.skip_newline = true;
                }
                self.buf = rest;
                self.acked = None;
                self.desynced = false;
                self.protocol = Protocol::Stock;
                return Ok(());
            }
            let keep = READY_MARKER.len() - 1;
            if self.buf.len() > keep {
                self.buf.drain(..self.buf.len() - keep);
            }
            let before = self.buf.len();
            self.fill(deadline, abort, started)?;
            on_chunk(&self.buf[before..]);
        }
    }

    fn read_line(&mut self, deadline: Instant, abort: &Abort) -> Result<Vec<u8>, ShellError> {
        let started = Instant::now();
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                return Ok(line);
            }
            self.fill(deadline, abort, started)?;
        }
    }

    fn send(&mut self, text: &str) -> Result<(), ShellError> {
        self.stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        self.stream.write_all(text.as_bytes()).map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => ShellError::Eof,
            _ => ShellError::Io(e),
        })
    }

    /// Writes a raw line that expects no reply (`poweroff`). A fast reply
    /// still outstanding is read first, until `deadline` at most: the guest
    /// waiting for its acknowledgement would swallow the line.
    pub fn send_raw(&mut self, line: &str, deadline: Instant, abort: &Abort) -> Result<(), ShellError> {
        if self.desynced && self.protocol == Protocol::Fast {
            let last = self.base + self.seq;
            match self.wait_fast_reply(last, deadline, abort, Instant::now()) {
                Ok(_) => self.desynced = false,
                Err(ShellError::Timeout { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.send(line)
    }

    /// Runs `command` in the guest. `guest_timeout` bounds it inside the
    /// guest (whole seconds with the stock framing); `deadline` bounds the
    /// host's wait for the reply. After a host timeout the connection is
    /// marked out of sync and the next call first skips the stale reply.
    pub fn execute(
        &mut self,
        command: &str,
        guest_timeout: Option<Duration>,
        deadline: Instant,
        abort: &Abort,
    ) -> Result<Reply, ShellError> {
        match self.protocol {
            Protocol::Fast => self.execute_fast(command, guest_timeout, deadline, abort),
            Protocol::Stock => self.execute_stock(command, guest_timeout.map(whole_secs), deadline, abort),
        }
    }

    /// One `__nixvm_x` line, one reply: the guest's probe `\x01NIXVM
    /// <base+seq> ?` until the host acknowledges it, then the header
    /// `\x01NIXVM <base+seq> <status> <len>` and `len` raw bytes, acknowledged
    /// every [`backdoor::WINDOW`] bytes. Replies of commands the host gave up
    /// on carry older numbers and are skipped; so are headers with numbers
    /// this connection never sent. While such a reply is outstanding nothing
    /// but acknowledgements is sent: the guest reads those from the channel
    /// it reads commands from, and would swallow a command line.
    fn execute_fast(
        &mut self,
        command: &str,
        guest_timeout: Option<Duration>,
        deadline: Instant,
        abort: &Abort,
    ) -> Result<Reply, ShellError> {
        let started = Instant::now();
        if self.desynced {
            let last = self.base + self.seq;
            self.wait_fast_reply(last, deadline, abort, started).map_err(|e| match e {
                ShellError::Timeout { .. } => ShellError::Busy,
                e => e,
            })?;
        }
        self.desynced = true;
        self.seq += 1;
        let seq = self.base + self.seq;
        self.send(&backdoor::command_line(seq, command, guest_timeout))?;
        let reply = self.wait_fast_reply(seq, deadline, abort, started)?;
        self.desynced = false;
        Ok(reply)
    }

    /// Reads until the reply numbered `seq` is complete, skipping others.
    fn wait_fast_reply(
        &mut self,
        seq: u64,
        deadline: Instant,
        abort: &Abort,
        started: Instant,
    ) -> Result<Reply, ShellError> {
        loop {
            match self.take_fast_reply()? {
                Some((n, reply)) if n == seq => return Ok(reply),
                Some(_) => continue,
                None => {}
            }
            self.fill(deadline, abort, started)?;
        }
    }

    /// A complete fast-protocol reply from the buffer, if there is one.
    /// Bytes before a header (none from a well-behaved guest) are dropped, and
    /// so is a mark that does not start a header this connection asked for
    /// (malformed, too long, or a number never sent): only the mark's first
    /// byte is dropped, so a real header right after it is still found.
    fn take_fast_reply(&mut self) -> Result<Option<(u64, Reply)>, ShellError> {
        loop {
            let Some(pos) = find(&self.buf, REPLY_MARK) else {
                let keep = REPLY_MARK.len() - 1;
                if self.buf.len() > keep {
                    self.buf.drain(..self.buf.len() - keep);
                }
                return Ok(None);
            };
            self.buf.drain(..pos);
            let line_end = self.buf.iter().take(MAX_HEADER).position(|&b| b == b'\n');
            let Some(nl) = line_end else {
                if self.buf.len() < MAX_HEADER {
                    return Ok(None);
                }
                self.buf.drain(..1);
                continue;
            };
            if let Some(seq) = self.parse_probe(&self.buf[REPLY_MARK.len()..nl]) {
                self.buf.drain(..=nl);
                self.send(&backdoor::probe_ack(seq))?;
                continue;
            }
            let Some((seq, status, len)) = self.parse_header(&self.buf[REPLY_MARK.len()..nl]) else {
                self.buf.drain(..1);
                continue;
            };
            let have = self.buf.len() - (nl + 1);
            let mut acked = self.acked.filter(|(s, _)| *s == seq).map_or(0, |(_, a)| a);
            while acked + backdoor::WINDOW < len && acked + backdoor::WINDOW <= have {
                acked += backdoor::WINDOW;
                self.send(&backdoor::window_ack(seq, acked))?;
            }
            self.acked = Some((seq, acked));
            let end = nl + 1 + len;
            if self.buf.len() < end {
                return Ok(None);
            }
            let stdout = self.buf[nl + 1..end].to_vec();
            self.buf.drain(..end);
            self.acked = None;
            return Ok(Some((seq, Reply { status, stdout })));
        }
    }

    /// `<seq> ?`, the probe before a reply this connection asked for.
    fn parse_probe(&self, line: &[u8]) -> Option<u64> {
        let seq = std::str::from_utf8(line.strip_suffix(b" ?")?).ok()?.parse::<u64>().ok()?;
        (self.base + 1..=self.base + self.seq).contains(&seq).then_some(seq)
    }

    /// `<seq> <status> <len>` of a header this connection sent the command
    /// for (a number in `base+1 ..= base+seq`), else `None`.
    fn parse_header(&self, header: &[u8]) -> Option<(u64, i32, usize)> {
        let header = std::str::from_utf8(header).ok()?;
        let mut fields = header.split(' ');
        let seq = fields.next()?.parse::<u64>().ok()?;
        let status = fields.next()?.parse::<i32>().ok()?;
        let len = fields.next()?.parse::<usize>().ok()?;
        let sent = self.base + 1..=self.base + self.seq;
        (fields.next().is_none() && sent.contains(&seq)).then_some((seq, status, len))
    }

    /// The stock framing (reference §3.2).
    fn execute_stock(
        &mut self,
        command: &str,
        guest_timeout: Option<u64>,
        deadline: Instant,
        abort: &Abort,
    ) -> Result<Reply, ShellError> {
        if self.desynced {
            self.resync(deadline, abort)?;
        }
        self.desynced = true;
        self.send(&frame_command(command, guest_timeout))?;
        let line = self.read_line(deadline, abort)?;
        let stdout = decode_base64(&line)?;
        self.send("echo ${PIPESTATUS[0]}\n")?;
        let status_line = self.read_line(deadline, abort)?;
        let text = String::from_utf8_lossy(&status_line);
        let status = text.trim().parse::<i32>().map_err(|_| {
            ShellError::Protocol(format!("expected an exit status, got {:?}", truncate(&text, 200)))
        })?;
        self.desynced = false;
        Ok(Reply { status, stdout })
    }

    /// After a snapshot restore: the restored guest shell is idle (snapshots
    /// are taken between commands), so whatever the host still holds or the
    /// socket still carries belongs to the abandoned timeline. Drops it, then
    /// runs `script` directly in the backdoor shell (no `bash -c`, no
    /// base64: the first commands after a restore are slow under TCG, which
    /// retranslates the guest's code) followed by `echo <token> $?`, and
    /// returns that status. Lines before the token are discarded.
    pub fn restored(&mut self, script: &str, deadline: Instant, abort: &Abort) -> Result<i32, ShellError> {
        self.buf.clear();
        self.acked = None;
        self.skip_newline = false;
        self.desynced = true;
        self.syncs += 1;
        let token = format!("nixvm-restored-{}-{}", std::process::id(), self.syncs);
        self.send(&format!("{script}\necho {token} $?\n"))?;
        loop {
            let line = self.read_line(deadline, abort)?;
            let text = String::from_utf8_lossy(&line);
            // A partial stale line may precede the token on its line.
            let needle = format!("{token} ");
            if let Some(rest) = text.trim_end().find(&needle).map(|p| &text.trim_end()[p + needle.len()..]) {
                self.desynced = false;
                return rest.trim().parse::<i32>().map_err(|_| {
                    ShellError::Protocol(format!("expected an exit status after {token}, got {rest:?}"))
                });
            }
        }
    }

    /// Whether an earlier command is still outstanding.
    pub fn is_desynced(&self) -> bool {
        self.desynced
    }

    fn resync(&mut self, deadline: Instant, abort: &Abort) -> Result<(), ShellError> {
        self.syncs += 1;
        let token = format!("nixvm-sync-{}-{}", std::process::id(), self.syncs);
        self.send(&format!("echo {token}\n"))?;
        loop {
            match self.read_line(deadline, abort) {
                Ok(line) if line == token.as_bytes() => {
                    self.desynced = false;
                    return Ok(());
                }
                Ok(_) => {}
                Err(ShellError::Timeout { .. }) => return Err(ShellError::Busy),
                Err(e) => return Err(e),
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes the reply line like Python's lenient `b64decode`: characters
/// outside the alphabet (a stray `\r`) are ignored.
fn decode_base64(line: &[u8]) -> Result<Vec<u8>, ShellError> {
    let clean: Vec<u8> = line
        .iter()
        .copied()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(&clean).map_err(|e| {
        ShellError::Protocol(format!(
            "the output line is not base64 ({e}): {:?}",
            truncate(&String::from_utf8_lossy(line), 200)
        ))
    })
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn quotes_like_python_shlex() {
        // Expected values computed with Python's shlex.quote.
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("abc-./_@%+=:,9"), "abc-./_@%+=:,9");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\"'\"'s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote("é"), "'é'");
    }

    #[test]
    fn frames_like_the_stock_driver() {
        assert_eq!(
            frame_command("echo hi", Some(5)),
            "timeout 5 bash -c 'set -euo pipefail; echo hi' | (base64 -w 0; echo)\n"
        );
        assert_eq!(frame_command("true", None), " bash -c 'set -euo pipefail; true' | (base64 -w 0; echo)\n");
    }

    #[test]
    fn stock_timeout_is_whole_seconds() {
        assert_eq!(whole_secs(Duration::from_millis(300)), 1);
        assert_eq!(whole_secs(Duration::from_millis(4999)), 5);
        assert_eq!(whole_secs(Duration::from_millis(2400)), 2);
    }

    #[test]
    fn decodes_leniently() {
        assert_eq!(decode_base64(b"aGk=\r").unwrap(), b"hi");
        assert!(decode_base64(b"a").is_err());
    }

    fn pair() -> (Shell, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (Shell::new(a), b)
    }

    #[test]
    fn finds_a_split_marker_after_noise() {
        let (mut shell, mut guest) = pair();
        let t = std::thread::spawn(move || {
            guest.write_all(b"connecting to host...\nnoise Spawning back").unwrap();
            std::thread::sleep(Duration::from_millis(30));
            guest.write_all(b"door root shell...").unwrap();
            std::thread::sleep(Duration::from_millis(30));
            guest.write_all(b"\n").unwrap();
            guest
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        shell.wait_ready(deadline, &Abort::never(), |_| {}).unwrap();
        let mut guest = t.join().unwrap();
        // The newline that followed the marker must not leak into the next reply.
        guest.write_all(b"aGk=\n0\n").unwrap();
        let reply =
            shell.execute("echo hi", Some(Duration::from_secs(3)), deadline, &Abort::never()).unwrap();
        assert_eq!(reply, Reply { status: 0, stdout: b"hi".to_vec() });
    }

    /// Reads from the guest side until `end`.
    fn read_until(guest: &mut UnixStream, end: &[u8]) -> String {
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(end) {
            guest.read_exact(&mut b).unwrap();
            got.push(b[0]);
        }
        String::from_utf8(got).unwrap()
    }

    /// Headers a guest program prints on the channel (guessed numbers,
    /// garbage, a mark without an end) are skipped: the command ends with
    /// its real reply, not earlier.
    #[test]
    fn fake_reply_headers_are_skipped() {
        let (mut shell, mut guest) = pair();
        shell.prefer(Protocol::Fast);
        let t = std::thread::spawn(move || {
            read_until(&mut guest, b"echo nixvm-stock ;; esac\n");
            guest.write_all(b"\x01NIXVM 0 0 0\n").unwrap();
            let line = read_until(&mut guest, b"\n");
            let seq: u64 = line.split(' ').nth(1).unwrap().parse().unwrap();
            let mut fakes = Vec::new();
            for guess in [0, 1, 2, seq + 1, seq - 1] {
                fakes.extend_from_slice(format!("\x01NIXVM {guess} 0 4\nfake").as_bytes());
            }
            fakes.extend_from_slice(b"\x01NIXVM garbage here\n\x01NIXVM 1 0\n\x01NIXVM ");
            fakes.extend_from_slice(&[b'9'; 300]);
            fakes.extend_from_slice(b"\n\x01\x01NIXVM");
            guest.write_all(&fakes).unwrap();
            guest.write_all(format!("\x01NIXVM {seq} 3 5\nreal\n").as_bytes()).unwrap();
            guest
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(shell.negotiate(deadline, &Abort::never()).unwrap(), Protocol::Fast);
        let reply = shell.execute("echo real", None, deadline, &Abort::never()).unwrap();
        assert_eq!(reply, Reply { status: 3, stdout: b"real\n".to_vec() });
        t.join().unwrap();
    }

    /// The host's side of the fast reply's flow control: it acknowledges the
    /// probe (after garbage) and every window of a long body, and after a
    /// host deadline sends the next command only once the stale reply is
    /// in (the guest reads acknowledgements where it reads commands).
    #[test]
    fn probes_and_windows_are_acknowledged() {
        use backdoor::WINDOW;
        let (mut shell, mut guest) = pair();
        guest.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        shell.prefer(Protocol::Fast);
        let len = 2 * WINDOW + 5;
        let t = std::thread::spawn(move || {
            read_until(&mut guest, b"echo nixvm-stock ;; esac\n");
            guest.write_all(b"\x01NIXVM 0 0 0\n").unwrap();
            let reply = |guest: &mut UnixStream, seq: u64, body: &[u8]| {
                guest.write_all(format!("junk\x01NIXVM {seq} ?\n").as_bytes()).unwrap();
                assert_eq!(read_until(guest, b"\n"), format!("#nixvm {seq}\n"));
                guest.write_all(format!("\x01NIXVM {seq} 0 {}\n", body.len()).as_bytes()).unwrap();
                for (i, window) in body.chunks(WINDOW).enumerate() {
                    guest.write_all(window).unwrap();
                    if (i + 1) * WINDOW < body.len() {
                        assert_eq!(read_until(guest, b"\n"), format!("#nixvm {seq} {}\n", (i + 1) * WINDOW));
                    }
                }
            };
            let seq = |line: String| line.split(' ').nth(1).unwrap().parse::<u64>().unwrap();
            let first = seq(read_until(&mut guest, b"\n"));
            reply(&mut guest, first, &vec![b'x'; len]);
            // The host gives up on the second command; its reply comes late.
            let second = seq(read_until(&mut guest, b"\n"));
            std::thread::sleep(Duration::from_millis(400));
            reply(&mut guest, second, b"late");
            let third = seq(read_until(&mut guest, b"\n"));
            reply(&mut guest, third, b"third");
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(shell.negotiate(deadline, &Abort::never()).unwrap(), Protocol::Fast);
        let reply = shell.execute("long", None, deadline, &Abort::never()).unwrap();
        assert_eq!(reply.stdout, vec![b'x'; len]);
        let soon = Instant::now() + Duration::from_millis(200);
        let err = shell.execute("late", None, soon, &Abort::never()).unwrap_err();
        assert!(matches!(err, ShellError::Timeout { .. }), "{err:?}");
        let reply = shell.execute("third", None, deadline, &Abort::never()).unwrap();
        assert_eq!(reply.stdout, b"third");
        t.join().unwrap();
    }

    #[test]
    fn restored_drops_stale_output_and_reads_the_status() {
        let (mut shell, mut guest) = pair();
        // Output of the abandoned timeline, still on the socket.
        guest.write_all(b"c3RhbGU=\n0\npartial").unwrap();
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut b = [0u8; 1];
            while !got.ends_with(b" $?\n") {
                guest.read_exact(&mut b).unwrap();
                got.push(b[0]);
            }
            let text = String::from_utf8(got).unwrap();
            let token = text.lines().last().unwrap().split(' ').nth(1).unwrap().to_owned();
            guest.write_all(format!("noise\n{token} 3\n").as_bytes()).unwrap();
            (guest, text)
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(shell.restored("mount -a", deadline, &Abort::never()).unwrap(), 3);
        let (mut guest, sent) = t.join().unwrap();
        assert!(sent.starts_with("mount -a\necho nixvm-restored-"), "{sent:?}");
        guest.write_all(b"aGk=\n0\n").unwrap();
        let reply =
            shell.execute("echo hi", Some(Duration::from_secs(3)), deadline, &Abort::never()).unwrap();
        assert_eq!(reply.stdout, b"hi");
    }

    #[test]
    fn eof_is_reported() {
        let (mut shell, guest) = pair();
        drop(guest);
        let deadline = Instant::now() + Duration::from_secs(5);
        let err = shell.execute("true", Some(Duration::from_secs(1)), deadline, &Abort::never()).unwrap_err();
        assert!(matches!(err, ShellError::Eof), "{err:?}");
    }

    #[test]
    fn host_deadline_then_resync() {
        let (mut shell, mut guest) = pair();
        let deadline = Instant::now() + Duration::from_millis(200);
        let err = shell
            .execute("sleep 100", Some(Duration::from_secs(100)), deadline, &Abort::never())
            .unwrap_err();
        assert!(matches!(err, ShellError::Timeout { .. }), "{err:?}");
        assert!(shell.is_desynced());
        // The stale reply arrives, then the sync token is echoed back.
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut b = [0u8; 1];
            while !got.ends_with(b"nixvm-sync") {
                guest.read_exact(&mut b).unwrap();
                got.push(b[0]);
            }
            let mut rest = Vec::new();
            while !rest.ends_with(b"\n") {
                guest.read_exact(&mut b).unwrap();
                rest.push(b[0]);
            }
            let token = format!("nixvm-sync{}", String::from_utf8_lossy(&rest));
            guest.write_all(format!("c3RhbGU=\n{token}").as_bytes()).unwrap();
            guest.write_all(b"b2s=\n0\n").unwrap();
            guest
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let reply =
            shell.execute("echo ok", Some(Duration::from_secs(3)), deadline, &Abort::never()).unwrap();
        assert_eq!(reply.stdout, b"ok");
        t.join().unwrap();
    }
}
