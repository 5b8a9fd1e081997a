//! How much of an upstream's tool listing the proxy takes in, measured before anything
//! recursive touches it.
//!
//! A tool listing is JSON from a server the operator may not control, and several walks over
//! it recurse: `jsonschema` compiles and validates recursively, following `$ref`s, and the
//! OpenAPI conversion recurses through nesting. A chain of 20,000 `$ref`s once overflowed a
//! worker's stack in validation, and a stack overflow aborts the whole process: no panic
//! handler catches it. So every tool is measured here first, by walks that keep their own
//! stacks on the heap, and a tool beyond the bounds is withheld (the rest of the server is
//! served).
//!
//! What bounds the recursion of validation is the schema's **reach**: the longest path from
//! the root through nesting and local `$ref`s (each `$ref` an edge to its target). A schema
//! whose references form a cycle (a tree of nodes, a JSON value type) recurses once around
//! the cycle per level of the instance, so for those the instance's depth multiplies the
//! reach; [`SchemaShape::validation_cost`] says how deep a validation can go, and the caller
//! picks a stack for it.
//!
//! This module is a leaf: plain JSON in, numbers out.

use std::collections::HashMap;

use serde_json::Value;

/// JSON nesting of one tool (its whole listing entry) at most.
pub const MAX_DEPTH: usize = 64;
/// `$ref`s (and `$dynamicRef`, `$recursiveRef`) in one tool at most.
pub const MAX_REFS: usize = 256;
/// JSON values in one tool at most.
pub const MAX_VALUES: usize = 100_000;
/// Reach of one input schema at most. Validating an acyclic schema recurses at most this
/// deep, which a 2 MiB worker stack holds several times over (about 5,000 levels fit in a
/// debug build).
pub const MAX_REACH: usize = 1_000;
/// Validation costs up to this many levels run on the calling thread's stack (a tokio worker
/// or blocking thread, 2 MiB); deeper ones on a thread of their own with [`BIG_STACK`].
pub const INLINE_COST: usize = 1_000;
// An acyclic schema's validation cost is its reach, which must always fit inline.
const _: () = assert!(MAX_REACH <= INLINE_COST);

/// The stack of a thread for deep validations. Only the pages touched are ever committed.
pub const BIG_STACK: usize = 256 * 1024 * 1024;
/// Validation costs above this are refused outright: even [`BIG_STACK`] is not sure to hold
/// them (a debug build needs about 400 bytes a level).
pub const MAX_COST: usize = 200_000;

/// Keys whose string value refers to another schema.
const REF_KEYS: [&str; 3] = ["$ref", "$dynamicRef", "$recursiveRef"];

/// What about a tool is over a bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Excess {
    #[error("its JSON nests deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("it holds more than {limit} JSON values")]
    TooManyValues { limit: usize },
    #[error("it holds more than {limit} schema references ($ref)")]
    TooManyRefs { limit: usize },
    #[error(
        "its input schema reaches {reach} levels deep through nesting and $ref chains (at most {limit})"
    )]
    TooFarReaching { reach: usize, limit: usize },
}

/// How a tool's input schema recurses, as far as validating it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchemaShape {
    /// The longest path from the root through nesting and `$ref`s, cycles cut.
    pub reach: usize,
    /// Whether some `$ref` leads back to a schema on its own path (or cannot be followed here,
    /// and so might): validation then recurses once around per level of the instance.
    pub cyclic: bool,
}

impl SchemaShape {
    /// How many levels deep validating an instance `instance_depth` levels deep can recurse,
    /// at most.
    pub fn validation_cost(&self, instance_depth: usize) -> usize {
        if self.cyclic {
            self.reach.saturating_mul(instance_depth.saturating_add(1))
        } else {
            self.reach
        }
    }
}

/// The size of one tool, measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolSize {
    /// About how many bytes its JSON takes when written out.
    pub bytes: usize,
    pub input: SchemaShape,
}

/// Measures one listed tool (its whole JSON: name, schemas, annotations) against the bounds,
/// and the recursion of its input schema. Never recurses itself.
pub fn measure_tool(tool: &Value) -> Result<ToolSize, Excess> {
    let totals = walk(tool)?;
    let input = match tool.get("inputSchema") {
        Some(schema) => schema_shape(schema),
        None => SchemaShape::default(),
    };
    if input.reach > MAX_REACH {
        return Err(Excess::TooFarReaching {
            reach: input.reach,
            limit: MAX_REACH,
        });
    }
    Ok(ToolSize {
        bytes: totals.bytes,
        input,
    })
}

struct Totals {
    bytes: usize,
}

/// Depth, values, references and bytes of `value`, stopping at the first bound crossed.
fn walk(value: &Value) -> Result<Totals, Excess> {
    let mut values = 0usize;
    let mut refs = 0usize;
    let mut bytes = 0usize;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 1)];
    while let Some((value, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(Excess::TooDeep { limit: MAX_DEPTH });
        }
        values += 1;
        if values > MAX_VALUES {
            return Err(Excess::TooManyValues { limit: MAX_VALUES });
        }
        // A separator or bracket per value, and the text of scalars.
        bytes += 1;
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    bytes += key.len() + 3;
                    if REF_KEYS.contains(&key.as_str()) && child.is_string() {
                        refs += 1;
                        if refs > MAX_REFS {
                            return Err(Excess::TooManyRefs { limit: MAX_REFS });
                        }
                    }
                    stack.push((child, depth + 1));
                }
            }
            Value::Array(items) => stack.extend(items.iter().map(|item| (item, depth + 1))),
            Value::String(s) => bytes += s.len() + 2,
            Value::Number(_) => bytes += 8,
            Value::Bool(_) | Value::Null => bytes += 4,
        }
    }
    Ok(Totals { bytes })
}

/// The reach of `schema` and whether it may be cyclic. Call only on a value [`walk`] passed:
/// the graph is then small (at most [`MAX_VALUES`] nodes, [`MAX_REFS`] reference edges).
///
/// Nodes are the objects and arrays of the document, with an edge to each child and one from
/// each local `$ref` (`#` or `#/json/pointer`) to its target. A reference this cannot follow
/// (an `$id`-relative URI, an anchor, `$dynamicRef`) might land anywhere, so each multiplies
/// the reach and makes the schema count as cyclic; so does any nested `$id`, which changes
/// what `#/...` means below it.
pub fn schema_shape(schema: &Value) -> SchemaShape {
    // Number the containers and note each one's children and references.
    let mut ids: HashMap<*const Value, usize> = HashMap::new();
    let mut nodes: Vec<Node> = Vec::new();
    let mut unknown_refs = 0usize;
    let mut nested_id = false;
    let mut pending: Vec<(&Value, Option<usize>, bool)> = vec![(schema, None, true)];
    while let Some((value, parent, is_root)) = pending.pop() {
        let id = nodes.len();
        let is_container = matches!(value, Value::Object(_) | Value::Array(_));
        if let Some(parent) = parent {
            if is_container {
                nodes[parent].edges.push(Edge::Node(id));
            } else {
                nodes[parent].edges.push(Edge::Leaf);
            }
        }
        if !is_container {
            continue;
        }
        ids.insert(value as *const Value, id);
        nodes.push(Node::default());
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    if let (true, Value::String(reference)) =
                        (REF_KEYS.contains(&key.as_str()), child)
                    {
                        match (key.as_str(), local_pointer(reference)) {
                            ("$ref", Some(pointer)) => nodes[id].refs.push(pointer),
                            _ => unknown_refs += 1,
                        }
                        continue;
                    }
                    if !is_root && (key == "$id" || key == "id") && child.is_string() {
                        nested_id = true;
                    }
                    pending.push((child, Some(id), false));
                }
            }
            Value::Array(items) => {
                pending.extend(items.iter().map(|item| (item, Some(id), false)));
            }
            _ => {}
        }
    }
    if nested_id {
        // `#/...` below a nested `$id` is relative to that resource, not to this document.
        unknown_refs += nodes.iter().map(|n| n.refs.len()).sum::<usize>();
        for node in &mut nodes {
            node.refs.clear();
        }
    }
    // Resolve local references to node numbers (or to a leaf).
    let mut ref_edges: Vec<Vec<Edge>> = vec![Vec::new(); nodes.len()];
    for (id, node) in nodes.iter().enumerate() {
        for pointer in &node.refs {
            // An unresolvable one fails to compile in validation: nothing recurses through it.
            if let Some(target) = schema.pointer(pointer) {
                ref_edges[id].push(
                    ids.get(&(target as *const Value))
                        .map_or(Edge::Leaf, |&t| Edge::Node(t)),
                );
            }
        }
    }
    for (node, extra) in nodes.iter_mut().zip(ref_edges) {
        node.edges.extend(extra);
    }
    let (reach, cyclic) = longest_path(&nodes);
    match unknown_refs {
        0 => SchemaShape { reach, cyclic },
        n => SchemaShape {
            reach: reach.saturating_mul(n.saturating_add(1)),
            cyclic: true,
        },
    }
}

#[derive(Default, Clone)]
struct Node {
    edges: Vec<Edge>,
    /// Local references, as JSON pointers, not yet resolved.
    refs: Vec<String>,
}

#[derive(Clone, Copy)]
enum Edge {
    Node(usize),
    /// A scalar: one level, nothing below.
    Leaf,
}

/// `#` or `#/a/b` as a JSON pointer (`""`, `"/a/b"`), percent-decoded; `None` for anything
/// else (an anchor, a URI).
fn local_pointer(reference: &str) -> Option<String> {
    let fragment = reference.strip_prefix('#')?;
    if !(fragment.is_empty() || fragment.starts_with('/')) {
        return None;
    }
    percent_decode(fragment)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The longest path from node 0 (in edges, a leaf counting one), with every edge back to a
/// node on the current path cut, and whether there was such an edge. Iterative depth-first
/// search with memoised heights: each node and edge is visited once.
fn longest_path(nodes: &[Node]) -> (usize, bool) {
    if nodes.is_empty() {
        return (0, false);
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; nodes.len()];
    let mut height = vec![0usize; nodes.len()];
    let mut cyclic = false;
    // (node, index of the next edge to look at)
    let mut path: Vec<(usize, usize)> = vec![(0, 0)];
    mark[0] = Mark::OnPath;
    while let Some(&mut (node, ref mut next)) = path.last_mut() {
        if let Some(&edge) = nodes[node].edges.get(*next) {
            *next += 1;
            match edge {
                Edge::Leaf => height[node] = height[node].max(1),
                Edge::Node(child) => match mark[child] {
                    Mark::Done => height[node] = height[node].max(height[child] + 1),
                    Mark::OnPath => cyclic = true,
                    Mark::New => {
                        mark[child] = Mark::OnPath;
                        path.push((child, 0));
                    }
                },
            }
            continue;
        }
        mark[node] = Mark::Done;
        path.pop();
        if let Some(&(parent, _)) = path.last() {
            height[parent] = height[parent].max(height[node] + 1);
        }
    }
    (height[0], cyclic)
}

/// Deep validations running at once at most: each may touch tens of megabytes of stack.
const DEEP_AT_ONCE: usize = 2;

/// Runs `work` on a thread of its own with a [`BIG_STACK`], for a validation whose
/// [`SchemaShape::validation_cost`] is over [`INLINE_COST`]. At most [`DEEP_AT_ONCE`] run at
/// once; the others wait their turn. Fails only if no thread can be started.
pub async fn run_deep<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(DEEP_AT_ONCE);
    let _slot = SLOTS
        .acquire()
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("mcpo-deep-validation".into())
        .stack_size(BIG_STACK)
        .spawn(move || {
            let _ = tx.send(work());
        })?;
    rx.await
        .map_err(|_| std::io::Error::other("the validation thread ended without an answer"))
}

/// The deepest nesting of a JSON text, counted as [`value_depth`] counts it but for an empty
/// container, whose inside counts one more: from a scan of its bytes. For bytes that are not
/// JSON, no less than what a parser would reach before failing.
pub fn text_depth(body: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest + 1
}

/// The nesting of a parsed value, counted the way [`text_depth`] counts it.
pub fn value_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match value {
            Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A chain of `n` definitions, each a `$ref` to the next under `nest` levels of `allOf`.
    pub(crate) fn chain(n: usize, nest: usize) -> Value {
        let mut defs = serde_json::Map::new();
        for i in 0..n {
            let mut inner = if i + 1 < n {
                json!({"$ref": format!("#/$defs/d{}", i + 1)})
            } else {
                json!({"type": "string"})
            };
            for _ in 0..nest {
                inner = json!({"allOf": [inner]});
            }
            defs.insert(format!("d{i}"), inner);
        }
        json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/d0"}}, "$defs": defs})
    }

    fn tool(schema: Value) -> Value {
        json!({"name": "t", "inputSchema": schema})
    }

    #[test]
    fn a_plain_schema_reaches_as_deep_as_it_nests() {
        // root -> properties -> a -> properties -> b -> type
        let schema = json!({"type": "object", "properties": {"a": {"properties": {"b": {"type": "string"}}}}});
        assert_eq!(
            schema_shape(&schema),
            SchemaShape {
                reach: 5,
                cyclic: false
            }
        );
    }

    #[test]
    fn references_add_their_target_and_cycles_are_seen() {
        let schema = json!({"$defs": {"n": {"properties": {"kids": {"items": {"$ref": "#/$defs/n"}}}}},
                            "$ref": "#/$defs/n"});
        let shape = schema_shape(&schema);
        assert!(shape.cyclic);
        // root -$ref-> n -> properties -> kids -> items -> type-less object (cycle cut) ...
        assert!(shape.reach >= 4, "{shape:?}");
        assert!(shape.validation_cost(10) >= 11 * shape.reach);
        let acyclic = chain(10, 0);
        let shape = schema_shape(&acyclic);
        assert!(!shape.cyclic);
        // properties -> x -$ref-> d0 -$ref-> d1 ... d9 -> type
        assert_eq!(shape.reach, 2 + 10 + 1);
        assert_eq!(shape.validation_cost(100), shape.reach);
    }

    #[test]
    fn references_it_cannot_follow_count_as_cyclic_and_reaching() {
        let schema = json!({"$defs": {"a": {"$id": "urn:a", "type": "string"}},
                            "properties": {"x": {"$ref": "urn:a"}, "y": {"$ref": "#/$defs/a"}}});
        let shape = schema_shape(&schema);
        assert!(shape.cyclic);
        assert!(shape.reach >= 3 * 3, "{shape:?}");
    }

    #[test]
    fn escaped_pointers_resolve() {
        let schema = json!({"$defs": {"a/b": {"$ref": "#/$defs/c%20d"}, "c d": {"type": "string"}},
                            "$ref": "#/$defs/a~1b"});
        let shape = schema_shape(&schema);
        assert!(!shape.cyclic);
        // root -> $defs -> a/b -$ref-> c d -> type
        assert_eq!(shape.reach, 4);
    }

    #[test]
    fn a_long_chain_is_refused_before_anything_recurses() {
        let too_many = tool(chain(20_000, 0));
        assert_eq!(
            measure_tool(&too_many),
            Err(Excess::TooManyRefs { limit: MAX_REFS })
        );
        let far = tool(chain(200, 10));
        assert!(matches!(
            measure_tool(&far),
            Err(Excess::TooFarReaching { .. })
        ));
        let fine = tool(chain(50, 3));
        assert!(measure_tool(&fine).is_ok());
    }

    #[test]
    fn deep_and_wide_tools_are_refused() {
        let mut deep = json!("x");
        for _ in 0..MAX_DEPTH {
            deep = json!([deep]);
        }
        assert_eq!(
            measure_tool(&tool(deep)),
            Err(Excess::TooDeep { limit: MAX_DEPTH })
        );
        let wide = tool(json!({"enum": vec![1; MAX_VALUES]}));
        assert_eq!(
            measure_tool(&wide),
            Err(Excess::TooManyValues { limit: MAX_VALUES })
        );
    }

    #[test]
    fn depth_of_text_and_value_agree() {
        for text in ["1", "{}", "[[1]]", r#"{"a": [1, {"b": "]]]"}]}"#, r#""{[""#] {
            let value: Value = serde_json::from_str(text).unwrap();
            let (text, value) = (text_depth(text.as_bytes()), value_depth(&value));
            // The scan counts an empty container's inside as a level: never less.
            assert!(value <= text && text <= value + 1, "{text} {value}");
        }
    }

    /// Within the bounds, the worst schemas validate without overflowing a 2 MiB stack (the
    /// size of tokio's threads) when their cost says inline, and on [`BIG_STACK`] otherwise.
    /// A failure here aborts the test binary: that is the finding this module exists for.
    #[test]
    fn the_worst_schemas_within_bounds_fit_their_stacks() {
        // Acyclic, reaching as far as allowed.
        let nest = 9;
        let links = MAX_REACH / (2 * nest + 1) - 1;
        let acyclic = chain(links, nest);
        let shape = schema_shape(&acyclic);
        assert!(
            !shape.cyclic && shape.reach <= MAX_REACH && shape.reach > MAX_REACH / 2,
            "{shape:?}"
        );
        assert!(shape.validation_cost(128) <= INLINE_COST);
        let inline = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let validator = jsonschema::validator_for(&acyclic).unwrap();
                validator.iter_errors(&json!({"x": 5})).count()
            })
            .unwrap();
        assert_eq!(inline.join().unwrap(), 1);
        // Cyclic: a node whose child goes through a long chain back to the node, with an
        // instance as deep as serde_json parses.
        let mut defs = chain(links, nest)["$defs"].as_object().cloned().unwrap();
        defs.insert(
            format!("d{}", links - 1),
            json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/d0"}}}),
        );
        let cyclic = json!({"$defs": defs, "$ref": "#/$defs/d0"});
        let shape = schema_shape(&cyclic);
        assert!(shape.cyclic && shape.reach <= MAX_REACH, "{shape:?}");
        let mut instance = json!(1);
        for _ in 0..127 {
            instance = json!({ "x": instance });
        }
        let depth = value_depth(&instance);
        assert!(shape.validation_cost(depth) > INLINE_COST);
        assert!(shape.validation_cost(depth) <= MAX_COST);
        let big = std::thread::Builder::new()
            .stack_size(BIG_STACK)
            .spawn(move || {
                let validator = jsonschema::validator_for(&cyclic).unwrap();
                validator.iter_errors(&instance).count()
                    + usize::from(validator.is_valid(&instance))
            })
            .unwrap();
        assert_eq!(big.join().unwrap(), 1);
    }
}
