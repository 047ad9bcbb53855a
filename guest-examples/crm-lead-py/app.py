"""Syncs a new lead to a CRM, as the Rust `crm-lead` does: creates a deal named after
the contact, with the contact attached, stores the deal id in the contact's
`crm_deal_id` field and tags the contact `crm-synced`.

Input: `{"crm_url": "https://crm.example"}` (defaults to RD Station CRM's API).
Secret: `crm_token`. Its failures are retryable exactly where the Rust one's are: a
5xx, 408, 425 or 429 from the CRM, a timeout or a broken connection; the rest (a 4xx,
an egress refusal, an answer without a deal id, a bad input) are final.

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

# Statuses worth a retry besides 5xx, as the Rust SDK's `error_for_status` decides:
# 408 Request Timeout (RFC 9110), 425 Too Early (RFC 8470), 429 Too Many Requests (RFC 6585).
RETRYABLE_STATUSES = {408, 425, 429}


def text_field(name: str) -> str | None:
    """The contact's field `name` when it holds text."""
    value = contact.get_field(name)
    return value.value if isinstance(value, FieldValue_Text) else None


def fail(message: str, retryable: bool = False) -> Err:
    """The action's error, to raise."""
    return Err(ActionError(message=message, retryable=retryable))


def describe(variant) -> str:
    """A WIT variant case as text: `denied: no egress rule allows …`, `timeout`."""
    kind = type(variant).__name__.split("_", 1)[-1].lower()
    value = getattr(variant, "value", None)
    return kind if value is None else f"{kind}: {value}"


class WitWorld(wit_world.WitWorld):
    def run(self, event: Event) -> Outcome:
        try:
            data = json.loads(event.input or "{}")
        except ValueError as error:
            raise fail(f"input: {error}")
        if not isinstance(data, dict):
            raise fail("input: expected an object")
        base = data.get("crm_url")
        if base is None:
            base = DEFAULT_CRM_URL
        if not isinstance(base, str):
            raise fail("input: crm_url is not a string")
        name = text_field("name")
        if name is None:
            raise fail("contact has no name field")
        email = text_field("email")
        try:
            token = secrets.get("crm_token")
        except Err as error:
            raise fail(f"secret crm_token: {describe(error.value)}")

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
            # Only a timeout or a broken connection may go better next time.
            retryable = isinstance(error.value, (http.HttpError_Timeout, http.HttpError_Connect))
            raise fail(f"http request failed: {describe(error.value)}", retryable)
        if response.status >= 500:
            raise fail(f"crm answered {response.status}", retryable=True)
        if not 200 <= response.status < 300:
            raise fail(
                f"upstream answered {response.status}",
                retryable=response.status in RETRYABLE_STATUSES,
            )
        try:
            deal_id = json.loads(response.body)["_id"]
        except (ValueError, KeyError, TypeError) as error:
            raise fail(f"json: the crm's answer has no deal id ({error!r})")
        if not isinstance(deal_id, str):
            raise fail("json: the crm's deal id is not a string")

        try:
            contact.set_field("crm_deal_id", FieldValue_Text(deal_id))
            contact.add_tag("crm-synced")
        except Err as error:
            raise fail(f"contact: {describe(error.value)}")
        log.write(log.Level.INFO, f"deal {deal_id} created for contact {event.contact.id}")
        return Outcome(output=json.dumps({"deal_id": deal_id}), replies=[], branch=None)
