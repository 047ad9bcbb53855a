// Native tests of the action against the mock host: `npm test` (node --test, with
// fluxo-mock/register.js resolving the `fluxo:action/*` imports to the mock).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { host } from './fluxo-mock/host.js';
import { run } from './action.js';

test('greets the contact and tags them', () => {
  host.reset({ fields: { name: 'Ana' } });
  const outcome = run(host.event({ input: { greeting: 'Olá' } }));
  assert.deepEqual(outcome.replies, ['Olá, Ana!']);
  assert.deepEqual(JSON.parse(outcome.output), { greeted: 'Ana' });
  assert.deepEqual([...host.tags], ['greeted']);
});

test('a contact without a name is a final error', () => {
  host.reset();
  assert.throws(() => run(host.event()), { message: 'the contact has no name', retryable: false });
  assert.deepEqual([...host.tags], []);
});

test('an input that is not an object is a final error', () => {
  host.reset({ fields: { name: 'Ana' } });
  assert.throws(() => run(host.event({ input: ['Olá'] })), {
    message: 'input: expected an object',
    retryable: false,
  });
  assert.deepEqual([...host.tags], []);
});
