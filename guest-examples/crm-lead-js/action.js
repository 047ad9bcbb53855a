// Syncs a new lead to a CRM, as the Rust `crm-lead` does: creates a deal named after the
// contact, with the contact attached, stores the deal id in the contact's `crm_deal_id`
// field and tags the contact `crm-synced`.
//
// Input: `{"crm_url": "https://crm.example"}` (defaults to RD Station CRM's API).
// Secret: `crm_token`. Its failures are retryable exactly where the Rust one's are: a
// 5xx, 408, 425 or 429 from the CRM, a timeout or a broken connection; the rest (a 4xx,
// an egress refusal, an answer without a deal id, a bad input) are final.
//
// Built with `jco componentize action.js --wit wit --world-name action --backend qjs
// --backend-qjs-disable-async --out crm-lead.wasm`. An action fails by throwing
// `{ message, retryable }` (the WIT `action-error`); anything else thrown is a trap.
// QuickJS has no TextEncoder: bytes are converted below.

import { addTag, getField, setField } from 'fluxo:action/contact@0.2.0';
import { request } from 'fluxo:action/http@0.2.0';
import { write } from 'fluxo:action/log@0.2.0';
import { get as secret } from 'fluxo:action/secrets@0.2.0';

const DEFAULT_CRM_URL = 'https://crm.rdstation.com';

// Statuses worth a retry besides 5xx, as the Rust SDK's `error_for_status` decides:
// 408 Request Timeout (RFC 9110), 425 Too Early (RFC 8470), 429 Too Many Requests (RFC 6585).
const RETRYABLE_STATUSES = [408, 425, 429];

/** The contact's field `name` when it holds text. */
function textField(name) {
  const value = getField(name);
  return value && value.tag === 'text' ? value.val : undefined;
}

/** The action's error, to throw. */
function fail(message, retryable = false) {
  return { message, retryable };
}

/** A host call's error (`{ payload: { tag, val } }`, the WIT variant) as text. */
function describe(error) {
  const payload = error && error.payload;
  if (!payload) return String(error);
  return payload.val === undefined ? payload.tag : `${payload.tag}: ${payload.val}`;
}

function utf8Encode(text) {
  const binary = unescape(encodeURIComponent(text));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

/** UTF-8 bytes as text; throws on bytes that are not UTF-8. */
function utf8Decode(bytes) {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return decodeURIComponent(escape(binary));
}

/** Runs the action once for `event` (the WIT `event` record, camelCase). */
export function run(event) {
  let input;
  try {
    input = JSON.parse(event.input || '{}');
  } catch (error) {
    throw fail(`input: ${error}`);
  }
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw fail('input: expected an object');
  }
  const base = input.crm_url ?? DEFAULT_CRM_URL;
  if (typeof base !== 'string') throw fail('input: crm_url is not a string');
  const name = textField('name');
  if (name === undefined) throw fail('contact has no name field');
  const email = textField('email');
  let token;
  try {
    token = secret('crm_token');
  } catch (error) {
    throw fail(`secret crm_token: ${describe(error)}`);
  }

  const person = { name };
  if (email !== undefined) person.emails = [{ email }];
  const body = JSON.stringify({ deal: { name }, contacts: [person] });
  let response;
  try {
    response = request({
      method: 'post',
      url: `${base}/api/v1/deals?token=${token}`,
      headers: [
        ['accept', 'application/json'],
        ['content-type', 'application/json'],
      ],
      body: utf8Encode(body),
      timeoutMs: undefined,
    });
  } catch (error) {
    // Only a timeout or a broken connection may go better next time.
    const tag = error && error.payload && error.payload.tag;
    throw fail(`http request failed: ${describe(error)}`, tag === 'timeout' || tag === 'connect');
  }
  if (response.status >= 500) throw fail(`crm answered ${response.status}`, true);
  if (response.status < 200 || response.status >= 300) {
    throw fail(
      `upstream answered ${response.status}`,
      RETRYABLE_STATUSES.includes(response.status),
    );
  }
  let dealId;
  try {
    dealId = JSON.parse(utf8Decode(response.body))._id;
  } catch (error) {
    throw fail(`json: the crm's answer has no deal id (${error})`);
  }
  if (typeof dealId !== 'string') throw fail("json: the crm's deal id is not a string");

  try {
    setField('crm_deal_id', { tag: 'text', val: dealId });
    addTag('crm-synced');
  } catch (error) {
    throw fail(`contact: ${describe(error)}`);
  }
  write('info', `deal ${dealId} created for contact ${event.contact.id}`);
  return { output: JSON.stringify({ deal_id: dealId }), replies: [], branch: undefined };
}
