// fluxo:action/state, kept by the mock host (scope 'tenant' or 'contact').
import { host } from './host.js';

export const get = (scope, key) => host.state.get(`${scope}/${key}`);
export const set = (scope, key, value) =>
  void host.state.set(`${scope}/${key}`, Uint8Array.from(value));
const remove = (scope, key) => host.state.delete(`${scope}/${key}`);
export { remove as delete };
