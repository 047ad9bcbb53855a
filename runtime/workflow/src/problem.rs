//! What is wrong with a definition, said so an operator can find it: the step, the field,
//! the reason.

use serde::Serialize;

/// One problem in a workflow definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// The step's id, or `None` for the document itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The field within the step or the document (`url`, `rules[0].value`, `steps[3]`);
    /// empty when the whole step is meant.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem with the document itself (no step): `field` is its path, empty for the
    /// whole document.
    pub fn document(field: &str, message: impl Into<String>) -> Self {
        Self {
            step: None,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// A problem with `step`'s `field`.
    pub fn step(step: &str, field: &str, message: impl Into<String>) -> Self {
        Self {
            step: Some(step.to_owned()),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// The same problem, located at the document's `steps[index]` when it names no step.
    pub(crate) fn at_index(mut self, index: usize) -> Self {
        if self.step.is_none() {
            self.field = if self.field.is_empty() {
                format!("steps[{index}]")
            } else {
                format!("steps[{index}].{}", self.field)
            };
        }
        self
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.step, self.field.is_empty()) {
            (Some(step), false) => write!(f, "step `{step}`, {}: {}", self.field, self.message),
            (Some(step), true) => write!(f, "step `{step}`: {}", self.message),
            (None, false) => write!(f, "{}: {}", self.field, self.message),
            (None, true) => f.write_str(&self.message),
        }
    }
}
