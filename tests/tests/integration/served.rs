//! `fluxo serve` as a real process: started on a data directory, killed with SIGKILL,
//! paused with SIGSTOP, restarted on the same directory; and a plain HTTP/1.1 client for
//! its API (no client library: what is tested is the server).

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use fluxo_tests::fluxo_bin;
use serde_json::Value;

/// A running `fluxo serve`; killed when dropped.
pub struct Served {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The admin token it generated (kept in the data directory).
    pub admin: String,
    /// Its data directory.
    pub data: PathBuf,
}

impl Served {
    /// Starts `fluxo serve` on `data` with the configuration file `config`, and waits
    /// until it listens.
    pub fn start(data: &Path, config: &Path) -> Self {
        Self::start_with(data, config, &[])
    }

    /// As [`Served::start`], with extra environment variables (`FLUXO_STORE_URL`,
    /// `FLUXO_ADMIN_TOKEN`).
    pub fn start_with(data: &Path, config: &Path, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(fluxo_bin().unwrap_or_else(|problem| panic!("{problem}")));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .arg("--config")
            .arg(config)
            .env_remove("FLUXO_ADMIN_TOKEN")
            .env_remove("FLUXO_STORE_URL")
            .env_remove("FLUXO_SECRETS_KEY")
            .env_remove("FLUXO_SECRETS_KEY_NEXT")
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = std::io::BufReader::new(stderr).lines();
        // Log lines may come first; the address is on the line that says where it listens.
        let url = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("fluxo serve stopped before listening"))
                .unwrap();
            if let Some(word) = line
                .split_whitespace()
                .find(|word| line.contains("listening on") && word.starts_with("http://"))
            {
                break word.to_owned();
            }
        };
        // The rest of its log goes to `serve.log` beside the data directory, for the
        // failure messages of tests.
        let log_path = data.with_file_name("serve.log");
        std::thread::spawn(move || {
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path)
                .ok();
            for line in lines.map_while(Result::ok) {
                if let Some(log) = &mut log {
                    let _ = writeln!(log, "{line}");
                }
            }
        });
        let admin = env
            .iter()
            .find(|(name, _)| *name == "FLUXO_ADMIN_TOKEN")
            .map_or_else(
                || {
                    std::fs::read_to_string(data.join("admin-token"))
                        .unwrap()
                        .trim()
                        .to_owned()
                },
                |(_, token)| (*token).to_owned(),
            );
        Self {
            child,
            url,
            admin,
            data: data.to_owned(),
        }
    }

    /// Its resident memory (`VmRSS` of `/proc/PID/status`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }

    /// What its processes on this data directory logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.with_file_name("serve.log")).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, no flush, no goodbye.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait(mut self) -> Option<i32> {
        self.child.wait().unwrap().code()
    }

    /// One API call: `(status, JSON body or Null)`.
    pub fn call(&self, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, Value) {
        call(&self.url, method, path, token, body)
    }

    /// Creates tenant `id` and returns a token for it.
    pub fn tenant(&self, id: &str) -> String {
        let body = format!(r#"{{"id":"{id}"}}"#);
        let (status, answer) = self.call("POST", "/v1/tenants", &self.admin, body.as_bytes());
        assert_eq!(status, 201, "{answer}");
        let (status, answer) = self.call(
            "POST",
            &format!("/v1/tenants/{id}/tokens"),
            &self.admin,
            b"",
        );
        assert_eq!(status, 201, "{answer}");
        answer["token"].as_str().unwrap().to_owned()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request to `url` (`http://host:port`) with a bearer token.
pub fn call(url: &str, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, Value) {
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: fluxo\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
