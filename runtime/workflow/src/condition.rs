//! The condition block's comparisons.
//!
//! A value is compared as text: a JSON string as it is, a number in its shortest form
//! (`2`, not `2.0`), `true`/`false`, null and absent as empty. `equals`, `not_equals`,
//! `one_of` and the number comparisons ignore leading and trailing white space (a chat
//! reply of `" 2 "` is the option `2`); `equals` compares as numbers when both sides are
//! numbers (`2` equals `2.0`). `contains` on a list (the contact's tags) asks whether
//! the list has the value.

use serde_json::Value;

use crate::definition::{Operator, Rule};

/// The compiled size a `matches` expression may reach (the `regex` crate's limit,
/// bounding memory for a tenant's pattern).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Whether `rule` holds for `left` (the value at its path, `None` when absent), given
/// its rendered `value` and `values`.
///
/// # Errors
/// A message when the comparison cannot be made: a bad regular expression (one built
/// from a template), a side that is not a number for `gt`/`gte`/`lt`/`lte`.
pub fn holds(
    rule: &Rule,
    left: Option<&Value>,
    value: Option<&str>,
    values: &[String],
) -> Result<bool, String> {
    let fold = |text: String| {
        if rule.ignore_case {
            text.to_lowercase()
        } else {
            text
        }
    };
    let left_text = fold(left.map(text_of).unwrap_or_default());
    let right_text = fold(value.unwrap_or_default().to_owned());
    Ok(match rule.op {
        Operator::Equals => same(&left_text, &right_text),
        Operator::NotEquals => !same(&left_text, &right_text),
        Operator::Contains => match left {
            Some(Value::Array(items)) => items
                .iter()
                .any(|item| same(&fold(text_of(item)), &right_text)),
            _ => left_text.contains(&right_text),
        },
        Operator::StartsWith => left_text.trim_start().starts_with(right_text.trim_start()),
        Operator::Matches => regex::RegexBuilder::new(value.unwrap_or_default())
            .case_insensitive(rule.ignore_case)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|error| format!("not a regular expression: {error}"))?
            .is_match(&left_text),
        Operator::IsEmpty => is_empty(left),
        Operator::IsNotEmpty => !is_empty(left),
        Operator::Exists => left.is_some_and(|value| !value.is_null()),
        Operator::Gt | Operator::Gte | Operator::Lt | Operator::Lte => {
            let a = number(&left_text).ok_or_else(|| format!("`{}` is not a number", rule.left))?;
            let b = number(&right_text).ok_or_else(|| format!("`{right_text}` is not a number"))?;
            match rule.op {
                Operator::Gt => a > b,
                Operator::Gte => a >= b,
                Operator::Lt => a < b,
                _ => a <= b,
            }
        }
        Operator::OneOf => values
            .iter()
            .any(|candidate| same(&left_text, &fold(candidate.clone()))),
    })
}

/// A JSON value as the text conditions and templates compare.
#[must_use]
pub fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        Value::Number(number) => match number.as_f64() {
            Some(float) if float.fract() == 0.0 && float.abs() < 9.0e15 => {
                format!("{float:.0}")
            }
            _ => number.to_string(),
        },
        other => other.to_string(),
    }
}

fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn number(text: &str) -> Option<f64> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|number| number.is_finite())
}

fn is_empty(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(text)) => text.trim().is_empty(),
        Some(Value::Array(items)) => items.is_empty(),
        Some(Value::Object(map)) => map.is_empty(),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use serde_json::json;

    use super::*;

    fn rule(op: Operator) -> Rule {
        Rule {
            left: "message.text".into(),
            op,
            value: None,
            values: Vec::new(),
            ignore_case: false,
        }
    }

    #[test]
    fn comparisons_follow_the_documented_rules() {
        let reply = json!(" 2 ");
        let eq = rule(Operator::Equals);
        assert!(holds(&eq, Some(&reply), Some("2"), &[]).unwrap());
        assert!(holds(&eq, Some(&json!(2.0)), Some("2"), &[]).unwrap());
        assert!(!holds(&eq, Some(&json!("Ana")), Some("ana"), &[]).unwrap());
        let eq_ci = Rule {
            ignore_case: true,
            ..rule(Operator::Equals)
        };
        assert!(holds(&eq_ci, Some(&json!("Ana")), Some("ana"), &[]).unwrap());

        let one_of = rule(Operator::OneOf);
        let options = ["1".to_owned(), "2".to_owned(), "3".to_owned()];
        assert!(holds(&one_of, Some(&reply), None, &options).unwrap());
        assert!(!holds(&one_of, Some(&json!("two")), None, &options).unwrap());

        let contains = rule(Operator::Contains);
        assert!(holds(&contains, Some(&json!(["lead", "vip"])), Some("vip"), &[]).unwrap());
        assert!(!holds(&contains, Some(&json!(["lead"])), Some("le"), &[]).unwrap());
        assert!(holds(&contains, Some(&json!("hello world")), Some("lo w"), &[]).unwrap());

        let matches = rule(Operator::Matches);
        assert!(
            holds(
                &matches,
                Some(&json!("a@b.example")),
                Some("^[^@]+@[^@]+$"),
                &[]
            )
            .unwrap()
        );
        assert!(holds(&matches, Some(&json!("x")), Some("("), &[]).is_err());

        assert!(holds(&rule(Operator::IsEmpty), None, None, &[]).unwrap());
        assert!(holds(&rule(Operator::IsEmpty), Some(&json!("  ")), None, &[]).unwrap());
        assert!(!holds(&rule(Operator::Exists), Some(&Value::Null), None, &[]).unwrap());
        assert!(holds(&rule(Operator::Exists), Some(&json!("")), None, &[]).unwrap());

        assert!(holds(&rule(Operator::Lt), Some(&json!(2)), Some("3"), &[]).unwrap());
        assert!(holds(&rule(Operator::Gte), Some(&json!("3")), Some("3"), &[]).unwrap());
        let error = holds(&rule(Operator::Gt), Some(&json!("many")), Some("3"), &[]).unwrap_err();
        assert!(error.contains("message.text"), "{error}");
    }

    #[test]
    fn numbers_read_as_text_in_their_shortest_form() {
        assert_eq!(text_of(&json!(2.0)), "2");
        assert_eq!(text_of(&json!(2.5)), "2.5");
        assert_eq!(text_of(&json!(true)), "true");
        assert_eq!(text_of(&Value::Null), "");
    }
}
