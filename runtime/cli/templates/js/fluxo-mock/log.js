// fluxo:action/log, kept by the mock host.
import { host } from './host.js';

export const write = (level, message) => void host.logs.push([level, message]);
