//! QEMU's human monitor (HMP, the `monitor` socket) and QMP (the `qmp`
//! socket), both with deadlines on every read.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::abort::{Abort, StopReason};
use super::stream::{ReadError, read_chunk};

/// HMP prompt that ends every reply.
const PROMPT: &str = "(qemu) ";

/// Why a monitor exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("no answer from the QEMU monitor within {:.1} seconds", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("QEMU closed the monitor connection")]
    Eof,
    #[error("I/O error on the QEMU monitor socket")]
    Io(#[from] io::Error),
    #[error("unexpected QMP message: {0}")]
    Qmp(String),
    /// QEMU answered a QMP command with an error; its description.
    #[error("{0}")]
    QmpError(String),
    #[error(transparent)]
    Stopped(#[from] StopReason),
}

impl From<ReadError> for MonitorError {
    fn from(e: ReadError) -> MonitorError {
        match e {
            ReadError::Timeout(waited) => MonitorError::Timeout(waited),
            ReadError::Eof => MonitorError::Eof,
            ReadError::Io(e) => MonitorError::Io(e),
            ReadError::Stopped(r) => MonitorError::Stopped(r),
        }
    }
}

/// Reads into `buf` until `done` holds for it.
fn read_until(
    stream: &mut UnixStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> bool,
    deadline: Instant,
    abort: &Abort,
) -> Result<(), MonitorError> {
    let started = Instant::now();
    while !done(buf) {
        read_chunk(stream, buf, deadline, abort, started)?;
    }
    Ok(())
}

/// The HMP connection QEMU opened to us.
pub struct Monitor {
    stream: UnixStream,
}

impl Monitor {
    /// Consumes the banner that ends with the first prompt.
    pub fn handshake(stream: UnixStream, deadline: Instant, abort: &Abort) -> Result<Monitor, MonitorError> {
        // Writes are bounded too (as on the shell socket): a QEMU that stops
        // reading its monitor must not block a step past its deadline.
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        let mut mon = Monitor { stream };
        let mut buf = Vec::new();
        read_until(&mut mon.stream, &mut buf, |b| b.ends_with(PROMPT.as_bytes()), deadline, abort)?;
        Ok(mon)
    }

    /// Sends `command` and returns QEMU's raw answer (with the echoed command
    /// line and the final prompt).
    pub fn command(
        &mut self,
        command: &str,
        deadline: Instant,
        abort: &Abort,
    ) -> Result<String, MonitorError> {
        self.stream.write_all(format!("{command}\n").as_bytes()).map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => MonitorError::Eof,
            _ => MonitorError::Io(e),
        })?;
        let mut buf = Vec::new();
        read_until(&mut self.stream, &mut buf, |b| b.ends_with(PROMPT.as_bytes()), deadline, abort)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Sends `command` without waiting for an answer (`quit`: QEMU may close
    /// the socket before it prints anything).
    pub fn send(&mut self, command: &str) -> Result<(), MonitorError> {
        match self.stream.write_all(format!("{command}\n").as_bytes()) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {
                Err(MonitorError::Eof)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A QMP session after capabilities negotiation.
pub struct Qmp {
    stream: UnixStream,
    /// Bytes read after the last complete message.
    buf: Vec<u8>,
}

impl Qmp {
    /// Connects to `path` (QEMU may create it a moment after it connected the
    /// monitor), reads the greeting and negotiates capabilities.
    pub fn connect(path: &Path, deadline: Instant, abort: &Abort) -> Result<Qmp, MonitorError> {
        let mut stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => return Err(e.into()),
                Err(_) => {
                    abort.sleep(Duration::from_millis(20))?;
                }
            }
        };
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = Vec::new();
        read_until(&mut stream, &mut buf, |b| b.contains(&b'\n'), deadline, abort)?;
        if !String::from_utf8_lossy(&buf).contains("QMP") {
            return Err(MonitorError::Qmp(String::from_utf8_lossy(&buf).trim().to_owned()));
        }
        stream.write_all(b"{\"execute\": \"qmp_capabilities\"}\n")?;
        // The greeting's line is done; anything after it (events) is parsed below.
        let after = buf.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1);
        buf.drain(..after);
        loop {
            read_until(&mut stream, &mut buf, |b| b.contains(&b'\n'), deadline, abort)?;
            while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line).trim().to_owned();
                if text.is_empty() {
                    continue;
                }
                let msg: serde_json::Value =
                    serde_json::from_str(&text).map_err(|_| MonitorError::Qmp(text.clone()))?;
                if msg.get("return").is_some() {
                    return Ok(Qmp { stream, buf });
                }
                if msg.get("event").is_none() {
                    return Err(MonitorError::Qmp(text));
                }
            }
        }
    }

    /// Runs one QMP command and returns its `return` value. Events that
    /// arrived in between are skipped (nothing in the driver waits for
    /// them); an `error` answer becomes [`MonitorError::QmpError`].
    pub fn execute(
        &mut self,
        command: &str,
        arguments: serde_json::Value,
        deadline: Instant,
        abort: &Abort,
    ) -> Result<serde_json::Value, MonitorError> {
        let mut request = serde_json::json!({ "execute": command });
        if !arguments.is_null() {
            request["arguments"] = arguments;
        }
        let mut line = request.to_string();
        line.push('\n');
        self.stream.write_all(line.as_bytes()).map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => MonitorError::Eof,
            _ => MonitorError::Io(e),
        })?;
        loop {
            while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&raw).trim().to_owned();
                if text.is_empty() {
                    continue;
                }
                let mut msg: serde_json::Value =
                    serde_json::from_str(&text).map_err(|_| MonitorError::Qmp(text.clone()))?;
                if let Some(ret) = msg.get_mut("return") {
                    return Ok(ret.take());
                }
                if let Some(err) = msg.get("error") {
                    let desc = err.get("desc").and_then(|d| d.as_str()).unwrap_or("unknown error");
                    return Err(MonitorError::QmpError(desc.to_owned()));
                }
                if msg.get("event").is_none() {
                    return Err(MonitorError::Qmp(text));
                }
            }
            let started = Instant::now();
            read_chunk(&mut self.stream, &mut self.buf, deadline, abort, started)?;
        }
    }
}
