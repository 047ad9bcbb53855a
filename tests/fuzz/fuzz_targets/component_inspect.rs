//! What the upload path reads before anything is compiled: the size and header check,
//! the component's shape (core instances, memories, tables, imports) and the pool check
//! never panic on any bytes (seeded with real components from `corpus/`).
#![no_main]

use fluxo_component::{DEFAULT_MAX_COMPONENT_BYTES, PoolShape, check_shape, inspect, pre_check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if pre_check(bytes, DEFAULT_MAX_COMPONENT_BYTES).is_err() {
        return;
    }
    if let Ok(shape) = inspect(bytes) {
        let _ = check_shape(&shape, PoolShape::default());
    }
});
