//! Bridges a conversation to an external helpdesk (a Zendesk- or Freshdesk-like API):
//! opens a ticket for the contact, keeps the chat ↔ ticket mapping in state, forwards
//! the contact's messages to the ticket, routes the helpdesk's events (an agent's reply,
//! the ticket closed) back to the contact, and returns the contact to the bot on close.
//! The workflows around it (`guest-examples/workflows/helpdesk-*.json`) send the
//! messages, wait for the contact, and start a run about the contact for each event.
//!
//! Input `op` picks what one run does:
//! - `open` (about the contact; `text`: why they asked for a human): creates the ticket
//!   with the contact as requester (`external_id` = the contact's id), stores
//!   `helpdesk:ticket` (contact scope) = ticket id and `helpdesk:chat:<ticket>` (tenant
//!   scope) = contact id, sets field `helpdesk_ticket`, tags `human-attendance`.
//!   Branch `opened`, or `already_open` when the contact has a ticket.
//! - `forward` (about the contact; `text`): adds the text to the contact's ticket as the
//!   requester's comment. Branch `forwarded`, or `closed` when no ticket is open.
//! - `route` (about no contact: a helpdesk event; `ticket`, `event`, `text`): finds the
//!   contact of the ticket. Output `{contact, ticket, text}`; branch = the event
//!   (`agent_reply`, `ticket_closed`), or `unknown` for a ticket not mapped.
//! - `close` (about the contact; `ticket`): forgets that ticket's mapping; when it is
//!   the contact's open ticket, also the contact's and the tag (branch `closed`).
//!   Branch `not_current` when the contact has another ticket open (a late close of an
//!   older one).
//!
//! Every op takes `helpdesk_url` (the API's base URL); secret `HELPDESK_TOKEN` (bearer).
//! A 5xx or 429 from the helpdesk is a retryable failure; another non-2xx is final.

use fluxo_sdk::prelude::*;

/// The contact-scoped key holding the contact's open ticket.
pub const TICKET_KEY: &str = "helpdesk:ticket";
/// The tag of a contact in human attendance.
pub const ATTENDANCE_TAG: &str = "human-attendance";

/// The tenant-scoped key mapping `ticket` to its contact.
#[must_use]
pub fn chat_key(ticket: &str) -> String {
    format!("helpdesk:chat:{ticket}")
}

#[derive(Deserialize)]
struct Input {
    op: String,
    #[serde(default)]
    helpdesk_url: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    ticket: String,
    #[serde(default)]
    event: String,
}

#[derive(Deserialize)]
struct CreatedTicket {
    id: serde_json::Value,
}

/// Runs the op the input names.
#[action]
pub fn helpdesk_bridge(event: Event) -> Result<Outcome> {
    let input: Input = event.input()?;
    match input.op.as_str() {
        "open" => open(&event, &input),
        "forward" => forward(&input),
        "route" => route(&input),
        "close" => close(&input),
        other => Err(Error::input(format!(
            "unknown op {other:?}: open, forward, route or close"
        ))),
    }
}

fn base(input: &Input) -> Result<&str> {
    let base = input.helpdesk_url.trim_end_matches('/');
    if base.is_empty() {
        return Err(Error::input("helpdesk_url is missing"));
    }
    Ok(base)
}

fn send(request: http::Request) -> Result<http::Response> {
    let token = secrets::get("HELPDESK_TOKEN")?;
    let response = request
        .bearer(&token)
        .header("accept", "application/json")
        .send()?;
    if response.status >= 500 || response.status == 429 {
        return Err(Error::retryable(format!(
            "the helpdesk answered {}",
            response.status
        )));
    }
    response.error_for_status()
}

fn open(event: &Event, input: &Input) -> Result<Outcome> {
    if let Some(ticket) = state::get_json::<String>(Scope::Contact, TICKET_KEY)? {
        return Ok(Outcome::new()
            .output("ticket", ticket)
            .branch("already_open"));
    }
    let name = contact::text("name").unwrap_or_else(|| event.contact.id.clone());
    let subject = format!("Chat with {name}");
    let body = json!({
        "ticket": {
            "subject": subject,
            "comment": { "body": input.text },
            "requester": { "name": name, "external_id": event.contact.id },
        }
    });
    let created: CreatedTicket =
        send(http::post(format!("{}/api/tickets", base(input)?)).json(&body))?.json()?;
    let ticket = match created.id {
        serde_json::Value::String(id) => id,
        other => other.to_string(),
    };
    state::set_json(Scope::Contact, TICKET_KEY, &ticket, None)?;
    state::set_json(Scope::Tenant, &chat_key(&ticket), &event.contact.id, None)?;
    contact::set_field("helpdesk_ticket", ticket.as_str())?;
    contact::add_tag(ATTENDANCE_TAG)?;
    log::info(&format!("ticket {ticket} opened for {}", event.contact.id));
    Ok(Outcome::new().output("ticket", ticket).branch("opened"))
}

fn forward(input: &Input) -> Result<Outcome> {
    let Some(ticket) = state::get_json::<String>(Scope::Contact, TICKET_KEY)? else {
        return Ok(Outcome::new().branch("closed"));
    };
    let body = json!({ "comment": { "body": input.text, "author": "requester" } });
    send(http::post(format!("{}/api/tickets/{ticket}/comments", base(input)?)).json(&body))?;
    Ok(Outcome::new().output("ticket", ticket).branch("forwarded"))
}

fn route(input: &Input) -> Result<Outcome> {
    if input.ticket.is_empty() {
        return Err(Error::input("the event names no ticket"));
    }
    let Some(contact) = state::get_json::<String>(Scope::Tenant, &chat_key(&input.ticket))? else {
        log::warn(&format!("ticket {} is not one of ours", input.ticket));
        return Ok(Outcome::new().branch("unknown"));
    };
    let branch = match input.event.as_str() {
        "agent_reply" | "ticket_closed" => input.event.as_str(),
        _ => "unknown",
    };
    Ok(Outcome::new()
        .output("contact", contact)
        .output("ticket", input.ticket.as_str())
        .output("text", input.text.as_str())
        .branch(branch))
}

fn close(input: &Input) -> Result<Outcome> {
    if input.ticket.is_empty() {
        return Err(Error::input("the event names no ticket"));
    }
    state::delete(Scope::Tenant, &chat_key(&input.ticket))?;
    // A late close of an older ticket leaves the contact's open one alone.
    let current = state::get_json::<String>(Scope::Contact, TICKET_KEY)?;
    if current.as_deref() == Some(input.ticket.as_str()) {
        state::delete(Scope::Contact, TICKET_KEY)?;
        contact::remove_tag(ATTENDANCE_TAG)?;
        return Ok(Outcome::new()
            .output("ticket", input.ticket.as_str())
            .branch("closed"));
    }
    Ok(Outcome::new()
        .output("ticket", input.ticket.as_str())
        .branch("not_current"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluxo_sdk::testing::{Fixture, MockHost};

    const BASE: &str = "https://desk.test";

    fn desk() -> MockHost {
        MockHost::new()
            .field("name", "Ana")
            .secret("HELPDESK_TOKEN", "desk-token")
    }

    fn input(op: &str) -> serde_json::Value {
        json!({"op": op, "helpdesk_url": BASE, "text": "My card was charged twice"})
    }

    #[test]
    fn open_creates_the_ticket_and_maps_it_both_ways() {
        let mut host = desk().respond(
            Fixture::post(format!("{BASE}/api/tickets"))
                .json_body(json!({"ticket": {
                    "subject": "Chat with Ana",
                    "comment": {"body": "My card was charged twice"},
                    "requester": {"name": "Ana", "external_id": "contact-1"},
                }}))
                .reply_json(201, &json!({"id": 4711})),
        );
        let event = host.event_with_input(input("open"));
        let outcome = host.run(|| helpdesk_bridge(event)).unwrap();
        assert_eq!(outcome.branch_label(), Some("opened"));
        assert_eq!(outcome.output_json(), json!({"ticket": "4711"}));
        assert_eq!(
            host.state_value(Scope::Contact, TICKET_KEY),
            Some(br#""4711""#.as_slice())
        );
        assert_eq!(
            host.state_value(Scope::Tenant, &chat_key("4711")),
            Some(br#""contact-1""#.as_slice())
        );
        assert!(host.has_tag(ATTENDANCE_TAG));
        let sent = host.http_requests();
        assert!(
            sent[0]
                .headers
                .iter()
                .any(|(name, value)| name == "authorization" && value == "Bearer desk-token")
        );
    }

    #[test]
    fn a_second_open_keeps_the_ticket_and_calls_nobody() {
        let mut host = desk().state(Scope::Contact, TICKET_KEY, br#""9""#.to_vec());
        let event = host.event_with_input(input("open"));
        let outcome = host.run(|| helpdesk_bridge(event)).unwrap();
        assert_eq!(outcome.branch_label(), Some("already_open"));
        assert!(host.http_requests().is_empty());
    }

    #[test]
    fn forward_posts_the_text_or_reports_the_ticket_closed() {
        let mut host = desk()
            .state(Scope::Contact, TICKET_KEY, br#""9""#.to_vec())
            .respond(
                Fixture::post(format!("{BASE}/api/tickets/9/comments"))
                    .json_body(json!({"comment": {"body": "My card was charged twice", "author": "requester"}}))
                    .reply_json(201, &json!({})),
            );
        let event = host.event_with_input(input("forward"));
        let outcome = host.run(|| helpdesk_bridge(event)).unwrap();
        assert_eq!(outcome.branch_label(), Some("forwarded"));

        let mut closed = desk();
        let event = closed.event_with_input(input("forward"));
        let outcome = closed.run(|| helpdesk_bridge(event)).unwrap();
        assert_eq!(outcome.branch_label(), Some("closed"));
        assert!(closed.http_requests().is_empty());
    }

    #[test]
    fn route_finds_the_contact_of_a_ticket() {
        let mut host = MockHost::new().state(Scope::Tenant, &chat_key("9"), br#""c-7""#.to_vec());
        let event = host.event_with_input(
            json!({"op": "route", "ticket": "9", "event": "agent_reply", "text": "Refunded"}),
        );
        let outcome = host.run(|| helpdesk_bridge(event)).unwrap();
        assert_eq!(outcome.branch_label(), Some("agent_reply"));
        assert_eq!(
            outcome.output_json(),
            json!({"contact": "c-7", "ticket": "9", "text": "Refunded"})
        );
        let event =
            host.event_with_input(json!({"op": "route", "ticket": "10", "event": "agent_reply"}));
        let outcome = host.run(|| helpdesk_bridge(event)).unwrap();
        assert_eq!(outcome.branch_label(), Some("unknown"));
    }

    #[test]
    fn close_forgets_the_mapping_and_the_tag() {
        let mut host = desk()
            .tag(ATTENDANCE_TAG)
            .state(Scope::Contact, TICKET_KEY, br#""9""#.to_vec())
            .state(Scope::Tenant, &chat_key("9"), br#""contact-1""#.to_vec());
        let event = host.event_with_input(json!({"op": "close", "ticket": "9"}));
        let outcome = host.run(|| helpdesk_bridge(event)).unwrap();
        assert_eq!(outcome.branch_label(), Some("closed"));
        assert_eq!(host.state_value(Scope::Contact, TICKET_KEY), None);
        assert_eq!(host.state_value(Scope::Tenant, &chat_key("9")), None);
        assert!(!host.has_tag(ATTENDANCE_TAG));
    }

    #[test]
    fn a_late_close_of_an_older_ticket_keeps_the_open_one() {
        let mut host = desk()
            .tag(ATTENDANCE_TAG)
            .state(Scope::Contact, TICKET_KEY, br#""10""#.to_vec())
            .state(Scope::Tenant, &chat_key("9"), br#""contact-1""#.to_vec())
            .state(Scope::Tenant, &chat_key("10"), br#""contact-1""#.to_vec());
        let event = host.event_with_input(json!({"op": "close", "ticket": "9"}));
        let outcome = host.run(|| helpdesk_bridge(event)).unwrap();
        assert_eq!(outcome.branch_label(), Some("not_current"));
        assert_eq!(host.state_value(Scope::Tenant, &chat_key("9")), None);
        assert_eq!(
            host.state_value(Scope::Contact, TICKET_KEY),
            Some(br#""10""#.as_slice())
        );
        assert!(host.state_value(Scope::Tenant, &chat_key("10")).is_some());
        assert!(host.has_tag(ATTENDANCE_TAG));
    }

    #[test]
    fn helpdesk_failures_are_retryable_or_final() {
        for (status, retryable) in [(503, true), (429, true), (422, false)] {
            let mut host =
                desk().respond(Fixture::post(format!("{BASE}/api/tickets")).reply(status, "no"));
            let event = host.event_with_input(input("open"));
            let error = host.run(|| helpdesk_bridge(event)).unwrap_err();
            assert_eq!(error.is_retryable(), retryable, "{status}");
            assert!(!host.has_tag(ATTENDANCE_TAG));
        }
    }
}
