//! An event body as the API and `fluxo run` read it (lenient JSON: unpaired surrogates
//! replaced): never panics, and an event that decodes survives a round trip through
//! JSON unchanged.
#![no_main]

use fluxo_core::Event;
use fluxo_core::json::from_slice_lenient;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(read) = from_slice_lenient::<Event>(bytes) {
        let text = serde_json::to_vec(&read.value).expect("an event encodes");
        let again = from_slice_lenient::<Event>(&text).expect("what was encoded decodes");
        assert_eq!(again.value, read.value);
        assert!(again.warnings.is_empty());
    }
    let _ = from_slice_lenient::<serde_json::Value>(bytes);
});
