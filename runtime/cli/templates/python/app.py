"""{{name}}: greets the contact by name, tags them `greeted` and replies.

Input: `{"greeting": "Hello"}` (optional). Fails, not retryably, when the contact has
no `name` field. Test: `python3 -m unittest`. Build: `fluxo build --lang python .`.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import contact, log
from wit_world.imports.types import ActionError, Event, FieldValue_Text, Outcome


class WitWorld(wit_world.WitWorld):
    def run(self, event: Event) -> Outcome:
        data = json.loads(event.input or "{}")
        if not isinstance(data, dict):
            raise Err(ActionError(message="input: expected an object", retryable=False))
        greeting = data.get("greeting")
        if greeting is None:
            greeting = "Hello"
        if not isinstance(greeting, str):
            raise Err(ActionError(message="input: greeting is not a string", retryable=False))
        name = contact.get_field("name")
        if not isinstance(name, FieldValue_Text):
            raise Err(ActionError(message="the contact has no name", retryable=False))
        contact.add_tag("greeted")
        log.write(log.Level.INFO, f"greeted contact {event.contact.id}")
        return Outcome(
            output=json.dumps({"greeted": name.value}),
            replies=[f"{greeting}, {name.value}!"],
            branch=None,
        )
