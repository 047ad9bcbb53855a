//! `fluxo:action/log`, and the guest's stdout/stderr: one capped log per run.
//!
//! Past `max_log_bytes` lines are dropped and the log is marked truncated; a chatty guest
//! loses log lines, never its run. Secret values are redacted when the report is built.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use serde::Serialize;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::RunState;
use crate::bindings::fluxo::action::log::{Host, Level};

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// `trace` … `error`; stdout lines are `info`, stderr lines `warn`.
    pub level: &'static str,
    /// Where it came from: `log`, `stdout` or `stderr`.
    pub source: &'static str,
    /// The text (secrets redacted in reports).
    pub message: String,
}

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

    pub(crate) fn push(&mut self, level: &'static str, source: &'static str, message: String) {
        let size = u64::try_from(message.len()).unwrap_or(u64::MAX);
        if self.bytes.saturating_add(size) > self.cap {
            self.truncated = true;
            return;
        }
        self.bytes += size;
        self.lines.push(LogLine {
            level,
            source,
            message,
        });
    }

    fn push_stream(&mut self, source: &'static str, bytes: &[u8]) {
        let partial = if source == "stdout" {
            &mut self.partial_stdout
        } else {
            &mut self.partial_stderr
        };
        // Bound the unfinished line too: a guest printing without newlines.
        let room = usize::try_from(self.cap).unwrap_or(usize::MAX);
        let take = bytes.len().min(room.saturating_sub(partial.len()));
        partial.extend(bytes.iter().take(take));
        if take < bytes.len() {
            self.truncated = true;
        }
        let mut complete = Vec::new();
        while let Some(end) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            complete.push(
                String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line)).into_owned(),
            );
        }
        let level = if source == "stdout" { "info" } else { "warn" };
        for line in complete {
            self.push(level, source, line);
        }
    }

    /// Flushes unfinished stdout/stderr lines and returns the lines and the truncation flag.
    pub(crate) fn finish(&mut self) -> (Vec<LogLine>, bool) {
        for source in ["stdout", "stderr"] {
            let partial = if source == "stdout" {
                std::mem::take(&mut self.partial_stdout)
            } else {
                std::mem::take(&mut self.partial_stderr)
            };
            if !partial.is_empty() {
                let level = if source == "stdout" { "info" } else { "warn" };
                self.push(
                    level,
                    source,
                    String::from_utf8_lossy(&partial).into_owned(),
                );
            }
        }
        (std::mem::take(&mut self.lines), self.truncated)
    }
}

/// A guest's stdout or stderr, writing into the run's log.
#[derive(Debug, Clone)]
pub(crate) struct StdStream {
    source: &'static str,
    log: Arc<Mutex<LogBuffer>>,
}

impl StdStream {
    pub(crate) fn stdout(log: Arc<Mutex<LogBuffer>>) -> Self {
        Self {
            source: "stdout",
            log,
        }
    }

    pub(crate) fn stderr(log: Arc<Mutex<LogBuffer>>) -> Self {
        Self {
            source: "stderr",
            log,
        }
    }
}

impl IsTerminal for StdStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StdStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
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

impl Host for RunState {
    async fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(level, "log", message);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_cap_are_dropped_and_marked() {
        let mut log = LogBuffer::new(10);
        log.push("info", "log", "12345".into());
        log.push("info", "log", "123456".into());
        log.push_stream("stdout", b"abc\nde");
        let (lines, truncated) = log.finish();
        assert!(truncated);
        let texts: Vec<_> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(texts, ["12345", "abc", "de"]);
    }

    #[test]
    fn an_endless_line_is_bounded() {
        let mut log = LogBuffer::new(8);
        for _ in 0..100 {
            log.push_stream("stderr", b"xxxx");
        }
        let (lines, truncated) = log.finish();
        assert!(truncated);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].message.len(), 8);
    }
}
