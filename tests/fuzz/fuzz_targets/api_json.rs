//! The API's settings bodies as the server reads them (lenient JSON): limit overrides
//! and retry policies never panic when decoded, checked or applied — the overrides may
//! only tighten the host's limits, and a policy that passes its check gives a delay
//! within its cap for every attempt (the retry scheduler computes these from tenant
//! input).
#![no_main]

use std::time::Duration;

use fluxo_core::json::from_slice_lenient;
use fluxo_core::{LimitOverrides, Limits, RetryPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(read) = from_slice_lenient::<LimitOverrides>(bytes) {
        let host = Limits::default();
        if let Ok(limits) = host.with_overrides(&read.value) {
            assert!(limits.fuel <= host.fuel, "an override loosened fuel");
            assert!(
                limits.deadline_ms <= host.deadline_ms,
                "an override loosened the deadline"
            );
        }
        let tightened = host.tightened_by(&read.value);
        assert!(tightened.fuel <= host.fuel && tightened.deadline_ms <= host.deadline_ms);
    }
    if let Ok(read) = from_slice_lenient::<RetryPolicy>(bytes) {
        let policy = read.value;
        if policy.check().is_ok() {
            let cap = Duration::from_millis(policy.max_delay_ms.max(policy.max_retry_after_ms));
            let unit = f64::from(bytes.len() as u32 % 1000) / 1000.0;
            for attempt in [0, 1, 2, 7, 63, 64, 1000, u32::MAX] {
                let retry_after = Some(Duration::from_millis(u64::from(attempt) * 1000));
                assert!(policy.delay(attempt, unit, None) <= cap);
                assert!(policy.delay(attempt, unit, retry_after) <= cap);
            }
        }
    }
});
