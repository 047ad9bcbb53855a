//! The `fluxo` binary: `build` and `run`, their output and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fluxo_tests::{fluxo_bin, guests};
use serde_json::{Value, json};

use crate::support::Upstream;

fn fluxo(args: &[&str]) -> Output {
    let bin = fluxo_bin().unwrap_or_else(|problem| panic!("{problem}"));
    Command::new(bin).args(args).output().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn run_prints_a_report_and_exits_zero_on_success() {
    let crm = Upstream::start(|_| (200, json!({ "_id": "deal-9" }).to_string())).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "fluxo.toml",
        &format!(
            r#"
            [http]
            allow_private_cidrs = ["127.0.0.1/32"]
            [[http.allow]]
            scheme = "http"
            host = "127.0.0.1"
            port = {port}
            [secrets.acme]
            crm_token = "cli-secret-5150"
            "#,
            port = crm.addr.port()
        ),
    );
    let event = write(
        dir.path(),
        "event.json",
        &json!({
            "tenant": "acme", "action": "crm-lead", "trigger": "test",
            "contact": { "id": "c1", "fields": { "name": "Ana" }, "tags": [] },
            "message": { "text": "quero um orçamento" },
            "input": { "crm_url": crm.url() }
        })
        .to_string(),
    );
    let output = tokio::task::spawn_blocking(move || {
        fluxo(&[
            "run",
            guests::CRM_LEAD,
            "--event",
            event.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
    })
    .await
    .unwrap();
    let report = report(&output);
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["outcome"]["output"]["deal_id"], "deal-9");
    assert_eq!(
        report["effects"][0],
        json!({ "kind": "set_field", "name": "crm_deal_id", "value": "deal-9" })
    );
    assert_eq!(report["http"][0]["status"], 200);
    assert!(report["usage"]["fuel"].as_u64().unwrap() > 0);
    assert!(report["usage"]["wall_ms"].is_u64());
    assert!(report["usage"]["peak_memory_bytes"].as_u64().unwrap() > 0);
    assert!(!report.to_string().contains("cli-secret-5150"));
}

#[test]
fn run_exits_one_with_the_error_kind_when_the_run_fails() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "limits.toml", "[limits]\nfuel = 1000000\n");
    let event = write(
        dir.path(),
        "event.json",
        r#"{"tenant":"acme","action":"spin"}"#,
    );
    let output = fluxo(&[
        "run",
        guests::SPIN,
        "--event",
        event.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let report = report(&output);
    assert_eq!(report["status"], "failed");
    assert_eq!(report["error"]["kind"], "fuel_exhausted");
}

#[test]
fn run_reports_an_invalid_component_as_a_failed_run() {
    let dir = tempfile::tempdir().unwrap();
    let event = write(
        dir.path(),
        "event.json",
        r#"{"tenant":"acme","action":"x"}"#,
    );
    let output = fluxo(&[
        "run",
        guests::NET_SNEAKER,
        "--event",
        event.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let report = report(&output);
    assert_eq!(report["error"]["kind"], "invalid_component");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wasi:sockets/")
    );
}

#[test]
fn usage_and_configuration_errors_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    let event = write(
        dir.path(),
        "event.json",
        r#"{"tenant":"acme","action":"x"}"#,
    );
    let bad_event = write(dir.path(), "bad.json", r#"{"tenant":"acme"}"#);
    let bad_config = write(dir.path(), "bad.toml", "[limits]\nfuel_budget = 3\n");
    let event = event.to_str().unwrap();
    for args in [
        vec!["run", guests::SPIN],
        vec!["run", "/nonexistent.wasm", "--event", event],
        vec!["run", guests::SPIN, "--event", bad_event.to_str().unwrap()],
        vec![
            "run",
            guests::SPIN,
            "--event",
            event,
            "--config",
            bad_config.to_str().unwrap(),
        ],
        vec!["frobnicate"],
    ] {
        let output = fluxo(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn build_turns_an_example_crate_into_a_checked_component() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("second-copy.wasm");
    // The shared guest target directory is already warm from the test build step.
    let output = fluxo(&[
        "build",
        root.join("guest-examples/second-copy").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--target-dir",
        root.join("guest-target").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("fluxo:action/http@0.1.0"), "{stderr}");
    let bytes = std::fs::read(&out).unwrap();
    fluxo_runtime::Runtime::builder()
        .build()
        .unwrap()
        .load(&bytes)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn run_keeps_state_in_the_data_dir_and_sends_email_over_smtp() {
    let sink = crate::email::SmtpSink::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "fluxo.toml",
        &format!(
            "[email]\nurl = \"smtp://{}\"\nfrom = \"Fluxo <no-reply@platform.test>\"\n",
            sink.addr
        ),
    );
    let event = write(
        dir.path(),
        "event.json",
        r#"{"tenant":"acme","action":"visits","contact":{"id":"c9"}}"#,
    );
    let data = dir.path().join("data");
    let args = [
        "run",
        guests::MAIL_AND_STATE,
        "--event",
        event.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]
    .map(str::to_owned);
    for visit in 1..=2 {
        let args = args.clone();
        let output = tokio::task::spawn_blocking(move || {
            fluxo(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        assert_eq!(
            report(&output)["outcome"]["output"]["visits"],
            visit,
            "state persists in the data dir"
        );
        assert!(stderr.contains("1 sent"), "{stderr}");
    }
    assert_eq!(sink.accepted().len(), 2);
}
