//! What one upstream server offers, prepared once per tool listing.
//!
//! A [`ToolCatalog`] is built whenever a server (re)connects: the tools it lists (minus the
//! disabled ones), each with its input validator compiled, and the server's identity. The
//! OpenAPI document is generated from it lazily and kept, so the request path never converts a
//! schema or compiles a validator.
//!
//! Every tool is measured against [`crate::bounds`] before its schema is compiled: a tool over
//! a bound is withheld (listed in [`ToolCatalog::withheld`], shown in `/diagnostics`) and the
//! server's other tools are served.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::bounds::{self, SchemaShape};

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
    /// How deep validating against `input_schema` recurses (see [`bounds::SchemaShape`]).
    pub input_shape: SchemaShape,
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

/// Where validating one instance against a tool's schema may run (see [`crate::bounds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationStack {
    /// On the calling thread.
    Inline,
    /// On a thread with a big stack ([`bounds::run_deep`]).
    Deep,
    /// Nowhere: the instance nests too deep for the schema's recursion.
    Refused,
}

impl ToolEntry {
    /// Where to validate an instance of `instance_depth` levels (as [`bounds::text_depth`] or
    /// [`bounds::value_depth`] count them). `instance_depth` is only asked for when the schema
    /// is cyclic: otherwise the depth of the instance does not matter.
    pub fn validation_stack(&self, instance_depth: impl FnOnce() -> usize) -> ValidationStack {
        if !self.input_shape.cyclic {
            return ValidationStack::Inline;
        }
        match self.input_shape.validation_cost(instance_depth()) {
            cost if cost <= bounds::INLINE_COST => ValidationStack::Inline,
            cost if cost <= bounds::MAX_COST => ValidationStack::Deep,
            _ => ValidationStack::Refused,
        }
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

/// What the proxy takes in of one server's listing at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingLimits {
    /// Tools served per server; the rest are withheld.
    pub max_tools: usize,
    /// Bytes of tool JSON (names, descriptions, schemas) per server; tools past it are
    /// withheld.
    pub max_bytes: usize,
}

impl Default for ListingLimits {
    fn default() -> Self {
        ListingLimits {
            max_tools: 1_000,
            max_bytes: 8 * 1024 * 1024,
        }
    }
}

/// A listed tool that is not served, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    pub tool: String,
    pub reason: String,
}

/// A server's raw `tools/list` result: the tools taken (at most the limit) and how many more
/// the server listed.
#[derive(Debug, Default)]
pub struct Listing {
    pub tools: Vec<Value>,
    pub beyond_limit: usize,
}

/// The tools of one server at one point in time.
#[derive(Debug)]
pub struct ToolCatalog {
    pub server: ServerIdentity,
    tools: Vec<Arc<ToolEntry>>,
    by_name: HashMap<String, usize>,
    /// Tools listed but not served because they are over a bound.
    pub withheld: Vec<Withheld>,
    /// Tools listed beyond [`ListingLimits::max_tools`], not even looked at.
    pub beyond_limit: usize,
    /// The generated OpenAPI document as served (JSON bytes), built on first request. An
    /// async cell: concurrent first requests wait without blocking a worker thread.
    pub openapi: tokio::sync::OnceCell<bytes::Bytes>,
}

impl ToolCatalog {
    /// Builds the catalog from the raw `tools/list` result (tools as JSON, as listed).
    pub fn new(
        server: ServerIdentity,
        listing: Listing,
        disabled: &BTreeSet<String>,
        limits: ListingLimits,
    ) -> Self {
        let Listing {
            tools: listed,
            mut beyond_limit,
        } = listing;
        let mut tools = Vec::with_capacity(listed.len().min(limits.max_tools));
        let mut by_name = HashMap::with_capacity(listed.len().min(limits.max_tools));
        let mut withheld = Vec::new();
        let mut bytes = 0usize;
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
            if tools.len() >= limits.max_tools {
                beyond_limit += 1;
                continue;
            }
            // Measured before anything recursive (compiling, converting) touches it.
            let size = match bounds::measure_tool(&raw) {
                Ok(size) => size,
                Err(excess) => {
                    withheld.push(Withheld {
                        tool: name,
                        reason: excess.to_string(),
                    });
                    continue;
                }
            };
            let total = bytes.saturating_add(size.bytes);
            if total > limits.max_bytes {
                withheld.push(Withheld {
                    tool: name,
                    reason: format!(
                        "the server's listing is over {} bytes by this tool (MCPO_MAX_LISTING_BYTES)",
                        limits.max_bytes
                    ),
                });
                continue;
            }
            bytes = total;
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
                input_shape: size.input,
                name,
            }));
        }
        for w in &withheld {
            tracing::warn!(server = %server.name, tool = %w.tool, reason = %w.reason,
                "a listed tool is withheld: it is over the proxy's bounds on tool listings");
        }
        if beyond_limit > 0 {
            tracing::warn!(server = %server.name, served = tools.len(), withheld = beyond_limit,
                "the server lists more tools than MCPO_MAX_TOOLS; the rest are withheld");
        }
        ToolCatalog {
            server,
            tools,
            by_name,
            withheld,
            beyond_limit,
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
        let catalog = ToolCatalog::new(
            ServerIdentity::default(),
            Listing {
                tools: listed,
                beyond_limit: 0,
            },
            &disabled,
            ListingLimits::default(),
        );
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
        let catalog = ToolCatalog::new(
            ServerIdentity::default(),
            Listing {
                tools: listed,
                beyond_limit: 0,
            },
            &BTreeSet::new(),
            ListingLimits::default(),
        );
        assert!(catalog.tool("r").is_some_and(|t| t.is_idempotent()));
        assert!(catalog.tool("w").is_some_and(|t| !t.is_idempotent()));
    }

    #[test]
    fn tools_over_a_bound_are_withheld_and_the_rest_served() {
        let mut chain = serde_json::Map::new();
        for i in 0..20_000 {
            chain.insert(
                format!("d{i}"),
                json!({"$ref": format!("#/$defs/d{}", i + 1)}),
            );
        }
        let listed = vec![
            json!({"name": "chain", "inputSchema": {"$defs": chain, "$ref": "#/$defs/d0"}}),
            json!({"name": "ok", "inputSchema": {"type": "object"}}),
            json!({"name": "big", "description": "x".repeat(600)}),
            json!({"name": "late"}),
            json!({"name": "later"}),
        ];
        let catalog = ToolCatalog::new(
            ServerIdentity::default(),
            Listing {
                tools: listed,
                beyond_limit: 7,
            },
            &BTreeSet::new(),
            ListingLimits {
                max_tools: 2,
                max_bytes: 500,
            },
        );
        let names: Vec<_> = catalog.tools().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["ok", "late"]);
        let withheld: Vec<_> = catalog.withheld.iter().map(|w| w.tool.as_str()).collect();
        assert_eq!(withheld, ["chain", "big"]);
        assert!(
            catalog.withheld[0].reason.contains("$ref"),
            "{:?}",
            catalog.withheld
        );
        assert!(
            catalog.withheld[1].reason.contains("bytes"),
            "{:?}",
            catalog.withheld
        );
        // "later" is over max_tools, on top of the 7 the listing did not take.
        assert_eq!(catalog.beyond_limit, 8);
    }
}
