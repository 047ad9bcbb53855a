//! The one `bindgen!` call: host traits and export glue generated from `wit/`.
//! Generated types stay inside the crate; the public API has its own.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "action",
    imports: { default: async | trappable },
    exports: { default: async },
});
