//! **N0**: the action as a native Rust call — the speed of light, with no isolation.

use std::hint::black_box;

use super::{BoxFuture, Contender, Raw};

/// The native contender.
#[derive(Debug)]
pub struct Native {
    event: String,
}

impl Native {
    /// Runs the action on `event`.
    #[must_use]
    pub fn new(event: String) -> Self {
        Self { event }
    }

    fn call(&self) -> anyhow::Result<Raw> {
        let decision = fluxo_triage::triage(black_box(&self.event))?;
        let effects = vec![
            vec![
                "set_field".to_owned(),
                fluxo_triage::PRIORITY_FIELD.to_owned(),
                decision.priority.to_owned(),
            ],
            vec!["add_tag".to_owned(), fluxo_triage::SUPPORT_TAG.to_owned()],
        ];
        Ok((decision.output(), effects))
    }
}

impl Contender for Native {
    fn label(&self) -> &str {
        "N0"
    }

    fn isolation(&self) -> &'static str {
        "none (a function call)"
    }

    fn once(&self) -> BoxFuture<'_, anyhow::Result<Raw>> {
        Box::pin(async move { self.call() })
    }
}
