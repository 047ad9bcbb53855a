//! Turning bytes into a runnable [`ActionComponent`]: size cap, component framing, world
//! conformance (imports inside the `fluxo:action` world and the WASI subset served
//! empty, the `run` export present), linking; and compiling to, and loading from,
//! precompiled artifacts.

use std::hash::{Hash, Hasher};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::engine::{self, Metering};
use crate::wasm::WasmState;

/// The `fluxo:action` interfaces a component may import.
const FLUXO_INTERFACES: &[&str] = &[
    "types", "http", "email", "contact", "log", "state", "secrets",
];
/// The versions of the `fluxo:action` package this host serves.
const FLUXO_VERSIONS: &[&str] = &["0.1.0", "0.2.0"];

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

/// The default cap on a component's size, in bytes.
pub const DEFAULT_MAX_COMPONENT_BYTES: usize = 10 << 20;

/// Why bytes are not a component Fluxo can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The component is larger than the cap.
    #[error("component is {size} bytes, over the {limit}-byte cap")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The bytes are not a component, or it does not fit the world; the reason says why.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// The component imports an interface outside the `fluxo:action` world.
    #[error("component imports {import:?}, which is outside the fluxo:action world{}", others_suffix(.others))]
    ForbiddenImport {
        /// The first offending import.
        import: String,
        /// Further offending imports.
        others: Vec<String>,
    },
    /// A stored artifact does not match the checksum recorded when it was written.
    #[error("the compiled artifact does not match its recorded checksum")]
    CorruptArtifact,
    /// The component needs more of something than one pool slot holds.
    #[error(
        "the component needs {needed} {what}, over the {allowed} a run may hold (raise `{setting}`)"
    )]
    Shape {
        /// What (`core instances`, `memories`, `tables`).
        what: &'static str,
        /// How many it needs.
        needed: u32,
        /// How many a slot holds.
        allowed: u32,
        /// The setting that sizes it.
        setting: &'static str,
    },
}

/// What a component holds, read from its bytes without compiling them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ComponentShape {
    /// The component's imports (`pkg:ns/iface@version`).
    pub imports: Vec<String>,
    /// Core instances it creates, nested components included.
    pub core_instances: u32,
    /// Linear memories its core modules define.
    pub memories: u32,
    /// Tables its core modules define.
    pub tables: u32,
}

/// Reads a component's imports and what it will hold, without compiling it (a
/// millisecond, not a compile): what uploads are checked against before compiling.
///
/// # Errors
/// [`LoadError::Invalid`] when the bytes do not parse.
pub fn inspect(bytes: &[u8]) -> Result<ComponentShape, LoadError> {
    use wasmparser::{Parser, Payload};
    let mut shape = ComponentShape::default();
    let mut depth = 0u32;
    let count = |n: u32, total: &mut u32| *total = total.saturating_add(n);
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|error| LoadError::Invalid(format!("{error}")))?;
        match payload {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            // Only instantiations take a pool slot; a bag of exports
            // (`Instance::FromExports`) is glue, not a runtime instance.
            Payload::InstanceSection(reader) => {
                for instance in reader {
                    let instance =
                        instance.map_err(|error| LoadError::Invalid(format!("{error}")))?;
                    if matches!(instance, wasmparser::Instance::Instantiate { .. }) {
                        count(1, &mut shape.core_instances);
                    }
                }
            }
            Payload::MemorySection(reader) => count(reader.count(), &mut shape.memories),
            Payload::TableSection(reader) => count(reader.count(), &mut shape.tables),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|error| LoadError::Invalid(format!("{error}")))?;
                    // Imported types (the world's `use types.{…}`) are type equalities,
                    // not capabilities.
                    if matches!(import.ty, wasmparser::ComponentTypeRef::Type(_)) {
                        continue;
                    }
                    shape.imports.push(import.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(shape)
}

/// Refuses a component whose imports leave the world or whose shape does not fit a pool
/// slot: naming the first forbidden import, or the count and the setting to change.
///
/// # Errors
/// [`LoadError::ForbiddenImport`] or [`LoadError::Shape`].
pub fn check_shape(shape: &ComponentShape, pool: crate::PoolShape) -> Result<(), LoadError> {
    let mut forbidden = shape
        .imports
        .iter()
        .filter(|name| !import_allowed(name))
        .cloned();
    if let Some(import) = forbidden.next() {
        return Err(LoadError::ForbiddenImport {
            import,
            others: forbidden.collect(),
        });
    }
    for (what, needed, allowed, setting) in [
        (
            "core instances",
            shape.core_instances,
            pool.core_instances_per_component,
            "engine.core_instances_per_component",
        ),
        (
            "memories",
            shape.memories,
            pool.memories_per_component,
            "engine.memories_per_component",
        ),
        (
            "tables",
            shape.tables,
            pool.tables_per_component,
            "engine.tables_per_component",
        ),
    ] {
        if needed > allowed {
            return Err(LoadError::Shape {
                what,
                needed,
                allowed,
                setting,
            });
        }
    }
    Ok(())
}

fn others_suffix(others: &[String]) -> String {
    if others.is_empty() {
        String::new()
    } else {
        format!(" (also: {})", others.join(", "))
    }
}

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

/// The checks that need no compilation: size and framing.
///
/// # Errors
/// [`LoadError::TooLarge`] or [`LoadError::Invalid`] (a core module gets a hint).
pub fn pre_check(bytes: &[u8], max_bytes: usize) -> Result<(), LoadError> {
    if bytes.len() > max_bytes {
        return Err(LoadError::TooLarge {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 0x01, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', 0x01, 0, 0, 0]) => Err(LoadError::Invalid(
            "this is a core wasm module, not a component: build for wasm32-wasip2, or turn \
             the module into a component (`fluxo build` does both)"
                .to_owned(),
        )),
        _ => Err(LoadError::Invalid(
            "not a WebAssembly component (bad magic or version)".to_owned(),
        )),
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
    let mut forbidden = imports.iter().filter(|name| !import_allowed(name)).cloned();
    if let Some(import) = forbidden.next() {
        return Err(LoadError::ForbiddenImport {
            import,
            others: forbidden.collect(),
        });
    }
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

/// Whether an import name (`pkg:ns/iface@version`) is inside the world.
fn import_allowed(name: &str) -> bool {
    let Some((path, version)) = name.split_once('@') else {
        return false;
    };
    if let Some(interface) = path.strip_prefix("fluxo:action/") {
        return FLUXO_INTERFACES.contains(&interface) && FLUXO_VERSIONS.contains(&version);
    }
    WASI_INTERFACES.contains(&path) && version.starts_with("0.2.")
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
    fn the_world_is_fluxo_plus_the_std_subset_of_wasi() {
        assert!(import_allowed("fluxo:action/http@0.1.0"));
        assert!(import_allowed("fluxo:action/http@0.2.0"));
        assert!(import_allowed("wasi:cli/stdout@0.2.6"));
        assert!(import_allowed("wasi:io/streams@0.2.0"));
        assert!(!import_allowed("fluxo:action/http@0.9.0"));
        assert!(!import_allowed("fluxo:action/shell@0.1.0"));
        assert!(!import_allowed("wasi:sockets/tcp@0.2.6"));
        assert!(!import_allowed("wasi:http/outgoing-handler@0.2.6"));
        assert!(!import_allowed("wasi:cli/stdout@0.3.0"));
        assert!(!import_allowed("wasi:cli/stdout"));
        assert!(!import_allowed("evil:net/raw@1.0.0"));
    }

    #[test]
    fn the_shape_counts_instantiations_not_export_bags_and_names_the_setting() {
        let component = wat::parse_str(
            r#"(component
                (core module $m (memory 1) (table 1 funcref))
                (core instance $a (instantiate $m))
                (core instance $b (instantiate $m))
                (core instance $bag (export "x" (memory $a "0")))
                (import "fluxo:action/log@0.2.0" (instance))
            )"#,
        )
        .unwrap();
        let shape = inspect(&component).unwrap();
        assert_eq!(
            shape.core_instances, 2,
            "a bag of exports is not an instance"
        );
        assert_eq!(shape.memories, 1);
        assert_eq!(shape.tables, 1);
        assert_eq!(shape.imports, ["fluxo:action/log@0.2.0"]);
        let tight = crate::PoolShape {
            core_instances_per_component: 1,
            ..crate::PoolShape::default()
        };
        match check_shape(&shape, tight) {
            Err(LoadError::Shape {
                needed: 2,
                allowed: 1,
                setting,
                ..
            }) => {
                assert_eq!(setting, "engine.core_instances_per_component");
            }
            other => panic!("expected a shape refusal, got {other:?}"),
        }
        assert!(check_shape(&shape, crate::PoolShape::default()).is_ok());
    }

    #[test]
    fn compile_failures_are_one_short_line() {
        let error =
            wasmtime::Error::msg("failed to compile\nthread 'main' panicked at ...\nbacktrace");
        assert_eq!(compile_reason(&error), "failed to compile");
    }
}
