//! The step language: a workflow's `definition.steps`, parsed and validated.
//!
//! Parsed by hand from the stored JSON (not serde) so that every refusal names the exact
//! field, `definition.steps[2].retries.max`, in the 422 the customer sees. The same parser
//! reads a definition at `POST`/`PATCH` (refusing it) and in the worker (which then only
//! meets definitions that were valid when saved). Step order is execution order; a
//! `condition` may only jump forward, so every run ends after at most `steps.len()` steps.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::template;

/// Most steps in one workflow.
pub(crate) const MAX_STEPS: usize = 50;
/// Longest per-step timeout, in seconds.
pub(crate) const MAX_TIMEOUT_SECONDS: u64 = 300;
/// Timeout of a step that names none.
pub(crate) const DEFAULT_TIMEOUT_SECONDS: u64 = 30;
/// Most retries of one step.
pub(crate) const MAX_RETRIES: u32 = 10;
/// Longest base backoff, and longest single backoff after doubling.
pub(crate) const MAX_BACKOFF_SECONDS: u64 = 3600;
/// Longest `delay`.
pub(crate) const MAX_DELAY_SECONDS: u64 = 86_400;

/// A parsed definition.
#[derive(Debug, Clone)]
pub(crate) struct Definition {
    /// The steps, in execution order.
    pub(crate) steps: Vec<Step>,
}

/// One step.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    /// Unique within the workflow; how later steps reference its output.
    pub(crate) id: String,
    /// What it does.
    pub(crate) kind: StepKind,
    /// How long one attempt may take.
    pub(crate) timeout: Duration,
    /// Retries after a failed attempt.
    pub(crate) retries: Retries,
}

/// Retry policy of a step: `max` more attempts, waiting `backoff * 2^(n-1)` (capped, with
/// jitter) before attempt `n + 1`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retries {
    /// Retries after the first attempt.
    pub(crate) max: u32,
    /// Base wait before the first retry.
    pub(crate) backoff: Duration,
}

/// Where a `condition` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// The following step.
    Continue,
    /// The run ends (succeeded).
    End,
    /// The step with this id (always a later one).
    Step(String),
}

/// A comparison of a `condition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Lt,
    Contains,
    Exists,
    Missing,
}

impl Op {
    const NAMES: &'static str = "eq, ne, gt, lt, contains, exists, missing";

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "eq" => Self::Eq,
            "ne" => Self::Ne,
            "gt" => Self::Gt,
            "lt" => Self::Lt,
            "contains" => Self::Contains,
            "exists" => Self::Exists,
            "missing" => Self::Missing,
            _ => return None,
        })
    }

    /// Whether `value` (None: the reference names nothing) compares true with `to`.
    pub(crate) fn holds(self, value: Option<&Value>, to: &Value) -> bool {
        let num = |v: &Value| match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match (self, value) {
            (Self::Exists, v) => v.is_some_and(|v| !v.is_null()),
            (Self::Missing, v) => v.is_none_or(Value::is_null),
            (_, None) => false,
            (Self::Eq, Some(v)) => v == to || template::text(v) == template::text(to),
            (Self::Ne, Some(v)) => !(v == to || template::text(v) == template::text(to)),
            (Self::Gt, Some(v)) => matches!((num(v), num(to)), (Some(a), Some(b)) if a > b),
            (Self::Lt, Some(v)) => matches!((num(v), num(to)), (Some(a), Some(b)) if a < b),
            (Self::Contains, Some(Value::Array(a))) => a.contains(to),
            (Self::Contains, Some(v)) => template::text(v).contains(&template::text(to)),
        }
    }
}

/// What a step does.
#[derive(Debug, Clone)]
pub(crate) enum StepKind {
    /// Calls an enabled action of one of the customer's connections.
    Action {
        /// The connection; None: the workflow's own `connection_id`.
        connection_id: Option<Uuid>,
        /// The action name (`post_message`; `slack.post_message` is accepted and checked
        /// against the connection's connector).
        action: String,
        /// The request body (or query for `GET`), a template.
        input: Value,
    },
    /// Builds an output object from templates.
    Transform {
        /// The output, a template.
        output: Value,
    },
    /// Compares a template value and branches.
    Condition {
        /// The value compared: a template, usually one reference.
        value: String,
        /// The comparison.
        op: Op,
        /// What it is compared with (a template too).
        to: Value,
        /// Where to go when it holds.
        then: Next,
        /// Where to go when it does not.
        otherwise: Next,
    },
    /// Waits, without holding a worker.
    Delay {
        /// How long.
        seconds: u64,
    },
}

impl StepKind {
    /// The `type` name.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Action { .. } => "action",
            Self::Transform { .. } => "transform",
            Self::Condition { .. } => "condition",
            Self::Delay { .. } => "delay",
        }
    }
}

/// A refusal: the field (below `definition`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    /// `definition.steps[2].action`.
    pub(crate) field: String,
    /// Why.
    pub(crate) reason: String,
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn is_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

const KNOWN: [(&str, &[&str]); 4] = [
    ("action", &["connection_id", "action", "input"]),
    ("transform", &["output"]),
    ("condition", &["value", "op", "to", "then", "else"]),
    ("delay", &["seconds"]),
];
const COMMON: [&str; 4] = ["id", "type", "timeout_seconds", "retries"];

fn seconds(
    o: &Map<String, Value>,
    f: &str,
    key: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, Invalid> {
    match o.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(bad(
                format!("{f}.{key}"),
                format!("must be an integer from {min} to {max}"),
            )),
        },
    }
}

fn next(o: &Map<String, Value>, f: &str, key: &str) -> Result<Next, Invalid> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(Next::Continue),
        Some(Value::String(s)) if s == "end" => Ok(Next::End),
        Some(Value::String(s)) => Ok(Next::Step(s.clone())),
        Some(_) => Err(bad(
            format!("{f}.{key}"),
            "must be a later step's id or \"end\"",
        )),
    }
}

fn parse_step(i: usize, v: &Value) -> Result<Step, Invalid> {
    let f = format!("definition.steps[{i}]");
    let o = v.as_object().ok_or_else(|| bad(&f, "must be an object"))?;
    let id = match o.get("id") {
        Some(Value::String(s)) if is_id(s) && s != "end" => s.clone(),
        Some(Value::String(s)) if s == "end" => {
            return Err(bad(format!("{f}.id"), "\"end\" is reserved"))
        }
        _ => {
            return Err(bad(
                format!("{f}.id"),
                "required: 1-63 of [a-z0-9_], starting with a letter",
            ))
        }
    };
    let ty = o.get("type").and_then(Value::as_str).unwrap_or_default();
    let Some((_, fields)) = KNOWN.iter().find(|(n, _)| *n == ty) else {
        return Err(bad(
            format!("{f}.type"),
            "must be one of action, transform, condition, delay",
        ));
    };
    if let Some(k) = o
        .keys()
        .find(|k| !COMMON.contains(&k.as_str()) && !fields.contains(&k.as_str()))
    {
        return Err(bad(
            format!("{f}.{k}"),
            format!("not a field of a {ty} step"),
        ));
    }
    let timeout = seconds(o, &f, "timeout_seconds", 1, MAX_TIMEOUT_SECONDS)?
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    let retries = match o.get("retries") {
        None => Retries {
            max: 0,
            backoff: Duration::from_secs(1),
        },
        Some(Value::Object(r)) => {
            let rf = format!("{f}.retries");
            if let Some(k) = r.keys().find(|k| *k != "max" && *k != "backoff_seconds") {
                return Err(bad(format!("{rf}.{k}"), "not a field of retries"));
            }
            let max = seconds(r, &rf, "max", 0, u64::from(MAX_RETRIES))?.unwrap_or(0);
            let backoff = seconds(r, &rf, "backoff_seconds", 1, MAX_BACKOFF_SECONDS)?.unwrap_or(1);
            Retries {
                max: u32::try_from(max).unwrap_or(MAX_RETRIES),
                backoff: Duration::from_secs(backoff),
            }
        }
        Some(_) => return Err(bad(format!("{f}.retries"), "must be an object")),
    };
    let kind = match ty {
        "action" => {
            let connection_id = match o.get("connection_id") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(
                    Uuid::parse_str(s)
                        .map_err(|_| bad(format!("{f}.connection_id"), "must be a uuid"))?,
                ),
                Some(_) => return Err(bad(format!("{f}.connection_id"), "must be a uuid")),
            };
            let action = match o.get("action") {
                Some(Value::String(s)) if !s.is_empty() && s.len() <= 130 => s.clone(),
                _ => {
                    return Err(bad(
                        format!("{f}.action"),
                        "required: an action of the connection's connector",
                    ))
                }
            };
            let input = o.get("input").cloned().unwrap_or(Value::Object(Map::new()));
            if !input.is_object() {
                return Err(bad(format!("{f}.input"), "must be an object"));
            }
            StepKind::Action {
                connection_id,
                action,
                input,
            }
        }
        "transform" => {
            let output = o
                .get("output")
                .filter(|v| v.is_object())
                .cloned()
                .ok_or_else(|| bad(format!("{f}.output"), "required: an object"))?;
            StepKind::Transform { output }
        }
        "condition" => {
            let value = o
                .get("value")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("{f}.value"), "required: a template string"))?
                .to_owned();
            let op = o
                .get("op")
                .and_then(Value::as_str)
                .and_then(Op::parse)
                .ok_or_else(|| bad(format!("{f}.op"), format!("must be one of {}", Op::NAMES)))?;
            let to = o.get("to").cloned().unwrap_or(Value::Null);
            if to.is_null() && !matches!(op, Op::Exists | Op::Missing) {
                return Err(bad(format!("{f}.to"), "required for this op"));
            }
            StepKind::Condition {
                value,
                op,
                to,
                then: next(o, &f, "then")?,
                otherwise: next(o, &f, "else")?,
            }
        }
        _ => StepKind::Delay {
            seconds: seconds(o, &f, "seconds", 1, MAX_DELAY_SECONDS)?
                .ok_or_else(|| bad(format!("{f}.seconds"), "required"))?,
        },
    };
    Ok(Step {
        id,
        kind,
        timeout: Duration::from_secs(timeout),
        retries,
    })
}

/// Checks that every reference of step `i` names the trigger or an earlier step's output.
fn check_refs(i: usize, step: &Step, earlier: &HashSet<&str>) -> Result<(), Invalid> {
    let f = format!("definition.steps[{i}]");
    let (field, values): (&str, Vec<&Value>) = match &step.kind {
        StepKind::Action { input, .. } => ("input", vec![input]),
        StepKind::Transform { output } => ("output", vec![output]),
        StepKind::Condition { to, .. } => ("to", vec![to]),
        StepKind::Delay { .. } => return Ok(()),
    };
    let mut found = Vec::new();
    let cond_value;
    if let StepKind::Condition { value, .. } = &step.kind {
        cond_value = Value::String(value.clone());
        template::refs_in(&cond_value, &mut found)
            .map_err(|e| bad(format!("{f}.value"), e.to_string()))?;
        for r in &found {
            check_ref(r, earlier).map_err(|why| bad(format!("{f}.value"), why))?;
        }
        found.clear();
    }
    for v in values {
        template::refs_in(v, &mut found).map_err(|e| bad(format!("{f}.{field}"), e.to_string()))?;
    }
    for r in &found {
        check_ref(r, earlier).map_err(|why| bad(format!("{f}.{field}"), why))?;
    }
    Ok(())
}

fn check_ref(r: &str, earlier: &HashSet<&str>) -> Result<(), String> {
    let mut parts = r.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("trigger"), _, _) => Ok(()),
        (Some("steps"), Some(id), Some("output")) if earlier.contains(id) => Ok(()),
        (Some("steps"), Some(id), Some("output")) => Err(format!(
            "{{{{{r}}}}} refers to step {id:?}, which is not an earlier step"
        )),
        _ => Err(format!(
            "{{{{{r}}}}}: a reference is trigger.<field> or steps.<id>.output[.<field>]"
        )),
    }
}

/// Parses and validates `definition` (the whole object; only `steps` is read, other keys are
/// kept as the customer's own annotations; no `steps` is a workflow without steps).
///
/// # Errors
/// The first problem, naming its field.
pub(crate) fn parse(definition: &Map<String, Value>) -> Result<Definition, Invalid> {
    // No `steps`: a workflow that does nothing yet (a run of it succeeds at once).
    let empty = Vec::new();
    let steps = match definition.get("steps") {
        Some(Value::Array(a)) => a,
        None => &empty,
        Some(_) => return Err(bad("definition.steps", "must be an array of steps")),
    };
    if steps.len() > MAX_STEPS {
        return Err(bad(
            "definition.steps",
            format!("at most {MAX_STEPS} steps"),
        ));
    }
    let parsed = steps
        .iter()
        .enumerate()
        .map(|(i, s)| parse_step(i, s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut earlier: HashSet<&str> = HashSet::new();
    for (i, s) in parsed.iter().enumerate() {
        if earlier.contains(s.id.as_str()) {
            return Err(bad(
                format!("definition.steps[{i}].id"),
                format!("{:?} is already the id of an earlier step", s.id),
            ));
        }
        check_refs(i, s, &earlier)?;
        if let StepKind::Condition {
            then, otherwise, ..
        } = &s.kind
        {
            for (key, target) in [("then", then), ("else", otherwise)] {
                if let Next::Step(t) = target {
                    let later = parsed[i + 1..].iter().any(|x| &x.id == t);
                    if !later {
                        return Err(bad(
                            format!("definition.steps[{i}].{key}"),
                            format!("{t:?} is not a later step (conditions jump forward only)"),
                        ));
                    }
                }
            }
        }
        earlier.insert(&s.id);
    }
    Ok(Definition { steps: parsed })
}

impl Definition {
    /// The index of the step with this id.
    pub(crate) fn index_of(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }
}

/// The wait before retry `n` (1-based) of a step: `backoff * 2^(n-1)`, capped at
/// [`MAX_BACKOFF_SECONDS`], then scaled by `jitter` in [0.5, 1] so retries of many runs that
/// failed together spread out.
pub(crate) fn backoff(retries: Retries, n: u32, jitter: f64) -> Duration {
    let base = retries.backoff.as_secs_f64()
        * 2f64.powi(i32::try_from(n.saturating_sub(1)).unwrap_or(30).min(30));
    let capped = base.min(MAX_BACKOFF_SECONDS as f64);
    Duration::from_secs_f64(capped * jitter.clamp(0.5, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(v: Value) -> Result<Definition, Invalid> {
        parse(v.as_object().unwrap())
    }

    fn field(v: Value) -> String {
        def(v).unwrap_err().field
    }

    #[test]
    fn a_three_step_workflow_parses() {
        let d = def(json!({"steps": [
            {"id": "fetch", "type": "action", "action": "search_companies",
             "input": {"q": "{{trigger.company}}"}, "timeout_seconds": 5,
             "retries": {"max": 2, "backoff_seconds": 1}},
            {"id": "shape", "type": "transform", "output": {"text": "found {{steps.fetch.output.total}}"}},
            {"id": "check", "type": "condition", "value": "{{steps.fetch.output.total}}", "op": "gt", "to": 0, "else": "end"},
            {"id": "wait", "type": "delay", "seconds": 10},
            {"id": "notify", "type": "action", "action": "slack.post_message", "input": {"text": "{{steps.shape.output.text}}"}}
        ]}))
        .unwrap();
        assert_eq!(d.steps.len(), 5);
        assert_eq!(d.steps[0].retries.max, 2);
        assert_eq!(d.steps[0].timeout, Duration::from_secs(5));
        assert_eq!(d.index_of("notify"), Some(4));
    }

    #[test]
    fn refusals_name_the_step_and_field() {
        assert!(def(json!({})).unwrap().steps.is_empty());
        assert_eq!(field(json!({"steps": 5})), "definition.steps");
        assert_eq!(field(json!({"steps": [1]})), "definition.steps[0]");
        assert_eq!(
            field(json!({"steps": [{"type": "delay", "seconds": 1}]})),
            "definition.steps[0].id"
        );
        assert_eq!(
            field(json!({"steps": [{"id": "a", "type": "nap"}]})),
            "definition.steps[0].type"
        );
        assert_eq!(
            field(
                json!({"steps": [{"id": "a", "type": "delay", "seconds": 1}, {"id": "b", "type": "action"}]})
            ),
            "definition.steps[1].action"
        );
        assert_eq!(
            field(json!({"steps": [{"id": "a", "type": "delay", "seconds": 0}]})),
            "definition.steps[0].seconds"
        );
        assert_eq!(
            field(
                json!({"steps": [{"id": "a", "type": "delay", "seconds": 1, "retries": {"max": 99}}]})
            ),
            "definition.steps[0].retries.max"
        );
        assert_eq!(
            field(json!({"steps": [{"id": "a", "type": "delay", "seconds": 1, "extra": 1}]})),
            "definition.steps[0].extra"
        );
        assert_eq!(
            field(
                json!({"steps": [{"id": "a", "type": "delay", "seconds": 1}, {"id": "a", "type": "delay", "seconds": 1}]})
            ),
            "definition.steps[1].id"
        );
    }

    #[test]
    fn references_must_be_earlier_steps_and_jumps_forward() {
        let e = def(json!({"steps": [
            {"id": "a", "type": "transform", "output": {"x": "{{steps.b.output.y}}"}},
            {"id": "b", "type": "transform", "output": {}}
        ]}))
        .unwrap_err();
        assert_eq!(e.field, "definition.steps[0].output");
        assert!(e.reason.contains("not an earlier step"), "{e:?}");
        assert_eq!(
            field(
                json!({"steps": [{"id": "a", "type": "transform", "output": {"x": "{{secrets.k}}"}}]})
            ),
            "definition.steps[0].output"
        );
        assert_eq!(
            field(json!({"steps": [
                {"id": "a", "type": "delay", "seconds": 1},
                {"id": "c", "type": "condition", "value": "{{trigger.x}}", "op": "exists", "then": "a"}
            ]})),
            "definition.steps[1].then"
        );
        assert_eq!(
            field(
                json!({"steps": [{"id": "c", "type": "condition", "value": "{{trigger.x", "op": "exists"}]})
            ),
            "definition.steps[0].value"
        );
    }

    #[test]
    fn ops_and_backoff() {
        assert!(Op::Gt.holds(Some(&json!("3")), &json!(2)));
        assert!(!Op::Gt.holds(None, &json!(2)));
        assert!(Op::Eq.holds(Some(&json!(1)), &json!("1")));
        assert!(Op::Missing.holds(None, &Value::Null));
        assert!(Op::Contains.holds(Some(&json!(["a", "b"])), &json!("b")));
        let r = Retries {
            max: 3,
            backoff: Duration::from_secs(2),
        };
        assert_eq!(backoff(r, 1, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(r, 3, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(r, 3, 0.5), Duration::from_secs(4));
        assert_eq!(
            backoff(r, 40, 1.0),
            Duration::from_secs(MAX_BACKOFF_SECONDS)
        );
    }
}
