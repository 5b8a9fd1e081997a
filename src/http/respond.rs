//! A tool's `CallToolResult` as the HTTP answer mcpo gives, item by item.
//!
//! mcpo maps each content item (text parsed as JSON when it is JSON, images as data URIs) and
//! returns a single item bare, several as a list. Where mcpo loses information we keep it:
//! embedded resources and resource links come through as objects, and a tool that declares an
//! `outputSchema` answers with its `structuredContent`, which is what that schema describes.

use serde_json::{Map, Value, json};

/// What the proxy answers for a completed call.
#[derive(Debug, PartialEq)]
pub enum ToolAnswer {
    /// 200 with this body.
    Ok(Value),
    /// The tool reported an error: 500 with this message.
    ToolError(String),
}

/// Maps a `CallToolResult` (as JSON) to the answer.
pub fn map_result(result: &Value, has_output_schema: bool) -> ToolAnswer {
    let content = result
        .get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        let text: Vec<&str> = content
            .iter()
            .filter_map(|c| c.get("text").and_then(Value::as_str))
            .collect();
        let message = if text.is_empty() {
            "The tool reported an error without a message".to_string()
        } else {
            text.join("\n")
        };
        return ToolAnswer::ToolError(message);
    }
    if has_output_schema && let Some(structured) = result.get("structuredContent") {
        return ToolAnswer::Ok(structured.clone());
    }
    let mut items: Vec<Value> = content.iter().map(map_item).collect();
    ToolAnswer::Ok(if items.len() == 1 {
        items.remove(0)
    } else {
        Value::Array(items)
    })
}

fn map_item(item: &Value) -> Value {
    let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "text" => {
            let text = item.get("text").and_then(Value::as_str).unwrap_or_default();
            parse_json_text(text)
        }
        "image" | "audio" => {
            let mime = item
                .get("mimeType")
                .and_then(Value::as_str)
                .unwrap_or("application/octet-stream");
            let data = item.get("data").and_then(Value::as_str).unwrap_or_default();
            json!(format!("data:{mime};base64,{data}"))
        }
        "resource" => item.get("resource").cloned().unwrap_or(Value::Null),
        "resource_link" => {
            let mut link = Map::new();
            if let Value::Object(fields) = item {
                for (k, v) in fields {
                    if k != "annotations" && k != "_meta" {
                        link.insert(k.clone(), v.clone());
                    }
                }
            }
            Value::Object(link)
        }
        // Unknown kinds from newer servers are passed on as they are rather than dropped.
        _ => item.clone(),
    }
}

/// Text that is a JSON document becomes that document; anything else stays a string. Like
/// Python's `json.loads`, bare scalars (`"3"`, `"true"`) count as JSON.
fn parse_json_text(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => v,
        Err(_) => Value::String(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_text_item_is_bare_and_json_is_parsed() {
        let r = json!({"content": [{"type": "text", "text": "{\"a\": 1}"}]});
        assert_eq!(map_result(&r, false), ToolAnswer::Ok(json!({"a": 1})));
        let r = json!({"content": [{"type": "text", "text": "hello"}]});
        assert_eq!(map_result(&r, false), ToolAnswer::Ok(json!("hello")));
        let r = json!({"content": [{"type": "text", "text": "42"}]});
        assert_eq!(map_result(&r, false), ToolAnswer::Ok(json!(42)));
    }

    #[test]
    fn several_items_become_a_list_with_images_as_data_uris() {
        let r = json!({"content": [
            {"type": "text", "text": "x"},
            {"type": "image", "data": "AAA=", "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "test://1", "mimeType": "text/plain", "text": "body"}},
            {"type": "resource_link", "uri": "test://2", "name": "two"}
        ]});
        assert_eq!(
            map_result(&r, false),
            ToolAnswer::Ok(json!([
                "x",
                "data:image/png;base64,AAA=",
                {"uri": "test://1", "mimeType": "text/plain", "text": "body"},
                {"type": "resource_link", "uri": "test://2", "name": "two"}
            ]))
        );
    }

    #[test]
    fn structured_content_only_with_output_schema() {
        let r = json!({"content": [{"type": "text", "text": "t"}], "structuredContent": {"t": 1}});
        assert_eq!(map_result(&r, true), ToolAnswer::Ok(json!({"t": 1})));
        assert_eq!(map_result(&r, false), ToolAnswer::Ok(json!("t")));
    }

    #[test]
    fn tool_errors_carry_the_tool_text() {
        let r = json!({"isError": true, "content": [{"type": "text", "text": "boom"}]});
        assert_eq!(map_result(&r, false), ToolAnswer::ToolError("boom".into()));
        let r = json!({"content": []});
        assert_eq!(map_result(&r, false), ToolAnswer::Ok(json!([])));
    }
}
