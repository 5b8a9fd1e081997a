//! Verified answers: every request of a chaos run carries arguments unique to it, and the
//! harness knows what the fake server must answer to them.
//!
//! Without this, any HTTP 2xx counted as a success, and a "proxy" that answered `200 "ok"` to
//! everything without starting a single server passed every scenario. Now a success is a 2xx
//! whose body carries the right answer for *that* request; any other 2xx is a wrong answer
//! (an answer meant for another request, garbage passed on, a made-up body).
//!
//! How each tool of the fake is made unique (the request id is the harness's, from 0):
//!
//! | tool | arguments sent | right answer (the body, as mcpo maps one text item) |
//! | --- | --- | --- |
//! | `echo` | `message`: the scenario's text + ` [r<id>]` | exactly that string |
//! | `add` | `a`: the scenario's `a` + (id+1)·10⁶, `b` as written | the sum, a number |
//! | `slow`, `sleep` | `ms` as written, `tag`: `r<id>` | a text that contains `[r<id>]` |
//!
//! The same markers let a fake tell which harness request a call belongs to
//! ([`crate::fake::wire::request_of`]), so that the ledger and the decisions name requests.

use serde_json::{Map, Value, json};

use crate::fake::wire::{ADD_STRIDE, tag_of};

/// Tools whose answers the harness can check, with the arguments each needs.
pub const VERIFIABLE_TOOLS: &[(&str, &str)] = &[
    ("echo", "message (text)"),
    ("add", "a and b (whole numbers, each under half a million)"),
    ("slow", "ms (a whole number)"),
    ("sleep", "ms (a whole number)"),
];

/// What the body of a successful answer must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Exactly this text.
    Text(String),
    /// Exactly this number.
    Integer(i64),
    /// A text that contains `[tag]`.
    Tagged(String),
}

/// Why a call of the scenario cannot be made verifiable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error(
        "the harness checks every answer and cannot check the tool `{0}`; use one of: {list}",
        list = tool_list()
    )]
    UnknownTool(String),
    #[error("`{tool}` needs {needs}")]
    BadArgs { tool: String, needs: &'static str },
}

fn tool_list() -> String {
    VERIFIABLE_TOOLS
        .iter()
        .map(|(t, a)| format!("{t} ({a})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that a call of `tool` with `args` can be made unique and verified (the parser asks).
pub fn check_call(tool: &str, args: &Map<String, Value>) -> Result<(), AnswerError> {
    prepare(tool, args, 0).map(|_| ())
}

/// The arguments of request `id` for a call of `tool` with the scenario's `args`, and the
/// answer it must get.
pub fn prepare(
    tool: &str,
    args: &Map<String, Value>,
    id: u64,
) -> Result<(Map<String, Value>, Expected), AnswerError> {
    let needs = || AnswerError::BadArgs {
        tool: tool.to_string(),
        needs: VERIFIABLE_TOOLS
            .iter()
            .find(|(t, _)| *t == tool)
            .map_or("", |(_, a)| a),
    };
    let tag = tag_of(id);
    let mut out = args.clone();
    let expected = match tool {
        "echo" => {
            let message = args
                .get("message")
                .and_then(Value::as_str)
                .ok_or_else(needs)?;
            let unique = format!("{message} [{tag}]");
            out.insert("message".into(), json!(unique));
            Expected::Text(unique)
        }
        "add" => {
            let int = |k: &str| {
                args.get(k)
                    .and_then(Value::as_i64)
                    .filter(|n| n.abs() < ADD_STRIDE / 2)
            };
            let (a, b) = (int("a").ok_or_else(needs)?, int("b").ok_or_else(needs)?);
            let offset = i64::try_from(id)
                .ok()
                .and_then(|id| id.checked_add(1))
                .and_then(|n| n.checked_mul(ADD_STRIDE))
                .ok_or_else(needs)?;
            let a = a + offset;
            out.insert("a".into(), json!(a));
            Expected::Integer(a + b)
        }
        "slow" | "sleep" => {
            args.get("ms").and_then(Value::as_i64).ok_or_else(needs)?;
            out.insert("tag".into(), json!(tag));
            Expected::Tagged(tag)
        }
        other => return Err(AnswerError::UnknownTool(other.to_string())),
    };
    Ok((out, expected))
}

/// Whether an answer body carries the expected answer. The body is mcpo's mapping of the
/// tool's content (one text item bare, parsed as JSON when it is JSON); a proxy that passes
/// the MCP result through as it is (`{"content":[{"type":"text","text":...}]}`) is read too.
pub fn is_right(expected: &Expected, body: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let texts: Vec<&str> = value
        .get("content")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    match expected {
        Expected::Text(s) => value.as_str() == Some(s) || texts.contains(&s.as_str()),
        Expected::Integer(n) => {
            let text = n.to_string();
            value.as_i64() == Some(*n)
                || value.as_str() == Some(text.as_str())
                || texts.contains(&text.as_str())
        }
        Expected::Tagged(tag) => {
            let marker = format!("[{tag}]");
            value.as_str().is_some_and(|s| s.contains(&marker))
                || texts.iter().any(|t| t.contains(&marker))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::wire::request_of;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn each_request_gets_its_own_answer_and_a_fake_can_tell_which_request_it_is() {
        let echo = args(json!({"message": "hi"}));
        let (a7, e7) = prepare("echo", &echo, 7).unwrap();
        let (_, e8) = prepare("echo", &echo, 8).unwrap();
        assert_eq!(e7, Expected::Text("hi [r7]".into()));
        assert_ne!(e7, e8);
        assert_eq!(request_of("echo", &a7), Some(7));
        assert!(is_right(&e7, br#""hi [r7]""#));
        // Another request's answer, the arguments sent back, garbage: all wrong.
        assert!(!is_right(&e7, br#""hi [r8]""#));
        assert!(!is_right(&e7, br#"{"message":"hi [r7]"}"#));
        assert!(!is_right(&e7, b"ok"));
        assert!(!is_right(&e7, br#""ok""#));

        let add = args(json!({"a": 2, "b": 3}));
        let (a0, e0) = prepare("add", &add, 0).unwrap();
        let (a12, e12) = prepare("add", &add, 12).unwrap();
        assert_eq!(e0, Expected::Integer(1_000_005));
        assert_eq!(e12, Expected::Integer(13_000_005));
        assert_eq!(request_of("add", &a0), Some(0));
        assert_eq!(request_of("add", &a12), Some(12));
        assert!(is_right(&e12, b"13000005"));
        assert!(is_right(
            &e12,
            br#"{"content":[{"type":"text","text":"13000005"}]}"#
        ));
        assert!(!is_right(&e12, b"1000005"));
        assert!(!is_right(&e12, br#"{"a":13000002,"b":3}"#));

        let sleep = args(json!({"ms": 400}));
        let (s3, t3) = prepare("sleep", &sleep, 3).unwrap();
        assert_eq!(s3["tag"], "r3");
        assert_eq!(request_of("sleep", &s3), Some(3));
        assert!(is_right(&t3, br#""slept 400 ms [r3]""#));
        assert!(!is_right(&t3, br#""slept 400 ms [r31]""#));
        assert!(!is_right(&t3, br#""slept 400 ms""#));
    }

    #[test]
    fn calls_the_harness_cannot_check_are_refused() {
        assert!(matches!(
            check_call("whoami", &Map::new()),
            Err(AnswerError::UnknownTool(_))
        ));
        assert!(matches!(
            check_call("echo", &Map::new()),
            Err(AnswerError::BadArgs { .. })
        ));
        assert!(matches!(
            check_call("add", &args(json!({"a": 600_000, "b": 1}))),
            Err(AnswerError::BadArgs { .. })
        ));
        assert!(check_call("slow", &args(json!({"ms": 100}))).is_ok());
    }
}
