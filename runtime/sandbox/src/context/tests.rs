//! Every capability driven through [`RunContext`] with no component at all: the same
//! rules a guest meets, met by a caller that is plain Rust (as a workflow block is).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::sync::{Arc, Mutex};

use fluxo_core::{
    ActionName, Contact, Effect, FieldValue, LimitHit, Limits, LogLevel, Quota, Quotas, StateScope,
    TenantId,
};
use fluxo_egress::{AllowRule, Egress, EgressError, EgressRequest, HttpPolicy, Method};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::platform::{MemoryState, StateChange, StateKey, StateStore as _};

/// A loopback HTTP server answering every request with `body`, recording raw requests.
async fn upstream(body: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 16 << 10];
                let mut read = 0;
                loop {
                    let n = stream.read(&mut buffer[read..]).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    read += n;
                    let text = String::from_utf8_lossy(&buffer[..read]).into_owned();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if read >= end + 4 + length {
                            log.lock().unwrap().push(text);
                            break;
                        }
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

/// A context of tenant `acme` about contact `c1`, with no upstream, default limits
/// and an empty state store (for capability tests without I/O).
pub(crate) fn quiet_context() -> RunContext {
    context(9, Limits::default(), Arc::new(MemoryState::new()))
}

fn context(port: u16, limits: Limits, state: Arc<MemoryState>) -> RunContext {
    let policy = HttpPolicy {
        allow: vec![AllowRule {
            port: Some(port),
            ..AllowRule::host("127.0.0.1")
        }],
        allow_private_cidrs: vec!["127.0.0.1/32".parse().unwrap()],
        ..HttpPolicy::default()
    };
    let egress = Egress::new(&policy, Arc::new(tests_resolver())).unwrap();
    let capabilities = Arc::new(Capabilities {
        egress: Arc::new(egress),
        state,
    });
    let meta = RunMeta::new(
        TenantId::parse("acme").unwrap(),
        ActionName::parse("blocks").unwrap(),
    );
    let mut contact = Contact::with_id("c1".parse().unwrap());
    contact.fields.insert("name".into(), "Ana".into());
    contact.tags.push("lead".into());
    let secrets = Secrets::new([("crm".to_owned(), "crm-secret-value".to_owned())].into());
    RunContext::new(meta, limits, capabilities)
        .with_contact(contact)
        .with_secrets(secrets)
}

#[tokio::test]
async fn contact_writes_are_journaled_checked_and_charged() {
    let limits = Limits {
        quotas: Quotas {
            field_writes: 2,
            ..Quotas::default()
        },
        ..Limits::default()
    };
    let mut ctx = context(9, limits, Arc::new(MemoryState::new()));
    ctx.set_field("stage".into(), "won".into())
        .unwrap()
        .unwrap();
    assert_eq!(ctx.get_field("stage"), Some("won".into()));
    assert_eq!(ctx.get_field("name"), Some("Ana".into()));
    assert!(matches!(
        ctx.set_field("bad\nname".into(), "x".into()).unwrap(),
        Err(ContactError::Invalid(_))
    ));
    assert_eq!(
        ctx.set_field("third".into(), "x".into()),
        Err(LimitHit::Quota {
            quota: Quota::FieldWrites,
            limit: 2
        })
    );
    ctx.add_tag("vip".into()).unwrap().unwrap();
    ctx.remove_tag("lead".into()).unwrap().unwrap();
    assert!(ctx.has_tag("vip") && !ctx.has_tag("lead"));
    assert_eq!(ctx.contact().tags, ["vip"]);
    assert_eq!(
        ctx.journal().effects().len(),
        3,
        "refused writes are not journaled"
    );
    assert!(matches!(
        ctx.set_field("n".into(), FieldValue::Number(f64::NAN)),
        Err(_) | Ok(Err(_))
    ));
}

#[tokio::test]
async fn a_run_about_no_contact_cannot_write_contact_data() {
    let mut ctx = context(9, Limits::default(), Arc::new(MemoryState::new()))
        .with_contact(Contact::default());
    assert!(matches!(
        ctx.add_tag("vip".into()).unwrap(),
        Err(ContactError::Invalid(_))
    ));
    assert!(matches!(
        ctx.state_set(StateScope::Contact, "k".into(), b"v".to_vec(), None)
            .await
            .unwrap(),
        Err(StateError::Invalid(_))
    ));
    // Tenant-scoped state needs no contact.
    ctx.state_set(StateScope::Tenant, "k".into(), b"v".to_vec(), None)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn state_reads_see_own_writes_then_the_store_and_the_cap_is_checked() {
    let state = Arc::new(MemoryState::with_tenant_limit(64));
    let tenant = TenantId::parse("acme").unwrap();
    state
        .apply(&[StateChange::Set {
            key: StateKey::of(&tenant, None, StateScope::Tenant, "stored").unwrap(),
            value: b"from-store".to_vec(),
            ttl: None,
        }])
        .await
        .unwrap();
    let mut ctx = context(9, Limits::default(), state);
    assert_eq!(
        ctx.state_get(StateScope::Tenant, "stored")
            .await
            .unwrap()
            .unwrap(),
        Some(b"from-store".to_vec())
    );
    ctx.state_set(StateScope::Contact, "k".into(), b"1".to_vec(), Some(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ctx.state_get(StateScope::Contact, "k")
            .await
            .unwrap()
            .unwrap(),
        Some(b"1".to_vec())
    );
    // Overwriting a stored key with a value of the same size fits; a large one does not.
    ctx.state_set(
        StateScope::Tenant,
        "stored".into(),
        b"0123456789".to_vec(),
        None,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        ctx.state_set(StateScope::Tenant, "big".into(), vec![0; 60], None)
            .await
            .unwrap(),
        Err(StateError::TooLarge)
    );
    assert!(
        ctx.state_delete(StateScope::Contact, "k".into())
            .await
            .unwrap()
            .unwrap()
    );
    assert_eq!(
        ctx.state_get(StateScope::Contact, "k")
            .await
            .unwrap()
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn emails_get_stable_ids_and_bad_ones_are_refused() {
    let mut ctx = context(9, Limits::default(), Arc::new(MemoryState::new()));
    let message = EmailMessage {
        to: vec!["admin@shop.test".into()],
        subject: "new lead".into(),
        text: "Ana".into(),
        ..EmailMessage::default()
    };
    let id = ctx.send_email(message.clone()).unwrap().unwrap();
    assert_eq!(id, format!("<{}.1@fluxo>", ctx.meta().run_id));
    let injected = EmailMessage {
        subject: "x\r\nBcc: evil@x.test".into(),
        ..message
    };
    assert!(matches!(
        ctx.send_email(injected).unwrap(),
        Err(EmailError::Invalid(_))
    ));
    assert!(matches!(
        ctx.journal().effects(),
        [Effect::SendEmail(email)] if email.message_id == id
    ));
}

#[tokio::test]
async fn http_goes_through_the_policy_is_recorded_and_carries_an_idempotency_key() {
    let (port, seen) = upstream(r#"{"id":"deal-7"}"#).await;
    let mut ctx = context(port, Limits::default(), Arc::new(MemoryState::new()));
    let mut request = EgressRequest::new(Method::Post, format!("http://127.0.0.1:{port}/deals"));
    request.body = Some(br#"{"name":"Ana"}"#.to_vec());
    let response = ctx.http(request).await.unwrap().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, br#"{"id":"deal-7"}"#);
    let raw = seen.lock().unwrap()[0].to_ascii_lowercase();
    let expected = format!("idempotency-key: {}:1", ctx.meta().run_id);
    assert!(raw.contains(&expected), "{raw}");
    let get = EgressRequest::new(Method::Get, format!("http://127.0.0.1:{port}/x"));
    ctx.http(get).await.unwrap().unwrap();
    assert!(
        !seen.lock().unwrap()[1]
            .to_ascii_lowercase()
            .contains("idempotency-key")
    );
    let denied = EgressRequest::new(Method::Get, "http://10.0.0.1/".to_owned());
    assert!(matches!(
        ctx.http(denied).await.unwrap(),
        Err(EgressError::Denied(_))
    ));
    let parts = ctx.into_parts();
    assert_eq!(parts.http.len(), 3);
    assert_eq!(parts.http[0].status, Some(200));
    assert!(
        parts.http[2]
            .error
            .as_deref()
            .unwrap()
            .starts_with("denied")
    );
}

#[tokio::test]
async fn logs_and_secrets() {
    let mut ctx = context(9, Limits::default(), Arc::new(MemoryState::new()));
    ctx.log(LogLevel::Info, "hello".into());
    assert_eq!(ctx.secret("crm").unwrap(), "crm-secret-value");
    assert_eq!(ctx.secret("none"), Err(SecretError::NotFound));
    assert!(matches!(ctx.secret(""), Err(SecretError::Invalid(_))));
    let parts = ctx.into_parts();
    assert_eq!(parts.logs.0.len(), 1);
    assert_eq!(parts.logs.0[0].message, "hello");
}

/// A resolver for unit tests: every name is 127.0.0.1.
fn tests_resolver() -> impl fluxo_egress::Resolve {
    struct Loopback;
    impl fluxo_egress::Resolve for Loopback {
        fn resolve<'a>(
            &'a self,
            _host: &'a str,
        ) -> crate::platform::BoxFuture<'a, std::io::Result<Vec<std::net::IpAddr>>> {
            Box::pin(async { Ok(vec![std::net::IpAddr::from([127, 0, 0, 1])]) })
        }
    }
    Loopback
}

#[tokio::test]
async fn platform_messages_are_charged_redacted_and_need_a_contact() {
    let limits = Limits {
        quotas: Quotas {
            messages: 2,
            ..Quotas::default()
        },
        ..Limits::default()
    };
    let mut ctx = context(9, limits, Arc::new(MemoryState::new()));
    let reply = |text: &str| MessageDraft {
        kind: fluxo_core::MessageKind::Reply,
        text: text.to_owned(),
        to: None,
        service: None,
    };
    let first = ctx
        .send_message(reply("the CRM said crm-secret-value"))
        .unwrap()
        .unwrap();
    assert!(first.ends_with(".1"), "{first}");
    ctx.send_message(reply("second")).unwrap().unwrap();
    assert_eq!(
        ctx.send_message(reply("third")).unwrap_err(),
        LimitHit::Quota {
            quota: Quota::Messages,
            limit: 2
        }
    );
    let texts: Vec<String> = ctx
        .journal()
        .effects()
        .iter()
        .filter_map(|effect| match effect {
            Effect::SendMessage(message) => Some(message.text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(texts.len(), 2);
    assert!(
        !texts[0].contains("crm-secret-value") && texts[0].contains("[REDACTED]"),
        "{texts:?}"
    );

    let meta = RunMeta::new(
        TenantId::parse("acme").unwrap(),
        ActionName::parse("blocks").unwrap(),
    );
    let capabilities = Arc::new(Capabilities {
        egress: Arc::new(Egress::new(&HttpPolicy::default(), Arc::new(tests_resolver())).unwrap()),
        state: Arc::new(MemoryState::new()),
    });
    let mut anonymous = RunContext::new(meta, Limits::default(), capabilities);
    assert!(matches!(
        anonymous.send_message(reply("hello")),
        Ok(Err(MessageError::Invalid(why))) if why.contains("no contact")
    ));
    assert!(anonymous.journal().effects().is_empty());
}

/// A workflow's action step runs in a child context: it reads every write the run made
/// so far (fields and state), continues the run's counters, and hands back only what it
/// added, only when it succeeded.
#[tokio::test]
async fn a_child_context_sees_the_run_s_writes_and_gives_back_only_its_own() {
    let mut parent = context(9, Limits::default(), Arc::new(MemoryState::new()));
    parent
        .set_field("stage".into(), "won".into())
        .unwrap()
        .unwrap();
    parent
        .state_set(StateScope::Contact, "step".into(), b"1".to_vec(), None)
        .await
        .unwrap()
        .unwrap();
    let mut child = parent.child("crm.2");
    assert!(child.meta().idempotency_key().ends_with(":crm.2"));
    assert_ne!(
        child.meta().idempotency_key(),
        parent.meta().idempotency_key()
    );
    assert_eq!(child.get_field("stage"), Some("won".into()));
    assert_eq!(
        child
            .state_get(StateScope::Contact, "step")
            .await
            .unwrap()
            .unwrap(),
        Some(b"1".to_vec()),
        "an earlier step's state write is seen"
    );
    child
        .state_set(StateScope::Contact, "step".into(), b"2".to_vec(), None)
        .await
        .unwrap()
        .unwrap();
    child.add_tag("synced".into()).unwrap().unwrap();
    let counters = *child.counters();
    let parts = child.into_parts();
    let (journal, http, logs) = (parts.journal, parts.http, parts.logs.0);

    let mut failed = context(9, Limits::default(), Arc::new(MemoryState::new()));
    failed
        .set_field("stage".into(), "won".into())
        .unwrap()
        .unwrap();
    let before = failed.journal().effects().len();
    let used = fluxo_core::Usage {
        fuel: 1_000,
        wall_ms: 3,
        peak_memory_bytes: 65_536,
    };
    failed.absorb(
        false,
        journal.clone(),
        http.clone(),
        logs.clone(),
        counters,
        used,
    );
    failed.absorb(
        false,
        Journal::new(),
        Vec::new(),
        Vec::new(),
        counters,
        used,
    );
    assert_eq!(
        failed.children_usage(),
        fluxo_core::Usage {
            fuel: 2_000,
            wall_ms: 6,
            peak_memory_bytes: 65_536
        },
        "the actions' usage adds up"
    );
    assert_eq!(
        failed.journal().effects().len(),
        before,
        "a failed child adds no write"
    );
    assert_eq!(failed.counters().state_writes, counters.state_writes);

    parent.absorb(true, journal, http, logs, counters, used);
    let effects = parent.journal().effects();
    assert_eq!(effects.len(), 4, "{effects:?}");
    assert!(matches!(&effects[2], Effect::SetState { value, .. } if value.0 == b"2"));
    assert!(matches!(&effects[3], Effect::AddTag { tag } if tag == "synced"));
    assert_eq!(
        parent
            .state_get(StateScope::Contact, "step")
            .await
            .unwrap()
            .unwrap(),
        Some(b"2".to_vec())
    );
    assert_eq!(parent.counters().state_writes, 2);
}
