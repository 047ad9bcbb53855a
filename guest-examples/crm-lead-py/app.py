"""Syncs a new lead to a CRM, as the Rust `crm-lead` does: creates a deal named after
the contact, with the contact attached, stores the deal id in the contact's
`crm_deal_id` field and tags the contact `crm-synced`.

Input: `{"crm_url": "https://crm.example"}` (defaults to RD Station CRM's API).
Secret: `crm_token`. A 5xx from the CRM is a retryable failure; a 4xx is final.

Built with `componentize-py --wit-path wit --world action componentize --python-path
guest-examples/crm-lead-py app --output crm-lead.wasm`. An action fails by raising
`Err(ActionError(message, retryable))`; any other exception is a trap.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import contact, http, log, secrets
from wit_world.imports.types import ActionError, Event, FieldValue_Text, Outcome

DEFAULT_CRM_URL = "https://crm.rdstation.com"


def text_field(name: str) -> str | None:
    """The contact's field `name` when it holds text."""
    value = contact.get_field(name)
    return value.value if isinstance(value, FieldValue_Text) else None


def fail(message: str, retryable: bool = False) -> Err:
    """The action's error, to raise."""
    return Err(ActionError(message=message, retryable=retryable))


class WitWorld(wit_world.WitWorld):
    def run(self, event: Event) -> Outcome:
        try:
            data = json.loads(event.input or "{}")
        except ValueError as error:
            raise fail(f"the input is not JSON: {error}")
        name = text_field("name")
        if name is None:
            raise fail("contact has no name field")
        email = text_field("email")
        try:
            token = secrets.get("crm_token")
        except Err as error:
            raise fail(f"secret crm_token: {error.value}")
        base = data.get("crm_url") or DEFAULT_CRM_URL

        person: dict = {"name": name}
        if email is not None:
            person["emails"] = [{"email": email}]
        body = json.dumps({"deal": {"name": name}, "contacts": [person]})
        request = http.HttpRequest(
            method=http.Method.POST,
            url=f"{base}/api/v1/deals?token={token}",
            headers=[("accept", "application/json"), ("content-type", "application/json")],
            body=body.encode(),
            timeout_ms=None,
        )
        try:
            response = http.request(request)
        except Err as error:
            raise fail(f"crm request failed: {error.value}", retryable=True)
        if response.status >= 500:
            raise fail(f"crm answered {response.status}", retryable=True)
        if response.status >= 400:
            raise fail(f"crm answered {response.status}")
        deal_id = json.loads(response.body)["_id"]

        contact.set_field("crm_deal_id", FieldValue_Text(deal_id))
        contact.add_tag("crm-synced")
        log.write(log.Level.INFO, f"deal {deal_id} created for contact {event.contact.id}")
        return Outcome(output=json.dumps({"deal_id": deal_id}), replies=[], branch=None)
