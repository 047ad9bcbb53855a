// Preloaded by `npm test`: resolves `fluxo:action/<interface>@0.2.0` to the mock's module
// of that interface (Node's module customization hooks), and takes away the globals
// Node has and QuickJS does not, so a test fails where the component would trap.
import { register } from 'node:module';

register('./hooks.js', import.meta.url);

for (const name of ['TextEncoder', 'TextDecoder', 'fetch', 'Request', 'Response', 'Headers', 'Buffer']) {
  delete globalThis[name];
}
