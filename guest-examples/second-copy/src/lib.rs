//! Fetches the second copy of the contact's bank slip by CPF, stores its URL in the
//! `last_slip_url` field and hands it to the conversation as `{{output.data.url}}`.
//!
//! Input: `{"billing_url": "https://billing.example"}`. Secret: `billing_token`.

use fluxo_sdk::prelude::*;

#[derive(Deserialize)]
struct Input {
    billing_url: String,
}

#[derive(Deserialize)]
struct Slip {
    data: SlipData,
}

#[derive(Deserialize)]
struct SlipData {
    url: String,
}

/// Looks the slip up and replies with its URL.
#[action]
pub fn second_copy(event: Event) -> Result<Outcome> {
    let input: Input = event.input()?;
    let cpf = match contact::field("cpf") {
        Some(FieldValue::Text(cpf)) => cpf,
        Some(FieldValue::Number(cpf)) => format!("{cpf:011.0}"),
        _ => {
            return Err(Error::input(
                "contact has no cpf field: ask for it before this step",
            ));
        }
    };
    let token = secrets::get("billing_token")?;
    let response = http::get(format!("{}/slips?cpf={cpf}", input.billing_url))
        .bearer(&token)
        .send()?;
    if response.status == 404 {
        return Err(Error::new(format!("no open slip for cpf {cpf}")));
    }
    let slip: Slip = response.error_for_status()?.json()?;
    contact::set_field("last_slip_url", slip.data.url.as_str())?;
    Ok(Outcome::new()
        .output("data", json!({ "url": slip.data.url }))
        .reply(format!(
            "Here is the second copy of your bank slip: {}",
            slip.data.url
        )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluxo_sdk::testing::{Fixture, MockHost};

    #[test]
    fn returns_the_slip_url() {
        let mut host = MockHost::new()
            .field("cpf", "12345678900")
            .secret("billing_token", "bt")
            .respond(
                Fixture::get("https://billing.test/slips?cpf=12345678900")
                    .header("authorization", "Bearer bt")
                    .reply_json(
                        200,
                        &json!({ "data": { "url": "https://billing.test/s/9" } }),
                    ),
            );
        let event = host.event_with_input(json!({ "billing_url": "https://billing.test" }));
        let outcome = host.run(|| second_copy(event)).unwrap();
        assert_eq!(
            outcome.output_json()["data"]["url"],
            "https://billing.test/s/9"
        );
        assert_eq!(
            host.field_value("last_slip_url"),
            Some(&FieldValue::from("https://billing.test/s/9"))
        );
    }

    #[test]
    fn a_contact_without_cpf_gets_a_clear_error() {
        let mut host = MockHost::new().secret("billing_token", "bt");
        let event = host.event_with_input(json!({ "billing_url": "https://billing.test" }));
        let error = host.run(|| second_copy(event)).unwrap_err();
        assert!(error.message().contains("no cpf"));
        assert!(host.http_requests().is_empty());
    }
}
