// fluxo:action/contact, served by the mock host.
import { host } from './host.js';

export const getField = (name) => host.fields.get(name);
export function setField(name, value) {
  if (value.tag === 'null') host.fields.delete(name);
  else host.fields.set(name, value);
}
export const addTag = (tag) => void host.tags.add(tag);
export const removeTag = (tag) => void host.tags.delete(tag);
export const hasTag = (tag) => host.tags.has(tag);
export const tags = () => [...host.tags];
