//! `fluxo:action/secrets`, and the redactor that keeps secret values out of every record.

use std::collections::BTreeMap;

use super::{BackendError, BoxFuture, RunState, check_name};
use crate::bindings::fluxo::action::secrets::{Host, SecretError};

/// Where a tenant's secrets come from. Read once at the start of each run.
pub trait SecretSource: Send + Sync + 'static {
    /// The tenant's secrets by name.
    fn secrets<'a>(
        &'a self,
        tenant: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, BackendError>>;
}

/// Secrets fixed in the configuration (`[secrets.TENANT]`).
#[derive(Debug, Clone, Default)]
pub struct StaticSecrets {
    by_tenant: BTreeMap<String, BTreeMap<String, String>>,
}

impl StaticSecrets {
    /// Secrets by tenant, then by name.
    #[must_use]
    pub fn new(by_tenant: BTreeMap<String, BTreeMap<String, String>>) -> Self {
        Self { by_tenant }
    }
}

impl SecretSource for StaticSecrets {
    fn secrets<'a>(
        &'a self,
        tenant: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, BackendError>> {
        Box::pin(async move { Ok(self.by_tenant.get(tenant).cloned().unwrap_or_default()) })
    }
}

/// Replaces secret values in text written to records (logs, HTTP exchanges, errors,
/// outputs). Longer values are replaced first so overlapping secrets leave no tail.
#[derive(Debug, Clone, Default)]
pub(crate) struct Redactor<'a> {
    values: Vec<&'a str>,
}

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

impl<'a> Redactor<'a> {
    pub(crate) fn new(values: impl IntoIterator<Item = &'a String>) -> Self {
        let mut values: Vec<&str> = values
            .into_iter()
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .collect();
        values.sort_by_key(|value| std::cmp::Reverse(value.len()));
        values.dedup();
        Self { values }
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        self.redact_in_place(&mut text);
        text
    }

    /// True when there is nothing to redact.
    pub(crate) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Redacts `text` where it is; allocates only when a secret is found.
    pub(crate) fn redact_in_place(&self, text: &mut String) {
        for value in &self.values {
            if text.contains(value) {
                *text = text.replace(value, REDACTED);
            }
        }
    }

    /// Redacts bytes that are UTF-8 text; other bytes are left as they are.
    pub(crate) fn redact_bytes(&self, bytes: &mut Vec<u8>) {
        if self.values.is_empty() {
            return;
        }
        if let Ok(text) = std::str::from_utf8(bytes) {
            let redacted = self.redact(text);
            if redacted != text {
                *bytes = redacted.into_bytes();
            }
        }
    }

    /// Redacts every string inside a JSON value (keys included).
    pub(crate) fn redact_json(&self, value: &mut serde_json::Value) {
        if self.values.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(text) => self.redact_in_place(text),
            serde_json::Value::Array(items) => {
                items.iter_mut().for_each(|item| self.redact_json(item))
            }
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut item) in entries {
                    self.redact_json(&mut item);
                    map.insert(self.redact(&key), item);
                }
            }
            _ => {}
        }
    }
}

impl Host for RunState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, SecretError>> {
        if let Err(reason) = check_name("secret name", &name, 128) {
            return Ok(Err(SecretError::Invalid(reason)));
        }
        Ok(self
            .secrets
            .get(&name)
            .cloned()
            .ok_or(SecretError::NotFound))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_occurrence_longest_first() {
        let secrets = ["abc".to_owned(), "abcdef".to_owned(), String::new()];
        let redactor = Redactor::new(secrets.iter());
        assert_eq!(
            redactor.redact("x abcdef y abc"),
            "x [REDACTED] y [REDACTED]"
        );
        let mut json = serde_json::json!({"abc": ["abcdef", 1, {"k": "zabc"}]});
        redactor.redact_json(&mut json);
        assert_eq!(
            json,
            serde_json::json!({"[REDACTED]": ["[REDACTED]", 1, {"k": "z[REDACTED]"}]})
        );
    }
}
