// fluxo:action/secrets, from the mock host.
import { host } from './host.js';

export function get(name) {
  if (!host.secrets.has(name)) throw { payload: { tag: 'not-found' } };
  return host.secrets.get(name);
}
