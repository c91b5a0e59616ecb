//! Reading a Unix socket against a deadline, in slices of [`SLICE`] so that
//! a signal or the global timeout stops the wait promptly. Shared by the
//! backdoor shell and the QEMU monitors, which only differ in how they frame
//! what they read.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::abort::{Abort, SLICE, StopReason};

/// Why no data arrived.
#[derive(Debug)]
pub enum ReadError {
    /// The deadline passed; how long the caller had been waiting.
    Timeout(Duration),
    /// The peer closed the connection.
    Eof,
    Io(io::Error),
    Stopped(StopReason),
}

/// Appends the next chunk the peer sends to `buf` and returns its length,
/// waiting at most until `deadline`; `started` is when the caller began to
/// wait (reported with a timeout).
pub fn read_chunk(
    stream: &mut UnixStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    abort: &Abort,
    started: Instant,
) -> Result<usize, ReadError> {
    let mut chunk = [0u8; 4096];
    loop {
        abort.check().map_err(ReadError::Stopped)?;
        let now = Instant::now();
        if now >= deadline {
            return Err(ReadError::Timeout(now - started));
        }
        stream
            .set_read_timeout(Some((deadline - now).clamp(Duration::from_millis(1), SLICE)))
            .map_err(ReadError::Io)?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(ReadError::Eof),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_times_out_and_sees_eof() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let mut buf = b"x".to_vec();
        b.write_all(b"hello").unwrap();
        let far = Instant::now() + Duration::from_secs(5);
        assert_eq!(read_chunk(&mut a, &mut buf, far, &Abort::never(), Instant::now()).unwrap(), 5);
        assert_eq!(buf, b"xhello");
        let t = Instant::now();
        let soon = t + Duration::from_millis(150);
        let err = read_chunk(&mut a, &mut buf, soon, &Abort::never(), t).unwrap_err();
        assert!(matches!(err, ReadError::Timeout(d) if d >= Duration::from_millis(150)), "{err:?}");
        drop(b);
        let err = read_chunk(&mut a, &mut buf, far, &Abort::never(), t).unwrap_err();
        assert!(matches!(err, ReadError::Eof), "{err:?}");
    }
}
