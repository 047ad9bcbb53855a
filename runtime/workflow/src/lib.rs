//! Fluxo's workflows: the chat builders' no-code blocks, run on the same capability code
//! as components.
//!
//! A [`Workflow`] is a named JSON document of steps, each a [`Block`] with its
//! parameters and outgoing ports ([`definition`]). [`validate()`] lists every problem
//! with its step and field before anything runs. The [`Interpreter`] runs the blocks
//! through a [`fluxo_sandbox::RunContext`] — the tenant's quotas, egress policy,
//! secrets and journal, exactly as a guest meets them — and leaves the journal in the
//! context for the caller to commit, or to show, for a test.
//!
//! Blocks in this version: `http` (the integration block: method, URL, query, headers,
//! a JSON body from bracket keys, a form or raw body, bearer / basic / API-key auth from
//! tenant secrets, a timeout, response values saved to variables or fields by path,
//! an `on_error` port), `set_field`, `tag`, `untag`, `set_variable`, `condition`,
//! `split`, `send_email`, `reply`, `notify`, `handoff`, `wait_for_reply` (the run
//! suspends with a [`Checkpoint`] the host stores, and resumes with a [`Resolution`]),
//! and `action` (a tenant's
//! component run as a step, through an [`ActionRunner`] the host gives).
//! `docs/workflows.md` documents each block and template rule.

pub mod actions;
pub mod condition;
pub mod definition;
pub mod interpret;
mod oauth;
pub mod path;
mod problem;
pub mod template;
mod validate;

pub use actions::ActionRunner;
pub use definition::{Block, Budget, Fixtures, Step, Workflow};
pub use interpret::{
    Change, Checkpoint, FixtureResponse, HttpMode, Interpreter, Resolution, Start, StepError,
    StepTrace, Waits, WorkflowRun,
};
pub use problem::Problem;
pub use template::Templates;
pub use validate::{validate, visit_limits};

/// Reads and validates a definition: the workflow, or every problem found.
///
/// # Errors
/// Every problem, each with its step and field.
pub fn check(text: &str, templates: &Templates) -> Result<Workflow, Vec<Problem>> {
    let workflow = Workflow::parse(text)?;
    let problems = validate(&workflow, templates);
    if problems.is_empty() {
        Ok(workflow)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests;
