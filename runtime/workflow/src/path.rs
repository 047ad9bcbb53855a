//! Bracket keys and paths: how chat builders address JSON.
//!
//! - **Body keys** (the integration block's key/value pairs): `deal[name]` builds
//!   `{"deal":{"name":…}}`, `contacts[0][name]` builds `{"contacts":[{"name":…}]}`,
//!   `tags[]` appends to a list (each `[]` a new element), as PHP reads form keys.
//! - **Response paths** (`save`): `data.url`, `data[url]`, `{data[url]}` (the form the
//!   builders print in a message), `items[0].id` — all the same segments.

use serde_json::Value;

/// One step into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object member.
    Key(String),
    /// A list index.
    Index(usize),
    /// `[]`: append to a list (body keys only).
    Append,
}

/// The most segments a key or path may have (a body nested deeper is refused).
pub const MAX_DEPTH: usize = 32;
/// The highest list index a body key may name (a key like `a[99999999]` must not
/// allocate a list that long).
pub const MAX_INDEX: usize = 1_000;

/// Splits a body key or a response path into segments.
///
/// # Errors
/// A message naming the problem: empty, unbalanced brackets, an empty member name, too
/// deep, an index over [`MAX_INDEX`].
pub fn parse(text: &str) -> Result<Vec<Segment>, String> {
    let trimmed = text.trim();
    let inner = trimmed
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or(trimmed);
    if inner.is_empty() {
        return Err("is empty".to_owned());
    }
    let mut segments = Vec::new();
    let mut name = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                push_name(&mut segments, &mut name, text)?;
            }
            '[' => {
                if !name.is_empty() {
                    push_name(&mut segments, &mut name, text)?;
                }
                let mut inside = String::new();
                loop {
                    match chars.next() {
                        Some(']') => break,
                        Some('[') | None => return Err(format!("`{text}` has an unclosed `[`")),
                        Some(c) => inside.push(c),
                    }
                }
                segments.push(bracket(&inside, text)?);
                if let Some('.') = chars.peek() {
                    chars.next();
                    if chars.peek().is_none() || chars.peek() == Some(&'[') {
                        return Err(format!("`{text}` has an empty name after `.`"));
                    }
                }
            }
            ']' => return Err(format!("`{text}` has a `]` without `[`")),
            c => name.push(c),
        }
    }
    if !name.is_empty() {
        push_name(&mut segments, &mut name, text)?;
    } else if inner.ends_with('.') {
        return Err(format!("`{text}` ends with `.`"));
    }
    if segments.len() > MAX_DEPTH {
        return Err(format!("`{text}` is nested deeper than {MAX_DEPTH}"));
    }
    Ok(segments)
}

fn push_name(segments: &mut Vec<Segment>, name: &mut String, text: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("`{text}` has an empty name"));
    }
    segments.push(Segment::Key(std::mem::take(name)));
    Ok(())
}

fn bracket(inside: &str, text: &str) -> Result<Segment, String> {
    if inside.is_empty() {
        return Ok(Segment::Append);
    }
    if inside.bytes().all(|b| b.is_ascii_digit()) {
        let index: usize = inside
            .parse()
            .map_err(|_| format!("`{text}`: index {inside} is too large"))?;
        if index > MAX_INDEX {
            return Err(format!("`{text}`: index {index} is over {MAX_INDEX}"));
        }
        return Ok(Segment::Index(index));
    }
    Ok(Segment::Key(inside.to_owned()))
}

/// The value at `segments` in `value`, if there is one.
#[must_use]
pub fn lookup<'a>(value: &'a Value, segments: &[Segment]) -> Option<&'a Value> {
    segments
        .iter()
        .try_fold(value, |here, segment| match segment {
            Segment::Key(key) => match here {
                Value::Object(map) => map.get(key),
                // `items[0]` and `items.0` both reach into a list.
                Value::Array(list) => key.parse::<usize>().ok().and_then(|i| list.get(i)),
                _ => None,
            },
            Segment::Index(index) => here.as_array().and_then(|list| list.get(*index)),
            Segment::Append => None,
        })
}

/// A JSON document built from bracket keys, keeping members in the order the keys first
/// named them (`deal[name]` then `contacts[0][name]` gives `{"deal":…,"contacts":…}`),
/// which a sorted map would not.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Not placed yet (a list slot skipped by an index): written as `null`.
    Empty,
    /// A value.
    Leaf(Value),
    /// An object, members in order.
    Object(Vec<(String, Node)>),
    /// A list.
    List(Vec<Node>),
}

impl Node {
    /// The document as text, members in their order.
    #[must_use]
    pub fn to_json_string(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Self::Empty => out.push_str("null"),
            Self::Leaf(value) => out.push_str(&value.to_string()),
            Self::Object(members) => {
                out.push('{');
                for (i, (name, node)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(name.clone()).to_string());
                    out.push(':');
                    node.write(out);
                }
                out.push('}');
            }
            Self::List(items) => {
                out.push('[');
                for (i, node) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    node.write(out);
                }
                out.push(']');
            }
        }
    }
}

/// Builds a JSON document from bracket-keyed pairs, in order.
///
/// # Errors
/// A message naming the key when it cannot be placed: it does not parse, it is given
/// twice, or it contradicts an earlier key (`a` set to text, then `a[b]`; `a[0]` and
/// then `a[x]`).
pub fn build_json<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Result<Node, String> {
    let mut root = Node::Object(Vec::new());
    for (key, value) in pairs {
        let segments = parse(key).map_err(|error| format!("key {error}"))?;
        if !matches!(segments.first(), Some(Segment::Key(_))) {
            return Err(format!("key `{key}` must start with a name"));
        }
        place(&mut root, &segments, value, key)?;
    }
    Ok(root)
}

/// Every key of `keys` that cannot be placed, with its index and why, each checked
/// against the keys before it that could be (so one bad key does not hide the next).
#[must_use]
pub fn key_problems<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<(usize, String)> {
    let mut root = Node::Object(Vec::new());
    let mut problems = Vec::new();
    for (index, key) in keys.into_iter().enumerate() {
        let placed = parse(key)
            .map_err(|error| format!("key {error}"))
            .and_then(|segments| {
                if !matches!(segments.first(), Some(Segment::Key(_))) {
                    return Err(format!("key `{key}` must start with a name"));
                }
                // On a copy: a key that fails halfway leaves nothing behind.
                let mut trial = root.clone();
                place(&mut trial, &segments, Value::Bool(true), key)?;
                root = trial;
                Ok(())
            });
        if let Err(why) = placed {
            problems.push((index, why));
        }
    }
    problems
}

fn place(here: &mut Node, segments: &[Segment], value: Value, key: &str) -> Result<(), String> {
    let Some((first, rest)) = segments.split_first() else {
        if !matches!(here, Node::Empty) {
            return Err(format!("key `{key}` is given twice"));
        }
        *here = Node::Leaf(value);
        return Ok(());
    };
    let clash = || format!("key `{key}` contradicts an earlier key");
    match first {
        Segment::Key(name) => {
            if matches!(here, Node::Empty) {
                *here = Node::Object(Vec::new());
            }
            let Node::Object(members) = here else {
                return Err(clash());
            };
            let at = match members.iter().position(|(have, _)| have == name) {
                Some(at) => at,
                None => {
                    members.push((name.clone(), Node::Empty));
                    members.len() - 1
                }
            };
            let (_, slot) = members.get_mut(at).ok_or_else(clash)?;
            place(slot, rest, value, key)
        }
        Segment::Index(index) => {
            if matches!(here, Node::Empty) {
                *here = Node::List(Vec::new());
            }
            let Node::List(items) = here else {
                return Err(clash());
            };
            if items.len() <= *index {
                items.resize(index.saturating_add(1), Node::Empty);
            }
            let slot = items.get_mut(*index).ok_or_else(clash)?;
            place(slot, rest, value, key)
        }
        Segment::Append => {
            if matches!(here, Node::Empty) {
                *here = Node::List(Vec::new());
            }
            let Node::List(items) = here else {
                return Err(clash());
            };
            items.push(Node::Empty);
            let slot = items.last_mut().ok_or_else(clash)?;
            place(slot, rest, value, key)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use serde_json::json;

    use super::*;

    #[test]
    fn bracket_keys_nest_objects_and_lists() {
        let body = build_json([
            ("deal[name]", json!("Ana")),
            ("contacts[0][name]", json!("Ana")),
        ])
        .unwrap();
        assert_eq!(
            body.to_json_string(),
            r#"{"deal":{"name":"Ana"},"contacts":[{"name":"Ana"}]}"#
        );
        let appended = build_json([("tags[]", json!("a")), ("tags[]", json!("b"))]).unwrap();
        assert_eq!(appended.to_json_string(), r#"{"tags":["a","b"]}"#);
        let deep = build_json([
            ("z[b][1][c]", json!(1)),
            ("z[b][1][d]", json!("\"q\"")),
            ("a", json!(true)),
        ])
        .unwrap();
        assert_eq!(
            deep.to_json_string(),
            r#"{"z":{"b":[null,{"c":1,"d":"\"q\""}]},"a":true}"#
        );
    }

    #[test]
    fn contradicting_or_broken_keys_are_refused_with_the_key() {
        let clash = build_json([("a", json!("x")), ("a[b]", json!("y"))]).unwrap_err();
        assert!(clash.contains("a[b]"), "{clash}");
        let every = key_problems(["a", "a[b]", "c[0]", "c[x]", "d", "d", "e[0][", "f"]);
        let found: Vec<usize> = every.iter().map(|(index, _)| *index).collect();
        assert_eq!(found, [1, 3, 5, 6], "{every:?}");
        let twice = build_json([("a[b]", json!(1)), ("a[b]", json!(2))]).unwrap_err();
        assert!(twice.contains("twice"), "{twice}");
        assert!(
            build_json([("a[b", json!(1))])
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(
            build_json([("[0]", json!(1))])
                .unwrap_err()
                .contains("name")
        );
        assert!(
            build_json([("a[99999999]", json!(1))])
                .unwrap_err()
                .contains("over")
        );
    }

    #[test]
    fn every_path_form_reaches_the_same_value() {
        let response = json!({"data": {"url": "https://pay.example/slip/2", "items": [{"id": 7}]}});
        for form in ["data.url", "data[url]", "{data[url]}", " data[url] "] {
            let segments = parse(form).unwrap();
            assert_eq!(
                lookup(&response, &segments),
                Some(&json!("https://pay.example/slip/2")),
                "{form}"
            );
        }
        for form in ["data.items[0].id", "data[items][0][id]", "data.items.0.id"] {
            assert_eq!(
                lookup(&response, &parse(form).unwrap()),
                Some(&json!(7)),
                "{form}"
            );
        }
        assert_eq!(lookup(&response, &parse("data.missing").unwrap()), None);
        for bad in ["", "{}", "a..b", "a.", "a]", "a[b"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
