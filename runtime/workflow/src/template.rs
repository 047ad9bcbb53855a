//! Templates: `{{contact.fields.name}}`, `{{vars.count}}`,
//! `{{steps.create_deal.response.body.data.url}}`, `{{secrets.CRM_TOKEN}}`.
//!
//! Jinja syntax through `minijinja` in **strict** mode: a variable that is not there is
//! an error, never an empty string. Output is escaped for where it goes: in a URL every
//! interpolated value is percent-encoded (RFC 3986 §2.1; only unreserved characters stay
//! as they are), in a raw JSON body it is written as a JSON value, elsewhere as text (a
//! JSON body built from pairs and a form body escape their values themselves). Every
//! render has fuel, so a template cannot loop for long.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::definition::Context;

/// Everything but RFC 3986's unreserved characters (ALPHA / DIGIT / `-` `.` `_` `~`).
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The fuel one render may burn (minijinja counts instructions); a plain interpolation
/// costs a handful, a loop over a long list runs out.
const FUEL: u64 = 20_000;

/// The top-level names a template may read.
pub const ROOTS: &[&str] = &["contact", "message", "vars", "steps", "secrets"];

/// The template engine, configured once per host.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// An engine in strict mode with per-context escaping and fuel.
    #[must_use]
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.set_auto_escape_callback(|name| match name.split(':').next() {
            Some("url") => AutoEscape::Custom("url"),
            Some("json") => AutoEscape::Json,
            _ => AutoEscape::None,
        });
        env.set_formatter(|out, state, value| {
            if state.auto_escape() == AutoEscape::Custom("url") {
                let text = if value.is_undefined() || value.is_none() {
                    String::new()
                } else {
                    value.to_string()
                };
                write!(out, "{}", utf8_percent_encode(&text, URL_COMPONENT))
                    .map_err(|_| minijinja::Error::from(minijinja::ErrorKind::WriteFailure))
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        Self { env }
    }

    /// Parses `source` and returns the dotted variable paths it reads
    /// (`contact.fields.name`, `vars.count`).
    ///
    /// # Errors
    /// The parser's message when the template does not parse.
    pub fn variables(&self, source: &str) -> Result<Vec<String>, String> {
        let template = self
            .env
            .template_from_named_str("check", source)
            .map_err(|error| describe(&error))?;
        let mut names: Vec<String> = template.undeclared_variables(true).into_iter().collect();
        names.sort();
        Ok(names)
    }

    /// Renders `source` for `context` against `scope`.
    ///
    /// # Errors
    /// The engine's message: a variable that is not there, a template that does not
    /// parse, fuel run out.
    pub(crate) fn render(
        &self,
        source: &str,
        context: Context,
        scope: &minijinja::Value,
    ) -> Result<String, String> {
        if !source.contains("{{") && !source.contains("{%") {
            return Ok(source.to_owned());
        }
        let name = match context {
            Context::Url => "url:template",
            Context::Json => "json:template",
            Context::Text | Context::Secret => "text:template",
        };
        self.env
            .render_named_str(name, source, scope)
            .map_err(|error| describe(&error))
    }
}

/// An engine error in one line: its kind and detail, without the template dump the
/// `debug` feature adds to `Display`.
fn describe(error: &minijinja::Error) -> String {
    match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use serde_json::json;

    use super::*;

    fn scope() -> minijinja::Value {
        minijinja::Value::from_serialize(json!({
            "contact": {"fields": {"name": "Ana \"Bia\" O'Neil\n", "city": "São Paulo & Co/1?x=1#f"}},
            "vars": {"count": 2},
        }))
    }

    #[test]
    fn a_missing_variable_is_an_error_not_an_empty_string() {
        let templates = Templates::new();
        let error = templates
            .render("Hi {{contact.fields.surname}}", Context::Text, &scope())
            .unwrap_err();
        assert!(error.contains("undefined"), "{error}");
        assert_eq!(
            templates
                .render("Hi {{contact.fields.name}}", Context::Text, &scope())
                .unwrap(),
            "Hi Ana \"Bia\" O'Neil\n"
        );
    }

    #[test]
    fn values_are_escaped_for_urls_and_json_but_the_template_text_is_not() {
        let templates = Templates::new();
        let url = templates
            .render(
                "https://api.example/q?city={{contact.fields.city}}&n={{vars.count}}",
                Context::Url,
                &scope(),
            )
            .unwrap();
        assert_eq!(
            url,
            "https://api.example/q?city=S%C3%A3o%20Paulo%20%26%20Co%2F1%3Fx%3D1%23f&n=2"
        );
        let json = templates
            .render(
                r#"{"name": {{contact.fields.name}}}"#,
                Context::Json,
                &scope(),
            )
            .unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, json!({"name": "Ana \"Bia\" O'Neil\n"}));
    }

    #[test]
    fn variables_are_listed_with_their_paths_and_bad_syntax_is_reported() {
        let templates = Templates::new();
        let names = templates
            .variables(
                "{{contact.fields.name}} {{ vars.count + 1 }} {{steps.a.response.body.data.url}}",
            )
            .unwrap();
        assert_eq!(
            names,
            [
                "contact.fields.name",
                "steps.a.response.body.data.url",
                "vars.count"
            ]
        );
        let error = templates.variables("{{ contact.fields.name ").unwrap_err();
        assert!(error.contains("syntax"), "{error}");
    }

    #[test]
    fn a_looping_template_runs_out_of_fuel() {
        let templates = Templates::new();
        let error = templates
            .render(
                "{% for a in range(1000) %}{% for b in range(1000) %}x{% endfor %}{% endfor %}",
                Context::Text,
                &scope(),
            )
            .unwrap_err();
        assert!(error.contains("fuel"), "{error}");
    }
}
