// The host's side of a run, for native tests: a contact, secrets, state, canned HTTP
// answers, and what the action did (requests, e-mails, logs).

/** Text as UTF-8 bytes (the tests run without TextEncoder, as the component does). */
function utf8(text) {
  const binary = unescape(encodeURIComponent(text));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

/** A JavaScript value as a WIT field value. */
function fieldValue(value) {
  if (value === null) return { tag: 'null' };
  if (typeof value === 'boolean') return { tag: 'boolean', val: value };
  if (typeof value === 'number') return { tag: 'number', val: value };
  if (typeof value === 'string') return { tag: 'text', val: value };
  return value;
}

export const host = {
  contactId: 'c1',
  fields: new Map(),
  tags: new Set(),
  secrets: new Map(),
  state: new Map(),
  routes: new Map(),
  requests: [],
  emails: [],
  logs: [],

  /** Starts a fresh run: `fields` (name → value), `tags`, `secrets` (name → value),
   * `state` (`'tenant/key'` or `'contact/key'` → Uint8Array). */
  reset({ fields = {}, tags = [], secrets = {}, state = {}, contactId = 'c1' } = {}) {
    this.contactId = contactId;
    this.fields = new Map(Object.entries(fields).map(([n, v]) => [n, fieldValue(v)]));
    this.tags = new Set(tags);
    this.secrets = new Map(Object.entries(secrets));
    this.state = new Map(Object.entries(state));
    this.routes = new Map();
    this.requests = [];
    this.emails = [];
    this.logs = [];
    return this;
  },

  /** Answers `method url` with `status` and `body` (bytes, a string, or an object sent
   * as JSON). */
  respond(method, url, status = 200, body = '', headers = []) {
    const bytes =
      body instanceof Uint8Array
        ? body
        : utf8(typeof body === 'string' ? body : JSON.stringify(body));
    this.routes.set(`${method.toUpperCase()} ${url}`, { status, headers, body: bytes });
    return this;
  },

  /** Answers `method url` with a request error instead of a response: `tag` is the WIT
   * `http-error` case (`'timeout'`, `'connect'`, `'denied'`, …), `val` its text. */
  fail(method, url, tag, val) {
    this.routes.set(`${method.toUpperCase()} ${url}`, { error: { payload: { tag, val } } });
    return this;
  },

  /** The event a run gets: this host's contact, `input` as JSON. */
  event({ input = {}, message, trigger = 'test' } = {}) {
    const id = '00000000-0000-7000-8000-000000000001';
    return {
      runId: id,
      attempt: 1,
      idempotencyKey: id,
      tenant: 'acme',
      action: 'action',
      trigger,
      contact: {
        id: this.contactId,
        fields: [...this.fields].map(([name, value]) => ({ name, value })),
        tags: [...this.tags],
      },
      message: message === undefined ? undefined : { text: message, channel: undefined },
      input: JSON.stringify(input),
    };
  },
};
