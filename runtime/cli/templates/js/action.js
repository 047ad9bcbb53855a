// {{name}}: greets the contact by name, tags them `greeted` and replies.
//
// Input: `{"greeting": "Hello"}` (optional). Fails, not retryably, when the contact has
// no `name` field. Test: `npm test`. Build: `fluxo build --lang js action.js`.

import { addTag, getField } from 'fluxo:action/contact@0.2.0';
import { write } from 'fluxo:action/log@0.2.0';

/** Runs the action once for `event` (the WIT `event` record, camelCase). */
export function run(event) {
  const input = JSON.parse(event.input || '{}');
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw { message: 'input: expected an object', retryable: false };
  }
  const greeting = input.greeting ?? 'Hello';
  if (typeof greeting !== 'string') {
    throw { message: 'input: greeting is not a string', retryable: false };
  }
  const name = getField('name');
  if (!name || name.tag !== 'text') {
    throw { message: 'the contact has no name', retryable: false };
  }
  addTag('greeted');
  write('info', `greeted contact ${event.contact.id}`);
  return {
    output: JSON.stringify({ greeted: name.val }),
    replies: [`${greeting}, ${name.val}!`],
    branch: undefined,
  };
}
