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
        name = contact.get_field("name")
        if not isinstance(name, FieldValue_Text):
            raise Err(ActionError(message="the contact has no name", retryable=False))
        greeting = data.get("greeting", "Hello")
        contact.add_tag("greeted")
        log.write(log.Level.INFO, f"greeted contact {event.contact.id}")
        return Outcome(
            output=json.dumps({"greeted": name.value}),
            replies=[f"{greeting}, {name.value}!"],
            branch=None,
        )
