// Syncs a new lead to a CRM, as the Rust `crm-lead` does: creates a deal named after the
// contact, with the contact attached, stores the deal id in the contact's `crm_deal_id`
// field and tags the contact `crm-synced`.
//
// Input: `{"crm_url": "https://crm.example"}` (defaults to RD Station CRM's API).
// Secret: `crm_token`. A 5xx from the CRM is a retryable failure; a 4xx is final.
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
    throw fail(`the input is not JSON: ${error}`);
  }
  const name = textField('name');
  if (name === undefined) throw fail('contact has no name field');
  const email = textField('email');
  let token;
  try {
    token = secret('crm_token');
  } catch (error) {
    throw fail(`secret crm_token: ${describe(error)}`);
  }
  const base = input.crm_url || DEFAULT_CRM_URL;

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
    throw fail(`crm request failed: ${describe(error)}`, true);
  }
  if (response.status >= 500) throw fail(`crm answered ${response.status}`, true);
  if (response.status >= 400) throw fail(`crm answered ${response.status}`);
  const dealId = JSON.parse(utf8Decode(response.body))._id;

  setField('crm_deal_id', { tag: 'text', val: dealId });
  addTag('crm-synced');
  write('info', `deal ${dealId} created for contact ${event.contact.id}`);
  return { output: JSON.stringify({ deal_id: dealId }), replies: [], branch: undefined };
}
