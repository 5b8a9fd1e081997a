//! What one upstream server offers, prepared once per tool listing.
//!
//! A [`ToolCatalog`] is built whenever a server (re)connects: the tools it lists (minus the
//! disabled ones), each with its input validator compiled, and the server's identity. The
//! OpenAPI document is generated from it lazily and kept, so the request path never converts a
//! schema or compiles a validator.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value};

/// One exposed tool.
#[derive(Debug)]
pub struct ToolEntry {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub input_schema: Value,
    pub output_schema: Option<Value>,
    pub annotations: Option<Value>,
    /// `None` when the schema could not be compiled (for example a remote `$ref`); the request
    /// is then passed through and the server validates it.
    pub validator: Option<Arc<jsonschema::Validator>>,
}

impl ToolEntry {
    /// True when the schema declares no properties and nothing required, so the tool can be
    /// called with an empty POST.
    pub fn takes_no_arguments(&self) -> bool {
        let props_empty = self
            .input_schema
            .get("properties")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty);
        let required_empty = self
            .input_schema
            .get("required")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        props_empty && required_empty
    }

    /// Whether the server declares that the tool only reads (`readOnlyHint`).
    pub fn is_read_only(&self) -> bool {
        self.annotations
            .as_ref()
            .and_then(|a| a.get("readOnlyHint"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Whether the server declares that calling the tool twice is harmless.
    pub fn is_idempotent(&self) -> bool {
        let hint = |key: &str| {
            self.annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        hint("readOnlyHint") || hint("idempotentHint")
    }
}

/// Identity of the server as it introduced itself in `initialize`.
#[derive(Debug, Clone, Default)]
pub struct ServerIdentity {
    pub name: String,
    pub version: String,
    pub title: Option<String>,
    pub instructions: Option<String>,
    /// The negotiated MCP protocol version.
    pub protocol_version: String,
}

/// The tools of one server at one point in time.
#[derive(Debug)]
pub struct ToolCatalog {
    pub server: ServerIdentity,
    tools: Vec<Arc<ToolEntry>>,
    by_name: HashMap<String, usize>,
    /// The generated OpenAPI document as served (JSON bytes), built on first request. An
    /// async cell: concurrent first requests wait without blocking a worker thread.
    pub openapi: tokio::sync::OnceCell<bytes::Bytes>,
}

impl ToolCatalog {
    /// Builds the catalog from the raw `tools/list` result (tools as JSON, as listed).
    pub fn new(server: ServerIdentity, listed: Vec<Value>, disabled: &BTreeSet<String>) -> Self {
        let mut tools = Vec::with_capacity(listed.len());
        let mut by_name = HashMap::with_capacity(listed.len());
        for raw in listed {
            let Some(name) = raw.get("name").and_then(Value::as_str).map(str::to_string) else {
                tracing::warn!(server = %server.name, "a listed tool has no name; skipped");
                continue;
            };
            if disabled.contains(&name) {
                continue;
            }
            if by_name.contains_key(&name) {
                tracing::warn!(server = %server.name, tool = %name, "tool listed twice; the first one is kept");
                continue;
            }
            let input_schema = raw
                .get("inputSchema")
                .cloned()
                .filter(Value::is_object)
                .unwrap_or_else(|| serde_json::json!({"type": "object"}));
            let validator = match compile(&input_schema) {
                Ok(v) => Some(Arc::new(v)),
                Err(e) => {
                    tracing::warn!(server = %server.name, tool = %name, error = %e,
                        "the tool's input schema cannot be compiled; requests are passed through unvalidated");
                    None
                }
            };
            let text = |key: &str| raw.get(key).and_then(Value::as_str).map(str::to_string);
            by_name.insert(name.clone(), tools.len());
            tools.push(Arc::new(ToolEntry {
                title: text("title"),
                description: text("description"),
                output_schema: raw.get("outputSchema").cloned().filter(Value::is_object),
                annotations: raw.get("annotations").cloned().filter(Value::is_object),
                input_schema,
                validator,
                name,
            }));
        }
        ToolCatalog {
            server,
            tools,
            by_name,
            openapi: tokio::sync::OnceCell::new(),
        }
    }

    pub fn tool(&self, name: &str) -> Option<&Arc<ToolEntry>> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    pub fn tools(&self) -> &[Arc<ToolEntry>] {
        &self.tools
    }
}

/// Compiles a tool's input schema. Remote references are not fetched (the crate is built
/// without network resolution), so such a schema fails here and is not enforced.
fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn disabled_and_duplicate_tools_are_dropped() {
        let listed = vec![
            json!({"name": "a", "inputSchema": {"type": "object"}}),
            json!({"name": "b", "inputSchema": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}}),
            json!({"name": "a", "inputSchema": {"type": "object"}}),
            json!({"name": "c"}),
        ];
        let disabled = BTreeSet::from(["c".to_string()]);
        let catalog = ToolCatalog::new(ServerIdentity::default(), listed, &disabled);
        let names: Vec<_> = catalog.tools().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(catalog.tool("a").is_some_and(|t| t.takes_no_arguments()));
        assert!(catalog.tool("b").is_some_and(|t| !t.takes_no_arguments()));
        assert!(catalog.tool("b").is_some_and(|t| t.validator.is_some()));
    }

    #[test]
    fn idempotence_comes_from_annotations() {
        let listed = vec![
            json!({"name": "r", "annotations": {"readOnlyHint": true}}),
            json!({"name": "w", "annotations": {"readOnlyHint": false}}),
        ];
        let catalog = ToolCatalog::new(ServerIdentity::default(), listed, &BTreeSet::new());
        assert!(catalog.tool("r").is_some_and(|t| t.is_idempotent()));
        assert!(catalog.tool("w").is_some_and(|t| !t.is_idempotent()));
    }
}
