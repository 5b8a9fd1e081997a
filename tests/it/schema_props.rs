//! Acceptance properties of the OpenAPI schema conversion, over generated JSON Schemas:
//!
//! * conversion never panics;
//! * every `$ref` left in the output is `#/components/schemas/NAME`, NAME is a safe component
//!   name present in the components, and no `$defs`/`definitions`/`$schema`/`$id`/anchor
//!   keyword remains;
//! * components that were already there (other tools') are left untouched;
//! * the converted form accepts exactly what the original accepts: each instance is validated
//!   against the original with the `jsonschema` crate (draft from `$schema`), and against the
//!   document `{...converted, "components": {"schemas": components}}` read as 2020-12, where
//!   `#/components/schemas/NAME` resolves inside that same document.
//!
//! Schemas are built from type/enum/const/bounds/format/oneOf/anyOf/allOf/not/if-then-else/
//! properties/required/items/prefixItems/additionalProperties/dependencies, with `$defs` (or
//! `definitions`) referenced by name, by `$anchor`, through escaped pointer tokens, by deep
//! pointers and by `#`. Some documents are draft-07 (`definitions`, array `items` +
//! `additionalItems`, `dependencies`, `$ref` siblings that draft 7 ignores), checking the
//! translation to 2020-12. References are placed so that every reference cycle passes through
//! a keyword that descends into the instance, so validating a finite instance terminates.

use std::cell::Cell;
use std::collections::HashMap;

use jsonschema::Draft;
use mcpo::openapi::schema::{COMPONENT_REF_PREFIX, UNRESOLVED_REF_KEY, convert_schema};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

const PROPS: &[&str] = &[
    "a",
    "b",
    "name",
    "$ref",
    "$defs",
    "a/b",
    "t~x",
    "with space",
    "enum",
];
const DEF_NAMES: &[&str] = &[
    "Node",
    "Item",
    "a/b",
    "t~x",
    "with space",
    "ünï",
    "100%",
    "$ref",
    "x.y-z",
];
const STRINGS: &[&str] = &[
    "",
    "a",
    "ab",
    "abc",
    "foo@example.com",
    "2024-01-31",
    "192.168.0.1",
    "not-a-date",
    "a/b",
    "0f8fe9a4-1c2b-4c5d-8e9f-0a1b2c3d4e5f",
];
const FORMATS: &[&str] = &["email", "date", "ipv4", "uuid"];
const TYPES: &[&str] = &[
    "string", "integer", "number", "boolean", "null", "object", "array",
];
/// Keywords whose sub-schemas apply to parts of the instance: a reference below one of them
/// consumes instance depth, so it may close a cycle.
const DESCENDING: &[&str] = &[
    "properties",
    "patternProperties",
    "additionalProperties",
    "items",
    "prefixItems",
    "additionalItems",
    "contains",
];

// ---------------------------------------------------------------- generation

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-4i64..5).prop_map(Value::from),
        select(&[0.5f64, -1.5, 2.0][..]).prop_map(Value::from),
        select(STRINGS).prop_map(Value::from),
    ]
}

/// Arbitrary JSON of small depth, with object keys mostly among the generated property names.
fn instance() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((select(PROPS), inner), 0..4).prop_map(|entries| {
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )
            }),
        ]
    })
}

/// A reference placeholder; `fix_refs` turns it into a real reference once the document
/// (and which references may recurse) is known.
fn marker(k: u8) -> Value {
    json!({"$ref": format!("@{k}")})
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(true)),
        Just(json!(false)),
        Just(json!({})),
        select(TYPES).prop_map(|t| json!({"type": t})),
        Just(json!({"type": ["string", "null"], "description": "nullable"})),
        prop::collection::vec(scalar(), 1..4).prop_map(|v| json!({"enum": v})),
        scalar().prop_map(|v| json!({"const": v})),
        (-3i64..3, 0i64..5)
            .prop_map(|(lo, span)| json!({"type": "integer", "minimum": lo, "maximum": lo + span})),
        (-3i64..3).prop_map(|lo| json!({"exclusiveMinimum": lo, "exclusiveMaximum": lo + 3})),
        Just(json!({"type": "number", "multipleOf": 0.5, "default": 1})),
        (0u64..3, 0u64..3).prop_map(
            |(min, span)| json!({"type": "string", "minLength": min, "maxLength": min + span})
        ),
        select(FORMATS).prop_map(|f| json!({"type": "string", "format": f})),
        Just(json!({"type": "string", "pattern": "^a", "examples": [{"$ref": "#/nowhere"}]})),
        any::<u8>().prop_map(marker),
        any::<u8>().prop_map(marker),
    ]
}

fn object_schema(
    (props, required, additional): (Vec<(&str, Value)>, Vec<&str>, Option<Value>),
) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), json!("object"));
    let properties: Map<String, Value> =
        props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    out.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        out.insert("required".into(), json!(required));
    }
    if let Some(additional) = additional {
        out.insert("additionalProperties".into(), additional);
    }
    Value::Object(out)
}

fn with_ref_marker(k: u8, mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        map.insert("$ref".into(), json!(format!("@{k}")));
        schema
    } else {
        marker(k)
    }
}

fn schema() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 40, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(|v| json!({"oneOf": v})),
            prop::collection::vec(inner.clone(), 1..4).prop_map(|v| json!({"anyOf": v})),
            prop::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"allOf": v})),
            inner.clone().prop_map(|s| json!({"not": s})),
            (
                prop::collection::vec((select(PROPS), inner.clone()), 0..4),
                subsequence(PROPS, 0..3),
                prop::option::of(inner.clone()),
            )
                .prop_map(object_schema),
            (
                prop::collection::vec((select(PROPS), inner.clone()), 1..3),
                subsequence(PROPS, 0..3),
                prop::option::of(inner.clone()),
            )
                .prop_map(object_schema),
            (inner.clone(), 1usize..4)
                .prop_map(|(s, max)| json!({"type": "array", "items": s, "maxItems": max})),
            (
                prop::collection::vec(inner.clone(), 1..3),
                prop::option::of(inner.clone())
            )
                .prop_map(|(prefix, rest)| {
                    let mut out = json!({"type": "array", "prefixItems": prefix});
                    if let Some(rest) = rest {
                        out["items"] = rest;
                    }
                    out
                }),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(i, t, e)| json!({"if": i, "then": t, "else": e})),
            (
                select(PROPS),
                subsequence(PROPS, 1..3),
                select(PROPS),
                inner.clone()
            )
                .prop_map(|(p, needs, q, s)| json!({
                    "dependentRequired": {p: needs},
                    "dependentSchemas": {q: s}
                })),
            (any::<u8>(), inner.clone()).prop_map(|(k, s)| with_ref_marker(k, s)),
        ]
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// 2020-12 with `$defs`.
    Defs2020,
    /// 2020-12 (no `$schema`) keeping its definitions in `definitions`.
    Definitions2020,
    /// draft-07: `definitions`, array `items`, `dependencies`, `$ref` overriding siblings.
    Draft7,
}

#[derive(Debug, Clone)]
struct Case {
    doc: Value,
    /// Every reference written into `doc` -> the JSON pointer it designates.
    refs: HashMap<String, String>,
    /// Components of "other tools" already in the document being built.
    existing: Map<String, Value>,
    instances: Vec<Value>,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![
            Just(Flavor::Defs2020),
            Just(Flavor::Definitions2020),
            Just(Flavor::Draft7)
        ],
        prop::collection::vec((0..DEF_NAMES.len(), schema(), any::<bool>()), 0..5),
        schema(),
        any::<bool>(),
        prop::collection::vec(instance(), 6),
        any::<u64>(),
    )
        .prop_map(|(flavor, defs, root, collide, instances, seed)| {
            let (doc, refs) = assemble(flavor, defs, root, seed);
            let existing = if collide {
                let mut existing = Map::new();
                existing.insert("t_input".into(), json!({"type": "string"}));
                existing.insert("t_input__Node".into(), json!({"const": "other tool"}));
                existing
            } else {
                Map::new()
            };
            Case {
                doc,
                refs,
                existing,
                instances,
                seed,
            }
        })
}

/// Rewrites 2020-12 spellings into draft-07 ones, everywhere in schema positions.
fn to_draft7(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    // Draft 7 does not define `uuid` (2019-09 does): a draft-7 validator ignores it while a
    // 2020-12 one asserting formats checks it. The conversion keeps `format` as written
    // (zod writes `uuid` in draft-7 schemas and means it), so only formats both define here.
    if map.get("format").and_then(Value::as_str) == Some("uuid") {
        map.insert("format".into(), json!("email"));
    }
    if let Some(Value::Array(prefix)) = map.remove("prefixItems") {
        let rest = map.remove("items");
        map.insert("items".into(), Value::Array(prefix));
        if let Some(rest) = rest {
            map.insert("additionalItems".into(), rest);
        }
    }
    let mut dependencies = Map::new();
    for keyword in ["dependentRequired", "dependentSchemas"] {
        if let Some(Value::Object(deps)) = map.remove(keyword) {
            for (name, dep) in deps {
                dependencies.entry(name).or_insert(dep);
            }
        }
    }
    if !dependencies.is_empty() {
        map.insert("dependencies".into(), Value::Object(dependencies));
    }
    for_each_subschema_mut(map, |_, sub| to_draft7(sub));
}

fn holds_schemas(keyword: &str) -> Option<&'static str> {
    match keyword {
        "properties" | "patternProperties" | "dependentSchemas" | "$defs" | "definitions"
        | "dependencies" => Some("map"),
        "allOf" | "anyOf" | "oneOf" | "prefixItems" => Some("array"),
        // The one keyword holding either a schema or (drafts up to 2019-09) an array of them.
        "items" => Some("items"),
        "additionalProperties"
        | "additionalItems"
        | "contains"
        | "not"
        | "if"
        | "then"
        | "else"
        | "propertyNames"
        | "unevaluatedItems"
        | "unevaluatedProperties" => Some("schema"),
        _ => None,
    }
}

/// Calls `f(keyword, sub-schema)` for each direct sub-schema of a schema object.
fn for_each_subschema_mut(map: &mut Map<String, Value>, mut f: impl FnMut(&str, &mut Value)) {
    for (keyword, value) in map.iter_mut() {
        match (holds_schemas(keyword), value) {
            (Some("map"), Value::Object(subs)) => {
                for sub in subs.values_mut() {
                    if !sub.is_array() {
                        f(keyword, sub);
                    }
                }
            }
            (Some("array" | "items"), Value::Array(subs)) => {
                for sub in subs {
                    f(keyword, sub);
                }
            }
            (Some("schema" | "items"), sub) => f(keyword, sub),
            _ => {}
        }
    }
}

fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Percent-encodes what may not appear raw in a URI fragment.
fn encode_fragment(pointer: &str, encode_dollar: bool) -> String {
    let mut out = String::new();
    for byte in pointer.bytes() {
        let raw = byte.is_ascii_alphanumeric()
            || b"-._~!&'()*+,;=:@/".contains(&byte)
            || (byte == b'$' && !encode_dollar);
        if raw {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Ref-free sub-schemas below `properties`/`items` (deep pointer targets that cannot start a
/// cycle).
fn collect_deep_targets(value: &Value, pointer: &str, below_root: bool, out: &mut Vec<String>) {
    let Value::Object(map) = value else { return };
    if below_root && !serde_json::to_string(value).unwrap().contains("\"$ref\"") {
        out.push(pointer.to_owned());
    }
    for (keyword, sub) in map {
        let base = format!("{pointer}/{}", escape_token(keyword));
        match (keyword.as_str(), sub) {
            ("properties", Value::Object(props)) => {
                for (name, prop) in props {
                    collect_deep_targets(
                        prop,
                        &format!("{base}/{}", escape_token(name)),
                        true,
                        out,
                    );
                }
            }
            ("items", Value::Object(_)) => collect_deep_targets(sub, &base, true, out),
            _ => {}
        }
    }
}

struct Targets {
    /// For each definition: (reference spellings, JSON pointer).
    defs: Vec<(Vec<String>, String)>,
    deep: Vec<(String, String)>,
}

/// Turns `@k` placeholders into references. A reference not below a descending keyword
/// (relative to its definition) may only go to an earlier definition, so every cycle
/// descends into the instance.
fn fix_refs(
    value: &mut Value,
    current: Option<usize>,
    descended: bool,
    targets: &Targets,
    refs: &mut HashMap<String, String>,
) {
    let Value::Object(map) = value else { return };
    if let Some(Value::String(placeholder)) = map.get("$ref")
        && let Some(k) = placeholder.strip_prefix('@')
    {
        let k: usize = k.parse().unwrap();
        let mut candidates: Vec<(String, String)> = Vec::new();
        let reachable = targets
            .defs
            .iter()
            .enumerate()
            .filter(|(i, _)| descended || current.is_none_or(|c| *i < c));
        for (_, (spellings, pointer)) in reachable {
            for spelling in spellings {
                candidates.push((spelling.clone(), pointer.clone()));
            }
        }
        if descended {
            candidates.push(("#".into(), String::new()));
            candidates.extend(targets.deep.iter().cloned());
        }
        if candidates.is_empty() {
            map.remove("$ref");
        } else {
            let (reference, pointer) = candidates[k % candidates.len()].clone();
            refs.insert(reference.clone(), pointer);
            map.insert("$ref".into(), Value::String(reference));
        }
    }
    for_each_subschema_mut(map, |keyword, sub| {
        let descends = descended || DESCENDING.contains(&keyword);
        fix_refs(sub, current, descends, targets, refs);
    });
}

fn assemble(
    flavor: Flavor,
    defs: Vec<(usize, Value, bool)>,
    mut root: Value,
    seed: u64,
) -> (Value, HashMap<String, String>) {
    let container = if flavor == Flavor::Defs2020 {
        "$defs"
    } else {
        "definitions"
    };
    let mut seen = Vec::new();
    let mut defs: Vec<(String, Value, bool)> = defs
        .into_iter()
        .filter(|(i, _, _)| {
            let fresh = !seen.contains(i);
            seen.push(*i);
            fresh
        })
        .map(|(i, schema, anchored)| (DEF_NAMES[i].to_owned(), schema, anchored))
        .collect();
    if flavor == Flavor::Draft7 {
        to_draft7(&mut root);
        for (_, schema, _) in &mut defs {
            to_draft7(schema);
        }
    }
    let mut targets = Targets {
        defs: Vec::new(),
        deep: Vec::new(),
    };
    for (i, (name, schema, anchored)) in defs.iter_mut().enumerate() {
        let pointer = format!("/{container}/{}", escape_token(name));
        let mut spellings = vec![
            format!("#{}", encode_fragment(&pointer, false)),
            format!("#{}", encode_fragment(&pointer, true)),
        ];
        if *anchored
            && flavor != Flavor::Draft7
            && let Value::Object(map) = schema
        {
            map.insert("$anchor".into(), json!(format!("anchor{i}")));
            spellings.push(format!("#anchor{i}"));
        }
        targets.defs.push((spellings, pointer));
    }
    if !root.is_object() {
        root = json!({"allOf": [root]});
    }
    let mut deep = Vec::new();
    collect_deep_targets(&root, "", false, &mut deep);
    for (name, schema, _) in &defs {
        let pointer = format!("/{container}/{}", escape_token(name));
        collect_deep_targets(schema, &pointer, false, &mut deep);
    }
    targets.deep = deep
        .into_iter()
        .map(|pointer| (format!("#{}", encode_fragment(&pointer, false)), pointer))
        .collect();

    let mut refs = HashMap::new();
    fix_refs(&mut root, None, false, &targets, &mut refs);
    for (i, (_, schema, _)) in defs.iter_mut().enumerate() {
        fix_refs(schema, Some(i), false, &targets, &mut refs);
    }
    let Value::Object(mut doc) = root else {
        unreachable!()
    };
    match flavor {
        Flavor::Draft7 => {
            doc.insert(
                "$schema".into(),
                json!("http://json-schema.org/draft-07/schema#"),
            );
        }
        Flavor::Defs2020 if seed.is_multiple_of(2) => {
            doc.insert(
                "$schema".into(),
                json!("https://json-schema.org/draft/2020-12/schema"),
            );
        }
        _ => {}
    }
    if !defs.is_empty() {
        let defs: Map<String, Value> = defs.into_iter().map(|(n, s, _)| (n, s)).collect();
        doc.insert(container.into(), Value::Object(defs));
    }
    (Value::Object(doc), refs)
}

// ---------------------------------------------------------------- valid-ish instances

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        // SplitMix64: enough spread for picking branches.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % n.max(1) as u64) as usize
    }
}

/// An instance shaped after `schema` (often valid, sometimes not: branches are picked at
/// random and `not`/`if` are ignored).
fn sample(schema: &Value, case: &Case, rng: &mut Rng, depth: usize) -> Value {
    let Value::Object(map) = schema else {
        return if depth > 4 {
            Value::Null
        } else {
            json!(STRINGS[rng.below(STRINGS.len())])
        };
    };
    if depth > 5 {
        return Value::Null;
    }
    if let Some(Value::String(reference)) = map.get("$ref")
        && rng.below(4) != 0
        && let Some(target) = case.refs.get(reference).and_then(|p| case.doc.pointer(p))
    {
        return sample(target, case, rng, depth + 1);
    }
    if let Some(Value::Array(options)) = map.get("enum")
        && !options.is_empty()
    {
        return options[rng.below(options.len())].clone();
    }
    if let Some(value) = map.get("const") {
        return value.clone();
    }
    for keyword in ["oneOf", "anyOf", "allOf"] {
        if let Some(Value::Array(branches)) = map.get(keyword)
            && !branches.is_empty()
        {
            return sample(&branches[rng.below(branches.len())], case, rng, depth + 1);
        }
    }
    let ty = match map.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) if !ts.is_empty() => {
            ts[rng.below(ts.len())].as_str().unwrap_or("null")
        }
        _ if map.contains_key("properties") => "object",
        _ if map.contains_key("items") || map.contains_key("prefixItems") => "array",
        _ if map.contains_key("exclusiveMinimum") || map.contains_key("minimum") => "integer",
        _ => TYPES[rng.below(TYPES.len())],
    };
    let int = |key: &str| map.get(key).and_then(Value::as_i64);
    match ty {
        "null" => Value::Null,
        "boolean" => Value::Bool(rng.below(2) == 0),
        "integer" | "number" => {
            let lo = int("minimum")
                .or(int("exclusiveMinimum").map(|x| x + 1))
                .unwrap_or(-3);
            let hi = int("maximum")
                .or(int("exclusiveMaximum").map(|x| x - 1))
                .unwrap_or(lo + 6);
            let n = lo + rng.below((hi - lo + 1).max(1) as usize) as i64;
            if ty == "number" && rng.below(3) == 0 {
                json!(n as f64 + 0.5)
            } else {
                json!(n)
            }
        }
        "string" => match map.get("format").and_then(Value::as_str) {
            Some("email") => json!("foo@example.com"),
            Some("date") => json!("2024-01-31"),
            Some("ipv4") => json!("192.168.0.1"),
            Some("uuid") => json!("0f8fe9a4-1c2b-4c5d-8e9f-0a1b2c3d4e5f"),
            _ => {
                let min = int("minLength").unwrap_or(0) as usize;
                json!("a".repeat(min + rng.below(2)))
            }
        },
        "array" => {
            let mut out = Vec::new();
            let prefix = match (map.get("prefixItems"), map.get("items")) {
                (Some(Value::Array(p)), _) | (None, Some(Value::Array(p))) => p.clone(),
                _ => Vec::new(),
            };
            for item in &prefix {
                out.push(sample(item, case, rng, depth + 1));
            }
            let rest = match map.get("items") {
                Some(Value::Array(_)) => map.get("additionalItems"),
                other => other,
            };
            if let Some(rest) = rest {
                let max = int("maxItems").unwrap_or(3).max(0) as usize;
                for _ in 0..rng.below(max.saturating_sub(out.len()) + 1) {
                    out.push(sample(rest, case, rng, depth + 1));
                }
            }
            Value::Array(out)
        }
        _ => {
            let mut out = Map::new();
            let required: Vec<&str> = map
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(Value::Object(props)) = map.get("properties") {
                for (name, prop) in props {
                    if required.contains(&name.as_str()) || rng.below(2) == 0 {
                        out.insert(name.clone(), sample(prop, case, rng, depth + 1));
                    }
                }
            }
            for name in required {
                out.entry(name).or_insert(Value::Null);
            }
            Value::Object(out)
        }
    }
}

// ---------------------------------------------------------------- checks

fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Walks the schema positions of converted output (2020-12) and checks the reference form.
fn check_output(
    value: &Value,
    components: &Map<String, Value>,
    existing: &Map<String, Value>,
    allow_unresolved: bool,
) -> Result<(), TestCaseError> {
    let Value::Object(map) = value else {
        return Ok(());
    };
    for forbidden in [
        "$defs",
        "definitions",
        "$schema",
        "$id",
        "$anchor",
        "$dynamicAnchor",
        "$dynamicRef",
    ] {
        prop_assert!(!map.contains_key(forbidden), "{forbidden} left in {value}");
    }
    prop_assert!(
        allow_unresolved || !map.contains_key(UNRESOLVED_REF_KEY),
        "unresolved marker in {value}"
    );
    if let Some(reference) = map.get("$ref") {
        let name = reference
            .as_str()
            .and_then(|r| r.strip_prefix(COMPONENT_REF_PREFIX));
        prop_assert!(name.is_some(), "bad ref form {reference}");
        let name = name.unwrap_or_default();
        prop_assert!(safe_name(name), "unsafe component name {name:?}");
        prop_assert!(components.contains_key(name), "dangling ref {name}");
        prop_assert!(
            !existing.contains_key(name),
            "ref into another tool's {name}"
        );
    }
    for (keyword, sub) in map {
        match (holds_schemas(keyword), sub) {
            (Some("map"), Value::Object(subs)) => {
                for sub in subs.values() {
                    check_output(sub, components, existing, allow_unresolved)?;
                }
            }
            (Some("array" | "items"), Value::Array(subs)) => {
                for sub in subs {
                    check_output(sub, components, existing, allow_unresolved)?;
                }
            }
            (Some("schema" | "items"), sub) => {
                check_output(sub, components, existing, allow_unresolved)?
            }
            _ => {}
        }
    }
    Ok(())
}

#[derive(Default)]
struct Stats {
    cases: Cell<usize>,
    compiled: Cell<usize>,
    checks: Cell<usize>,
    accepted: Cell<usize>,
}

fn bump(cell: &Cell<usize>) {
    cell.set(cell.get() + 1);
}

fn check_case(case: &Case, stats: &Stats) -> Result<(), TestCaseError> {
    bump(&stats.cases);
    let mut components = case.existing.clone();
    let converted = convert_schema(&case.doc, "t_input", &mut components);
    prop_assert!(
        converted.unresolved.is_empty(),
        "unresolved {:?} in {:#}",
        converted.unresolved,
        case.doc
    );
    for (name, body) in &case.existing {
        prop_assert_eq!(components.get(name), Some(body));
    }
    check_output(&converted.schema, &components, &case.existing, false)?;
    for (name, body) in &components {
        prop_assert!(safe_name(name));
        if !case.existing.contains_key(name) {
            check_output(body, &components, &case.existing, false)?;
        }
    }

    let options = || jsonschema::options().should_validate_formats(true);
    let Ok(original) = options().build(&case.doc) else {
        return Ok(());
    };
    bump(&stats.compiled);
    let document = match &converted.schema {
        Value::Object(map) => {
            let mut document = map.clone();
            document.insert("components".into(), json!({"schemas": components}));
            Value::Object(document)
        }
        other => json!({"allOf": [other], "components": {"schemas": components}}),
    };
    let rewritten = options()
        .with_draft(Draft::Draft202012)
        .build(&document)
        .map_err(|e| {
            TestCaseError::fail(format!(
                "converted schema does not compile: {e}\n{document:#}"
            ))
        })?;

    let mut rng = Rng(case.seed);
    let sampled: Vec<Value> = (0..6)
        .map(|_| sample(&case.doc, case, &mut rng, 0))
        .collect();
    for instance in case.instances.iter().chain(&sampled) {
        let expected = original.is_valid(instance);
        bump(&stats.checks);
        if expected {
            bump(&stats.accepted);
        }
        prop_assert_eq!(
            rewritten.is_valid(instance),
            expected,
            "instance {} judged differently\noriginal: {:#}\nconverted: {:#}",
            instance,
            case.doc,
            document
        );
    }
    Ok(())
}

#[test]
fn converted_schemas_accept_exactly_what_the_originals_accept() {
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let stats = Stats::default();
    let result = runner.run(&case(), |case| check_case(&case, &stats));
    if let Err(error) = result {
        panic!("{error}");
    }
    let (cases, compiled) = (stats.cases.get(), stats.compiled.get());
    let (checks, accepted) = (stats.checks.get(), stats.accepted.get());
    eprintln!(
        "{cases} cases, {compiled} compiled; {checks} instances checked, {accepted} accepted"
    );
    // Guard against a generator that silently stopped exercising anything.
    assert!(compiled * 10 >= cases * 9, "too few schemas compile");
    assert!(accepted * 5 >= checks, "too few instances are valid");
    assert!(accepted * 5 <= checks * 4, "too few instances are invalid");
}

#[test]
fn conversion_never_panics_on_arbitrary_json() {
    // Arbitrary JSON shaped like schemas (keyword names as keys, any values) rather than
    // generated schemas: garbage where schemas are expected must not panic either.
    let keys = prop_oneof![select(
        &[
            "$ref",
            "$defs",
            "definitions",
            "$id",
            "$anchor",
            "$schema",
            "items",
            "properties",
            "allOf",
            "not",
            "dependencies",
            "additionalItems",
            "enum",
            "$dynamicRef",
            "discriminator",
            "mapping",
            "A",
            "a/b",
        ][..]
    ),];
    let leaf = prop_oneof![
        Just(json!("#")),
        Just(json!("#/$defs/A")),
        Just(json!("#/definitions/a~1b")),
        Just(json!("#/properties/A/items/0")),
        Just(json!("#A")),
        Just(json!("http://x/y#/z")),
        Just(json!("a/b")),
        Just(json!("%")),
        scalar(),
    ];
    let strategy = leaf.prop_recursive(5, 64, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..5).prop_map(|entries| {
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )
            }),
        ]
    });
    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |schema| {
        let mut components = Map::new();
        let converted = convert_schema(&schema, "p", &mut components);
        // Unresolved markers are expected here; the reference form still holds.
        check_output(&converted.schema, &components, &Map::new(), true)?;
        for body in components.values() {
            check_output(body, &components, &Map::new(), true)?;
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}
