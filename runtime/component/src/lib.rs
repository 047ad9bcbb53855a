//! What an uploaded component is, read from its bytes without compiling them: the size
//! cap and framing ([`pre_check`]), its imports and what it will hold ([`inspect`]), and
//! whether those fit the `fluxo:action` world and one pool slot ([`check_shape`]).
//!
//! No engine here: the upload path runs these checks in a millisecond before it spends
//! seconds compiling, and the fuzzer (`tests/fuzz`, target `component_inspect`) drives
//! them on any bytes without building wasmtime. `fluxo-sandbox` re-exports all of it.

/// The `fluxo:action` interfaces a component may import.
const FLUXO_INTERFACES: &[&str] = &[
    "types", "http", "email", "contact", "log", "state", "secrets",
];
/// The versions of the `fluxo:action` package this host serves.
const FLUXO_VERSIONS: &[&str] = &["0.1.0", "0.2.0"];

/// The WASI 0.2 interfaces a guest may import, as language toolchains emit them (Rust's
/// `std` on `wasm32-wasip2`, componentize-py's interpreter, which imports
/// `wasi:sockets`): served with an empty context — no arguments, environment or
/// preopens, and sockets present but denied (creating a TCP or UDP socket and name
/// lookups fail with `access-denied`). `wasi:http` stays outside: a guest's HTTP goes
/// through `fluxo:action/http` and its egress policy.
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
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// The default cap on a component's size, in bytes: 32 MiB. A Python action built by
/// componentize-py 0.25 (CPython and its standard library inside) is about 18.4 MB before
/// the action's own packages; a JavaScript one from jco's QuickJS backend about 1.6 MB; a
/// Rust one well under 1 MB (docs/languages.md).
pub const DEFAULT_MAX_COMPONENT_BYTES: usize = 32 << 20;

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
pub fn check_shape(shape: &ComponentShape, pool: PoolShape) -> Result<(), LoadError> {
    check_imports(&shape.imports)?;
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

/// Refuses imports outside the world, naming the first and listing the rest.
///
/// # Errors
/// [`LoadError::ForbiddenImport`].
pub fn check_imports(imports: &[String]) -> Result<(), LoadError> {
    let mut forbidden = imports.iter().filter(|name| !import_allowed(name)).cloned();
    match forbidden.next() {
        Some(import) => Err(LoadError::ForbiddenImport {
            import,
            others: forbidden.collect(),
        }),
        None => Ok(()),
    }
}

fn others_suffix(others: &[String]) -> String {
    if others.is_empty() {
        String::new()
    } else {
        format!(" (also: {})", others.join(", "))
    }
}

/// What one component instance may hold in the pool. A component needing more is
/// refused when it is loaded, naming the count and this setting. The defaults fit a
/// Rust `std` guest built by `wasm-component-ld` (the program, shims, fixups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolShape {
    /// Core instances per component (a Rust `std` guest has a few; componentize-py's
    /// interpreter about 38).
    pub core_instances_per_component: u32,
    /// Linear memories per component.
    pub memories_per_component: u32,
    /// Tables per component.
    pub tables_per_component: u32,
}

impl Default for PoolShape {
    fn default() -> Self {
        Self {
            core_instances_per_component: 16,
            memories_per_component: 2,
            tables_per_component: 16,
        }
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

/// Whether an import name (`pkg:ns/iface@version`) is inside the world.
pub fn import_allowed(name: &str) -> bool {
    let Some((path, version)) = name.split_once('@') else {
        return false;
    };
    if let Some(interface) = path.strip_prefix("fluxo:action/") {
        return FLUXO_INTERFACES.contains(&interface) && FLUXO_VERSIONS.contains(&version);
    }
    WASI_INTERFACES.contains(&path) && version.starts_with("0.2.")
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
        assert!(import_allowed("wasi:sockets/tcp@0.2.6"), "served, deny-all");
        assert!(!import_allowed("wasi:sockets/tcp@0.3.0"));
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
        let tight = PoolShape {
            core_instances_per_component: 1,
            ..PoolShape::default()
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
        assert!(check_shape(&shape, PoolShape::default()).is_ok());
    }
}
