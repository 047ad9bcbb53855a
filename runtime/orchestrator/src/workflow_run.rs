//! One attempt of a workflow run: its blocks through the interpreter in the run's
//! context, the way a component's attempt runs its guest. The scheduler treats the
//! result like any other [`Execution`]: committed in one transaction when it succeeded,
//! retried by the action's policy when it failed retryably.
//!
//! The event's `input` (an object) gives the starting variables; the variables at the
//! end are the outcome's `output`. Each step leaves a line in the run's log (source
//! `host`), so `fluxo logs RUN_ID` shows the path the run took.

use std::time::Instant;

use fluxo_core::{Event, LogLevel, LogSource, RunOutcome, Usage};
use fluxo_sandbox::{Execution, RunContext};
use fluxo_workflow::{HttpMode, Interpreter, Start, StepTrace, Workflow};
use serde_json::{Map, Value};

/// Runs `workflow` for `event` in `ctx` with live HTTP.
pub(crate) async fn execute(
    interpreter: &Interpreter,
    workflow: &Workflow,
    mut ctx: RunContext,
    event: &Event,
) -> Execution {
    let started = Instant::now();
    let vars = match event.input.value() {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        other => Map::from_iter([("input".to_owned(), other.clone())]),
    };
    let start = Start {
        message: event.message.clone(),
        vars,
    };
    let run = interpreter
        .run(
            workflow,
            &mut ctx,
            start,
            &HttpMode::Live,
            &mut rand::random::<f64>,
        )
        .await;
    for step in &run.trace {
        let level = if step.error.is_some() {
            LogLevel::Error
        } else {
            LogLevel::Info
        };
        ctx.push_log(level, LogSource::Host, describe(step));
    }
    let end = match run.error {
        Some(failure) => Err(failure.error),
        None => Ok(RunOutcome {
            output: Value::Object(run.vars),
            replies: Vec::new(),
            branch: None,
        }),
    };
    let usage = Usage {
        wall_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        ..Usage::default()
    };
    Execution::finish(ctx, end, usage)
}

/// One log line per step: `step create_deal (http): next → tag_onboarded, 201`.
fn describe(step: &StepTrace) -> String {
    let mut line = format!("step {} ({})", step.step, step.block);
    if let Some(error) = &step.error {
        line.push_str(&format!(": failed: {error}"));
        return line;
    }
    match (&step.port, &step.next) {
        (Some(port), Some(next)) => line.push_str(&format!(": {port} → {next}")),
        _ => line.push_str(": end"),
    }
    if let Some(status) = step.outputs.pointer("/response/status") {
        line.push_str(&format!(", HTTP {status}"));
    }
    line
}
