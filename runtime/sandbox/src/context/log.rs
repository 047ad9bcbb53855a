//! The log capability, and the guest's stdout/stderr: one capped log per run.
//!
//! Each line costs its bytes plus [`RECORD_OVERHEAD_BYTES`] against `max_log_bytes`, so
//! a flood of empty lines reaches the cap like any other; past it lines are dropped and
//! the log is marked truncated — a chatty guest loses log lines, never its run.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use fluxo_core::limits::RECORD_OVERHEAD_BYTES;
use fluxo_core::{LogLevel, LogLine, LogSource};
use tokio::io::AsyncWrite;

use super::RunContext;

/// The lines of one run, capped in bytes.
#[derive(Debug)]
pub(crate) struct LogBuffer {
    lines: Vec<LogLine>,
    bytes: u64,
    cap: u64,
    truncated: bool,
    partial_stdout: Vec<u8>,
    partial_stderr: Vec<u8>,
}

impl LogBuffer {
    pub(crate) fn new(cap: u64) -> Self {
        Self {
            lines: Vec::new(),
            bytes: 0,
            cap,
            truncated: false,
            partial_stdout: Vec::new(),
            partial_stderr: Vec::new(),
        }
    }

    /// Whether a line of `bytes` still fits under the cap.
    fn fits(&self, bytes: usize) -> bool {
        let size = u64::try_from(bytes)
            .unwrap_or(u64::MAX)
            .saturating_add(RECORD_OVERHEAD_BYTES);
        self.bytes.saturating_add(size) <= self.cap
    }

    /// Bytes still allowed under the cap.
    pub(crate) fn room(&self) -> u64 {
        self.cap.saturating_sub(self.bytes)
    }

    pub(crate) fn push(&mut self, level: LogLevel, source: LogSource, message: String) {
        if !self.fits(message.len()) {
            self.truncated = true;
            return;
        }
        self.bytes += u64::try_from(message.len())
            .unwrap_or(u64::MAX)
            .saturating_add(RECORD_OVERHEAD_BYTES);
        self.lines.push(LogLine {
            level,
            source,
            message,
        });
    }

    fn push_stream(&mut self, source: StdSource, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(end);
            rest = tail.get(1..).unwrap_or_default();
            let partial = match source {
                StdSource::Stdout => std::mem::take(&mut self.partial_stdout),
                StdSource::Stderr => std::mem::take(&mut self.partial_stderr),
            };
            // Checked before any allocation: a flood past the cap costs a scan only.
            if !self.fits(partial.len() + line.len()) {
                self.truncated = true;
                continue;
            }
            let mut text = partial;
            text.extend_from_slice(line);
            let message = String::from_utf8_lossy(&text).into_owned();
            self.push(source.level(), source.source(), message);
        }
        // The unfinished line, bounded by what could still be kept of it.
        let room = usize::try_from(
            self.cap
                .saturating_sub(self.bytes)
                .saturating_sub(RECORD_OVERHEAD_BYTES),
        )
        .unwrap_or(usize::MAX);
        let partial = match source {
            StdSource::Stdout => &mut self.partial_stdout,
            StdSource::Stderr => &mut self.partial_stderr,
        };
        let take = rest.len().min(room.saturating_sub(partial.len()));
        partial.extend_from_slice(rest.get(..take).unwrap_or_default());
        if take < rest.len() {
            self.truncated = true;
        }
    }

    /// Flushes unfinished stdout/stderr lines and returns the lines and the truncation flag.
    pub(crate) fn finish(&mut self) -> (Vec<LogLine>, bool) {
        for source in [StdSource::Stdout, StdSource::Stderr] {
            let partial = match source {
                StdSource::Stdout => std::mem::take(&mut self.partial_stdout),
                StdSource::Stderr => std::mem::take(&mut self.partial_stderr),
            };
            if !partial.is_empty() {
                self.push(
                    source.level(),
                    source.source(),
                    String::from_utf8_lossy(&partial).into_owned(),
                );
            }
        }
        (std::mem::take(&mut self.lines), self.truncated)
    }
}

/// Which standard stream a guest wrote to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdSource {
    /// stdout: lines are `info`.
    Stdout,
    /// stderr: lines are `warn`.
    Stderr,
}

impl StdSource {
    fn level(self) -> LogLevel {
        match self {
            Self::Stdout => LogLevel::Info,
            Self::Stderr => LogLevel::Warn,
        }
    }

    fn source(self) -> LogSource {
        match self {
            Self::Stdout => LogSource::Stdout,
            Self::Stderr => LogSource::Stderr,
        }
    }
}

/// A guest's stdout or stderr, writing into the run's log.
#[derive(Debug, Clone)]
pub(crate) struct StdStream {
    source: StdSource,
    log: Arc<Mutex<LogBuffer>>,
}

impl StdStream {
    pub(crate) fn new(source: StdSource, log: Arc<Mutex<LogBuffer>>) -> Self {
        Self { source, log }
    }
}

impl AsyncWrite for StdStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_stream(self.source, buf);
        // Everything is accepted: bytes past the cap are dropped, not refused, so
        // `println!` never fails in the guest.
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl RunContext {
    /// Records one log line (dropped past the run's log cap).
    pub fn log(&mut self, level: LogLevel, message: String) {
        self.push_log(level, LogSource::Log, message);
    }

    /// Records one line from `source` (the host's own notes use [`LogSource::Host`]).
    pub fn push_log(&mut self, level: LogLevel, source: LogSource, message: String) {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(level, source, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_cap_are_dropped_and_marked() {
        let mut log = LogBuffer::new(10 + 3 * RECORD_OVERHEAD_BYTES);
        log.push(LogLevel::Info, LogSource::Log, "12345".into());
        log.push(LogLevel::Info, LogSource::Log, "123456".into());
        log.push_stream(StdSource::Stdout, b"abc\nde");
        let (lines, truncated) = log.finish();
        assert!(truncated);
        let texts: Vec<_> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(texts, ["12345", "123456"]);
    }

    #[test]
    fn empty_lines_cost_their_overhead() {
        let mut log = LogBuffer::new(64 << 10);
        for _ in 0..1_000_000 {
            log.push_stream(StdSource::Stdout, b"\n\n\n\n\n\n\n\n");
        }
        let (lines, truncated) = log.finish();
        assert!(truncated);
        assert_eq!(
            u64::try_from(lines.len()).unwrap(),
            (64 << 10) / RECORD_OVERHEAD_BYTES
        );
    }

    #[test]
    fn an_endless_line_is_bounded() {
        let mut log = LogBuffer::new(8 + RECORD_OVERHEAD_BYTES);
        for _ in 0..100 {
            log.push_stream(StdSource::Stderr, b"xxxx");
        }
        let (lines, truncated) = log.finish();
        assert!(truncated);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].message, "xxxxxxxx");
    }
}
