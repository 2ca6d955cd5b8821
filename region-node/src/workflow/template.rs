//! Templates of the step language: `{{trigger.x}}` and `{{steps.<id>.output.x}}`.
//!
//! A string that is exactly one reference (`"{{steps.fetch.output.id}}"`) becomes the
//! referenced JSON value itself, so numbers, objects and arrays keep their type; any other
//! string has each reference replaced by the value's text (a string as is, anything else as
//! compact JSON). Objects and arrays are rendered member by member. A reference to nothing
//! is an error naming the path, never an empty string: a step that reads a missing field
//! fails with a reason instead of sending half a request.

use serde_json::Value;

/// Why a template cannot be rendered (or is malformed).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TemplateError {
    /// `{{` without its `}}`, or an empty reference.
    Malformed(String),
    /// The reference names nothing in the context.
    Missing(String),
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(s) => write!(f, "malformed template: {s}"),
            Self::Missing(p) => write!(f, "{p}: no such value"),
        }
    }
}

/// The references of one string, in order (trimmed), or why the string is malformed.
pub(crate) fn refs(s: &str) -> Result<Vec<&str>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| TemplateError::Malformed("`{{` without `}}`".into()))?;
        let path = after[..end].trim();
        if path.is_empty() {
            return Err(TemplateError::Malformed("empty `{{}}`".into()));
        }
        out.push(path);
        rest = &after[end + 2..];
    }
    Ok(out)
}

/// Every reference inside a JSON value (strings of objects and arrays, recursively).
pub(crate) fn refs_in(v: &Value, out: &mut Vec<String>) -> Result<(), TemplateError> {
    match v {
        Value::String(s) => out.extend(refs(s)?.into_iter().map(str::to_owned)),
        Value::Array(a) => {
            for x in a {
                refs_in(x, out)?;
            }
        }
        Value::Object(o) => {
            for x in o.values() {
                refs_in(x, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The value at a dotted path (`steps.fetch.output.items.0.id`): object keys, or array
/// indexes for a segment of digits.
pub(crate) fn lookup<'v>(ctx: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(ctx, |cur, seg| match cur {
        Value::Object(o) => o.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// The text a value contributes inside a larger string.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders one string against `ctx`.
///
/// # Errors
/// A malformed template or a reference to nothing.
pub(crate) fn render_str(s: &str, ctx: &Value) -> Result<Value, TemplateError> {
    let trimmed = s.trim();
    if let Some(inner) = trimmed
        .strip_prefix("{{")
        .and_then(|t| t.strip_suffix("}}"))
    {
        if !inner.contains("{{") && !inner.contains("}}") {
            let path = inner.trim();
            if path.is_empty() {
                return Err(TemplateError::Malformed("empty `{{}}`".into()));
            }
            return lookup(ctx, path)
                .cloned()
                .ok_or_else(|| TemplateError::Missing(path.to_owned()));
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| TemplateError::Malformed("`{{` without `}}`".into()))?;
        let path = after[..end].trim();
        let v = lookup(ctx, path).ok_or_else(|| TemplateError::Missing(path.to_owned()))?;
        out.push_str(&text(v));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

/// Renders every string of a JSON value against `ctx`.
///
/// # Errors
/// The first malformed template or missing reference.
pub(crate) fn render(v: &Value, ctx: &Value) -> Result<Value, TemplateError> {
    Ok(match v {
        Value::String(s) => render_str(s, ctx)?,
        Value::Array(a) => {
            Value::Array(a.iter().map(|x| render(x, ctx)).collect::<Result<_, _>>()?)
        }
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), render(x, ctx)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({"trigger": {"name": "Ada", "n": 3},
               "steps": {"fetch": {"output": {"id": 42, "items": [{"x": "a"}, {"x": "b"}]}}}})
    }

    #[test]
    fn whole_reference_keeps_the_type() {
        assert_eq!(
            render_str("{{steps.fetch.output.id}}", &ctx()).unwrap(),
            json!(42)
        );
        assert_eq!(
            render_str(" {{ steps.fetch.output.items }} ", &ctx()).unwrap(),
            json!([{"x": "a"}, {"x": "b"}])
        );
    }

    #[test]
    fn interpolation_and_indexes() {
        assert_eq!(
            render_str(
                "hi {{trigger.name}} #{{steps.fetch.output.id}} {{steps.fetch.output.items.1.x}}",
                &ctx()
            )
            .unwrap(),
            json!("hi Ada #42 b")
        );
        assert_eq!(
            render(&json!({"a": ["{{trigger.n}}", 1]}), &ctx()).unwrap(),
            json!({"a": [3, 1]})
        );
    }

    #[test]
    fn missing_and_malformed_are_errors() {
        assert_eq!(
            render_str("{{trigger.nope}}", &ctx()),
            Err(TemplateError::Missing("trigger.nope".into()))
        );
        assert!(matches!(
            render_str("x {{trigger.name", &ctx()),
            Err(TemplateError::Malformed(_))
        ));
        assert!(refs("{{}}").is_err());
        assert_eq!(
            refs("a {{ trigger.x }} b {{steps.s.output}}").unwrap(),
            vec!["trigger.x", "steps.s.output"]
        );
    }

    proptest! {
        /// Text without braces renders to itself; a rendered reference to a string field is
        /// exactly that string wherever it sits.
        #[test]
        fn plain_text_is_unchanged(s in "[^{}]{0,64}", v in "[^{}]{0,32}") {
            let c = json!({"trigger": {"v": v.clone()}});
            prop_assert_eq!(render_str(&s, &c).unwrap(), Value::String(s.clone()));
            let t = format!("{s}{{{{trigger.v}}}}{s}");
            let expected = if s.trim().is_empty() { Value::String(v.clone()) } else { Value::String(format!("{s}{v}{s}")) };
            prop_assert_eq!(render_str(&t, &c).unwrap(), expected);
        }
    }
}
