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

/// The Python and JavaScript tools: `FLUXO_TOOLS_DIR`, as the build step reads it, else
/// the project's `.tools`.
fn tools_dir() -> PathBuf {
    std::env::var_os("FLUXO_TOOLS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools"),
        PathBuf::from,
    )
}

/// Loads the component at `path` as the server would (world, imports, size, pool shape).
fn assert_loads(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    fluxo_sandbox::Runtime::builder()
        .build()
        .unwrap()
        .load(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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
    // wasi:http would bypass the egress policy: outside the world.
    let component = dir.path().join("http.wasm");
    std::fs::write(
        &component,
        wat::parse_str(r#"(component (import "wasi:http/outgoing-handler@0.2.6" (instance)))"#)
            .unwrap(),
    )
    .unwrap();
    let output = fluxo(&[
        "run",
        component.to_str().unwrap(),
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
            .contains("wasi:http/")
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
    assert!(stderr.contains("fluxo:action/http@0.2.0"), "{stderr}");
    assert_loads(&out);
}

#[test]
fn build_turns_python_and_javascript_actions_into_checked_components() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tools = tools_dir();
    let dir = tempfile::tempdir().unwrap();
    // Outside the project: the world comes from the binary; the tools from the nearest
    // `.tools` above the working directory; every path relative to it.
    std::os::unix::fs::symlink(&tools, dir.path().join(".tools")).unwrap();
    let work = dir.path().join("work");
    let app = work.join("lead-sync");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::copy(
        root.join("guest-examples/crm-lead-py/app.py"),
        app.join("app.py"),
    )
    .unwrap();
    std::fs::copy(
        root.join("guest-examples/crm-lead-js/action.js"),
        work.join("lead.js"),
    )
    .unwrap();
    // What is not the app stays out of the build: a test, and a link looping back.
    write(&app, "test_app.py", "MARKER = 'a test file, not the app'\n");
    std::os::unix::fs::symlink(".", app.join("self")).unwrap();
    // (language, PATH, the component's default name)
    for (lang, source, name) in [
        ("python", "lead-sync", "lead-sync.wasm"),
        ("python", "lead-sync/app.py", "lead-sync.wasm"),
        ("js", "lead.js", "lead.wasm"),
    ] {
        let output = Command::new(fluxo_bin().unwrap())
            .args(["build", "--lang", lang, source])
            .current_dir(&work)
            .env_remove("FLUXO_TOOLS_DIR")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{lang} {source}: {stderr}");
        assert!(
            stderr.contains("fluxo:action/contact@0.2.0"),
            "{lang}: {stderr}"
        );
        assert_loads(&work.join(name));
    }
    assert!(
        !app.join("__pycache__").exists(),
        "the app's directory is left as it was"
    );
    let built = std::fs::read(work.join("lead-sync.wasm")).unwrap();
    // componentize-py embeds the names of the files on its path (not their contents).
    assert!(
        !built.windows(11).any(|w| w == b"test_app.py"),
        "the tests are left out of the component"
    );
    // The module's bare file name, from the app's own directory.
    let bare = Command::new(fluxo_bin().unwrap())
        .args(["build", "--lang", "python", "app.py", "-o", "bare.wasm"])
        .args(["--tools", tools.to_str().unwrap()])
        .current_dir(&app)
        .output()
        .unwrap();
    assert_eq!(
        bare.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&bare.stderr)
    );
    assert_loads(&app.join("bare.wasm"));

    // What is not an action, or not there.
    for (args, says) in [
        (&["--lang", "python", "nowhere"][..], "does not exist"),
        (
            &["--lang", "python", "lead.js"][..],
            "is not a Python module",
        ),
        (&["--lang", "js", "lead-sync"][..], "holds no action.js"),
        (
            &["--lang", "python", "lead-sync", "--wit", "nowhere"][..],
            "--wit nowhere",
        ),
        (
            &["--lang", "js", "lead.js", "--target", "unknown"][..],
            "are for Rust crates",
        ),
        (
            &["lead-sync", "--module", "app"][..],
            "are for --lang python and js",
        ),
    ] {
        let output = Command::new(fluxo_bin().unwrap())
            .arg("build")
            .args(args)
            .current_dir(&work)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }

    // A Python app without the world's class, and no tools at all.
    write(&app, "app.py", "def run(event):\n    return None\n");
    let broken = fluxo(&[
        "build",
        "--lang",
        "python",
        app.to_str().unwrap(),
        "-o",
        dir.path().join("broken.wasm").to_str().unwrap(),
        "--tools",
        tools.to_str().unwrap(),
    ]);
    assert_eq!(
        broken.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&broken.stderr)
    );
    assert!(String::from_utf8_lossy(&broken.stderr).contains("the python toolchain failed"));
    let untooled = fluxo(&[
        "build",
        "--lang",
        "js",
        work.join("lead.js").to_str().unwrap(),
        "--tools",
        dir.path().join("nowhere").to_str().unwrap(),
    ]);
    assert_eq!(untooled.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&untooled.stderr).contains("scripts/setup-toolchain"),
        "{}",
        String::from_utf8_lossy(&untooled.stderr)
    );
}

#[test]
fn new_makes_projects_whose_own_tests_and_builds_pass_in_each_language() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tools = tools_dir();
    let dir = tempfile::tempdir().unwrap();
    let ok = |what: &str, output: &Output| {
        assert!(
            output.status.success(),
            "{what}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    // (language, its test command, what `fluxo build` is given)
    let projects: [(&str, &[&str], &str); 3] = [
        ("rust", &["cargo", "test", "--quiet"], "."),
        ("python", &["python3", "-m", "unittest"], "."),
        ("js", &["npm", "test", "--silent"], "action.js"),
    ];
    for (lang, test, source) in projects {
        let project = dir.path().join(format!("greet-{lang}"));
        let created = fluxo(&[
            "new",
            &format!("greet-{lang}"),
            "--lang",
            lang,
            "--dir",
            project.to_str().unwrap(),
            "--tools",
            tools.to_str().unwrap(),
        ]);
        ok(&format!("fluxo new --lang {lang}"), &created);

        // The project's own tests, as its README says; Rust shares the warm guest target.
        let tested = Command::new(test[0])
            .args(&test[1..])
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", root.join("guest-target"))
            .env_remove("RUSTFLAGS")
            .output()
            .unwrap();
        ok(&format!("{lang}: {test:?}"), &tested);

        let out = project.join("greet.wasm");
        let built = Command::new(fluxo_bin().unwrap())
            .args(["build", "--lang", lang, source, "-o", out.to_str().unwrap()])
            .args(
                ["--tools", tools.to_str().unwrap()]
                    .iter()
                    .filter(|_| lang != "rust"),
            )
            .args(
                ["--target-dir", root.join("guest-target").to_str().unwrap()]
                    .iter()
                    .filter(|_| lang == "rust"),
            )
            .current_dir(&project)
            .output()
            .unwrap();
        ok(&format!("fluxo build --lang {lang}"), &built);
        assert_loads(&out);
    }

    // A second project in the same place, and a name the server would refuse.
    let again = fluxo(&[
        "new",
        "greet-js",
        "--lang",
        "js",
        "--dir",
        dir.path().join("greet-js").to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    let bad = fluxo(&[
        "new",
        "Greet!",
        "--dir",
        dir.path().join("bad").to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(!dir.path().join("bad").exists());
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

/// A `fluxo serve` on 127.0.0.1 with its own temporary data directory.
struct Served {
    _process: crate::served::Served,
    url: String,
    admin: String,
    dir: tempfile::TempDir,
}

fn serve(config: &str) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let config_file = write(dir.path(), "fluxo.toml", config);
    let process = crate::served::Served::start(&dir.path().join("data"), &config_file);
    Served {
        url: process.url.clone(),
        admin: process.admin.clone(),
        _process: process,
        dir,
    }
}

impl Served {
    fn fluxo(&self, token: &str, args: &[&str]) -> Output {
        let mut all = vec!["--server", self.url.as_str(), "--token", token];
        all.extend_from_slice(args);
        fluxo(&all)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_served_fluxo_takes_a_tenant_from_upload_to_applied_run() {
    let crm = Upstream::start(|_| (200, json!({ "_id": "deal-e2e" }).to_string())).await;
    let port = crm.addr.port();
    let crm_url = crm.url();
    let outcome = tokio::task::spawn_blocking(move || {
        let server = serve(&format!(
            "[http]\nallow_private_cidrs = [\"127.0.0.1/32\"]\n[[http.tenant_allow.acme]]\nhost = \"127.0.0.1\"\nport = {port}\n"
        ));
        let created = server.fluxo(&server.admin, &["tenant", "create", "acme"]);
        assert_eq!(created.status.code(), Some(0), "{}", String::from_utf8_lossy(&created.stdout));
        let token_out = server.fluxo(&server.admin, &["token", "create", "acme"]);
        let token = String::from_utf8_lossy(&token_out.stdout).trim().to_owned();
        assert!(token.starts_with("fxt_"), "{token}");

        assert_eq!(server.fluxo("fxt_wrong", &["actions", "list"]).status.code(), Some(1));
        assert_eq!(server.fluxo(&token, &["secrets", "set", "crm_token", "e2e-secret"]).status.code(), Some(0));
        let uploaded = server.fluxo(&token, &["upload", "crm-lead", guests::CRM_LEAD, "--description", "Sync leads"]);
        let summary = String::from_utf8_lossy(&uploaded.stdout);
        assert_eq!(uploaded.status.code(), Some(0), "{summary}");
        assert!(summary.contains("crm-lead v1") && summary.contains("fluxo:action/http@0.2.0"), "{summary}");
        let listed = server.fluxo(&token, &["actions", "list"]);
        assert!(String::from_utf8_lossy(&listed.stdout).contains("Sync leads"));

        let event = write(
            server.dir.path(),
            "event.json",
            &json!({ "contact": { "id": "c7", "fields": { "name": "Bia" } }, "input": { "crm_url": crm_url } }).to_string(),
        );
        let tested = server.fluxo(&token, &["--json", "test", "crm-lead", "--event", event.to_str().unwrap()]);
        let tested: Value = serde_json::from_slice(&tested.stdout).unwrap();
        assert_eq!(tested["report"]["applied"], false);
        assert_eq!(tested["contact"]["fields"]["crm_deal_id"]["after"], "deal-e2e");

        // `fluxo runs watch` shows the run when it finishes.
        let mut watch = Command::new(fluxo_bin().unwrap())
            .args(["--server", server.url.as_str(), "--token", token.as_str(), "runs", "watch", "--action", "crm-lead"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let watched = watch.stdout.take().unwrap();
        let (lines_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(watched).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let run = server.fluxo(&token, &["--json", "runs", "submit", "crm-lead", "--event", event.to_str().unwrap(), "--wait"]);
        assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stdout));
        let run: Value = serde_json::from_slice(&run.stdout).unwrap();
        assert_eq!(run["state"], "succeeded");
        assert_eq!(run["report"]["applied"], true);
        assert!(!run.to_string().contains("e2e-secret"));
        let run_id = run["id"].as_str().unwrap();
        let shown = lines
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("runs watch showed nothing within 30 s");
        watch.kill().unwrap();
        let _ = watch.wait();
        assert!(shown.starts_with(run_id) && shown.contains("succeeded"), "{shown}");
        // `fluxo logs` prints what the guest logged, level and source first.
        let logs = server.fluxo(&token, &["logs", run_id, "--follow"]);
        let logs_text = String::from_utf8_lossy(&logs.stdout);
        assert_eq!(logs.status.code(), Some(0), "{logs_text}");
        assert!(
            logs_text.lines().any(|line| line.starts_with("info  log ") && line.contains("deal-e2e")),
            "{logs_text}"
        );
        assert_eq!(server.fluxo(&token, &["logs", "not-a-run"]).status.code(), Some(1));
        let runs = server.fluxo(&token, &["runs", "list"]);
        assert!(String::from_utf8_lossy(&runs.stdout).contains("succeeded"));

        // A workflow goes through the same commands: uploaded, run in the background,
        // its path in the log. crm.example is not allowed here: the request is refused
        // and the run takes its `on_error` port.
        let lead_sync = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-examples/workflows/lead-sync.json");
        assert_eq!(server.fluxo(&token, &["secrets", "set", "CRM_TOKEN", "wf-secret"]).status.code(), Some(0));
        let uploaded = server.fluxo(&token, &["workflow", "upload", "lead-sync", lead_sync.to_str().unwrap()]);
        assert_eq!(uploaded.status.code(), Some(0), "{}", String::from_utf8_lossy(&uploaded.stdout));
        let lead = write(
            server.dir.path(),
            "lead.json",
            &json!({ "contact": { "id": "c8", "fields": { "name": "Ana", "email": "ana@example.com", "phone": "1" } } }).to_string(),
        );
        let run = server.fluxo(&token, &["--json", "workflow", "run", "lead-sync", "--event", lead.to_str().unwrap(), "--wait"]);
        assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stdout));
        let run: Value = serde_json::from_slice(&run.stdout).unwrap();
        assert_eq!(run["state"], "succeeded", "{run:#}");
        assert!(run["report"]["effects"].to_string().contains("crm-sync-failed"), "{run:#}");
        let logs = server.fluxo(&token, &["logs", run["id"].as_str().unwrap()]);
        let logs_text = String::from_utf8_lossy(&logs.stdout);
        assert!(logs_text.contains("step create_deal (http): on_error → tag_sync_failed"), "{logs_text}");
    })
    .await;
    outcome.unwrap();
    assert_eq!(crm.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_reproduces_production_runs_from_their_records_and_sends_nothing() {
    // The CRM refuses Bia's deal for good (400) and creates Ana's.
    let crm = Upstream::start(|request| {
        if request.json()["deal"]["name"] == "Bia" {
            (400, json!({ "error": "duplicate deal" }).to_string())
        } else {
            (200, json!({ "_id": "deal-replayed" }).to_string())
        }
    })
    .await;
    let port = crm.addr.port();
    let crm_url = crm.url();
    let (server, token, runs) = tokio::task::spawn_blocking(move || {
        let server = serve(&format!(
            "[http]\nallow_private_cidrs = [\"127.0.0.1/32\"]\n[[http.tenant_allow.acme]]\nhost = \"127.0.0.1\"\nport = {port}\n"
        ));
        assert_eq!(server.fluxo(&server.admin, &["tenant", "create", "acme"]).status.code(), Some(0));
        let token_out = server.fluxo(&server.admin, &["token", "create", "acme"]);
        let token = String::from_utf8_lossy(&token_out.stdout).trim().to_owned();
        assert_eq!(server.fluxo(&token, &["secrets", "set", "crm_token", "replay-secret-1"]).status.code(), Some(0));
        assert_eq!(server.fluxo(&token, &["upload", "crm-lead", guests::CRM_LEAD]).status.code(), Some(0));
        let mut runs = Vec::new();
        for (name, state) in [("Ana", "succeeded"), ("Bia", "failed")] {
            let event = write(
                server.dir.path(),
                &format!("{name}.json"),
                &json!({ "contact": { "id": name, "fields": { "name": name } }, "input": { "crm_url": crm_url } }).to_string(),
            );
            let run = server.fluxo(&token, &["--json", "runs", "submit", "crm-lead", "--event", event.to_str().unwrap(), "--wait"]);
            let run = report(&run);
            assert_eq!(run["state"], state, "{run:#}");
            // The record keeps the limits the run had, for its replay.
            assert_eq!(run["limits"]["fuel"], 1_000_000_000, "{run:#}");
            runs.push(run);
        }
        (server, token, runs)
    })
    .await
    .unwrap();
    // The CRM is gone: a replay that sent anything would fail differently.
    drop(crm);
    tokio::task::spawn_blocking(move || {
        for run in &runs {
            let id = run["id"].as_str().unwrap();
            let replayed = server.fluxo(&token, &["--json", "replay", id]);
            let answer = report(&replayed);
            assert_eq!(replayed.status.code(), Some(0), "{answer:#}");
            assert_eq!(answer["same"], true, "{answer:#}");
            assert_eq!(answer["replay"]["outcome"], run["report"]["outcome"]);
            assert_eq!(answer["replay"]["error"], run["report"]["error"]);
            assert_eq!(answer["replay"]["effects"], run["report"]["effects"]);
            assert_eq!(answer["replay"]["applied"], false);
            // The secret's value never left the server: the replay used a stand-in, and
            // says so.
            assert_eq!(
                answer["divergences"],
                json!(["secrets crm_token are stand-ins (their values stay on the server; set them under [secrets.acme] in --config for an exact replay)"]),
            );
            assert!(!answer.to_string().contains("replay-secret-1"));
        }
        // With the real secret in --config: no stand-in, and still no secret in the answer.
        let config = write(server.dir.path(), "replay.toml", "[secrets.acme]\ncrm_token = \"replay-secret-1\"\n");
        let exact = server.fluxo(&token, &["--json", "replay", runs[0]["id"].as_str().unwrap(), "--config", config.to_str().unwrap()]);
        let answer = report(&exact);
        assert_eq!(exact.status.code(), Some(0), "{answer:#}");
        assert_eq!((answer["same"].clone(), answer["divergences"].clone()), (json!(true), json!([])), "{answer:#}");
        assert!(!answer.to_string().contains("replay-secret-1"), "{answer:#}");
        let shown = server.fluxo(&token, &["replay", runs[1]["id"].as_str().unwrap()]);
        let text = String::from_utf8_lossy(&shown.stdout);
        assert_eq!(shown.status.code(), Some(0), "{text}");
        assert!(text.contains("status   same: \"failed\"\nerror    same: {"), "{text}");
        assert!(text.ends_with("the replay reproduces the original run\n"), "{text}");
        let unknown = server.fluxo(&token, &["replay", "no-such-run"]);
        assert_eq!(unknown.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&unknown.stderr).contains("cannot read run no-such-run: 404"));
    })
    .await
    .unwrap();
}

/// `GET /healthz` over a real socket, and how long it took.
fn healthz(url: &str) -> (String, std::time::Duration) {
    use std::io::{Read as _, Write as _};
    let address = url.trim_start_matches("http://");
    let started = std::time::Instant::now();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: fluxo\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    (answer, started.elapsed())
}

#[test]
fn healthz_answers_while_every_worker_runs_a_spinning_guest() {
    let server = serve(
        "[limits]\nfuel = 4611686018427387903\ndeadline_ms = 6000\n[server]\nworkers = 4\nper_tenant = 4\n",
    );
    server.fluxo(&server.admin, &["tenant", "create", "acme"]);
    let token_out = server.fluxo(&server.admin, &["token", "create", "acme"]);
    let token = String::from_utf8_lossy(&token_out.stdout).trim().to_owned();
    let uploaded = server.fluxo(&token, &["upload", "spin", guests::SPIN]);
    assert_eq!(
        uploaded.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&uploaded.stderr)
    );
    let event = write(server.dir.path(), "spin.json", "{}");
    for _ in 0..4 {
        let submitted = server.fluxo(
            &token,
            &["runs", "submit", "spin", "--event", event.to_str().unwrap()],
        );
        assert_eq!(submitted.status.code(), Some(0));
    }
    let mut running = 0;
    for _ in 0..200 {
        let listed = server.fluxo(&token, &["--json", "runs", "list", "--state", "running"]);
        let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
        running = listed["runs"].as_array().map_or(0, Vec::len);
        if running == 4 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(running, 4, "every worker runs a spinner");
    // Two cores, four spinning guests: each yields its thread at every epoch tick, so
    // the API still answers within a tick or two (the bound: 100 ms). A frozen API
    // answers only when the guests stop, at their 6 s deadline. The median of five
    // answers is held to the bound, so that one scheduling hiccup of a shared machine
    // does not fail the test; every answer must still come well before the deadline.
    let mut took: Vec<_> = (0..5)
        .map(|_| {
            let (answer, took) = healthz(&server.url);
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            took
        })
        .collect();
    took.sort();
    assert!(
        took[2] < std::time::Duration::from_millis(100),
        "/healthz took {took:?}"
    );
    assert!(
        took[4] < std::time::Duration::from_secs(1),
        "/healthz took {took:?}"
    );
}
