"""A mock of the Fluxo host for native tests of a Python action.

Written by `fluxo new --lang python`, beside the bindings it generated from the
`fluxo:action` world (`.fluxo/bindings/`, left out of the build like this file and the
tests). Importing this module puts those bindings on the path: import it before the
action. A `MockHost` then replaces the host functions with its own, so the action runs
under plain CPython.

The action must call host functions through their modules (`contact.get_field(...)`, not
a bare `get_field` imported from a module): those module attributes are what get replaced.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / ".fluxo" / "bindings"))

from componentize_py_types import Err  # noqa: E402
from wit_world.imports import contact, email, http, log, secrets, state, types  # noqa: E402


def field_value(value):
    """A Python value as a WIT field value: str, int/float, bool, None."""
    if value is None:
        return types.FieldValue_Null()
    if isinstance(value, bool):
        return types.FieldValue_Boolean(value)
    if isinstance(value, (int, float)):
        return types.FieldValue_Number(float(value))
    if isinstance(value, str):
        return types.FieldValue_Text(value)
    return value


class MockHost:
    """The host's side of one run: a contact, secrets, state, canned HTTP answers, and
    what the action did (requests, e-mails, logs)."""

    def __init__(self, fields=None, tags=(), secrets=None, state=None, contact_id="c1"):
        """`fields` maps names to str, numbers, bools or None; `state` maps
        `(state.Scope.TENANT, "key")` to bytes."""
        self.contact_id = contact_id
        self.fields = {name: field_value(v) for name, v in (fields or {}).items()}
        self.tags = list(tags)
        self.secrets = dict(secrets or {})
        self.state = dict(state or {})
        self.routes = {}
        self.requests = []
        self.emails = []
        self.logs = []

    def respond(self, method, url, status=200, body=b"", headers=()):
        """Answers `method url` (`"POST"`, the full URL) with `status` and `body` (bytes,
        str, or a dict or list sent as JSON). Returns the host, for chaining."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        self.routes[(method.upper(), url)] = http.HttpResponse(
            status=status, headers=list(headers), body=body
        )
        return self

    def fail(self, method, url, error):
        """Answers `method url` with a request error instead of a response:
        `http.HttpError_Timeout()`, `http.HttpError_Connect("refused")`, …"""
        self.routes[(method.upper(), url)] = Err(error)
        return self

    def event(self, input=None, message=None, trigger=types.Trigger.TEST):
        """The event a run gets: this host's contact, `input` (a dict) as JSON."""
        return types.Event(
            run_id="00000000-0000-7000-8000-000000000001",
            attempt=1,
            idempotency_key="00000000-0000-7000-8000-000000000001",
            tenant="acme",
            action="action",
            trigger=trigger,
            contact=types.ContactSnapshot(
                id=self.contact_id,
                fields=[types.Field(name=n, value=v) for n, v in self.fields.items()],
                tags=list(self.tags),
            ),
            message=None if message is None else types.Message(text=message, channel=None),
            input=json.dumps({} if input is None else input),
        )

    def run(self, world, input=None, message=None):
        """Runs `world.run` under this host; returns the outcome, or raises the action's
        `Err` as any exception."""
        self._install()
        return world.run(self.event(input=input, message=message))

    def run_error(self, world, input=None, message=None):
        """Runs `world.run` expecting it to fail; returns the `ActionError`."""
        try:
            outcome = self.run(world, input=input, message=message)
        except Err as error:
            if not isinstance(error.value, types.ActionError):
                # The real host traps on any other exception, a host call's error too.
                raise AssertionError(f"the action would trap: Err({error.value!r}) escaped") from error
            return error.value
        raise AssertionError(f"the action succeeded: {outcome}")

    @staticmethod
    def output(outcome):
        """An outcome's output, parsed."""
        return json.loads(outcome.output)

    def _install(self):
        contact.get_field = lambda name: self.fields.get(name)
        contact.set_field = self._set_field
        contact.add_tag = lambda tag: None if tag in self.tags else self.tags.append(tag)
        contact.remove_tag = lambda tag: self.tags.remove(tag) if tag in self.tags else None
        contact.has_tag = lambda tag: tag in self.tags
        contact.tags = lambda: list(self.tags)
        http.request = self._request
        log.write = lambda level, message: self.logs.append((level, message))
        secrets.get = self._secret
        state.get = lambda scope, key: self.state.get((scope, key))
        state.set = lambda scope, key, value, ttl_seconds: self.state.__setitem__((scope, key), bytes(value))
        state.delete = lambda scope, key: self.state.pop((scope, key), None) is not None
        email.send = self._send

    def _set_field(self, name, value):
        if isinstance(value, types.FieldValue_Null):
            self.fields.pop(name, None)
        else:
            self.fields[name] = value

    def _request(self, request):
        self.requests.append(request)
        method = request.method.name
        answer = self.routes.get((method, request.url))
        if answer is None:
            raise Err(http.HttpError_Denied(f"no mock answer for {method} {request.url}"))
        if isinstance(answer, Err):
            raise answer
        return answer

    def _secret(self, name):
        if name not in self.secrets:
            raise Err(secrets.SecretError_NotFound())
        return self.secrets[name]

    def _send(self, message):
        self.emails.append(message)
        return f"<mock-{len(self.emails)}@fluxo.test>"
