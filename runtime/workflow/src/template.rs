//! Templates: `{{contact.fields.name}}`, `{{vars.count}}`,
//! `{{steps.create_deal.response.body.data.url}}`, `{{secrets.CRM_TOKEN}}`.
//!
//! Jinja syntax through `minijinja` in **strict** mode: a variable that is not there is
//! an error, never an empty string. Only a safe subset of the language is accepted
//! ([`check_syntax`]): `{{ path }}` and `{{ path | filter }}` with the filters in
//! [`FILTERS`] — no statements, operators or calls, so a definition cannot build a value
//! larger than its inputs (minijinja's `"x" * n` alone reaches 100 MB) or loop. Output is escaped for where it goes: in a URL every
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

/// The filters a template may apply: none of them makes a value much larger than its
/// input.
pub const FILTERS: &[&str] = &[
    "upper",
    "lower",
    "trim",
    "title",
    "capitalize",
    "length",
    "first",
    "last",
    "join",
    "default",
    "tojson",
    "urlencode",
    "string",
    "int",
    "float",
    "abs",
    "round",
];

/// The most bytes one rendered template may produce.
pub const MAX_RENDERED_BYTES: usize = 64 << 10;

/// Checks that `source` uses only the accepted subset: text with `{{ path }}` or
/// `{{ path | filter | filter(literal, …) }}`, where a path is a name followed by
/// `.name`, `[number]` or `["key"]`, a filter one of [`FILTERS`] and its arguments
/// string or number literals. No `{% %}` statements and no `{# #}` comments.
///
/// # Errors
/// What is not accepted, and where.
pub fn check_syntax(source: &str) -> Result<(), String> {
    if source.contains("{%") {
        return Err("statements (`{% … %}`) are not accepted in templates: use blocks (condition, set_variable) instead".to_owned());
    }
    if source.contains("{#") {
        return Err("comments (`{# … #}`) are not accepted in templates".to_owned());
    }
    let mut rest = source;
    while let Some(open) = rest.find("{{") {
        let after = rest.get(open + 2..).unwrap_or_default();
        let close = after
            .find("}}")
            .ok_or_else(|| "syntax error: `{{` without `}}`".to_owned())?;
        let expression = after.get(..close).unwrap_or_default();
        check_expression(expression.trim_matches(|c: char| c == '-' || c.is_whitespace()))
            .map_err(|why| format!("`{{{{{expression}}}}}`: {why}"))?;
        rest = after.get(close + 2..).unwrap_or_default();
    }
    Ok(())
}

fn check_expression(expression: &str) -> Result<(), String> {
    let mut parts = split_top_level(expression, '|').into_iter();
    let path = parts.next().unwrap_or_default().trim();
    check_path(path)?;
    if (path == "secrets" || path.starts_with("secrets.") || path.starts_with("secrets["))
        && parts.len() > 0
    {
        return Err(
            "a secret is used as it is, without filters: a transformed secret could not be \
             redacted from the records"
                .to_owned(),
        );
    }
    for filter in parts {
        let filter = filter.trim();
        let (name, arguments) = match filter.find('(') {
            Some(at) => {
                let arguments = filter
                    .get(at + 1..)
                    .and_then(|rest| rest.strip_suffix(')'))
                    .ok_or_else(|| format!("filter `{filter}` has unbalanced parentheses"))?;
                (filter.get(..at).unwrap_or_default().trim(), Some(arguments))
            }
            None => (filter, None),
        };
        if !FILTERS.contains(&name) {
            return Err(format!(
                "filter `{name}` is not accepted (accepted: {})",
                FILTERS.join(", ")
            ));
        }
        for argument in arguments
            .map(|arguments| split_top_level(arguments, ','))
            .unwrap_or_default()
        {
            let argument = argument.trim();
            if argument.is_empty() && arguments.is_some_and(|a| a.trim().is_empty()) {
                continue;
            }
            if !is_literal(argument) {
                return Err(format!(
                    "filter `{name}`: argument `{argument}` is not a string or number literal"
                ));
            }
        }
    }
    Ok(())
}

/// A dotted path with `[number]` and `["key"]` subscripts.
fn check_path(path: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "`{path}` is not a variable path (names, `.name`, `[0]`, `[\"key\"]`; no operators or calls)"
        )
    };
    let mut chars = path.chars().peekable();
    let mut expect_name = true;
    if path.is_empty() {
        return Err("an empty `{{ }}`".to_owned());
    }
    while let Some(c) = chars.next() {
        if expect_name {
            if !(c.is_ascii_alphabetic() || c == '_') {
                return Err(bad());
            }
            while chars
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
            {
                chars.next();
            }
            expect_name = false;
            continue;
        }
        match c {
            '.' => expect_name = true,
            '[' => {
                let mut inside = String::new();
                loop {
                    match chars.next() {
                        Some(']') => break,
                        Some(c) => inside.push(c),
                        None => return Err(bad()),
                    }
                }
                let inside = inside.trim();
                let index = !inside.is_empty() && inside.bytes().all(|b| b.is_ascii_digit());
                if !index && !is_string_literal(inside) {
                    return Err(bad());
                }
            }
            _ => return Err(bad()),
        }
    }
    if expect_name {
        return Err(bad());
    }
    Ok(())
}

fn is_string_literal(text: &str) -> bool {
    let quoted = |q: char| {
        text.len() >= 2
            && text.starts_with(q)
            && text.ends_with(q)
            && !text
                .get(1..text.len() - 1)
                .is_some_and(|inner| inner.contains(q) || inner.contains('\\'))
    };
    quoted('"') || quoted('\'')
}

fn is_literal(text: &str) -> bool {
    is_string_literal(text)
        || (!text.is_empty()
            && text
                .trim_start_matches('-')
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.'))
}

/// Splits on `separator` outside string literals and brackets.
fn split_top_level(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (at, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[') => depth += 1,
            (None, ')' | ']') => depth -= 1,
            (None, c) if c == separator && depth == 0 => {
                parts.push(text.get(start..at).unwrap_or_default());
                start = at + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(text.get(start..).unwrap_or_default());
    parts
}

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
                if matches!(text.as_str(), "." | "..") {
                    // A dot segment would walk the path (RFC 3986 §5.2.4), encoded or not.
                    return Err(minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("`{text}` may not be a URL value"),
                    ));
                }
                write!(out, "{}", utf8_percent_encode(&text, URL_COMPONENT))
                    .map_err(|_| minijinja::Error::from(minijinja::ErrorKind::WriteFailure))
            } else if value.is_none() && state.auto_escape() != AutoEscape::Json {
                // A JSON null (a missing input, a null in a response) prints as nothing,
                // not as `none`.
                Ok(())
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
        check_syntax(source)?;
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
        if !source.contains("{{") && !source.contains("{%") && !source.contains("{#") {
            return Ok(source.to_owned());
        }
        check_syntax(source)?;
        let name = match context {
            Context::Url => "url:template",
            Context::Json => "json:template",
            Context::Text | Context::Secret => "text:template",
        };
        let rendered =
            self.env
                .render_named_str(name, source, scope)
                .map_err(|error| match self.first_missing(source, scope) {
                    Some(missing) if error.kind() == minijinja::ErrorKind::UndefinedError => {
                        format!("`{missing}` is not set")
                    }
                    _ => describe(&error),
                })?;
        if rendered.len() > MAX_RENDERED_BYTES {
            return Err(format!(
                "the rendered value is {} bytes, over {MAX_RENDERED_BYTES}",
                rendered.len()
            ));
        }
        Ok(rendered)
    }
}

impl Templates {
    /// The first variable `source` reads that `scope` does not have (to name it in the
    /// error: the engine says only "undefined value").
    fn first_missing(&self, source: &str, scope: &minijinja::Value) -> Option<String> {
        let names = self.variables(source).ok()?;
        names.into_iter().find(|name| {
            let mut here = scope.clone();
            name.split('.').any(|segment| {
                here = here.get_attr(segment).unwrap_or_default();
                here.is_undefined()
            })
        })
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
        assert_eq!(error, "`contact.fields.surname` is not set");
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
                "{{contact.fields.name}} {{ vars.count | default(0) }} {{steps.a.response.body.data.url}}",
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
    fn only_paths_and_safe_filters_are_accepted() {
        for good in [
            "plain text",
            "{{contact.fields.name}}",
            "{{ contact.fields[\"full name\"] | upper }} {{vars.items[0]}}",
            "{{ vars.x | default('none') | trim }}",
            "{{- vars.x -}}",
        ] {
            assert_eq!(check_syntax(good), Ok(()), "{good}");
        }
        for bad in [
            "{% for a in range(1000) %}x{% endfor %}",
            "{{ 'x' * 100000000 }}",
            "{{ vars.a ~ vars.a }}",
            "{{ vars.a | replace('', 'xxxxxxxxxx') }}",
            "{{ range(10) }}",
            "{{ vars.a | default(vars.b) }}",
            "{{ vars.a.__class__() }}",
            "{# note #}",
            "{{ vars.a ",
            "{{ }}",
        ] {
            assert!(check_syntax(bad).is_err(), "{bad} was accepted");
            assert!(
                Templates::new()
                    .render(bad, Context::Text, &scope())
                    .is_err(),
                "{bad} rendered"
            );
        }
    }

    #[test]
    fn a_dot_segment_is_not_a_url_value() {
        let scope = minijinja::Value::from_serialize(json!({"vars": {"up": "..", "ok": "a.b"}}));
        let templates = Templates::new();
        assert!(
            templates
                .render("https://x.example/d/{{vars.up}}/n", Context::Url, &scope)
                .is_err()
        );
        assert_eq!(
            templates
                .render("https://x.example/d/{{vars.ok}}", Context::Url, &scope)
                .unwrap(),
            "https://x.example/d/a.b"
        );
    }
}
