//! Secrets at rest: sealed in the store, the key beside it (0600) and never in it, the
//! data directory private; `fluxo secrets rotate-key` re-seals everything and runs keep
//! their secrets; values stored in plain text by an earlier version are sealed at start.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use fluxo_tests::{fluxo_bin, guests};
use http::{Method, StatusCode};
use serde_json::json;

use crate::served::Served;
use crate::server::{api, config_for};
use crate::support::{Upstream, guest};

const SECRET: &str = "crm-secret-7f3a-sealed";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file of the store (the database and its write-ahead log) as bytes.
fn store_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in ["fluxo.db", "fluxo.db-wal"] {
        if let Ok(mut more) = std::fs::read(dir.join(name)) {
            bytes.append(&mut more);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn stored_values(dir: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open_with_flags(
        dir.join("fluxo.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut statement = db
        .prepare("SELECT value FROM secrets UNION ALL SELECT secret FROM webhook_secrets")
        .unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_sealed_at_rest_and_the_key_stays_outside_the_store() {
    let crm = Upstream::start(|_| (200, json!({ "_id": "deal-1" }).to_string())).await;
    let api = api(config_for(crm.addr.port())).await;
    let token = api.tenant("acme").await;
    let set = api
        .json(
            Method::PUT,
            "/v1/secrets/crm_token",
            Some(&token),
            json!({ "value": SECRET }),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let hook = api
        .json(
            Method::POST,
            "/v1/webhooks",
            Some(&token),
            json!({ "url": "http://127.0.0.1:9/hook" }),
        )
        .await;
    assert_eq!(hook.status, StatusCode::CREATED, "{}", hook.body);
    let signing = hook.body["secret"].as_str().unwrap().to_owned();

    let dir = api.dir.path();
    let values = stored_values(dir);
    assert_eq!(values.len(), 2);
    for value in &values {
        assert!(value.starts_with("fxs1."), "{value}");
    }
    let bytes = store_bytes(dir);
    assert!(!contains(&bytes, SECRET), "the secret is not in the store");
    assert!(!contains(&bytes, &signing), "nor the signing secret");
    let key = std::fs::read_to_string(dir.join("secrets.key")).unwrap();
    assert!(!contains(&bytes, key.trim()), "nor the key");
    assert_eq!(mode(&dir.join("secrets.key")), 0o600);
    assert_eq!(mode(&dir.join("fluxo.db")), 0o600);

    // A run still gets the secret, and its report does not show it.
    let uploaded = api
        .upload(&token, "crm-lead", guest(guests::CRM_LEAD))
        .await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
    let run = api
        .submit(
            &token,
            json!({
                "action": "crm-lead",
                "contact": { "id": "c1", "fields": { "name": "Ana" } },
                "input": { "crm_url": crm.url() },
            }),
        )
        .await;
    let finished = api.wait(&token, run.body["run_id"].as_str().unwrap()).await;
    assert_eq!(finished["state"], "succeeded", "{finished:#}");
    assert!(crm.received()[0].uri.ends_with(SECRET));
    assert!(!finished.to_string().contains(SECRET));

    // A secret too short to redact without mangling reports is refused.
    let short = api
        .json(
            Method::PUT,
            "/v1/secrets/pin",
            Some(&token),
            json!({ "value": "1234" }),
        )
        .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST, "too short to redact");
}

/// The store's secrets table with `value` replaced, written directly (an earlier
/// version's plain text, or an attacker's swap).
fn write_value(dir: &Path, name: &str, value: &str) {
    let db = rusqlite::Connection::open(dir.join("fluxo.db")).unwrap();
    db.execute(
        "UPDATE secrets SET value = ?2 WHERE name = ?1",
        rusqlite::params![name, value],
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_key_reseals_every_secret_and_plain_values_are_sealed_at_start() {
    let crm = Upstream::start(|_| (200, json!({ "_id": "deal-2" }).to_string())).await;
    let port = crm.addr.port();
    let crm_url = crm.url();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = dir.path().join("fluxo.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nallow_private_cidrs = [\"127.0.0.1/32\"]\n[[http.tenant_allow.acme]]\nhost = \"127.0.0.1\"\nport = {port}\n"
            ),
        )
        .unwrap();
        let run_lead = |server: &Served, token: &str| {
            let body = json!({
                "action": "crm-lead",
                "contact": { "id": "c1", "fields": { "name": "Ana" } },
                "input": { "crm_url": crm_url },
            });
            let (status, answer) = server.call("POST", "/v1/runs", token, body.to_string().as_bytes());
            assert_eq!(status, 202, "{answer}");
            let id = answer["run_id"].as_str().unwrap().to_owned();
            for _ in 0..400 {
                let (_, run) = server.call("GET", &format!("/v1/runs/{id}"), token, b"");
                if run["state"] != "queued" && run["state"] != "running" {
                    return run;
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            panic!("run {id} did not finish");
        };

        let server = Served::start(&data, &config);
        assert_eq!(mode(&data), 0o700, "the data directory is private");
        let token = server.tenant("acme");
        let body = json!({ "value": SECRET }).to_string();
        let (status, answer) = server.call("PUT", "/v1/secrets/crm_token", &token, body.as_bytes());
        assert_eq!(status, 200, "{answer}");
        let (status, answer) = server.call(
            "POST",
            "/v1/actions/crm-lead/versions",
            &token,
            &guest(guests::CRM_LEAD),
        );
        assert_eq!(status, 201, "{answer}");
        assert_eq!(run_lead(&server, &token)["state"], "succeeded");
        server.signal("TERM");
        assert_eq!(server.wait(), Some(0));

        let before = stored_values(&data);
        let key_before = std::fs::read_to_string(data.join("secrets.key")).unwrap();
        let rotated = Command::new(fluxo_bin().unwrap())
            .args(["secrets", "rotate-key", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&rotated.stderr);
        assert_eq!(rotated.status.code(), Some(0), "{said}");
        assert!(said.contains("re-sealed 1 secrets under key"), "{said}");
        let after = stored_values(&data);
        assert_ne!(before, after);
        assert_ne!(key_before, std::fs::read_to_string(data.join("secrets.key")).unwrap());
        assert!(!data.join("secrets.key.next").exists());
        assert_eq!(mode(&data.join("secrets.key")), 0o600);

        // An earlier version's plain-text value is sealed when the server starts.
        write_value(&data, "crm_token", SECRET);
        let server = Served::start(&data, &config);
        let sealed = stored_values(&data);
        assert!(sealed.iter().all(|value| value.starts_with("fxs1.")), "{sealed:?}");
        let run = run_lead(&server, &token);
        assert_eq!(run["state"], "succeeded", "{run:#}");

        // A value swapped in from another row does not open: the run fails, retryably,
        // and says why, instead of running with a wrong secret.
        let hook_secret = {
            let (status, answer) = server.call(
                "POST",
                "/v1/webhooks",
                &token,
                json!({ "url": "http://127.0.0.1:9/hook" }).to_string().as_bytes(),
            );
            assert_eq!(status, 201, "{answer}");
            stored_values(&data)
                .into_iter()
                .find(|value| !sealed.contains(value))
                .unwrap()
        };
        write_value(&data, "crm_token", &hook_secret);
        let body = json!({ "max_attempts": 1 }).to_string();
        let (status, _) = server.call("PUT", "/v1/actions/crm-lead/retry", &token, body.as_bytes());
        assert_eq!(status, 200);
        let run = run_lead(&server, &token);
        assert_ne!(run["state"], "succeeded", "{run:#}");
        let message = run["report"]["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("does not open"), "{run:#}");
    })
    .await
    .unwrap();
}
