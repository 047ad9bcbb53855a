//! The benchmark action as an Extism plug-in: the shared triage logic, with the two
//! effects sent through the host functions `set_field` and `add_tag`.
#![allow(unsafe_code)] // Extism's host-function imports are `unsafe` to call.

use extism_pdk::{FnResult, host_fn, plugin_fn};

#[host_fn]
extern "ExtismHost" {
    fn set_field(name: String, value: String);
    fn add_tag(tag: String);
}

#[plugin_fn]
pub fn run(input: String) -> FnResult<String> {
    let decision = fluxo_triage::triage(&input)?;
    // SAFETY: the host registers both functions with these signatures.
    unsafe {
        set_field(
            fluxo_triage::PRIORITY_FIELD.to_owned(),
            decision.priority.to_owned(),
        )?;
        add_tag(fluxo_triage::SUPPORT_TAG.to_owned())?;
    }
    Ok(decision.output())
}
