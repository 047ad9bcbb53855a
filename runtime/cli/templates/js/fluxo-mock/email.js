// fluxo:action/email, kept by the mock host.
import { host } from './host.js';

export function send(message) {
  host.emails.push(message);
  return `<mock-${host.emails.length}@fluxo.test>`;
}
