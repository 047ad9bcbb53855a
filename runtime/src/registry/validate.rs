//! Checking components: size cap, component framing, world conformance, linking.

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::bindings::ActionPre;
use crate::host::RunState;
use crate::{Error, Result};

/// The `fluxo:action` interfaces a component may import.
const FLUXO_INTERFACES: &[&str] = &[
    "types", "http", "email", "contact", "log", "state", "secrets",
];
/// The version of the `fluxo:action` package this host serves.
const FLUXO_VERSION: &str = "0.1.0";

/// The WASI 0.2 interfaces Rust's `std` imports on `wasm32-wasip2`; served with an
/// empty context (no arguments, environment, preopens or sockets).
const WASI_INTERFACES: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
];

/// The default cap on a component's size.
pub const DEFAULT_MAX_COMPONENT_BYTES: usize = 10 << 20;

/// A checked, compiled and linked action, ready to instantiate once per run.
#[derive(Clone)]
pub struct ActionComponent {
    pub(crate) pre: ActionPre<RunState>,
    imports: Vec<String>,
    size: usize,
}

impl std::fmt::Debug for ActionComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionComponent")
            .field("imports", &self.imports)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl ActionComponent {
    /// The interfaces the component imports: what the action may do.
    #[must_use]
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// The component's size in bytes.
    #[must_use]
    pub fn size(&self) -> usize {
        self.size
    }
}

/// Checks, compiles (in this process) and links `bytes`.
pub(crate) fn load(
    engine: &Engine,
    linker: &Linker<RunState>,
    bytes: &[u8],
    max_bytes: usize,
) -> Result<ActionComponent> {
    pre_check(bytes, max_bytes)?;
    let component = Component::new(engine, bytes)
        .map_err(|error| Error::InvalidComponent(format!("{error:#}")))?;
    link(engine, linker, &component, bytes.len())
}

/// The checks that need no compilation: size and framing.
pub(crate) fn pre_check(bytes: &[u8], max_bytes: usize) -> Result<()> {
    if bytes.len() > max_bytes {
        return Err(Error::ComponentTooLarge {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 0x01, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', 0x01, 0, 0, 0]) => Err(Error::InvalidComponent(
            "this is a core wasm module, not a component: build for wasm32-wasip2, or turn \
             the module into a component (`fluxo build` does both)"
                .to_owned(),
        )),
        _ => Err(Error::InvalidComponent(
            "not a WebAssembly component (bad magic or version)".to_owned(),
        )),
    }
}

/// Checks a compiled component against the world and links it.
pub(crate) fn link(
    engine: &Engine,
    linker: &Linker<RunState>,
    component: &Component,
    size: usize,
) -> Result<ActionComponent> {
    let component_type = component.component_type();
    let imports: Vec<String> = component_type
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let mut forbidden = imports.iter().filter(|name| !import_allowed(name)).cloned();
    if let Some(import) = forbidden.next() {
        return Err(Error::ForbiddenImport {
            import,
            others: forbidden.collect(),
        });
    }
    if !component_type
        .exports(engine)
        .any(|(name, _)| name == "run")
    {
        return Err(Error::InvalidComponent(
            "the component does not export `run`: is it built against the fluxo:action world?"
                .to_owned(),
        ));
    }
    let pre = linker
        .instantiate_pre(component)
        .map_err(|error| Error::InvalidComponent(format!("{error:#}")))?;
    let pre = ActionPre::new(pre).map_err(|error| Error::InvalidComponent(format!("{error:#}")))?;
    Ok(ActionComponent { pre, imports, size })
}

/// Whether an import name (`pkg:ns/iface@version`) is inside the world.
fn import_allowed(name: &str) -> bool {
    let Some((path, version)) = name.split_once('@') else {
        return false;
    };
    if let Some(interface) = path.strip_prefix("fluxo:action/") {
        return FLUXO_INTERFACES.contains(&interface) && version == FLUXO_VERSION;
    }
    WASI_INTERFACES.contains(&path) && version.starts_with("0.2.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_world_is_fluxo_plus_the_std_subset_of_wasi() {
        assert!(import_allowed("fluxo:action/http@0.1.0"));
        assert!(import_allowed("wasi:cli/stdout@0.2.6"));
        assert!(import_allowed("wasi:io/streams@0.2.0"));
        assert!(!import_allowed("fluxo:action/http@0.2.0"));
        assert!(!import_allowed("fluxo:action/shell@0.1.0"));
        assert!(!import_allowed("wasi:sockets/tcp@0.2.6"));
        assert!(!import_allowed("wasi:http/outgoing-handler@0.2.6"));
        assert!(!import_allowed("wasi:cli/stdout@0.3.0"));
        assert!(!import_allowed("wasi:cli/stdout"));
        assert!(!import_allowed("evil:net/raw@1.0.0"));
    }
}
