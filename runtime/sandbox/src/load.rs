//! Turning bytes into a runnable [`ActionComponent`]: the checks before compiling come
//! from `fluxo-component` (size cap, framing, imports, shape; re-exported here); this
//! module checks the compiled component against the world (imports inside the
//! `fluxo:action` world and the WASI subset served empty, the `run` export present),
//! links it, and compiles to and loads from precompiled artifacts.

use std::hash::{Hash, Hasher};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

pub use fluxo_component::{
    ComponentShape, DEFAULT_MAX_COMPONENT_BYTES, LoadError, check_imports, check_shape,
    import_allowed, inspect, pre_check,
};

use crate::engine::{self, Metering};
use crate::wasm::WasmState;

/// The instantiation glue of one package version.
#[derive(Clone)]
pub(crate) enum Pre {
    /// `fluxo:action@0.1.0`.
    V0_1(crate::bindings::v0_1::ActionPre<WasmState>),
    /// `fluxo:action@0.2.0`.
    V0_2(crate::bindings::v0_2::ActionPre<WasmState>),
}

/// A checked, compiled and linked action, ready to instantiate once per run.
#[derive(Clone)]
pub struct ActionComponent {
    pub(crate) pre: Pre,
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

/// Checks a compiled component against the world and links it.
pub(crate) fn link(
    engine: &Engine,
    linker: &Linker<WasmState>,
    component: &Component,
    size: usize,
) -> Result<ActionComponent, LoadError> {
    let component_type = component.component_type();
    let imports: Vec<String> = component_type
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    check_imports(&imports)?;
    if !component_type
        .exports(engine)
        .any(|(name, _)| name == "run")
    {
        return Err(LoadError::Invalid(
            "the component does not export `run`: is it built against the fluxo:action world?"
                .to_owned(),
        ));
    }
    let pre = linker
        .instantiate_pre(component)
        .map_err(|error| LoadError::Invalid(format!("{error:#}")))?;
    // The export's types tell the version: a component's `run` takes the event of the
    // package it was built against.
    let pre = match crate::bindings::v0_2::ActionPre::new(pre.clone()) {
        Ok(pre) => Pre::V0_2(pre),
        Err(newest) => match crate::bindings::v0_1::ActionPre::new(pre) {
            Ok(pre) => Pre::V0_1(pre),
            Err(_) => return Err(LoadError::Invalid(format!("{newest:#}"))),
        },
    };
    Ok(ActionComponent { pre, imports, size })
}

/// Compiles a component with an engine configured for `metering` (the code generation
/// the host's engine uses): what the out-of-process compiler runs. CPU-bound.
///
/// # Errors
/// [`LoadError::Invalid`] when the bytes do not compile.
pub fn precompile(metering: Metering, bytes: &[u8]) -> Result<Vec<u8>, LoadError> {
    let engine =
        engine::build_compiler(metering).map_err(|error| LoadError::Invalid(error.to_string()))?;
    engine
        .precompile_component(bytes)
        .map_err(|error| LoadError::Invalid(compile_reason(&error)))
}

/// A compile failure in one line, without the compiler's internals (allocator dumps,
/// backtraces).
fn compile_reason(error: &wasmtime::Error) -> String {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or("compilation failed").trim();
    let mut cut = first.len().min(300);
    while !first.is_char_boundary(cut) {
        cut -= 1;
    }
    first.get(..cut).unwrap_or(first).to_owned()
}

/// What an artifact must match to load into `engine`: the engine's compatibility hash
/// (it covers wasmtime's version and every setting that shapes compiled code).
pub(crate) fn fingerprint(engine: &Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// SHA-256 of `bytes`, hex.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Loads a precompiled artifact after checking it against the checksum recorded when it
/// was written.
#[allow(
    unsafe_code,
    reason = "the one reviewed deserialization of host-written artifacts"
)]
pub(crate) fn deserialize(
    engine: &Engine,
    artifact: &[u8],
    checksum: &str,
) -> Result<Component, LoadError> {
    if sha256_hex(artifact) != checksum {
        return Err(LoadError::CorruptArtifact);
    }
    // SAFETY: `Component::deserialize` requires bytes produced by `precompile_component`
    // of a compatible engine and not tampered with. Only the registry calls this, with
    // bytes it read from the host-owned artifact directory, which only this host's own
    // compiler writes (configured by `engine::build_compiler` like this engine), each
    // file written under a unique temporary name, fsynced and renamed into place, its
    // SHA-256 recorded beside it — and checked just above, so a torn or altered file
    // never gets here. Tenant input never reaches this function. Wasmtime additionally
    // checks the header and the engine compatibility before using the code.
    unsafe { Component::deserialize(engine, artifact) }
        .map_err(|error| LoadError::Invalid(format!("loading the compiled artifact: {error:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_failures_are_one_short_line() {
        let error =
            wasmtime::Error::msg("failed to compile\nthread 'main' panicked at ...\nbacktrace");
        assert_eq!(compile_reason(&error), "failed to compile");
    }
}
