//! The memory and table limiter of one run; growth past a limit ends the run with a
//! typed [`LimitHit`] instead of a failed allocation the guest would turn into an
//! anonymous trap.

use std::fmt;

use fluxo_core::LimitHit;
use wasmtime::ResourceLimiter;

/// Caps memory and table growth of one run, and remembers the peak.
pub(crate) struct RunLimiter {
    max_memory_bytes: u64,
    max_table_elements: u32,
    peak_memory_bytes: u64,
}

impl fmt::Debug for RunLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunLimiter")
            .field("max_memory_bytes", &self.max_memory_bytes)
            .field("peak_memory_bytes", &self.peak_memory_bytes)
            .finish_non_exhaustive()
    }
}

impl RunLimiter {
    pub(crate) fn new(max_memory_bytes: u64, max_table_elements: u32) -> Self {
        Self {
            max_memory_bytes,
            max_table_elements,
            peak_memory_bytes: 0,
        }
    }

    pub(crate) fn peak_memory_bytes(&self) -> u64 {
        self.peak_memory_bytes
    }
}

impl ResourceLimiter for RunLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let desired = u64::try_from(desired).unwrap_or(u64::MAX);
        if desired > self.max_memory_bytes {
            return Err(wasmtime::Error::new(LimitHit::Memory {
                limit: self.max_memory_bytes,
                asked: desired,
            }));
        }
        self.peak_memory_bytes = self.peak_memory_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > usize::try_from(self.max_table_elements).unwrap_or(usize::MAX) {
            return Err(wasmtime::Error::new(LimitHit::Table {
                limit: self.max_table_elements,
            }));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_growth_past_the_limit_is_a_typed_error() {
        let mut limiter = RunLimiter::new(1 << 20, 10);
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        let error = limiter.memory_growing(1 << 20, 2 << 20, None).unwrap_err();
        assert_eq!(
            error.downcast_ref::<LimitHit>(),
            Some(&LimitHit::Memory {
                limit: 1 << 20,
                asked: 2 << 20
            })
        );
        assert_eq!(limiter.peak_memory_bytes(), 1 << 20);
        assert!(limiter.table_growing(0, 11, None).is_err());
    }
}
