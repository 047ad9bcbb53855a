//! {{name}}: greets the contact by name, tags them `greeted` and replies.
//!
//! Input: `{"greeting": "Hello"}` (optional). Fails, not retryably, when the contact has
//! no `name` field. Test: `cargo test`. Build: `fluxo build .`.

use fluxo_sdk::prelude::*;

#[derive(Deserialize, Default)]
struct Input {
    greeting: Option<String>,
}

/// Greets the contact.
#[action]
pub fn greet(event: Event) -> Result<Outcome> {
    let input: Input = event.input()?;
    let name = contact::text("name").ok_or_else(|| Error::input("the contact has no name"))?;
    let greeting = input.greeting.as_deref().unwrap_or("Hello");
    contact::add_tag("greeted")?;
    log::info(&format!("greeted contact {}", event.contact.id));
    Ok(Outcome::new()
        .output("greeted", name.as_str())
        .reply(format!("{greeting}, {name}!")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluxo_sdk::testing::MockHost;

    #[test]
    fn greets_the_contact_and_tags_them() {
        let mut host = MockHost::new().field("name", "Ana");
        let event = host.event_with_input(json!({ "greeting": "Olá" }));
        let outcome = host.run(|| greet(event)).unwrap();
        assert_eq!(outcome.replies(), ["Olá, Ana!"]);
        assert_eq!(outcome.output_json(), json!({ "greeted": "Ana" }));
        assert!(host.has_tag("greeted"));
    }

    #[test]
    fn a_contact_without_a_name_is_a_final_error() {
        let mut host = MockHost::new();
        let event = host.event();
        let error = host.run(|| greet(event)).unwrap_err();
        assert!(!error.is_retryable());
        assert_eq!(error.message(), "the contact has no name");
        assert!(!host.has_tag("greeted"));
    }
}
