//! The REST API driven as a service, without a socket: every route, auth, tenant
//! isolation, uploads good and bad, the lifecycle, test runs, submitted runs, overload.

use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use fluxo_orchestrator::registry::{CompileLimits, Compiler};
use fluxo_sandbox::AllowRule;
use fluxo_server::{Config, ServerOptions, app, build, routes};
use fluxo_tests::{fluxo_bin, guests};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::support::{Upstream, guest};

pub(crate) const ADMIN: &str = "admin-secret-token";

pub(crate) struct Api {
    pub(crate) app: Router,
    pub(crate) server: fluxo_server::Server,
    pub(crate) dir: tempfile::TempDir,
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    pub(crate) headers: http::HeaderMap,
}

pub(crate) fn config_for(port: u16) -> Config {
    let mut config = Config::default();
    config.http.tenant_allow.insert(
        "acme".into(),
        vec![AllowRule {
            port: Some(port),
            ..AllowRule::host("127.0.0.1")
        }],
    );
    config
        .http
        .allow_private_cidrs
        .push("127.0.0.1/32".parse().unwrap());
    config
}

pub(crate) async fn api_with(config: Config, compile_timeout: Duration) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let program = fluxo_bin().unwrap_or_else(|problem| panic!("{problem}"));
    let server = build(
        dir.path(),
        ServerOptions {
            config,
            compiler: Compiler::Subprocess {
                program,
                limits: CompileLimits {
                    timeout: compile_timeout,
                    ..CompileLimits::default()
                },
            },
            admin_token: ADMIN.to_owned(),
            resolver: None,
        },
    )
    .await
    .unwrap();
    Api {
        app: app(server.state.clone()),
        server,
        dir,
    }
}

pub(crate) async fn api(config: Config) -> Api {
    api_with(config, Duration::from_secs(60)).await
}

impl Api {
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Bytes,
    ) -> Answer {
        self.call_with(method, path, token, &[], body).await
    }

    /// [`Api::call`] with more request headers.
    pub(crate) async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer {
            status,
            body,
            headers,
        }
    }

    pub(crate) async fn json(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Answer {
        self.call(method, path, token, Bytes::from(body.to_string()))
            .await
    }

    pub(crate) async fn submit(&self, token: &str, body: Value) -> Answer {
        self.json(Method::POST, "/v1/runs", Some(token), body).await
    }

    /// A dry run of a workflow: `body` is `POST /v1/workflows/test`'s request.
    pub(crate) async fn test_workflow(&self, token: &str, body: Value) -> Answer {
        self.json(Method::POST, "/v1/workflows/test", Some(token), body)
            .await
    }

    pub(crate) async fn post(&self, path: &str, token: &str) -> Answer {
        self.call(Method::POST, path, Some(token), Bytes::new())
            .await
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), Bytes::new())
            .await
    }

    pub(crate) async fn tenant(&self, id: &str) -> String {
        let created = self
            .json(
                Method::POST,
                "/v1/tenants",
                Some(ADMIN),
                json!({ "id": id }),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let token = self
            .call(
                Method::POST,
                &format!("/v1/tenants/{id}/tokens"),
                Some(ADMIN),
                Bytes::new(),
            )
            .await;
        assert_eq!(token.status, StatusCode::CREATED, "{}", token.body);
        token.body["token"].as_str().unwrap().to_owned()
    }

    /// Sets the tenant's secret `name` to `value`, which must succeed.
    pub(crate) async fn put_secret(&self, token: &str, name: &str, value: &str) {
        let set = self
            .json(
                Method::PUT,
                &format!("/v1/secrets/{name}"),
                Some(token),
                json!({ "value": value }),
            )
            .await;
        assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    }

    /// Adds a webhook endpoint for `url`, which must succeed: its id and signing secret.
    pub(crate) async fn add_endpoint(&self, token: &str, url: &str) -> (String, String) {
        let made = self
            .json(
                Method::POST,
                "/v1/webhooks",
                Some(token),
                json!({ "url": url }),
            )
            .await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
        (
            made.body["endpoint"]["id"].as_str().unwrap().to_owned(),
            made.body["secret"].as_str().unwrap().to_owned(),
        )
    }

    /// Whether endpoint `id` is disabled within five seconds.
    pub(crate) async fn endpoint_disabled(&self, token: &str, id: &str) -> bool {
        for _ in 0..200 {
            let listed = self.get("/v1/webhooks", token).await;
            let disabled = listed.body["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["id"] == id && e["enabled"] == false);
            if disabled {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    pub(crate) async fn upload(&self, token: &str, name: &str, bytes: Vec<u8>) -> Answer {
        self.call(
            Method::POST,
            &format!("/v1/actions/{name}/versions?description=made%20in%20tests"),
            Some(token),
            Bytes::from(bytes),
        )
        .await
    }

    pub(crate) async fn wait(&self, token: &str, run_id: &str) -> Value {
        for _ in 0..200 {
            let run = self.get(&format!("/v1/runs/{run_id}"), token).await;
            assert_eq!(run.status, StatusCode::OK, "{}", run.body);
            if matches!(
                run.body["state"].as_str(),
                Some("succeeded" | "failed" | "dead" | "cancelled")
            ) {
                return run.body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("run {run_id} did not finish");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_route_is_served_and_guarded() {
    let api = api(Config::default()).await;
    let documented = routes::openapi();
    let paths = documented["paths"].as_object().unwrap();
    let mut count = 0;
    for (doc, _) in routes::routes() {
        assert!(
            paths[doc.path]
                .get(doc.method.to_ascii_lowercase())
                .is_some(),
            "{} {} is not documented",
            doc.method,
            doc.path
        );
        let path = doc
            .path
            .replace("{name}", "x")
            .replace("{tenant}", "x")
            .replace("{hook}", "x")
            .replace("{id}", "x");
        let method = Method::from_bytes(doc.method.as_bytes()).unwrap();
        let answer = api.call(method, &path, None, Bytes::new()).await;
        let expected = match doc.access {
            // Served without a token; signed by the hook's secret instead.
            routes::Access::Public if doc.path == "/v1/hooks/{tenant}/{hook}" => {
                StatusCode::UNAUTHORIZED
            }
            routes::Access::Public => StatusCode::OK,
            _ => StatusCode::UNAUTHORIZED,
        };
        assert_eq!(
            answer.status, expected,
            "{} {}: {}",
            doc.method, doc.path, answer.body
        );
        count += 1;
    }
    let documented_operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented_operations, count,
        "the document lists exactly the served routes"
    );
    let unknown = api
        .call(Method::GET, "/v1/nothing-here", None, Bytes::new())
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.body["code"], "not_found",
        "an unknown path answers the API's error body: {}",
        unknown.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_uploads_tests_and_runs_an_action() {
    let crm = Upstream::start(|_| (200, json!({ "_id": "deal-7" }).to_string())).await;
    let api = api(config_for(crm.addr.port())).await;
    let token = api.tenant("acme").await;
    api.put_secret(&token, "crm_token", "api-held-secret").await;

    let uploaded = api
        .upload(&token, "crm-lead", guest(guests::CRM_LEAD))
        .await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
    assert_eq!(uploaded.body["version"]["version"], 1);
    assert_eq!(uploaded.body["action"]["description"], "made in tests");
    let shown = api.get("/v1/actions/crm-lead", &token).await;
    let permissions = shown.body["permissions"].as_array().unwrap();
    assert!(
        permissions.iter().any(|p| p == "fluxo:action/http@0.2.0"),
        "{permissions:?}"
    );

    let event = json!({
        "contact": { "id": "c1", "fields": { "name": "Ana" }, "tags": [] },
        "input": { "crm_url": crm.url() },
    });
    let tested = api
        .json(
            Method::POST,
            "/v1/actions/crm-lead/test",
            Some(&token),
            event.clone(),
        )
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.body);
    assert_eq!(tested.body["report"]["status"], "succeeded");
    assert_eq!(tested.body["report"]["applied"], false);
    assert_eq!(
        tested.body["contact"]["fields"]["crm_deal_id"],
        json!({ "before": null, "after": "deal-7" })
    );
    assert_eq!(
        tested.body["contact"]["tags"]["added"],
        json!(["crm-synced"])
    );
    assert_eq!(tested.body["report"]["http"][0]["status"], 200);
    assert_eq!(
        tested.body["report"]["http"][0]["response_body"],
        r#"{"_id":"deal-7"}"#
    );
    assert!(!tested.body.to_string().contains("api-held-secret"));
    assert_eq!(
        api.get("/v1/contacts/c1", &token).await.status,
        StatusCode::NOT_FOUND,
        "a test applies nothing"
    );

    let mut run = event;
    run["action"] = json!("crm-lead");
    let submitted = api.submit(&token, run).await;
    assert_eq!(submitted.status, StatusCode::ACCEPTED, "{}", submitted.body);
    let run_id = submitted.body["run_id"].as_str().unwrap();
    let finished = api.wait(&token, run_id).await;
    assert_eq!(finished["state"], "succeeded", "{finished:#}");
    assert_eq!(finished["version"], 1);
    let contact = api.get("/v1/contacts/c1", &token).await;
    assert_eq!(contact.body["fields"]["crm_deal_id"], "deal-7");
    assert_eq!(contact.body["tags"], json!(["crm-synced"]));
    assert_eq!(
        crm.received().len(),
        2,
        "the test and the run both called the CRM"
    );
    let listed = api
        .get("/v1/runs?action=crm-lead&state=succeeded", &token)
        .await;
    assert_eq!(listed.body["runs"].as_array().unwrap().len(), 1);

    let metrics = api.call(Method::GET, "/metrics", None, Bytes::new()).await;
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains("fluxo_runs_total{mode=\"run\",state=\"succeeded\",error_kind=\"\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("fluxo_runs_total{mode=\"test\",state=\"succeeded\",error_kind=\"\"} 1"),
        "the test is counted apart: {text}"
    );
    assert!(
        text.contains("fluxo_uploads_total{outcome=\"accepted\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_checked_and_tenants_see_only_their_own() {
    let api = api(config_for(9)).await;
    let acme = api.tenant("acme").await;
    let other = api.tenant("other").await;
    assert_eq!(
        api.upload(&acme, "second-copy", guest(guests::SECOND_COPY))
            .await
            .status,
        StatusCode::CREATED
    );

    assert_eq!(
        api.call(Method::GET, "/v1/actions", None, Bytes::new())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.get("/v1/actions", "fxt_forged").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.get("/v1/actions", ADMIN).await.status,
        StatusCode::FORBIDDEN
    );
    let as_tenant = api
        .json(
            Method::POST,
            "/v1/tenants",
            Some(&acme),
            json!({ "id": "evil" }),
        )
        .await;
    assert_eq!(as_tenant.status, StatusCode::FORBIDDEN);

    assert_eq!(
        api.get("/v1/actions/second-copy", &other).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get("/v1/actions", &other).await.body["actions"],
        json!([])
    );
    let deleted = api
        .call(
            Method::DELETE,
            "/v1/actions/second-copy?confirm=second-copy",
            Some(&other),
            Bytes::new(),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NOT_FOUND);
    let run = api.submit(&acme, json!({ "action": "second-copy" })).await;
    let run_id = run.body["run_id"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/v1/runs/{run_id}"), &other).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get("/v1/actions/second-copy", &acme).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_uploads_are_refused_and_leave_nothing_behind() {
    let mut config = Config::default();
    config.server.max_component_bytes = 256 << 10;
    let api = api(config).await;
    let token = api.tenant("acme").await;
    let refused = |answer: &Answer, status: StatusCode, code: &str| {
        assert_eq!(answer.status, status, "{}", answer.body);
        assert_eq!(answer.body["code"], code, "{}", answer.body);
    };

    // Just over the cap (the registry refuses it) and far over it (the body limit does).
    refused(
        &api.upload(&token, "big", vec![0; 300 << 10]).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "component_too_large",
    );
    refused(
        &api.upload(&token, "huge", vec![0; 4 << 20]).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "component_too_large",
    );
    // A tenant with a cap of its own: smaller than everyone else's.
    let mut capped = Config::default();
    capped
        .server
        .tenant_max_component_bytes
        .insert("tiny".to_owned(), 1_000);
    let capped = crate::server::api(capped).await;
    let (tiny, acme) = (capped.tenant("tiny").await, capped.tenant("acme").await);
    let component = guest(guests::CRM_LEAD);
    let refused_tiny = capped.upload(&tiny, "crm-lead", component.clone()).await;
    refused(
        &refused_tiny,
        StatusCode::PAYLOAD_TOO_LARGE,
        "component_too_large",
    );
    assert_eq!(
        refused_tiny.body["details"]["limit"], 1_000,
        "{}",
        refused_tiny.body
    );
    assert_eq!(
        capped.upload(&acme, "crm-lead", component).await.status,
        StatusCode::CREATED
    );

    // Only uploads take bodies as large as the component cap: a JSON route keeps its own
    // limit, whatever the cap.
    let mut roomy = Config::default();
    roomy.server.max_component_bytes = 64 << 20;
    let roomy = crate::server::api(roomy).await;
    let roomy_token = roomy.tenant("acme").await;
    let over_json = fluxo_server::MAX_JSON_BODY_BYTES + 1;
    let big_run = roomy
        .call(
            Method::POST,
            "/v1/runs",
            Some(&roomy_token),
            Bytes::from(vec![b' '; over_json]),
        )
        .await;
    assert_eq!(
        big_run.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        big_run.body
    );
    refused(
        &roomy.upload(&roomy_token, "junk", vec![0; over_json]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_component",
    );
    refused(
        &api.upload(&token, "junk", b"definitely not wasm".to_vec())
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_component",
    );
    let core = api
        .upload(&token, "core", wat::parse_str("(module)").unwrap())
        .await;
    refused(&core, StatusCode::UNPROCESSABLE_ENTITY, "invalid_component");
    assert!(
        core.body["message"]
            .as_str()
            .unwrap()
            .contains("core wasm module")
    );
    let evil = wat::parse_str(r#"(component (import "evil:net/raw@1.0.0" (instance)))"#).unwrap();
    let forbidden = api.upload(&token, "evil", evil).await;
    refused(
        &forbidden,
        StatusCode::UNPROCESSABLE_ENTITY,
        "forbidden_import",
    );
    assert_eq!(forbidden.body["details"]["import"], "evil:net/raw@1.0.0");
    let http =
        wat::parse_str(r#"(component (import "wasi:http/outgoing-handler@0.2.6" (instance)))"#)
            .unwrap();
    let bypass = api.upload(&token, "http", http).await;
    refused(
        &bypass,
        StatusCode::UNPROCESSABLE_ENTITY,
        "forbidden_import",
    );
    assert_eq!(
        bypass.body["details"]["import"], "wasi:http/outgoing-handler@0.2.6",
        "wasi:http would bypass the egress policy"
    );
    refused(
        &api.upload(&token, "Bad_Name", guest(guests::SPIN)).await,
        StatusCode::BAD_REQUEST,
        "invalid_name",
    );
    assert_eq!(
        api.get("/v1/actions", &token).await.body["actions"],
        json!([])
    );
}

/// A component whose single function is large enough that compiling it takes seconds.
pub(crate) fn compile_bomb() -> Vec<u8> {
    let mut body = String::with_capacity(8 << 20);
    for i in 0..250_000 {
        body.push_str(&format!(
            "local.get 0 i32.const {i} i32.add local.tee 0 i32.const 7 i32.mul local.set 0\n"
        ));
    }
    wat::parse_str(format!(
        "(component (core module (func (export \"f\") (param i32) (result i32) {body} local.get 0)))"
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compile_bomb_is_stopped_and_the_server_keeps_working() {
    let api = api_with(Config::default(), Duration::from_millis(1_500)).await;
    let token = api.tenant("acme").await;
    let bomb = compile_bomb();
    assert!(bomb.len() < fluxo_sandbox::DEFAULT_MAX_COMPONENT_BYTES);
    let started = std::time::Instant::now();
    let answer = api.upload(&token, "bomb", bomb).await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.body
    );
    assert_eq!(answer.body["code"], "compile_timeout", "{}", answer.body);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        api.upload(&token, "second-copy", guest(guests::SECOND_COPY))
            .await
            .status,
        StatusCode::CREATED
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_enable_disable_and_delete() {
    let api = api(config_for(9)).await;
    let token = api.tenant("acme").await;
    assert_eq!(
        api.upload(&token, "greeter", guest(guests::STD_IO))
            .await
            .body["version"]["version"],
        1
    );
    assert_eq!(
        api.upload(&token, "greeter", guest(guests::MAIL_AND_STATE))
            .await
            .body["version"]["version"],
        2
    );
    let versions = api.get("/v1/actions/greeter/versions", &token).await;
    assert_eq!(versions.body["versions"].as_array().unwrap().len(), 2);

    let rolled_back = api
        .json(
            Method::POST,
            "/v1/actions/greeter/activate",
            Some(&token),
            json!({ "version": 1 }),
        )
        .await;
    assert_eq!(rolled_back.body["action"]["active_version"], 1);
    let missing = api
        .json(
            Method::POST,
            "/v1/actions/greeter/activate",
            Some(&token),
            json!({ "version": 9 }),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let run = api.submit(&token, json!({ "action": "greeter" })).await;
    let finished = api.wait(&token, run.body["run_id"].as_str().unwrap()).await;
    assert_eq!(
        (finished["version"].clone(), finished["state"].clone()),
        (json!(1), json!("succeeded")),
        "{finished:#}"
    );
    let pinned = api
        .submit(&token, json!({ "action": "greeter", "version": 2 }))
        .await;
    assert_eq!(
        api.wait(&token, pinned.body["run_id"].as_str().unwrap())
            .await["version"],
        2
    );

    api.post("/v1/actions/greeter/disable", &token).await;
    let refused = api.submit(&token, json!({ "action": "greeter" })).await;
    assert_eq!(
        (refused.status, refused.body["code"].clone()),
        (StatusCode::CONFLICT, json!("action_disabled"))
    );
    api.post("/v1/actions/greeter/enable", &token).await;
    assert_eq!(
        api.submit(&token, json!({ "action": "greeter" }))
            .await
            .status,
        StatusCode::ACCEPTED
    );

    for confirm in ["", "?confirm=other"] {
        let answer = api
            .call(
                Method::DELETE,
                &format!("/v1/actions/greeter{confirm}"),
                Some(&token),
                Bytes::new(),
            )
            .await;
        assert_eq!(answer.body["code"], "confirmation_mismatch");
    }
    let deleted = api
        .call(
            Method::DELETE,
            "/v1/actions/greeter?confirm=greeter",
            Some(&token),
            Bytes::new(),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(
        api.get("/v1/actions/greeter", &token).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_answers_429_with_retry_after() {
    let mut config = Config::default();
    config.limits.deadline_ms = 300;
    config.limits.fuel = u64::MAX / 2;
    config.server.workers = 1;
    config.server.per_tenant = 1;
    config.server.backlog_per_tenant = 1;
    let api = api_with(config, Duration::from_secs(60)).await;
    let token = api.tenant("acme").await;
    api.upload(&token, "spin", guest(guests::SPIN)).await;
    let mut accepted = Vec::new();
    let mut rejected = 0;
    for _ in 0..4 {
        let answer = api.submit(&token, json!({ "action": "spin" })).await;
        match answer.status {
            StatusCode::ACCEPTED => {
                accepted.push(answer.body["run_id"].as_str().unwrap().to_owned())
            }
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(answer.body["code"], "overloaded");
                assert!(answer.headers.get("retry-after").is_some());
                rejected += 1;
            }
            other => panic!("unexpected {other}: {}", answer.body),
        }
    }
    assert!(
        rejected >= 1,
        "one worker and one queue slot cannot take four runs at once"
    );
    for run_id in &accepted {
        assert_eq!(
            api.wait(&token, run_id).await["error_kind"],
            "deadline_exceeded"
        );
    }
    let runs = api.get("/v1/runs", &token).await;
    assert_eq!(
        runs.body["runs"].as_array().unwrap().len(),
        accepted.len(),
        "a refused run leaves no record"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn limit_overrides_only_tighten() {
    let api = api(config_for(9)).await;
    let token = api.tenant("acme").await;
    api.upload(&token, "greeter", guest(guests::STD_IO)).await;
    let looser = api
        .json(
            Method::PUT,
            "/v1/actions/greeter/limits",
            Some(&token),
            json!({ "fuel": u64::MAX }),
        )
        .await;
    assert_eq!(
        (looser.status, looser.body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_limits"))
    );
    let tighter = api
        .json(
            Method::PUT,
            "/v1/actions/greeter/limits",
            Some(&token),
            json!({ "fuel": 1000 }),
        )
        .await;
    assert_eq!(tighter.status, StatusCode::OK, "{}", tighter.body);
    assert_eq!(tighter.body["action"]["limits"], json!({ "fuel": 1000 }));

    let tested = api
        .json(
            Method::POST,
            "/v1/actions/greeter/test",
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(
        tested.body["report"]["error"]["kind"], "fuel_exhausted",
        "{}",
        tested.body
    );
    let run = api.submit(&token, json!({ "action": "greeter" })).await;
    let finished = api.wait(&token, run.body["run_id"].as_str().unwrap()).await;
    assert_eq!(finished["error_kind"], "fuel_exhausted", "{finished:#}");
    let missing = api
        .json(
            Method::PUT,
            "/v1/actions/nope/limits",
            Some(&token),
            json!({ "fuel": 10 }),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_s_component_downloads_as_it_was_uploaded() {
    let api = api(Config::default()).await;
    let token = api.tenant("acme").await;
    let bytes = guest(guests::CRM_LEAD);
    assert_eq!(
        api.upload(&token, "crm-lead", bytes.clone()).await.status,
        StatusCode::CREATED
    );
    let download = |path: &'static str| {
        let request = http::Request::builder()
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let app = api.app.clone();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let kind = response.headers().get("content-type").cloned();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, kind, body)
        }
    };
    let (status, kind, body) = download("/v1/actions/crm-lead/versions/1/component").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind.unwrap(), "application/wasm");
    assert!(body == bytes, "the download differs from the upload");

    let (status, _, body) = download("/v1/actions/crm-lead/versions/2/component").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:?}");
    let (status, _, _) = download("/v1/actions/nothing/versions/1/component").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = download("/v1/actions/crm-lead/versions/x/component").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let definition: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../guest-examples/workflows/lead-sync.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let uploaded = api
        .json(
            Method::POST,
            "/v1/workflows/lead-sync/versions",
            Some(&token),
            definition,
        )
        .await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
    let (status, _, body) = download("/v1/actions/lead-sync/versions/1/component").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        String::from_utf8_lossy(&body).contains("is a workflow definition"),
        "{body:?}"
    );
}
