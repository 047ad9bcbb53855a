//! Who keeps a tenant's contacts. A tenant whose contacts the platform owns gets each
//! committed run's field and tag changes as one signed `contact.updated` event, in the
//! run's order, and nothing in Fluxo's contact store; a tenant on the embedded store, on
//! the same server, gets its contact changed and no event.

use fluxo_sandbox::AllowRule;
use fluxo_store::ContactOwner;
use fluxo_tests::guests;
use http::StatusCode;
use serde_json::{Value, json};

use crate::server::{api, config_for};
use crate::support::{Upstream, guest, unix_now, verify_signed, webhooks_on_loopback};

#[tokio::test(flavor = "multi_thread")]
async fn a_platform_owned_contact_s_changes_reach_the_platform_as_signed_updates() {
    let crm = Upstream::start(|_| (200, json!({ "_id": "deal-7" }).to_string())).await;
    let platform = Upstream::start(|_| (204, String::new())).await;
    let mut config = config_for(crm.addr.port());
    config.http.tenant_allow.insert(
        "beta".into(),
        vec![AllowRule {
            port: Some(crm.addr.port()),
            ..AllowRule::host("127.0.0.1")
        }],
    );
    config
        .server
        .tenant_contacts
        .insert("acme".into(), ContactOwner::Platform);
    webhooks_on_loopback(&mut config);
    let api = api(config).await;

    let mut runs = Vec::new();
    let mut secrets = Vec::new();
    for tenant in ["acme", "beta"] {
        let token = api.tenant(tenant).await;
        api.put_secret(&token, "crm_token", "crm-secret-1").await;
        let (_, secret) = api
            .add_endpoint(&token, &format!("{}/{tenant}", platform.url()))
            .await;
        secrets.push(secret);
        let uploaded = api
            .upload(&token, "crm-lead", guest(guests::CRM_LEAD))
            .await;
        assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
        for contact in ["c1", "c2"] {
            let accepted = api
                .submit(
                    &token,
                    json!({
                        "action": "crm-lead",
                        "contact": { "id": contact, "fields": { "name": "Ana" }, "tags": ["lead"] },
                        "input": { "crm_url": crm.url() },
                    }),
                )
                .await;
            assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
            let id = accepted.body["run_id"].as_str().unwrap().to_owned();
            let run = api.wait(&token, &id).await;
            assert_eq!(run["state"], "succeeded", "{run:#}");
            assert_eq!(run["report"]["applied"], true, "{run:#}");
            runs.push((tenant, contact, id, token.clone()));
        }
    }

    let updates = || -> Vec<(Value, crate::support::Received)> {
        platform
            .received()
            .into_iter()
            .map(|r| (serde_json::from_slice::<Value>(&r.body).unwrap(), r))
            .filter(|(body, _)| body["type"] == "contact.updated")
            .collect()
    };
    for _ in 0..400 {
        if updates().len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    // Completion events may still arrive; give a stray update the same time to show.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut seen = updates();
    seen.sort_by_key(|(body, _)| body["data"]["contact"].as_str().unwrap().to_owned());
    assert_eq!(
        seen.len(),
        2,
        "one update per acme run, none for beta: {seen:?}"
    );
    for (body, received) in &seen {
        assert!(received.uri.ends_with("/acme"), "{}", received.uri);
        let Some((_, contact, id, _)) = runs
            .iter()
            .find(|(tenant, contact, ..)| *tenant == "acme" && body["data"]["contact"] == *contact)
        else {
            panic!("an update for no acme run: {body}");
        };
        assert_eq!(body["data"]["tenant"], "acme");
        assert_eq!(body["data"]["contact"], *contact);
        assert_eq!(body["data"]["run_id"], id.as_str());
        let update_id = body["data"]["update_id"].as_str().unwrap();
        assert!(update_id.starts_with(&format!("cu_{id}.")), "{update_id}");
        assert_eq!(received.header("webhook-id"), Some(update_id));
        assert_eq!(body["data"]["sequence"], 1, "each contact's first update");
        assert_eq!(
            body["data"]["changes"],
            json!([
                { "kind": "set_field", "name": "crm_deal_id", "value": "deal-7" },
                { "kind": "add_tag", "tag": "crm-synced" },
            ]),
            "the run's changes in its order"
        );
        verify_signed(&secrets[0], received, unix_now()).unwrap();
    }

    for (tenant, contact, _, token) in &runs {
        let stored = api.get(&format!("/v1/contacts/{contact}"), token).await;
        if *tenant == "acme" {
            assert_eq!(stored.status, StatusCode::NOT_FOUND, "{}", stored.body);
            assert!(
                stored.body["message"]
                    .as_str()
                    .unwrap()
                    .contains("kept by the platform"),
                "{}",
                stored.body
            );
        } else {
            assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
            assert_eq!(stored.body["fields"]["crm_deal_id"], "deal-7");
            assert_eq!(stored.body["tags"], json!(["crm-synced"]));
        }
    }
}
