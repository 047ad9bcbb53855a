//! The loopback HTTP server the egress benchmarks call, in a child process of its own
//! (`fluxo-loopback-server`, so that 10 000 parked connections cost the benchmark one
//! socket each, not two).
//!
//! `GET /fast` is answered at once; `GET /park` is held until the parent writes a line
//! to the child's stdin. The child prints `port N` when it listens and `parked N` as
//! each held request arrives.

use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::watch;

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";

/// The server's `main`: serves until stdin closes.
#[must_use]
pub fn child_main() -> ExitCode {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loopback server: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("loopback server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let mut stdout = tokio::io::stdout();
    stdout
        .write_all(format!("port {}\n", listener.local_addr()?.port()).as_bytes())
        .await?;
    stdout.flush().await?;
    let (release, released) = watch::channel(false);
    let (report, mut reports) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let parked = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Some(count) = reports.recv().await {
            if stdout
                .write_all(format!("parked {count}\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
            let _ = stdout.flush().await;
        }
    });
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = stdin.next_line() => match line {
                Ok(Some(_)) => { let _ = release.send(true); }
                _ => return Ok(()),
            },
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let released = released.clone();
                let report = report.clone();
                let parked = parked.clone();
                tokio::spawn(async move {
                    let _ = answer(stream, released, report, parked).await;
                });
            }
        }
    }
}

/// Serves one connection: requests until the client closes it.
async fn answer(
    mut stream: TcpStream,
    mut released: watch::Receiver<bool>,
    report: tokio::sync::mpsc::UnboundedSender<usize>,
    parked: Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    let mut buffer = Vec::with_capacity(1024);
    loop {
        let head = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break buffer.drain(..end + 4).collect::<Vec<u8>>();
            }
            let mut chunk = [0_u8; 1024];
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(chunk.get(..read).unwrap_or_default());
        };
        if head.starts_with(b"GET /park") {
            let count = parked.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = report.send(count);
            released.wait_for(|released| *released).await?;
        }
        stream.write_all(RESPONSE).await?;
    }
}

/// The parent's handle on the child server.
pub struct LoopbackServer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
    port: u16,
}

impl LoopbackServer {
    /// Starts `program` (`fluxo-loopback-server`) and waits for its port.
    ///
    /// # Errors
    /// When the child does not start or report its port.
    pub async fn start(program: &std::path::Path) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("the loopback server did not start")??
            .context("the loopback server exited")?;
        let port = first
            .strip_prefix("port ")
            .and_then(|port| port.parse().ok())
            .with_context(|| format!("unexpected first line {first:?}"))?;
        Ok(Self {
            child,
            stdin,
            lines,
            port,
        })
    }

    /// `http://127.0.0.1:PORT/fast`, answered at once.
    #[must_use]
    pub fn fast_url(&self) -> String {
        format!("http://127.0.0.1:{}/fast", self.port)
    }

    /// `http://127.0.0.1:PORT/park`, held until [`LoopbackServer::release`].
    #[must_use]
    pub fn park_url(&self) -> String {
        format!("http://127.0.0.1:{}/park", self.port)
    }

    /// The port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits until `count` requests are parked in total.
    ///
    /// # Errors
    /// When the child stops reporting for `timeout`.
    pub async fn wait_parked(&mut self, count: usize, timeout: Duration) -> anyhow::Result<()> {
        loop {
            let line = tokio::time::timeout(timeout, self.lines.next_line())
                .await
                .with_context(|| format!("fewer than {count} requests parked"))??
                .context("the loopback server exited")?;
            let parked: usize = line
                .strip_prefix("parked ")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if parked >= count {
                return Ok(());
            }
        }
    }

    /// Answers every parked request (and any later one) at once.
    ///
    /// # Errors
    /// When the child is gone.
    pub async fn release(&mut self) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        stdin.write_all(b"release\n").await?;
        Ok(stdin.flush().await?)
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.start_kill();
    }
}

impl std::fmt::Debug for LoopbackServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackServer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}
