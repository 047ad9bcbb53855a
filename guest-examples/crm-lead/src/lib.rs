//! Syncs a new lead to a CRM: creates a deal named after the contact, with the contact
//! attached, stores the deal id in the contact's `crm_deal_id` field and tags the
//! contact `crm-synced`.
//!
//! Input: `{"crm_url": "https://crm.example"}` (defaults to RD Station CRM's API).
//! Secret: `crm_token`. A 5xx, 408, 425 or 429 from the CRM, a timeout or a broken
//! connection is a retryable failure; any other 4xx, or an egress refusal, is final.

use fluxo_sdk::prelude::*;

const DEFAULT_CRM_URL: &str = "https://crm.rdstation.com";

#[derive(Deserialize, Default)]
struct Input {
    crm_url: Option<String>,
}

#[derive(Deserialize)]
struct CreatedDeal {
    #[serde(rename = "_id")]
    id: String,
}

/// Creates the deal and records it on the contact.
#[action]
pub fn crm_lead(event: Event) -> Result<Outcome> {
    let input: Input = event.input()?;
    let name = contact::text("name").ok_or_else(|| Error::input("contact has no name field"))?;
    let email = contact::text("email");
    let token = secrets::get("crm_token")?;
    let base = input.crm_url.as_deref().unwrap_or(DEFAULT_CRM_URL);

    let mut person = json!({ "name": name });
    if let Some(email) = &email {
        person["emails"] = json!([{ "email": email }]);
    }
    let body = json!({
        "deal": { "name": name },
        "contacts": [person],
    });
    let response = http::post(format!("{base}/api/v1/deals?token={token}"))
        .header("accept", "application/json")
        .json(&body)
        .send()?;
    if response.status >= 500 {
        return Err(Error::retryable(format!(
            "crm answered {}",
            response.status
        )));
    }
    let deal: CreatedDeal = response.error_for_status()?.json()?;

    contact::set_field("crm_deal_id", deal.id.as_str())?;
    contact::add_tag("crm-synced")?;
    log::info(&format!(
        "deal {} created for contact {}",
        deal.id, event.contact.id
    ));
    Ok(Outcome::new().output("deal_id", deal.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluxo_sdk::testing::{Fixture, MockHost};

    const URL: &str = "https://crm.test/api/v1/deals?token=secret-token";

    fn host() -> MockHost {
        MockHost::new()
            .field("name", "Ana Souza")
            .field("email", "ana@example.com")
            .secret("crm_token", "secret-token")
    }

    fn input() -> serde_json::Value {
        json!({ "crm_url": "https://crm.test" })
    }

    #[test]
    fn creates_the_deal_and_tags_the_contact() {
        let mut host = host().respond(
            Fixture::post(URL)
                .json_body(json!({
                    "deal": { "name": "Ana Souza" },
                    "contacts": [{ "name": "Ana Souza", "emails": [{ "email": "ana@example.com" }] }],
                }))
                .reply_json(200, &json!({ "_id": "deal-42" })),
        );
        let event = host.event_with_input(input());
        let outcome = host.run(|| crm_lead(event)).unwrap();
        assert_eq!(outcome.output_json(), json!({ "deal_id": "deal-42" }));
        assert_eq!(
            host.field_value("crm_deal_id"),
            Some(&FieldValue::from("deal-42"))
        );
        assert!(host.has_tag("crm-synced"));
    }

    #[test]
    fn server_errors_are_retryable_and_change_nothing() {
        let mut host = host().respond(Fixture::post(URL).reply(503, "busy"));
        let event = host.event_with_input(input());
        let error = host.run(|| crm_lead(event)).unwrap_err();
        assert!(error.is_retryable());
        assert!(!host.has_tag("crm-synced"));
    }

    #[test]
    fn client_errors_are_final() {
        let mut host = host().respond(Fixture::post(URL).reply(422, "bad"));
        let event = host.event_with_input(input());
        let error = host.run(|| crm_lead(event)).unwrap_err();
        assert!(!error.is_retryable());
    }

    #[test]
    fn a_contact_without_a_name_is_an_input_error() {
        let mut host = MockHost::new().secret("crm_token", "t");
        let event = host.event_with_input(input());
        let error = host.run(|| crm_lead(event)).unwrap_err();
        assert!(error.message().contains("no name"));
        assert!(host.http_requests().is_empty());
    }
}
