//! The OpenAPI 3.1 document of one server, shaped like the one mcpo (FastAPI) generates, so
//! that clients built against mcpo (Open WebUI names its LLM functions after `operationId`)
//! see the same operations, but with the tools' schemas kept whole and every status the route
//! can return documented.

use serde_json::{Map, Value, json};

use super::schema::{component_name, convert_schema};

/// What the document needs to know about one tool.
pub struct ToolDoc<'a> {
    pub name: &'a str,
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
    pub input_schema: &'a Value,
    pub output_schema: Option<&'a Value>,
    pub takes_no_arguments: bool,
}

/// Settings of the document as a whole.
pub struct DocInfo<'a> {
    pub title: &'a str,
    pub version: &'a str,
    pub description: &'a str,
    /// The URL prefix of the routes as the client sees them (root path + mount), e.g. `/time`.
    pub server_url: &'a str,
    pub bearer_auth: bool,
}

/// The summary FastAPI derives from a route name: `_` as spaces, then Python's `str.title()`.
pub fn summary_of(tool: &str) -> String {
    let mut out = String::with_capacity(tool.len());
    let mut prev_cased = false;
    for c in tool.replace('_', " ").chars() {
        if c.is_alphabetic() {
            if prev_cased {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            prev_cased = true;
        } else {
            out.push(c);
            prev_cased = false;
        }
    }
    out
}

/// FastAPI's unique id for `POST /{tool}` on the endpoint function `tool`: the name and path
/// with every non-word character as `_`, then `_post`.
pub fn operation_id(tool: &str) -> String {
    let path: String = format!("/{tool}")
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("tool{path}_post")
}

/// Builds the document for a set of tools.
pub fn server_document(info: &DocInfo<'_>, tools: &[ToolDoc<'_>]) -> Value {
    let mut components = Map::new();
    let mut paths = Map::new();
    let mut unresolved_total = 0usize;
    for tool in tools {
        let input = convert_schema(
            tool.input_schema,
            &component_name(&format!("{}_input", tool.name)),
            &mut components,
        );
        unresolved_total += input.unresolved.len();
        let output = tool.output_schema.map(|schema| {
            let converted = convert_schema(
                schema,
                &component_name(&format!("{}_output", tool.name)),
                &mut components,
            );
            unresolved_total += converted.unresolved.len();
            converted.schema
        });
        let mut operation = Map::new();
        operation.insert("summary".into(), json!(summary_of(tool.name)));
        if let Some(description) = tool.description.or(tool.title) {
            operation.insert("description".into(), json!(description));
        }
        operation.insert("operationId".into(), json!(operation_id(tool.name)));
        operation.insert(
            "requestBody".into(),
            json!({
                "content": {"application/json": {"schema": input.schema}},
                "required": !tool.takes_no_arguments,
            }),
        );
        operation.insert("responses".into(), responses(output, info.bearer_auth));
        if info.bearer_auth {
            operation.insert("security".into(), json!([{"HTTPBearer": []}]));
        }
        paths.insert(format!("/{}", tool.name), json!({"post": operation}));
    }
    if unresolved_total > 0 {
        tracing::warn!(
            unresolved = unresolved_total,
            "some $refs in tool schemas point outside the schema and were left open"
        );
    }
    components.extend(standard_schemas());
    let mut doc_components = Map::new();
    doc_components.insert("schemas".into(), Value::Object(components));
    if info.bearer_auth {
        doc_components.insert(
            "securitySchemes".into(),
            json!({"HTTPBearer": {"type": "http", "scheme": "bearer"}}),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": info.title,
            "description": info.description,
            "version": info.version,
        },
        "servers": [{"url": if info.server_url.is_empty() { "/" } else { info.server_url }}],
        "paths": paths,
        "components": doc_components,
    })
}

/// The document of the root app in config mode: no operations of its own, and a description
/// that links every server's docs, as mcpo's does.
pub fn root_document(
    title: &str,
    version: &str,
    description: &str,
    servers: &[(String, String)],
) -> Value {
    let mut text = description.to_string();
    if !servers.is_empty() {
        text.push_str("\n\n- **available tools**:");
        for (name, docs_url) in servers {
            text.push_str(&format!("\n    - [{name}]({docs_url})"));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": title, "description": text, "version": version},
        "paths": {},
    })
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    })
}

fn responses(output: Option<Value>, bearer_auth: bool) -> Value {
    let ok_schema = output.unwrap_or_else(|| {
        json!({"description": "The tool's content: a single item bare, several as a list; text that is JSON is parsed"})
    });
    let mut r = Map::new();
    r.insert(
        "200".into(),
        json!({"description": "Successful Response", "content": {"application/json": {"schema": ok_schema}}}),
    );
    r.insert(
        "400".into(),
        error_response("The server rejected the request as malformed JSON-RPC"),
    );
    if bearer_auth {
        r.insert("401".into(), error_response("Missing or malformed API key"));
        r.insert("403".into(), error_response("Wrong API key"));
    }
    r.insert(
        "404".into(),
        error_response("Unknown server or tool, or the server does not know the method"),
    );
    r.insert(
        "422".into(),
        json!({
            "description": "Validation Error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
        }),
    );
    r.insert(
        "500".into(),
        error_response("The tool reported an error, or the server failed"),
    );
    r.insert(
        "502".into(),
        error_response("The server answered with an HTTP error or invalid MCP"),
    );
    r.insert(
        "503".into(),
        error_response("The server is not available right now (starting, restarting or down)"),
    );
    r.insert(
        "504".into(),
        error_response("The server did not answer within the call's deadline"),
    );
    Value::Object(r)
}

fn standard_schemas() -> Map<String, Value> {
    let schemas = json!({
        "ErrorResponse": {
            "title": "ErrorResponse",
            "type": "object",
            "properties": {
                "detail": {
                    "anyOf": [
                        {"type": "string"},
                        {
                            "type": "object",
                            "properties": {
                                "message": {"type": "string"},
                                "data": {}
                            },
                            "required": ["message"]
                        }
                    ]
                }
            },
            "required": ["detail"]
        },
        "HTTPValidationError": {
            "title": "HTTPValidationError",
            "type": "object",
            "properties": {
                "detail": {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}, "title": "Detail"}
            }
        },
        "ValidationError": {
            "title": "ValidationError",
            "type": "object",
            "properties": {
                "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}, "title": "Location"},
                "msg": {"type": "string", "title": "Message"},
                "type": {"type": "string", "title": "Error Type"},
                "input": {"title": "Input"},
                "ctx": {"type": "object", "title": "Context"}
            },
            "required": ["loc", "msg", "type"]
        }
    });
    match schemas {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_follow_python_title() {
        assert_eq!(summary_of("get_current_time"), "Get Current Time");
        assert_eq!(summary_of("get-sum"), "Get-Sum");
        assert_eq!(summary_of("getMCPInfo"), "Getmcpinfo");
        assert_eq!(summary_of("echo2x"), "Echo2X");
    }

    #[test]
    fn operation_ids_match_fastapi() {
        assert_eq!(operation_id("get-sum"), "tool_get_sum_post");
        assert_eq!(
            operation_id("get_current_time"),
            "tool_get_current_time_post"
        );
        assert_eq!(operation_id("a.b c"), "tool_a_b_c_post");
    }

    #[test]
    fn document_has_every_tool_and_status() {
        let schema =
            json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]});
        let tools = [ToolDoc {
            name: "get-sum",
            title: None,
            description: Some("Adds"),
            input_schema: &schema,
            output_schema: None,
            takes_no_arguments: false,
        }];
        let doc = server_document(
            &DocInfo {
                title: "t",
                version: "1",
                description: "d",
                server_url: "/everything",
                bearer_auth: true,
            },
            &tools,
        );
        let op = &doc["paths"]["/get-sum"]["post"];
        assert_eq!(op["operationId"], "tool_get_sum_post");
        assert_eq!(op["summary"], "Get-Sum");
        assert_eq!(
            op["requestBody"]["content"]["application/json"]["schema"]["properties"]["a"]["type"],
            "integer"
        );
        for status in ["200", "401", "403", "404", "422", "500", "503", "504"] {
            assert!(op["responses"].get(status).is_some(), "{status}");
        }
        assert_eq!(doc["servers"][0]["url"], "/everything");
        assert!(doc["components"]["securitySchemes"]["HTTPBearer"].is_object());
    }
}
