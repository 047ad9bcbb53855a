//! A small client for the server's API, used by the management commands.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::UsageError;
use crate::local::usage;

/// Talks to one server with one token.
pub(crate) struct Client {
    base: String,
    token: Option<String>,
    json: bool,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

/// Reads a JSON file.
pub(crate) fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

impl Client {
    pub(crate) fn new(base: &str, token: Option<String>, json: bool) -> anyhow::Result<Self> {
        if !base.starts_with("http://") {
            anyhow::bail!(
                "--server must be an http:// URL (put TLS in front of fluxo serve with a proxy)"
            );
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            json,
            http: HyperClient::builder(TokioExecutor::new()).build_http(),
        })
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<(u16, Value), UsageError> {
        self.request_with(method, path, content_type, body, None)
            .await
    }

    async fn request_with(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<(u16, Value), UsageError> {
        let (status, body) = self
            .raw(method, path, content_type, body, idempotency_key)
            .await?;
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// `GET path`: the status and the body's bytes as they came.
    pub(crate) async fn get_bytes(&self, path: &str) -> Result<(u16, Bytes), UsageError> {
        self.raw("GET", path, "application/json", Bytes::new(), None)
            .await
    }

    /// `GET path`: the status and the body as JSON (`null` when it is not JSON).
    pub(crate) async fn get_json(&self, path: &str) -> Result<(u16, Value), UsageError> {
        self.request("GET", path, "application/json", Bytes::new())
            .await
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<(u16, Bytes), UsageError> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", content_type);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(body))
            .context("building the request")
            .map_err(usage)?;
        let response = self
            .http
            .request(request)
            .await
            .with_context(|| format!("cannot reach {}", self.base))
            .map_err(usage)?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .context("reading the response")
            .map_err(usage)?;
        Ok((status, body.to_bytes()))
    }

    fn show(&self, status: u16, value: &Value) -> ExitCode {
        if self.json || status >= 300 {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else {
            print_summary(value);
        }
        if status < 300 {
            ExitCode::SUCCESS
        } else {
            if let Some(message) = value.get("message").and_then(Value::as_str) {
                eprintln!("fluxo: {status}: {message}");
            }
            ExitCode::from(1)
        }
    }

    /// Sends `body` as JSON and shows the answer.
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<ExitCode, UsageError> {
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let (status, value) = self
            .request(method, path, "application/json", bytes)
            .await?;
        Ok(self.show(status, &value))
    }

    /// Tests a workflow (`body`: the definition and the sample) and shows the answer;
    /// exit 1 when the request failed or the workflow did not succeed.
    pub(crate) async fn test_workflow(&self, body: Value) -> Result<ExitCode, UsageError> {
        let (status, value) = self
            .request(
                "POST",
                "/v1/workflows/test",
                "application/json",
                Bytes::from(body.to_string()),
            )
            .await?;
        let code = self.show(status, &value);
        if status < 300 && value.get("succeeded") == Some(&Value::Bool(false)) {
            if let Some(message) = value.pointer("/error/message").and_then(Value::as_str) {
                eprintln!("fluxo: the workflow failed: {message}");
            }
            return Ok(ExitCode::from(1));
        }
        Ok(code)
    }

    /// Uploads a component file.
    pub(crate) async fn upload(
        &self,
        name: &str,
        file: &Path,
        description: Option<&str>,
    ) -> Result<ExitCode, UsageError> {
        let bytes = std::fs::read(file)
            .with_context(|| format!("reading {}", file.display()))
            .map_err(usage)?;
        eprintln!(
            "fluxo: uploading {} ({} KiB); the server checks and compiles it",
            file.display(),
            bytes.len().div_ceil(1024)
        );
        let mut path = format!("/v1/actions/{name}/versions");
        if let Some(description) = description {
            let encoded: String = url_encode(description);
            path.push_str(&format!("?description={encoded}"));
        }
        let (status, value) = self
            .request("POST", &path, "application/wasm", Bytes::from(bytes))
            .await?;
        Ok(self.show(status, &value))
    }

    /// Submits a run (with an idempotency key when given); with `wait`, polls until it
    /// is finished.
    pub(crate) async fn submit(
        &self,
        name: &str,
        event: &Path,
        wait: bool,
        idempotency_key: Option<&str>,
    ) -> Result<ExitCode, UsageError> {
        let mut body = read_json(event).map_err(usage)?;
        if let Some(object) = body.as_object_mut() {
            object.insert("action".into(), name.into());
        }
        let (status, value) = self
            .request_with(
                "POST",
                "/v1/runs",
                "application/json",
                Bytes::from(body.to_string()),
                idempotency_key,
            )
            .await?;
        if !wait || !(status == 202 || status == 200) {
            return Ok(self.show(status, &value));
        }
        let id = value
            .get("run_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        eprintln!("fluxo: run {id} accepted; waiting");
        loop {
            let (status, run) = self.run_record(&id).await?;
            let state = run.get("state").and_then(Value::as_str).unwrap_or_default();
            // A workflow waiting for its contact's reply may wait for days: shown then.
            let done = FINAL_STATES.contains(&state) || state == "waiting";
            if status != 200 || done {
                let failed = state != "succeeded" && state != "waiting";
                let code = self.show(status, &run);
                return Ok(if failed { ExitCode::from(1) } else { code });
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

/// One log line as `fluxo logs` prints it: level, source, message.
fn log_line(line: &Value) -> String {
    format!(
        "{:<5} {:<6} {}",
        line["level"].as_str().unwrap_or(""),
        line["source"].as_str().unwrap_or(""),
        line["message"].as_str().unwrap_or("")
    )
}

impl Client {
    /// `GET /v1/runs/{id}`: the status and the run's record (or the error body).
    async fn run_record(&self, id: &str) -> Result<(u16, Value), UsageError> {
        self.request(
            "GET",
            &format!("/v1/runs/{id}"),
            "application/json",
            Bytes::new(),
        )
        .await
    }
}

/// States a run does not leave.
const FINAL_STATES: &[&str] = &["succeeded", "failed", "dead", "cancelled"];

impl Client {
    /// Prints a run's log lines. A report (and so its log) is stored when an attempt
    /// ends: with `follow`, polls until the run is final and prints each new attempt's
    /// lines under a header. Exit code 0 once printed (the run's own failure is in its
    /// record), 1 when the run cannot be read.
    pub(crate) async fn logs(&self, id: &str, follow: bool) -> Result<ExitCode, UsageError> {
        let mut shown_attempt = 0;
        loop {
            let (status, run) = self.run_record(id).await?;
            if status != 200 {
                return Ok(self.show(status, &run));
            }
            let report = run.get("report").filter(|report| !report.is_null());
            let attempt = report
                .and_then(|report| report.get("attempt"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if let Some(report) = report
                && attempt > shown_attempt
            {
                if follow || shown_attempt > 0 {
                    println!("-- attempt {attempt}");
                }
                let lines = report
                    .get("logs")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for line in &lines {
                    println!("{}", log_line(line));
                }
                if report.get("logs_truncated").and_then(Value::as_bool) == Some(true) {
                    println!("-- (later lines were cut: the run's log budget was spent)");
                }
                shown_attempt = attempt;
            }
            let state = run.get("state").and_then(Value::as_str).unwrap_or_default();
            if !follow || FINAL_STATES.contains(&state) {
                if report.is_none() {
                    eprintln!("fluxo: run {id} is {state}: no attempt has ended yet");
                }
                return Ok(ExitCode::SUCCESS);
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// Shows the tenant's runs as they finish, until interrupted: polls the run list for
    /// runs newer than the last shown and for the state of those still going.
    pub(crate) async fn watch(&self, action: Option<&str>) -> Result<ExitCode, UsageError> {
        let mut pending: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = vec!["limit=100".to_owned()];
            if let Some(action) = action {
                query.push(format!("action={}", url_encode(action)));
            }
            if let Some(after) = &after {
                query.push(format!("after={after}"));
            }
            let (status, value) = self
                .request(
                    "GET",
                    &format!("/v1/runs?{}", query.join("&")),
                    "application/json",
                    Bytes::new(),
                )
                .await?;
            if status != 200 {
                return Ok(self.show(status, &value));
            }
            let mut runs: Vec<Value> = value
                .get("runs")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if after.is_none() {
                // The first page is newest first; pages after a cursor are oldest first.
                runs.reverse();
            }
            for run in runs {
                let id = run
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                after = Some(id.clone());
                if FINAL_STATES
                    .contains(&run.get("state").and_then(Value::as_str).unwrap_or_default())
                {
                    println!("{}", run_line(&run));
                } else {
                    pending.push(id);
                }
            }
            let mut still = Vec::new();
            for id in pending {
                let (status, run) = self.run_record(&id).await?;
                if status == 200
                    && FINAL_STATES
                        .contains(&run.get("state").and_then(Value::as_str).unwrap_or_default())
                {
                    println!("{}", run_line(&run));
                } else if status == 200 {
                    still.push(id);
                }
            }
            pending = still;
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
}

fn run_line(run: &Value) -> String {
    format!(
        "{}  {:<20} v{:<4} {:<10} attempt {:<3} {}",
        run["id"].as_str().unwrap_or(""),
        run["action"].as_str().unwrap_or(""),
        run["version"],
        run["state"].as_str().unwrap_or(""),
        run["attempt"],
        run["error_kind"].as_str().unwrap_or("")
    )
}

pub(crate) fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A short human rendering of an answer.
fn print_summary(value: &Value) {
    println!("{}", summary(value));
}

/// The lines [`print_summary`] prints.
fn summary(value: &Value) -> String {
    if let Some(actions) = value.get("actions").and_then(Value::as_array) {
        let lines: Vec<String> = actions
            .iter()
            .map(|action| {
                format!(
                    "{:<24} v{:<4} {:<9} {}",
                    action["name"].as_str().unwrap_or(""),
                    action["active_version"],
                    if action["enabled"] == Value::Bool(true) {
                        "enabled"
                    } else {
                        "disabled"
                    },
                    action["description"].as_str().unwrap_or("")
                )
            })
            .collect();
        lines.join("\n")
    } else if let Some(runs) = value.get("runs").and_then(Value::as_array) {
        runs.iter().map(run_line).collect::<Vec<_>>().join("\n")
    } else if let Some(secrets) = value.get("secrets").and_then(Value::as_array) {
        secrets
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    } else if value.get("id").is_some() && value.get("state").is_some() {
        // A run record (`runs show`, `runs submit --wait`): its line, then what it said.
        let mut lines = vec![run_line(value)];
        if let Some(replies) = value
            .pointer("/report/outcome/replies")
            .and_then(Value::as_array)
        {
            lines.extend(
                replies
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|reply| format!("  reply: {reply}")),
            );
        }
        if let Some(message) = value
            .pointer("/report/error/message")
            .and_then(Value::as_str)
        {
            lines.push(format!("  error: {message}"));
        }
        lines.join("\n")
    } else if let (Some(action), Some(version)) = (
        value.get("action").filter(|action| action.is_object()),
        value.get("version").filter(|version| version.is_object()),
    ) {
        format!(
            "{} v{} ({} bytes, sha256 {}), active; permissions: {}",
            action["name"].as_str().unwrap_or(""),
            version["version"],
            version["size"],
            version["hash"].as_str().unwrap_or(""),
            version["imports"]
                .as_array()
                .map(|i| i
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        )
    } else if let Some(token) = value.get("token").and_then(Value::as_str) {
        token.to_owned()
    } else if let Some(run_id) = value.get("run_id").and_then(Value::as_str) {
        run_id.to_owned()
    } else {
        serde_json::to_string_pretty(value).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::summary;

    #[test]
    fn a_run_record_is_summarized_as_a_run_not_as_an_upload() {
        // A run record has `action` and `version` keys too (found by re-running the
        // cases: `runs show` printed " vnull (null bytes, sha256 ), active").
        let run = json!({
            "id": "01a2", "action": "greet", "version": 3, "state": "succeeded",
            "attempt": 1, "error_kind": null,
            "report": { "outcome": { "replies": ["Hello, Ana!"] } },
        });
        let text = summary(&run);
        assert!(text.starts_with("01a2  greet"), "{text}");
        assert!(text.contains("succeeded"), "{text}");
        assert!(text.contains("reply: Hello, Ana!"), "{text}");
        assert!(!text.contains("sha256"), "{text}");
        let upload = json!({
            "action": { "name": "greet" },
            "version": { "version": 2, "size": 10, "hash": "ab", "imports": ["http"] },
        });
        assert_eq!(
            summary(&upload),
            "greet v2 (10 bytes, sha256 ab), active; permissions: http"
        );
    }
}
