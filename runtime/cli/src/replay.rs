//! `fluxo replay RUN_ID`: a production run re-run on this machine from its record.
//!
//! The run's record (its event, the version it was pinned to, its limits, its last
//! attempt's report with every HTTP exchange) and that version's component come from
//! the server; the component runs here with the original's run id, attempt and limits,
//! every HTTP request
//! answered from the record ([`fluxo_sandbox::HttpReplay`]), nothing sent and nothing
//! applied. The replay's status, error, outcome and effects are then set beside the
//! original's. Secrets never leave the server: a secret the local configuration does
//! not hold (`[secrets.TENANT]`) is a stand-in value, redacted like the real one.

use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use fluxo_core::{Blame, ErrorKind, Limits, RunReport};
use fluxo_sandbox::platform::{BoxFuture, StateKey, StateUsage};
use fluxo_sandbox::{
    BackendError, EngineOptions, HttpReplay, MemoryState, Metering, RunOptions, Runtime,
    StateReader,
};
use fluxo_store::RunRecord;
use serde_json::{Value, json};

use crate::UsageError;
use crate::client::Client;
use crate::local::usage;

/// The parts of a report a replay must reproduce, in the order they are shown.
const COMPARED: [&str; 4] = ["status", "error", "outcome", "effects"];

/// Replays run `id` of the client's tenant under `config`, printing the comparison (the
/// whole of both reports with `json`). Exit code 0 when the replay reproduced the
/// original; 1 when it differs, or when the server refuses the run or its component;
/// 2 for usage errors (an unreachable server among them).
pub(crate) fn replay(
    client: &Client,
    id: &str,
    config: Option<&std::path::Path>,
    json: bool,
) -> Result<ExitCode, UsageError> {
    let mut config = crate::load_config(config)?;
    let tokio = crate::multi_thread_runtime()?;
    tokio.block_on(async {
        let Some(fetched) = fetch(client, id).await? else {
            return Ok(ExitCode::from(1));
        };
        let Fetched {
            record,
            limits,
            original,
            component,
            secret_names,
        } = fetched;
        let tenant = record.event.tenant.clone();
        let local = config.secrets.entry(tenant.to_string()).or_default();
        let mut stand_ins = Vec::new();
        for name in secret_names {
            if !local.contains_key(&name) {
                local.insert(name.clone(), format!("fluxo-replay-stand-in-for-{name}"));
                stand_ins.push(name);
            }
        }
        let state = Arc::new(UnrecordedState::default());
        let runtime = Runtime::builder()
            .config(config.sandbox())
            .state_reader(state.clone())
            .max_component_bytes(
                config
                    .server
                    .max_component_bytes_for(&tenant)
                    .max(component.len()),
            )
            .engine_options(EngineOptions {
                max_concurrent_runs: 1,
                metering: Metering::default(),
                shape: config.engine,
            })
            .build()
            .map_err(|error| usage(error.into()))?;
        let action = runtime.load(&component).map_err(|error| {
            usage(anyhow::anyhow!(
                "version {} of {} does not load here: {error}",
                record.version,
                record.action
            ))
        })?;
        let http = Arc::new(HttpReplay::new(original.http.clone()));
        let mut options = RunOptions::new()
            .run_id(record.id)
            .attempt(original.attempt)
            .replay(http.clone());
        if let Some(limits) = &limits {
            options = options.limits(limits.clone());
        }
        let replayed = runtime
            .execute(&action, &record.event, &options)
            .await
            .into_report(false);
        let mut notes = Vec::new();
        if let Some(error) = &original.error
            && original.usage.fuel == 0
            && error.blame != Blame::Guest
        {
            notes.push(format!(
                "the original attempt never ran the component ({}: {}): the replay runs it",
                error.kind.as_str(),
                error.message
            ));
        }
        notes.extend(http.divergences());
        let keys = state.keys();
        if !keys.is_empty() {
            notes.push(format!(
                "the run read state ({}): the record does not hold state, the replay read none",
                keys.join(", ")
            ));
        }
        if !stand_ins.is_empty() {
            notes.push(format!(
                "secrets {} are stand-ins (their values stay on the server; set them under [secrets.{tenant}] in --config for an exact replay)",
                stand_ins.join(", ")
            ));
        }
        if limits.is_none() {
            notes.push(
                "the record does not hold limits this fluxo reads (a record from an older host, whose bodies may be cut at 16 KiB and decoded lossily): the replay runs under this machine's (--config)"
                    .to_owned(),
            );
        }
        if let Some(error) = &original.error
            && matches!(
                error.kind,
                ErrorKind::DeadlineExceeded | ErrorKind::HostTimeout
            )
        {
            notes.push(format!(
                "the original ran out of time ({}): wall time on this machine is not the server's",
                error.kind.as_str()
            ));
        }
        let differences = differences(&original, &replayed);
        if json {
            let answer = json!({
                "run": record.id,
                "action": record.action,
                "version": record.version,
                "same": differences.is_empty(),
                "differences": differences,
                "divergences": notes,
                "original": original,
                "replay": replayed,
            });
            let text = serde_json::to_string_pretty(&answer)
                .context("printing the comparison")
                .map_err(usage)?;
            println!("{text}");
        } else {
            print_comparison(&record, &original, &replayed, &differences, &notes);
        }
        Ok(if differences.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

/// What the server gives a replay.
struct Fetched {
    record: RunRecord,
    /// The run's limits, when the record holds limits this fluxo reads.
    limits: Option<Limits>,
    original: RunReport,
    component: Vec<u8>,
    secret_names: Vec<String>,
}

/// Fetches the run, its last report, its version's component and the tenant's secret
/// names; `None` (after saying why) when one of them cannot be had.
async fn fetch(client: &Client, id: &str) -> Result<Option<Fetched>, UsageError> {
    let id = crate::client::url_encode(id);
    let (status, run) = client.get_json(&format!("/v1/runs/{id}")).await?;
    if status != 200 {
        refused(status, &run, &format!("run {id}"));
        return Ok(None);
    }
    let mut run = run;
    // Read apart: a newer host's limits (a setting this fluxo lacks) must not stop it.
    let limits = run
        .as_object_mut()
        .and_then(|fields| fields.remove("limits"))
        .and_then(|limits| serde_json::from_value::<Limits>(limits).ok());
    let record: RunRecord = serde_json::from_value(run)
        .context("the server's run record is not one this fluxo reads")
        .map_err(usage)?;
    let Some(original) = record.report.clone() else {
        eprintln!(
            "fluxo: run {} is {}: no attempt has ended, there is nothing to replay yet",
            record.id,
            record.state.as_str()
        );
        return Ok(None);
    };
    let path = format!(
        "/v1/actions/{}/versions/{}/component",
        record.action, record.version
    );
    let (status, bytes) = client.get_bytes(&path).await?;
    if status != 200 {
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        refused(
            status,
            &body,
            &format!(
                "the component of version {} of {} (GET {path}; a server older than this fluxo does not serve it)",
                record.version, record.action
            ),
        );
        return Ok(None);
    }
    let (status, secrets) = client.get_json("/v1/secrets").await?;
    if status != 200 {
        refused(status, &secrets, "the tenant's secret names");
        return Ok(None);
    }
    let secret_names = secrets
        .get("secrets")
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(Fetched {
        record,
        limits,
        original,
        component: bytes.to_vec(),
        secret_names,
    }))
}

/// State as a replay reads it: none (the record does not hold it), each key asked for
/// written down.
#[derive(Debug, Default)]
struct UnrecordedState {
    empty: MemoryState,
    asked: Mutex<Vec<String>>,
}

impl UnrecordedState {
    /// The keys the run asked for, each once, in order.
    fn keys(&self) -> Vec<String> {
        self.asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl StateReader for UnrecordedState {
    fn get<'a>(
        &'a self,
        key: &'a StateKey,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>> {
        let mut asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
        if !asked.contains(&key.key) {
            asked.push(key.key.clone());
        }
        Box::pin(async { Ok(None) })
    }

    fn usage<'a>(&'a self, key: &'a StateKey) -> BoxFuture<'a, Result<StateUsage, BackendError>> {
        self.empty.usage(key)
    }
}

/// Says why the server refused `what`.
fn refused(status: u16, body: &Value, what: &str) {
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message");
    eprintln!("fluxo: cannot read {what}: {status}: {message}");
}

/// The compared parts of a report, as JSON.
fn compared(report: &RunReport) -> [Value; 4] {
    [
        json!(report.status),
        json!(report.error),
        json!(report.outcome),
        json!(report.effects),
    ]
}

/// The names of the compared parts in which `replayed` differs from `original`.
fn differences(original: &RunReport, replayed: &RunReport) -> Vec<&'static str> {
    COMPARED
        .iter()
        .zip(compared(original).iter().zip(compared(replayed).iter()))
        .filter(|(_, (a, b))| a != b)
        .map(|(name, _)| *name)
        .collect()
}

fn print_comparison(
    record: &RunRecord,
    original: &RunReport,
    replayed: &RunReport,
    differences: &[&str],
    notes: &[String],
) {
    println!(
        "replay of run {} ({} version {}, attempt {}): {} HTTP exchange(s) answered from the record; nothing sent, nothing applied",
        record.id,
        record.action,
        record.version,
        original.attempt,
        original.http.len()
    );
    for (name, (was, is)) in COMPARED
        .iter()
        .zip(compared(original).into_iter().zip(compared(replayed)))
    {
        if differences.contains(name) {
            println!("{name:<8} differs");
            println!("  original: {}", one_line(&was));
            println!("  replay:   {}", one_line(&is));
        } else {
            println!("{name:<8} same: {}", one_line(&was));
        }
    }
    for note in notes {
        println!("note: {note}");
    }
    if differences.is_empty() {
        println!("the replay reproduces the original run");
    } else {
        println!(
            "the replay differs from the original in: {}",
            differences.join(", ")
        );
    }
}

/// `value` on one line, cut at 200 characters.
fn one_line(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", text.get(..at).unwrap_or_default()),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use fluxo_core::{RunError, RunId};

    use super::*;

    #[test]
    fn only_the_parts_that_differ_are_named() {
        let run = RunId::new();
        let original = RunReport::not_started(run, 1, RunError::new(ErrorKind::Trap, "boom"));
        assert!(differences(&original, &original.clone()).is_empty());
        let other = RunReport::not_started(run, 1, RunError::new(ErrorKind::Trap, "bang"));
        assert_eq!(differences(&original, &other), vec!["error"]);
        let mut usage_only = original.clone();
        usage_only.usage.fuel += 1;
        usage_only.logs.clear();
        assert!(differences(&original, &usage_only).is_empty());
    }

    #[test]
    fn long_values_are_cut_on_a_character() {
        let long = Value::String("é".repeat(300));
        let shown = one_line(&long);
        assert!(shown.ends_with('…'));
        assert_eq!(shown.chars().count(), 201);
    }
}
