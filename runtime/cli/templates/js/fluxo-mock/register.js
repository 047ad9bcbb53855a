// Preloaded by `npm test`: resolves `fluxo:action/<interface>@0.2.0` to the mock's module
// of that interface (Node's module customization hooks).
import { register } from 'node:module';

register('./hooks.js', import.meta.url);
