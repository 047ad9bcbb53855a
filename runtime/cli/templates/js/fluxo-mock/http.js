// fluxo:action/http, answered from the mock host's canned responses.
import { host } from './host.js';

export function request(req) {
  host.requests.push(req);
  const answer = host.routes.get(`${req.method.toUpperCase()} ${req.url}`);
  if (!answer) {
    throw { payload: { tag: 'denied', val: `no mock answer for ${req.method} ${req.url}` } };
  }
  if (answer.error) throw answer.error;
  return answer;
}
