//! What a `garbage` fault makes of a tool call's answer (`wire::GarbageForm`), the same on
//! every transport: the stdio writer (`stdio`), an SSE session's stream (`sse`) and the
//! streamable-HTTP layer (`control`) each hand the answer they were about to send to [`mangle`]
//! and send what it returns in its place. The real answer is never sent, so whatever the form,
//! the client's request gets garbage or nothing: a proxy must time it out or call it an error,
//! never pass it on as a success.

use serde_json::{Value, json};

use super::wire::GarbageForm;

/// The `text` form: no JSON at all, so a client's parser fails on its first byte.
pub const TEXT: &str = "this is not json-rpc";

/// The form one request gets from a fault that allows `forms` (every form when empty), chosen
/// by `pick` (a keyed draw, so the same request gets the same garbage in every run), and what
/// is left of the draw to choose among the malformed results.
pub fn choose(forms: &[GarbageForm], pick: u64) -> (GarbageForm, u64) {
    let forms: &[GarbageForm] = if forms.is_empty() {
        &GarbageForm::ALL
    } else {
        forms
    };
    // `forms` is never empty here; the modulo keeps the index in range whatever the draw.
    let form = forms
        .get((pick % forms.len() as u64) as usize)
        .copied()
        .unwrap_or(GarbageForm::Text);
    (form, pick >> 8)
}

/// Results that are not a tool result, each the kind of mistake a buggy server makes; a
/// client must see each as an error. Which one is the draw's business.
fn malformed(pick: u64) -> Value {
    match pick % 3 {
        0 => json!({"content": "injected fault: garbage (content that is not a list)"}),
        // A text block without its text.
        1 => json!({"content": [{"type": "text"}]}),
        _ => json!("injected fault: garbage (a result that is not an object)"),
    }
}

/// The text sent in place of `answer` (a JSON-RPC response or error, serialised on one
/// line), without a line end. `answer` is the real one (stdio, SSE) or a stand-in with the
/// request's id (streamable HTTP, where the fault acts before the call reaches the server).
pub fn mangle(form: GarbageForm, pick: u64, answer: &str) -> String {
    let parsed = serde_json::from_str::<Value>(answer)
        .ok()
        .filter(Value::is_object);
    match (form, parsed) {
        (GarbageForm::NotJsonrpc, Some(v)) => {
            // The answer's own result, tempting to a client that does not check the envelope.
            json!({"not": "json-rpc", "result": v.get("result").cloned().unwrap_or(Value::Null)})
                .to_string()
        }
        (GarbageForm::WrongId, Some(mut v)) => {
            // A string id: rmcp's clients number their requests, so this one is nobody's.
            let id = v.get("id").map(Value::to_string).unwrap_or_default();
            v["id"] = json!(format!("not-{id}"));
            v.to_string()
        }
        (GarbageForm::MalformedResult, Some(mut v)) => {
            if let Some(o) = v.as_object_mut() {
                o.remove("error");
                o.insert("result".into(), malformed(pick));
            }
            v.to_string()
        }
        (GarbageForm::CutAnswer, _) => {
            let mut half = answer.len() / 2;
            while !answer.is_char_boundary(half) {
                half -= 1;
            }
            answer[..half].to_string()
        }
        // `text`, and any form whose answer did not parse (nothing to build it from).
        _ => TEXT.to_string(),
    }
}

/// A stand-in answer for request `id` (its JSON text), for a transport that mangles before
/// the real answer exists.
pub fn stand_in(id: &str) -> String {
    let id: Value = serde_json::from_str(id).unwrap_or(Value::Null);
    json!({"jsonrpc": "2.0", "id": id, "result": {
        "content": [{"type": "text", "text": "injected fault: garbage"}], "isError": false}})
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::wire::draw;

    const ANSWER: &str =
        r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"hi é"}]}}"#;

    #[test]
    fn each_form_breaks_the_answer_its_own_way() {
        let json = |s: String| serde_json::from_str::<Value>(&s).ok();
        assert_eq!(mangle(GarbageForm::Text, 0, ANSWER), TEXT);
        let not = json(mangle(GarbageForm::NotJsonrpc, 0, ANSWER)).unwrap();
        assert!(
            not.get("jsonrpc").is_none() && not.get("id").is_none(),
            "{not}"
        );
        let wrong = json(mangle(GarbageForm::WrongId, 0, ANSWER)).unwrap();
        assert_eq!(wrong["id"], json!("not-7"));
        assert_eq!(wrong["result"], json(ANSWER.into()).unwrap()["result"]);
        for pick in 0..3 {
            let bad = json(mangle(GarbageForm::MalformedResult, pick, ANSWER)).unwrap();
            assert_eq!(bad["id"], json!(7));
            assert!(
                serde_json::from_value::<rmcp::model::CallToolResult>(bad["result"].clone())
                    .is_err(),
                "{bad}"
            );
        }
        let cut = mangle(GarbageForm::CutAnswer, 0, ANSWER);
        assert!(ANSWER.starts_with(&cut) && cut.len() < ANSWER.len());
        assert!(json(cut).is_none());
    }

    #[test]
    fn a_mix_draws_every_form_and_a_key_always_the_same() {
        let drawn: std::collections::BTreeSet<GarbageForm> =
            (0..200).map(|r| choose(&[], draw(&[3, r])).0).collect();
        assert_eq!(drawn.len(), GarbageForm::ALL.len());
        let only = [GarbageForm::WrongId];
        assert!((0..50).all(|r| choose(&only, draw(&[1, r])).0 == GarbageForm::WrongId));
    }
}
