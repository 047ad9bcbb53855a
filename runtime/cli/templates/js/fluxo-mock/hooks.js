// Resolve hook: each of the world's interfaces becomes this directory's module of the
// same name.
const INTERFACE = /^fluxo:action\/(contact|http|log|secrets|state|email)@0\.2\.0$/;

export async function resolve(specifier, context, next) {
  const match = INTERFACE.exec(specifier);
  if (match) {
    return { url: new URL(`./${match[1]}.js`, import.meta.url).href, shortCircuit: true };
  }
  return next(specifier, context);
}
