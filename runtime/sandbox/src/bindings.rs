//! The `bindgen!` calls, one per published version of the `fluxo:action` package: host
//! traits and export glue generated from `wit/`. Generated types stay inside the crate;
//! the public API has its own. A breaking change of the world lives beside the old
//! version here; both are linked, and a component runs against the one it was built
//! for.

/// `fluxo:action@0.1.0` (kept as published in `wit/0.1.0`).
pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/0.1.0",
        world: "action",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

/// `fluxo:action@0.2.0`: the event carries the run's id, its attempt and an idempotency
/// key.
pub(crate) mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "action",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}
