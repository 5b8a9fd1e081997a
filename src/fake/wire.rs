//! The fault hub's wire protocol: how a chaos run reaches every fake server it started, and
//! every one the proxy started or restarted for it.
//!
//! A fake started with `--hub ADDR --id NAME` opens one TCP connection to the harness (on
//! 127.0.0.1) and speaks line-delimited JSON on it:
//!
//! ```text
//! fake -> hub   {"type":"hello","id":"flaky","pid":4242,"transport":"stdio"}
//! hub  -> fake  {"type":"faults","active":[...]}          after hello, and on every change
//! hub  -> fake  {"type":"do","action":"crash"}            one-shot faults
//! fake -> hub   {"type":"decide","req":7,"fault":3}        a request met a per-request fault
//! hub  -> fake  {"type":"decision","req":7,"apply":true}
//! ```
//!
//! The hub sends the whole set of faults in force for that server on every change, with the
//! time each has left, so an instance that connects late (a stdio child the proxy just
//! restarted) picks up a window that is still open. Per-request faults with a probability are
//! decided by the hub with a pure draw keyed by the fault's seed, the harness request the call
//! belongs to and the attempt (see [`draw`]), so the same seed gives the same request the same
//! decision whatever order the calls arrive in, and a retry gets its own draw.
//!
//! This module is a leaf shared by the fake (`fake`) and the harness (`chaos`): types only.

use serde::{Deserialize, Serialize};

/// A message from a fake to the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FakeMessage {
    /// First message: who this instance is.
    Hello {
        id: String,
        pid: u32,
        transport: String,
    },
    /// A request met per-request fault `fault` (its index in the run); should it apply?
    /// `request` is the harness request the call belongs to, when its arguments say
    /// ([`request_of`]), so that the draw is keyed by the request and not by arrival order.
    Decide {
        req: u64,
        fault: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<u64>,
    },
    /// A `tools/call` arrived (the delivery ledger counts them per instance).
    Call {
        tool: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<u64>,
    },
    /// Fault `fault` changed what this instance did: a request it answered differently, a
    /// start it delayed or refused.
    Applied {
        fault: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<u64>,
    },
}

/// The stride of `add`'s first operand: request `id` sends `a + (id + 1) * ADD_STRIDE`, so that
/// every sum is unique and the request can be read back from `a`.
pub const ADD_STRIDE: i64 = 1_000_000;

/// The marker of harness request `id` in arguments and answers: `r<id>`.
pub fn tag_of(id: u64) -> String {
    format!("r{id}")
}

/// The harness request a tool call belongs to, read from the markers its arguments carry
/// (see `chaos::answers`); `None` for calls the harness did not make unique.
pub fn request_of(tool: &str, args: &serde_json::Map<String, serde_json::Value>) -> Option<u64> {
    let tag = |s: &str| s.strip_prefix('r').and_then(|n| n.parse::<u64>().ok());
    match tool {
        "echo" => {
            let message = args.get("message")?.as_str()?;
            let inner = message.strip_suffix(']')?;
            let (_, t) = inner.rsplit_once(" [")?;
            tag(t)
        }
        "add" => {
            let a = args.get("a")?.as_i64()?;
            let n = a.div_euclid(ADD_STRIDE);
            // `a` was the scenario's operand (under the stride) plus (id + 1) strides.
            let n = if a.rem_euclid(ADD_STRIDE) >= ADD_STRIDE / 2 {
                n + 1
            } else {
                n
            };
            u64::try_from(n).ok()?.checked_sub(1)
        }
        "slow" | "sleep" => tag(args.get("tag")?.as_str()?),
        _ => None,
    }
}

/// A message from the hub to a fake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HubMessage {
    /// The faults in force for this server now (replaces the previous set).
    Faults { active: Vec<WireFault> },
    /// A one-shot fault: act now.
    Do { action: OneShot },
    /// The answer to a [`FakeMessage::Decide`].
    Decision { req: u64, apply: bool },
}

/// One-shot faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OneShot {
    /// Exit at once.
    Crash,
    /// Forget every session (streamable HTTP).
    SessionLoss,
}

/// A windowed fault in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireFault {
    /// The fault's index in the run (for decisions and reports).
    pub index: usize,
    pub kind: WireKind,
    /// Share of requests affected (per-request kinds); 1 means every one and needs no decision.
    #[serde(default = "one")]
    pub probability: f64,
    /// Bare tool names the fault is limited to; empty means every tool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Milliseconds the window has left when the message is sent.
    pub remaining_ms: u64,
    /// The fault's own seed (from the run's seed and its index), for the values a fake
    /// draws itself: a latency, a garbage form.
    #[serde(default)]
    pub seed: u64,
    /// `scope: instance`: only sessions that finished their handshake before the fault
    /// reached this fake are affected; sessions (and processes) started later are healthy,
    /// so a proxy that replaces a hung or slow session gets a working one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub instance: bool,
}

fn one() -> f64 {
    1.0
}

/// What a windowed fault does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum WireKind {
    /// No answer until the window ends; the connection or pipe stays open.
    Hang,
    /// Each answer is delayed by a uniform draw from `min_ms..=max_ms`.
    Latency { min_ms: u64, max_ms: u64 },
    /// Answer HTTP `status` (streamable HTTP only).
    HttpError {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    /// Answer a JSON-RPC error.
    JsonrpcError {
        code: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Answer a tool result with `isError: true`.
    ToolError,
    /// Close the connection in the middle of the answer (streamable HTTP only).
    Reset,
    /// Answer a tool call with garbage in place of its answer, in one of `forms` (every form
    /// when empty), picked per request by [`draw`] (see `fake::garbage`).
    Garbage {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        forms: Vec<GarbageForm>,
    },
    /// `initialize` waits `delay_ms` (also on a restarted instance).
    SlowStart { delay_ms: u64 },
    /// The instance exits during start-up.
    Refuse,
}

/// What a `garbage` fault sends in place of a tool call's answer. Each reaches the JSON-RPC
/// client as the one message it gets for its request: the real answer is never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GarbageForm {
    /// A line (stdio) or an event (HTTP) that is not JSON at all.
    Text,
    /// Valid JSON that is not a JSON-RPC message (no `jsonrpc`, no `id`).
    NotJsonrpc,
    /// A well-formed response, for an id the client never used.
    WrongId,
    /// A response for the right id whose `result` is not a tool result.
    MalformedResult,
    /// The answer's first half; the rest is never sent.
    CutAnswer,
}

impl GarbageForm {
    /// Every form, in the order a mix draws from.
    pub const ALL: [GarbageForm; 5] = [
        GarbageForm::Text,
        GarbageForm::NotJsonrpc,
        GarbageForm::WrongId,
        GarbageForm::MalformedResult,
        GarbageForm::CutAnswer,
    ];

    /// The spelling in scenario files and on the wire.
    pub fn label(self) -> &'static str {
        match self {
            GarbageForm::Text => "text",
            GarbageForm::NotJsonrpc => "not-jsonrpc",
            GarbageForm::WrongId => "wrong-id",
            GarbageForm::MalformedResult => "malformed-result",
            GarbageForm::CutAnswer => "cut-answer",
        }
    }

    pub fn from_label(label: &str) -> Option<GarbageForm> {
        GarbageForm::ALL.into_iter().find(|f| f.label() == label)
    }
}

/// A draw as a share of 1, for a probability: `unit(x) < p` hits with chance `p`.
pub fn unit(x: u64) -> f64 {
    // The top 53 bits, as many as an f64 holds exactly.
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// A pure draw keyed by `key`: the same key gives the same number in every process and run,
/// so a choice made with it depends on what it is about (a fault, a request, an attempt) and
/// never on the order in which requests arrived. SplitMix64's finaliser over each word.
pub fn draw(key: &[u64]) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    key.iter().fold(0x9e37_79b9_7f4a_7c15, |h, k| {
        mix(h.wrapping_add(0x9e37_79b9_7f4a_7c15) ^ k)
    })
}

impl WireKind {
    /// Kinds that act on requests one by one (and may have a probability and a tool filter).
    pub fn is_per_request(&self) -> bool {
        !matches!(self, WireKind::SlowStart { .. } | WireKind::Refuse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_documented() {
        let hello: FakeMessage =
            serde_json::from_str(r#"{"type":"hello","id":"flaky","pid":4242,"transport":"stdio"}"#)
                .unwrap();
        assert_eq!(
            hello,
            FakeMessage::Hello {
                id: "flaky".into(),
                pid: 4242,
                transport: "stdio".into()
            }
        );
        let crash = serde_json::to_string(&HubMessage::Do {
            action: OneShot::Crash,
        })
        .unwrap();
        assert_eq!(crash, r#"{"type":"do","action":"crash"}"#);
        let faults = HubMessage::Faults {
            active: vec![WireFault {
                index: 3,
                kind: WireKind::HttpError {
                    status: 500,
                    retry_after: None,
                },
                probability: 0.8,
                tools: vec![],
                remaining_ms: 9000,
                seed: 0,
                instance: false,
            }],
        };
        let text = serde_json::to_string(&faults).unwrap();
        assert!(text.contains(r#""kind":"http-error""#), "{text}");
        assert_eq!(serde_json::from_str::<HubMessage>(&text).unwrap(), faults);
    }
}
