//! Lossless conversion of a tool's JSON Schema into OpenAPI 3.1 form.
//!
//! OpenAPI 3.1's schema dialect is JSON Schema 2020-12, so almost every keyword passes through
//! unchanged. What cannot stay as it is, is how schemas refer to each other: a tool's schema
//! keeps its definitions in `$defs`/`definitions` and points at them (or at itself, or at any
//! sub-schema) with `$ref`s relative to its own root, and once that schema is inlined into a
//! request body those pointers mean nothing. Clients (Open WebUI in particular) also resolve
//! only refs of the exact form `#/components/schemas/NAME`. So the conversion:
//!
//! * moves every root definition, and every other sub-schema some `$ref` points at, into the
//!   document's `components.schemas` (the root itself too, when something refers to it),
//! * rewrites every `$ref` to `#/components/schemas/NAME`, resolving it the way a validator
//!   would: against the base URI in effect (`$id`s included), through JSON pointers with
//!   `~0`/`~1`/percent escapes, or through `$anchor`s; `$dynamicRef` (and 2019-09's
//!   `$recursiveRef`) too when the document is a single schema resource, where it can only
//!   land where a static reference would; OpenAPI `discriminator.mapping` values that point
//!   into the schema follow their targets,
//! * replaces what it cannot resolve (remote documents, dangling pointers) by an
//!   accept-anything schema carrying `x-mcpo-unresolved-ref`, and reports it,
//! * drops `$schema`, `$id`, `$anchor`, `$dynamicAnchor`, `$defs` and `definitions`, which
//!   would otherwise change how the moved schemas resolve (or duplicate anchors),
//! * and, for schemas written in an older draft (`$schema` naming draft-04/06/07 or 2019-09),
//!   rewrites the few keywords whose meaning changed so the 2020-12 reading accepts exactly
//!   the same instances: array-form `items`/`additionalItems` become
//!   `prefixItems`/`items`, `dependencies` splits into `dependentRequired`/`dependentSchemas`,
//!   siblings of `$ref` that drafts 4-7 ignore are dropped (annotations kept), keywords the
//!   source draft does not define are dropped (its validators ignore them), and draft-04 boolean
//!   `exclusiveMaximum`/`exclusiveMinimum` become numbers.
//!
//! Everything else (enum/const/default/examples data, formats, bounds, descriptions, unknown
//! keywords and `x-` extensions) is copied verbatim, in the original key order.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

use serde_json::{Map, Value};

/// Result of converting one schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// The schema to put inline (e.g. as the request body schema). Never contains
    /// `$defs`/`definitions`/`$schema`/`$id` as keywords (data such as `enum` or `default`
    /// values is copied verbatim, whatever keys it has).
    pub schema: Value,
    /// References that could not be resolved inside the schema (remote URLs, missing
    /// pointers, unknown anchors); each was replaced by `{}` (accept anything) with
    /// `"x-mcpo-unresolved-ref": "<original>"` kept beside as an extension. Each distinct
    /// reference is listed once, in the order first met. A schema nested deeper than the
    /// conversion follows is cut the same way and listed here as a note in parentheses.
    pub unresolved: Vec<String>,
}

/// The extension that marks where an unresolvable reference was.
pub const UNRESOLVED_REF_KEY: &str = "x-mcpo-unresolved-ref";

/// The only reference form the converted schemas contain.
pub const COMPONENT_REF_PREFIX: &str = "#/components/schemas/";

/// Extension marking a sub-schema cut because it was nested too deep.
const TRUNCATED_KEY: &str = "x-mcpo-truncated";

/// The base URI of a schema without `$id`; the same one the `jsonschema` crate uses, so a
/// relative reference resolves to the same absolute URI here as in the request validator.
const DEFAULT_BASE: &str = "json-schema:///";

/// Schema nesting the conversion follows. Parsed JSON is at most 128 levels deep (serde_json's
/// limit) and every schema level is at least one JSON level, so this only cuts values built in
/// code; it bounds the recursion to well under a 2 MiB thread stack even in debug builds
/// (about 6 KiB a level there).
const MAX_DEPTH: usize = 128;

/// Longest part of a component name derived from a pointer or definition name; the prefix
/// comes on top. Keeps names readable; uniqueness is ensured by suffixes anyway.
const MAX_SUFFIX_LEN: usize = 96;

/// Converts `schema` into OpenAPI 3.1 form. Definitions and any sub-schema that is the target
/// of a reference are added to `components` (the `components.schemas` map of the document
/// being built) under names starting with `prefix` (already sanitized by the caller, e.g.
/// "get_sum_input"); every `$ref` is rewritten to `#/components/schemas/NAME`. When something
/// refers to the root (`#` or a pointer through the root), the root itself is also added to
/// `components` under the name `prefix`. Never panics, whatever the input (non-object schemas
/// like `true`/`false`, refs cycles, self-referencing defs, garbage types).
///
/// Names already present in `components` are never overwritten: a colliding name gets a
/// numeric suffix (`_2`, `_3`, ...), so several tools can share one map.
pub fn convert_schema(
    schema: &Value,
    prefix: &str,
    components: &mut Map<String, Value>,
) -> Converted {
    let index = Index::build(schema);
    let mut converter = Converter {
        doc: schema,
        prefix: component_name(prefix),
        index,
        existing: components,
        reserved: HashSet::new(),
        memo: HashMap::new(),
        queue: VecDeque::new(),
        produced: Vec::new(),
        unresolved: Vec::new(),
        unresolved_seen: HashSet::new(),
    };
    converter.register_root_definitions();
    let inline = converter.convert(schema, &Scope::initial(), true, 0);
    // Hoisted targets are converted one after another rather than recursively, so ref cycles
    // end (each pointer is queued once) and long ref chains do not deepen the stack.
    while let Some(job) = converter.queue.pop_front() {
        let scope = converter.index.scope_outside(&job.pointer);
        let body = converter.convert(job.target, &scope, job.pointer.is_empty(), 0);
        converter.produced.push((job.name, body));
    }
    let Converter {
        produced,
        unresolved,
        ..
    } = converter;
    for (name, body) in produced {
        components.insert(name, body);
    }
    Converted {
        schema: inline,
        unresolved,
    }
}

/// Makes a component name safe: every char outside [A-Za-z0-9._-] becomes `_`. An empty name
/// becomes `_`, because OpenAPI requires component names to be non-empty.
pub fn component_name(raw: &str) -> String {
    if raw.is_empty() {
        return "_".to_owned();
    }
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The JSON Schema draft a schema is written in, as far as the conversion cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dialect {
    Draft4,
    Draft6,
    Draft7,
    Draft2019,
    Draft2020,
}

impl Dialect {
    /// Same recognition as the `jsonschema` crate; an unknown or version-less meta-schema reads
    /// as 2020-12 there too.
    fn from_schema_uri(uri: &str) -> Dialect {
        let uri = uri.trim_end_matches('#');
        let uri = uri
            .strip_prefix("https://")
            .or_else(|| uri.strip_prefix("http://"))
            .unwrap_or(uri);
        match uri {
            "json-schema.org/draft/2019-09/schema" => Dialect::Draft2019,
            "json-schema.org/draft-07/schema" => Dialect::Draft7,
            "json-schema.org/draft-06/schema" => Dialect::Draft6,
            "json-schema.org/draft-04/schema" => Dialect::Draft4,
            _ => Dialect::Draft2020,
        }
    }

    /// Whether `keyword` is one a 2020-12 validator evaluates but this draft does not define:
    /// the source validator ignores it, so the converted schema must not carry it.
    fn lacks(self, keyword: &str) -> bool {
        match keyword {
            "const" | "contains" | "propertyNames" => self < Dialect::Draft6,
            "if" | "then" | "else" => self < Dialect::Draft7,
            "dependentRequired"
            | "dependentSchemas"
            | "maxContains"
            | "minContains"
            | "unevaluatedItems"
            | "unevaluatedProperties" => self < Dialect::Draft2019,
            "prefixItems" | "$dynamicRef" => self < Dialect::Draft2020,
            _ => false,
        }
    }
}

/// Keywords that constrain instances (or may, like `format` and the content keywords when a
/// validator asserts them). Drafts 4-7 ignore these next to a `$ref`; annotations and unknown
/// keywords are inert either way and are kept.
fn is_assertion_or_applicator(keyword: &str) -> bool {
    matches!(
        keyword,
        "type"
            | "enum"
            | "const"
            | "multipleOf"
            | "maximum"
            | "exclusiveMaximum"
            | "minimum"
            | "exclusiveMinimum"
            | "maxLength"
            | "minLength"
            | "pattern"
            | "maxItems"
            | "minItems"
            | "uniqueItems"
            | "maxContains"
            | "minContains"
            | "maxProperties"
            | "minProperties"
            | "required"
            | "dependentRequired"
            | "allOf"
            | "anyOf"
            | "oneOf"
            | "not"
            | "if"
            | "then"
            | "else"
            | "dependentSchemas"
            | "dependencies"
            | "prefixItems"
            | "items"
            | "additionalItems"
            | "contains"
            | "properties"
            | "patternProperties"
            | "additionalProperties"
            | "propertyNames"
            | "unevaluatedItems"
            | "unevaluatedProperties"
            | "format"
            | "contentEncoding"
            | "contentMediaType"
            | "contentSchema"
            | "$dynamicRef"
            | "$recursiveRef"
    )
}

/// How a keyword's value holds sub-schemas. Everything not listed is data (enum, const,
/// default, examples, unknown keywords...) and is never looked into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    Schema,
    SchemaArray,
    SchemaMap,
    /// `dependencies`: a map whose values are schemas or arrays of property names.
    Dependencies,
    Data,
}

fn holds(keyword: &str, value: &Value) -> Holds {
    match keyword {
        "properties" | "patternProperties" | "dependentSchemas" | "$defs" | "definitions" => {
            Holds::SchemaMap
        }
        "allOf" | "anyOf" | "oneOf" | "prefixItems" => Holds::SchemaArray,
        "items" if value.is_array() => Holds::SchemaArray,
        "items"
        | "additionalProperties"
        | "additionalItems"
        | "contains"
        | "not"
        | "if"
        | "then"
        | "else"
        | "propertyNames"
        | "unevaluatedItems"
        | "unevaluatedProperties"
        | "contentSchema" => Holds::Schema,
        "dependencies" => Holds::Dependencies,
        _ => Holds::Data,
    }
}

/// Base URI and draft in effect inside a schema object.
#[derive(Debug, Clone)]
struct Scope {
    base: Rc<str>,
    dialect: Dialect,
}

impl Scope {
    /// The scope outside the root: no `$id` yet, and 2020-12 unless `$schema` says otherwise
    /// (the default of the MCP specification and of the `jsonschema` crate).
    fn initial() -> Scope {
        Scope {
            base: Rc::from(DEFAULT_BASE),
            dialect: Dialect::Draft2020,
        }
    }
}

/// What entering a schema object changes.
struct Entered<'d> {
    scope: Scope,
    /// The object starts a new schema resource (it has an identifier with a URI part).
    new_resource: bool,
    /// Plain-name fragments this object defines: a draft 6/7 `$id: "#name"`, `$anchor`,
    /// `$dynamicAnchor`.
    anchors: [Option<&'d str>; 3],
}

/// The keywords of one schema object that decide how the others are read, found in one pass
/// over its keys: most schema objects have a handful of keys, so this is cheaper than a hash
/// lookup for each (on the benchmark schema it took the conversion from 3.4x to 3.0x the time
/// of a deep clone; the rest is mostly hashing every key into the new maps, which a clone
/// does not do).
#[derive(Default)]
struct Keywords<'d> {
    schema: Option<&'d Value>,
    id: Option<&'d Value>,
    legacy_id: Option<&'d Value>,
    reference: bool,
    anchor: Option<&'d Value>,
    dynamic_anchor: Option<&'d Value>,
    items: Option<&'d Value>,
    prefix_items: bool,
    dependencies: Option<&'d Value>,
    dependent: bool,
    exclusive_maximum: Option<&'d Value>,
    exclusive_minimum: Option<&'d Value>,
}

impl<'d> Keywords<'d> {
    fn scan(obj: &'d Map<String, Value>) -> Keywords<'d> {
        let mut found = Keywords::default();
        for (key, value) in obj {
            match key.as_str() {
                "$schema" => found.schema = Some(value),
                "$id" => found.id = Some(value),
                "id" => found.legacy_id = Some(value),
                "$ref" => found.reference = true,
                "$anchor" => found.anchor = Some(value),
                "$dynamicAnchor" => found.dynamic_anchor = Some(value),
                "items" => found.items = Some(value),
                "prefixItems" => found.prefix_items = true,
                "dependencies" => found.dependencies = Some(value),
                "dependentRequired" | "dependentSchemas" => found.dependent = true,
                "exclusiveMaximum" => found.exclusive_maximum = Some(value),
                "exclusiveMinimum" => found.exclusive_minimum = Some(value),
                _ => {}
            }
        }
        found
    }
}

fn enter<'d>(outer: &Scope, keywords: &Keywords<'d>, at_root: bool) -> Entered<'d> {
    let mut dialect = outer.dialect;
    // `$schema` is honoured only where a schema resource starts, as validators do.
    if (at_root || keywords.id.is_some() || keywords.legacy_id.is_some())
        && let Some(Value::String(uri)) = keywords.schema
    {
        dialect = Dialect::from_schema_uri(uri);
    }
    // Drafts 4-7 ignore every sibling of `$ref`, the identifier included.
    let id = if dialect <= Dialect::Draft7 && keywords.reference {
        None
    } else if dialect == Dialect::Draft4 {
        keywords.legacy_id.and_then(Value::as_str)
    } else {
        keywords.id.and_then(Value::as_str)
    };
    let mut entered = Entered {
        scope: Scope {
            base: outer.base.clone(),
            dialect,
        },
        new_resource: false,
        anchors: [None; 3],
    };
    if let Some(id) = id {
        let (uri, fragment) = split_fragment(id);
        if !uri.is_empty() {
            let absolute = resolve_uri(&outer.base, uri);
            entered.scope.base = Rc::from(split_fragment(&absolute).0);
            entered.new_resource = true;
        }
        if dialect <= Dialect::Draft7 {
            entered.anchors[0] = fragment.filter(|name| !name.is_empty());
        }
    }
    if dialect >= Dialect::Draft2019 {
        entered.anchors[1] = keywords.anchor.and_then(Value::as_str);
    }
    if dialect >= Dialect::Draft2020 {
        entered.anchors[2] = keywords.dynamic_anchor.and_then(Value::as_str);
    }
    entered
}

/// One step of a JSON pointer, borrowed from the document.
#[derive(Debug, Clone, Copy)]
enum Step<'d> {
    Key(&'d str),
    Index(usize),
}

fn pointer_of(path: &[Step<'_>]) -> String {
    let mut out = String::new();
    for step in path {
        out.push('/');
        match step {
            Step::Key(key) => out.push_str(&escape_token(key)),
            Step::Index(i) => out.push_str(&i.to_string()),
        }
    }
    out
}

/// Where the schema resources and anchors of the original document are.
#[derive(Debug, Default)]
struct Index {
    /// Absolute URI (without fragment) of each schema resource -> its JSON pointer.
    resources: HashMap<String, String>,
    /// `URI#name` of each plain-name fragment -> JSON pointer of the schema defining it.
    anchors: HashMap<String, String>,
    /// JSON pointer of each schema resource (the root included) -> the scope inside it.
    scopes: HashMap<String, Scope>,
}

impl Index {
    fn build(doc: &Value) -> Index {
        let mut index = Index::default();
        let mut path = Vec::new();
        index.visit(doc, &Scope::initial(), &mut path, true, 0);
        index
    }

    fn visit<'d>(
        &mut self,
        value: &'d Value,
        outer: &Scope,
        path: &mut Vec<Step<'d>>,
        at_root: bool,
        depth: usize,
    ) {
        let Value::Object(obj) = value else { return };
        if depth > MAX_DEPTH {
            return;
        }
        let entered = enter(outer, &Keywords::scan(obj), at_root);
        if at_root || entered.new_resource || entered.anchors.iter().any(Option::is_some) {
            let pointer = pointer_of(path);
            if at_root || entered.new_resource {
                self.resources
                    .entry(entered.scope.base.to_string())
                    .or_insert_with(|| pointer.clone());
                self.scopes.insert(pointer.clone(), entered.scope.clone());
            }
            for name in entered.anchors.iter().flatten() {
                self.anchors
                    .entry(format!("{}#{name}", entered.scope.base))
                    .or_insert_with(|| pointer.clone());
            }
        }
        let scope = entered.scope;
        for (key, child) in obj {
            path.push(Step::Key(key));
            match holds(key, child) {
                Holds::Schema => self.visit(child, &scope, path, false, depth + 1),
                Holds::SchemaArray => {
                    if let Value::Array(items) = child {
                        for (i, item) in items.iter().enumerate() {
                            path.push(Step::Index(i));
                            self.visit(item, &scope, path, false, depth + 1);
                            path.pop();
                        }
                    }
                }
                Holds::SchemaMap | Holds::Dependencies => {
                    if let Value::Object(map) = child {
                        for (name, item) in map {
                            path.push(Step::Key(name));
                            self.visit(item, &scope, path, false, depth + 1);
                            path.pop();
                        }
                    }
                }
                Holds::Data => {}
            }
            path.pop();
        }
    }

    /// The scope a schema at `pointer` is entered from: the one inside the nearest schema
    /// resource strictly above it (its own `$id`/`$schema` apply when it is converted).
    fn scope_outside(&self, pointer: &str) -> Scope {
        let mut end = pointer.len();
        while let Some(slash) = pointer[..end].rfind('/') {
            if let Some(scope) = self.scopes.get(&pointer[..slash]) {
                return scope.clone();
            }
            end = slash;
        }
        Scope::initial()
    }
}

/// A hoisted sub-schema waiting to be converted.
struct Job<'d> {
    pointer: String,
    target: &'d Value,
    name: String,
}

/// Whether a reference keyword follows the dynamic scope (`$dynamicRef`, `$recursiveRef`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefKind {
    Static,
    Dynamic,
}

struct Converter<'d, 'c> {
    doc: &'d Value,
    prefix: String,
    index: Index,
    /// Components already in the document (other tools'); read only, never overwritten.
    existing: &'c Map<String, Value>,
    /// Names this conversion has given out.
    reserved: HashSet<String>,
    /// JSON pointer (canonical: escaped tokens, no percent-encoding) -> component name.
    memo: HashMap<String, String>,
    queue: VecDeque<Job<'d>>,
    /// Converted components, in the order their names were given out.
    produced: Vec<(String, Value)>,
    unresolved: Vec<String>,
    /// The entries of `unresolved`, to keep it free of duplicates in linear time.
    unresolved_seen: HashSet<String>,
}

impl<'d> Converter<'d, '_> {
    /// Root definitions become components even when nothing refers to them (they document the
    /// tool), in document order so the first of two clashing names keeps the plain one.
    fn register_root_definitions(&mut self) {
        let Value::Object(root) = self.doc else {
            return;
        };
        for (keyword, defs) in root {
            if keyword != "$defs" && keyword != "definitions" {
                continue;
            }
            if let Value::Object(defs) = defs {
                for (name, target) in defs {
                    let pointer = format!("/{keyword}/{}", escape_token(name));
                    self.component_for(pointer, target);
                }
            }
        }
    }

    /// The component holding the sub-schema at `pointer`, queued for conversion when new.
    fn component_for(&mut self, pointer: String, target: &'d Value) -> String {
        if let Some(name) = self.memo.get(&pointer) {
            return name.clone();
        }
        let name = self.allocate(self.name_hint(&pointer));
        self.memo.insert(pointer.clone(), name.clone());
        self.queue.push_back(Job {
            pointer,
            target,
            name: name.clone(),
        });
        name
    }

    /// `prefix` for the root, `prefix__Def` for a root definition, and `prefix__` followed by
    /// the pointer's tokens joined with `.` for anything deeper.
    fn name_hint(&self, pointer: &str) -> String {
        let Some(rest) = pointer.strip_prefix('/') else {
            return self.prefix.clone();
        };
        let tokens: Vec<Cow<'_, str>> = rest
            .split('/')
            .map(|token| unescape_token(token).unwrap_or(Cow::Borrowed(token)))
            .collect();
        let tokens = match tokens.as_slice() {
            [first, tail @ ..]
                if !tail.is_empty() && (first == "$defs" || first == "definitions") =>
            {
                tail
            }
            all => all,
        };
        let mut suffix = component_name(&tokens.join("."));
        // Sanitized names are ASCII, so any byte index is a char boundary.
        suffix.truncate(MAX_SUFFIX_LEN);
        format!("{}__{suffix}", self.prefix)
    }

    fn allocate(&mut self, hint: String) -> String {
        let taken = |name: &str| self.existing.contains_key(name) || self.reserved.contains(name);
        let mut name = hint.clone();
        let mut n = 2u64;
        while taken(&name) {
            name = format!("{hint}_{n}");
            n += 1;
        }
        self.reserved.insert(name.clone());
        name
    }

    fn note_unresolved(&mut self, text: String) {
        if self.unresolved_seen.insert(text.clone()) {
            self.unresolved.push(text);
        }
    }

    /// Resolves `reference` as written in a schema with scope `scope` to a canonical JSON
    /// pointer in the original document and the value there.
    fn resolve(
        &self,
        reference: &str,
        scope: &Scope,
        kind: RefKind,
    ) -> Option<(String, &'d Value)> {
        // With a single schema resource, a dynamic reference lands where a static one would:
        // the outermost dynamic scope is that same resource. With several, the target depends
        // on the path taken at validation time, which a static `$ref` cannot express.
        if kind == RefKind::Dynamic && self.index.scopes.len() > 1 {
            return None;
        }
        let absolute = resolve_uri(&scope.base, reference);
        let (document, fragment) = split_fragment(&absolute);
        let resource = self.index.resources.get(document)?;
        let pointer = match fragment {
            None | Some("") => resource.clone(),
            Some(fragment) if fragment.starts_with('/') => {
                format!("{resource}{}", percent_decode(fragment)?)
            }
            Some(fragment) => {
                let name = percent_decode(fragment)?;
                self.index
                    .anchors
                    .get(&format!("{document}#{name}"))?
                    .clone()
            }
        };
        let target = lookup_pointer(self.doc, &pointer)?;
        Some((pointer, target))
    }

    /// The rewritten form of one reference keyword: `("$ref", "#/components/schemas/NAME")`,
    /// or the unresolved marker.
    fn rewrite_ref(
        &mut self,
        value: &Value,
        scope: &Scope,
        kind: RefKind,
    ) -> (&'static str, Value) {
        let Some(reference) = value.as_str() else {
            let text = value.to_string();
            self.note_unresolved(text.clone());
            return (UNRESOLVED_REF_KEY, Value::String(text));
        };
        match self.resolve(reference, scope, kind) {
            Some((pointer, target)) => {
                let name = self.component_for(pointer, target);
                (
                    "$ref",
                    Value::String(format!("{COMPONENT_REF_PREFIX}{name}")),
                )
            }
            None => {
                self.note_unresolved(reference.to_owned());
                (UNRESOLVED_REF_KEY, Value::String(reference.to_owned()))
            }
        }
    }

    fn convert(&mut self, value: &'d Value, outer: &Scope, at_root: bool, depth: usize) -> Value {
        match value {
            Value::Object(obj) => self.convert_object(obj, outer, at_root, depth),
            // Boolean schemas are valid as they are; anything else is not a schema, and is
            // kept verbatim so the conversion stays lossless (the validator reports it).
            other => other.clone(),
        }
    }

    fn convert_array(&mut self, value: &'d Value, scope: &Scope, depth: usize) -> Value {
        match value {
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| self.convert(item, scope, false, depth + 1))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn convert_map(&mut self, value: &'d Value, scope: &Scope, depth: usize) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(name, item)| (name.clone(), self.convert(item, scope, false, depth + 1)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn convert_object(
        &mut self,
        obj: &'d Map<String, Value>,
        outer: &Scope,
        at_root: bool,
        depth: usize,
    ) -> Value {
        if depth > MAX_DEPTH {
            self.note_unresolved(format!("(schema nested deeper than {MAX_DEPTH} levels)"));
            let mut cut = Map::new();
            cut.insert(TRUNCATED_KEY.to_owned(), Value::Bool(true));
            return Value::Object(cut);
        }
        let keywords = Keywords::scan(obj);
        let scope = enter(outer, &keywords, at_root).scope;
        let dialect = scope.dialect;
        // Drafts 4-7: `$ref` overrides its siblings.
        let ref_overrides = dialect <= Dialect::Draft7 && keywords.reference;
        // Array-form `items` is the tuple form of drafts up to 2019-09; 2020-12 spells it
        // `prefixItems` (and rejects the array form). Only a 2020-12 schema that also has
        // `prefixItems` keeps it as it is, being garbage anyway.
        let tuple_items = matches!(keywords.items, Some(Value::Array(_)))
            && !(dialect == Dialect::Draft2020 && keywords.prefix_items);
        // `dependencies` is gone from 2020-12; split it unless its successors are already
        // there (then it stays, for the validators that still read it).
        let split_dependencies = matches!(keywords.dependencies, Some(Value::Object(_)))
            && !(dialect >= Dialect::Draft2019 && keywords.dependent);

        let mut out = Map::with_capacity(obj.len());
        // Reference keywords beyond the first that lands on a key already taken (e.g. `$ref`
        // next to `$dynamicRef`); they go into `allOf`, which means the same.
        let mut extra: Vec<Value> = Vec::new();
        for (key, value) in obj {
            match key.as_str() {
                "$schema" | "$vocabulary" | "$id" | "$anchor" | "$dynamicAnchor"
                | "$recursiveAnchor" | "$defs" | "definitions" => continue,
                "id" if dialect == Dialect::Draft4 => continue,
                "$ref" => {
                    let (k, v) = self.rewrite_ref(value, &scope, RefKind::Static);
                    insert_or_defer(&mut out, &mut extra, k, v);
                    continue;
                }
                "$dynamicRef" => {
                    if dialect == Dialect::Draft2020 {
                        let (k, v) = self.rewrite_ref(value, &scope, RefKind::Dynamic);
                        insert_or_defer(&mut out, &mut extra, k, v);
                    }
                    continue;
                }
                "$recursiveRef" if dialect == Dialect::Draft2019 => {
                    let (k, v) = self.rewrite_ref(value, &scope, RefKind::Dynamic);
                    insert_or_defer(&mut out, &mut extra, k, v);
                    continue;
                }
                _ => {}
            }
            if (ref_overrides && is_assertion_or_applicator(key)) || dialect.lacks(key) {
                continue;
            }
            match key.as_str() {
                "maximum" | "minimum" if dialect == Dialect::Draft4 => {
                    let exclusive = if key == "maximum" {
                        "exclusiveMaximum"
                    } else {
                        "exclusiveMinimum"
                    };
                    let flag = if key == "maximum" {
                        keywords.exclusive_maximum
                    } else {
                        keywords.exclusive_minimum
                    };
                    let name = if flag == Some(&Value::Bool(true)) {
                        exclusive
                    } else {
                        key.as_str()
                    };
                    out.insert(name.to_owned(), value.clone());
                }
                // Draft 4 reads these only as flags of `maximum`/`minimum`, folded above.
                "exclusiveMaximum" | "exclusiveMinimum" if dialect == Dialect::Draft4 => {}
                "items" if tuple_items => {
                    let converted = self.convert_array(value, &scope, depth);
                    out.insert("prefixItems".to_owned(), converted);
                }
                // Only a schema moves: under `items`, a garbage array would read as a tuple.
                "additionalItems" if tuple_items && (value.is_object() || value.is_boolean()) => {
                    let converted = self.convert(value, &scope, false, depth + 1);
                    out.insert("items".to_owned(), converted);
                }
                "dependencies" if split_dependencies => {
                    self.split_dependencies(value, &scope, depth, &mut out);
                }
                "discriminator" => {
                    let rewritten = self.rewrite_discriminator(value, &scope);
                    out.insert(key.clone(), rewritten);
                }
                _ => {
                    let converted = match holds(key, value) {
                        Holds::Schema => self.convert(value, &scope, false, depth + 1),
                        Holds::SchemaArray => self.convert_array(value, &scope, depth),
                        Holds::SchemaMap => self.convert_map(value, &scope, depth),
                        Holds::Dependencies => self.convert_dependencies(value, &scope, depth),
                        Holds::Data => value.clone(),
                    };
                    out.insert(key.clone(), converted);
                }
            }
        }
        if !extra.is_empty() {
            match out.get_mut("allOf") {
                Some(Value::Array(all_of)) => all_of.extend(extra),
                Some(_) => {
                    // A garbage `allOf` stays as it was, one level down, beside the references.
                    let mut all_of = vec![Value::Object(out)];
                    all_of.extend(extra);
                    let mut wrapper = Map::new();
                    wrapper.insert("allOf".to_owned(), Value::Array(all_of));
                    return Value::Object(wrapper);
                }
                None => {
                    out.insert("allOf".to_owned(), Value::Array(extra));
                }
            }
        }
        Value::Object(out)
    }

    /// `dependencies` kept under its own name (2019-09+ schema that also has the new keywords).
    fn convert_dependencies(&mut self, value: &'d Value, scope: &Scope, depth: usize) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(name, dep)| {
                        let converted = match dep {
                            Value::Array(_) => dep.clone(),
                            schema => self.convert(schema, scope, false, depth + 1),
                        };
                        (name.clone(), converted)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Splits `dependencies` into `dependentRequired` (arrays of names) and
    /// `dependentSchemas` (schemas), which together mean the same.
    fn split_dependencies(
        &mut self,
        value: &'d Value,
        scope: &Scope,
        depth: usize,
        out: &mut Map<String, Value>,
    ) {
        let Value::Object(map) = value else { return };
        let mut required = Map::new();
        let mut schemas = Map::new();
        for (name, dep) in map {
            match dep {
                Value::Array(_) => {
                    required.insert(name.clone(), dep.clone());
                }
                schema => {
                    let converted = self.convert(schema, scope, false, depth + 1);
                    schemas.insert(name.clone(), converted);
                }
            }
        }
        if !required.is_empty() {
            out.insert("dependentRequired".to_owned(), Value::Object(required));
        }
        if !schemas.is_empty() {
            out.insert("dependentSchemas".to_owned(), Value::Object(schemas));
        }
    }

    /// OpenAPI's `discriminator.mapping` values are references too (pydantic writes
    /// `#/$defs/Cat` there); those that resolve are pointed at the components. Others (plain
    /// component names, remote URLs) stay: the keyword is an annotation, never validated.
    fn rewrite_discriminator(&mut self, value: &'d Value, scope: &Scope) -> Value {
        let Value::Object(discriminator) = value else {
            return value.clone();
        };
        let mut out = discriminator.clone();
        if let Some(Value::Object(mapping)) = out.get_mut("mapping") {
            for target in mapping.values_mut() {
                let Value::String(reference) = target else {
                    continue;
                };
                if !reference.contains('#') {
                    continue;
                }
                if let Some((pointer, schema)) = self.resolve(reference, scope, RefKind::Static) {
                    let name = self.component_for(pointer, schema);
                    *target = Value::String(format!("{COMPONENT_REF_PREFIX}{name}"));
                }
            }
        }
        Value::Object(out)
    }
}

fn insert_or_defer(out: &mut Map<String, Value>, extra: &mut Vec<Value>, key: &str, value: Value) {
    if out.contains_key(key) {
        let mut wrapper = Map::new();
        wrapper.insert(key.to_owned(), value);
        extra.push(Value::Object(wrapper));
    } else {
        out.insert(key.to_owned(), value);
    }
}

/// Splits `uri#fragment`; the fragment is `None` when there is no `#` at all.
fn split_fragment(uri: &str) -> (&str, Option<&str>) {
    match uri.split_once('#') {
        Some((document, fragment)) => (document, Some(fragment)),
        None => (uri, None),
    }
}

/// RFC 6901 escaping of one pointer token.
fn escape_token(token: &str) -> Cow<'_, str> {
    if token.contains(['~', '/']) {
        Cow::Owned(token.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(token)
    }
}

/// RFC 6901 unescaping of one pointer token; `None` for a `~` not followed by `0` or `1`.
fn unescape_token(token: &str) -> Option<Cow<'_, str>> {
    if !token.contains('~') {
        return Some(Cow::Borrowed(token));
    }
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(Cow::Owned(out))
}

/// The value at an (escaped, not percent-encoded) JSON pointer.
fn lookup_pointer<'d>(doc: &'d Value, pointer: &str) -> Option<&'d Value> {
    if pointer.is_empty() {
        return Some(doc);
    }
    let mut current = doc;
    for raw in pointer.strip_prefix('/')?.split('/') {
        let token = unescape_token(raw)?;
        current = match current {
            Value::Object(map) => map.get(token.as_ref())?,
            Value::Array(items) => items.get(array_index(&token)?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// An array index token as RFC 6901 allows it: digits, no leading zero. Being strict keeps
/// one spelling per location, so memoizing by pointer cannot split one target in two.
fn array_index(token: &str) -> Option<usize> {
    let canonical = token == "0"
        || (!token.is_empty()
            && !token.starts_with('0')
            && token.bytes().all(|b| b.is_ascii_digit()));
    if canonical { token.parse().ok() } else { None }
}

/// Percent-decodes a URI fragment; `None` when the bytes are not UTF-8. A `%` not followed by
/// two hex digits is kept as it is, as lenient resolvers do.
fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(i + 1).and_then(|b| hex_value(*b)),
                bytes.get(i + 2).and_then(|b| hex_value(*b)),
            )
        {
            out.push(high * 16 + low);
            i += 3;
            continue;
        }
        out.push(byte);
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The five components of a URI reference (RFC 3986 appendix B).
struct UriParts<'s> {
    scheme: Option<&'s str>,
    authority: Option<&'s str>,
    path: &'s str,
    query: Option<&'s str>,
    fragment: Option<&'s str>,
}

fn parse_uri(text: &str) -> UriParts<'_> {
    let (rest, fragment) = split_fragment(text);
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (scheme, rest) = match rest.split_once(':') {
        Some((scheme, rest)) if is_scheme(scheme) => (Some(scheme), rest),
        _ => (None, rest),
    };
    let (authority, path) = match rest.strip_prefix("//") {
        Some(rest) => {
            let end = rest.find('/').unwrap_or(rest.len());
            (Some(&rest[..end]), &rest[end..])
        }
        None => (None, rest),
    };
    UriParts {
        scheme,
        authority,
        path,
        query,
        fragment,
    }
}

fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Resolves a URI reference against an absolute base URI (RFC 3986 section 5.2). Both `$id`s
/// and `$ref`s go through it, so they meet on the same spelling.
fn resolve_uri(base: &str, reference: &str) -> String {
    // The common case: a fragment-only reference keeps the base's document.
    if let Some(fragment) = reference.strip_prefix('#') {
        return format!("{}#{fragment}", split_fragment(base).0);
    }
    let r = parse_uri(reference);
    let b = parse_uri(base);
    let (scheme, authority, path, query) = if r.scheme.is_some() {
        (r.scheme, r.authority, remove_dot_segments(r.path), r.query)
    } else if r.authority.is_some() {
        (b.scheme, r.authority, remove_dot_segments(r.path), r.query)
    } else if r.path.is_empty() {
        (
            b.scheme,
            b.authority,
            b.path.to_owned(),
            r.query.or(b.query),
        )
    } else if r.path.starts_with('/') {
        (b.scheme, b.authority, remove_dot_segments(r.path), r.query)
    } else {
        let merged = if b.authority.is_some() && b.path.is_empty() {
            format!("/{}", r.path)
        } else {
            match b.path.rfind('/') {
                Some(slash) => format!("{}{}", &b.path[..=slash], r.path),
                None => r.path.to_owned(),
            }
        };
        (b.scheme, b.authority, remove_dot_segments(&merged), r.query)
    };
    let mut out = String::new();
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push(':');
    }
    if let Some(authority) = authority {
        out.push_str("//");
        out.push_str(authority);
    }
    out.push_str(&path);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    if let Some(fragment) = r.fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// RFC 3986 section 5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut out = String::with_capacity(path.len());
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            pop_segment(&mut out);
        } else if input == "/.." {
            input = "/";
            pop_segment(&mut out);
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            out.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    out
}

fn pop_segment(out: &mut String) {
    match out.rfind('/') {
        Some(slash) => out.truncate(slash),
        None => out.clear(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn convert(schema: &Value) -> (Converted, Map<String, Value>) {
        let mut components = Map::new();
        let converted = convert_schema(schema, "t_input", &mut components);
        (converted, components)
    }

    fn components_json(components: &Map<String, Value>) -> Value {
        Value::Object(components.clone())
    }

    #[test]
    fn defs_are_relocated_and_refs_rewritten() {
        let schema = json!({
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/A"}, "b": {"$ref": "#/$defs/B"}},
            "$defs": {
                "A": {"type": "string"},
                "B": {"type": "array", "items": {"$ref": "#/$defs/A"}},
                "Unused": {"type": "null"}
            }
        });
        let (converted, components) = convert(&schema);
        assert_eq!(
            converted.schema,
            json!({
                "type": "object",
                "properties": {
                    "a": {"$ref": "#/components/schemas/t_input__A"},
                    "b": {"$ref": "#/components/schemas/t_input__B"}
                }
            })
        );
        assert_eq!(
            components_json(&components),
            json!({
                "t_input__A": {"type": "string"},
                "t_input__B": {"type": "array", "items": {"$ref": "#/components/schemas/t_input__A"}},
                "t_input__Unused": {"type": "null"}
            })
        );
        assert!(converted.unresolved.is_empty());
        // Root definitions come first, in document order.
        let names: Vec<&String> = components.keys().collect();
        assert_eq!(names, ["t_input__A", "t_input__B", "t_input__Unused"]);
    }

    #[test]
    fn draft07_definitions_with_root_ref() {
        // zod-to-json-schema's shape.
        let schema = json!({
            "$ref": "#/definitions/Args",
            "definitions": {
                "Args": {
                    "type": "object",
                    "properties": {"n": {"type": "number", "description": "how many"}},
                    "required": ["n"],
                    "additionalProperties": false
                }
            },
            "$schema": "http://json-schema.org/draft-07/schema#"
        });
        let (converted, components) = convert(&schema);
        assert_eq!(
            converted.schema,
            json!({"$ref": "#/components/schemas/t_input__Args"})
        );
        assert_eq!(components["t_input__Args"], schema["definitions"]["Args"]);
    }

    #[test]
    fn root_recursion_adds_root_component() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://example.com/tree",
            "type": "object",
            "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#"}}}
        });
        let (converted, components) = convert(&schema);
        let expected = json!({
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/components/schemas/t_input"}}
            }
        });
        assert_eq!(converted.schema, expected);
        assert_eq!(components_json(&components), json!({"t_input": expected}));
    }

    #[test]
    fn recursive_definition_stays_a_cycle() {
        let schema = json!({
            "$defs": {
                "Node": {
                    "type": "object",
                    "properties": {
                        "label": {"type": "string"},
                        "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}
                    }
                }
            },
            "$ref": "#/$defs/Node"
        });
        let (converted, components) = convert(&schema);
        assert_eq!(
            converted.schema,
            json!({"$ref": "#/components/schemas/t_input__Node"})
        );
        assert_eq!(
            components["t_input__Node"]["properties"]["children"]["items"],
            json!({"$ref": "#/components/schemas/t_input__Node"})
        );
        assert_eq!(components.len(), 1);
    }

    #[test]
    fn degenerate_cycles_terminate() {
        let schema = json!({
            "$defs": {
                "Loop": {"$ref": "#/$defs/Loop"},
                "A": {"$ref": "#/$defs/B"},
                "B": {"allOf": [{"$ref": "#/$defs/A"}]}
            },
            "anyOf": [{"$ref": "#/$defs/Loop"}, {"$ref": "#"}]
        });
        let (converted, components) = convert(&schema);
        assert_eq!(
            components["t_input__Loop"],
            json!({"$ref": "#/components/schemas/t_input__Loop"})
        );
        assert_eq!(
            components["t_input__A"],
            json!({"$ref": "#/components/schemas/t_input__B"})
        );
        assert_eq!(components["t_input"], converted.schema);
    }

    #[test]
    fn deep_pointers_are_hoisted_once() {
        let schema = json!({
            "type": "object",
            "properties": {
                "x": {"type": "array", "items": {"type": "string", "minLength": 2}},
                "y": {"$ref": "#/properties/x/items"},
                "z": {"$ref": "#/$defs/A/properties/b"},
                "z2": {"$ref": "#/%24defs/A/properties/b"}
            },
            "$defs": {"A": {"properties": {"b": {"type": "object", "properties": {"again": {"$ref": "#/$defs/A/properties/b"}}}}}}
        });
        let (converted, components) = convert(&schema);
        let properties = &converted.schema["properties"];
        assert_eq!(properties["x"], schema["properties"]["x"]);
        assert_eq!(
            properties["y"],
            json!({"$ref": "#/components/schemas/t_input__properties.x.items"})
        );
        assert_eq!(
            properties["z"],
            json!({"$ref": "#/components/schemas/t_input__A.properties.b"})
        );
        assert_eq!(properties["z2"], properties["z"]);
        assert_eq!(
            components["t_input__properties.x.items"],
            json!({"type": "string", "minLength": 2})
        );
        assert_eq!(
            components["t_input__A.properties.b"],
            json!({"type": "object", "properties": {"again": {"$ref": "#/components/schemas/t_input__A.properties.b"}}})
        );
        assert_eq!(components.len(), 3);
    }

    #[test]
    fn escaped_pointer_tokens() {
        let schema = json!({
            "properties": {
                "slash": {"$ref": "#/$defs/a~1b"},
                "tilde": {"$ref": "#/$defs/t~0x"},
                "percent": {"$ref": "#/$defs/100%25"},
                "space": {"$ref": "#/$defs/with%20space"},
                "unicode": {"$ref": "#/$defs/%C3%BCber"},
                "bad_escape": {"$ref": "#/$defs/t~2x"},
                "bad_utf8": {"$ref": "#/$defs/%FF"}
            },
            "$defs": {
                "a/b": {"const": 1},
                "t~x": {"const": 2},
                "100%": {"const": 3},
                "with space": {"const": 4},
                "über": {"const": 5}
            }
        });
        let (converted, components) = convert(&schema);
        let p = &converted.schema["properties"];
        assert_eq!(p["slash"]["$ref"], "#/components/schemas/t_input__a_b");
        assert_eq!(p["tilde"]["$ref"], "#/components/schemas/t_input__t_x");
        assert_eq!(p["percent"]["$ref"], "#/components/schemas/t_input__100_");
        assert_eq!(
            p["space"]["$ref"],
            "#/components/schemas/t_input__with_space"
        );
        assert_eq!(p["unicode"]["$ref"], "#/components/schemas/t_input___ber");
        assert_eq!(components["t_input__a_b"], json!({"const": 1}));
        assert_eq!(components["t_input__t_x"], json!({"const": 2}));
        assert_eq!(components["t_input__100_"], json!({"const": 3}));
        assert_eq!(components["t_input___ber"], json!({"const": 5}));
        assert_eq!(converted.unresolved, ["#/$defs/t~2x", "#/$defs/%FF"]);
        assert_eq!(p["bad_escape"], json!({UNRESOLVED_REF_KEY: "#/$defs/t~2x"}));
    }

    #[test]
    fn keywords_without_refs_are_preserved_byte_for_byte() {
        let text = r#"{"title":"Args","description":"Adds \"two\" numbers","type":"object","properties":{"mode":{"enum":["fast","slow",null,1.5,{"k":[1,2]}],"default":"fast"},"when":{"type":["string","null"],"format":"date-time","examples":["2024-01-01T00:00:00Z"]},"n":{"type":"integer","minimum":-3,"exclusiveMaximum":1000.5,"multipleOf":0.5,"deprecated":true},"pick":{"oneOf":[{"const":"a"},{"type":"number","not":{"const":2}}],"x-extra":{"nested":true}},"list":{"type":"array","prefixItems":[{"type":"string","pattern":"^a+$"}],"items":false,"minItems":1,"uniqueItems":true,"contains":{"type":"string"}},"cond":{"if":{"properties":{"k":{"const":1}}},"then":{"required":["v"]},"else":{"maxProperties":3}}},"required":["mode"],"additionalProperties":false,"patternProperties":{"^x-":{"type":"string"}},"propertyNames":{"maxLength":10},"dependentRequired":{"a":["b"]},"unevaluatedProperties":false,"$comment":"kept"}"#;
        let schema: Value = serde_json::from_str(text).unwrap();
        let (converted, components) = convert(&schema);
        assert_eq!(serde_json::to_string(&converted.schema).unwrap(), text);
        assert!(components.is_empty());
        assert!(converted.unresolved.is_empty());
    }

    #[test]
    fn unresolvable_refs_are_recorded_and_siblings_kept() {
        let schema = json!({
            "properties": {
                "remote": {"$ref": "https://example.com/x.json#/A", "description": "d"},
                "relative": {"$ref": "other.json#/B"},
                "missing": {"$ref": "#/$defs/Missing"},
                "anchor": {"$ref": "#nope"},
                "again": {"$ref": "https://example.com/x.json#/A"},
                "not_a_string": {"$ref": 5}
            }
        });
        let (converted, components) = convert(&schema);
        let p = &converted.schema["properties"];
        assert_eq!(
            p["remote"],
            json!({UNRESOLVED_REF_KEY: "https://example.com/x.json#/A", "description": "d"})
        );
        assert_eq!(p["not_a_string"], json!({UNRESOLVED_REF_KEY: "5"}));
        assert_eq!(
            converted.unresolved,
            [
                "https://example.com/x.json#/A",
                "other.json#/B",
                "#/$defs/Missing",
                "#nope",
                "5"
            ]
        );
        assert!(components.is_empty());
    }

    #[test]
    fn data_values_containing_ref_are_untouched() {
        let schema = json!({
            "type": "object",
            "properties": {
                "$ref": {"type": "string", "default": {"$ref": "#/nowhere"}},
                "$defs": {"enum": [{"$ref": "#/$defs/A"}, {"$defs": {}}]},
                "c": {"const": {"$ref": "#"}, "examples": [{"$id": "x", "$schema": "y"}]}
            },
            "required": ["$ref"],
            "$defs": {"$ref": {"type": "integer"}, "A": {"$ref": "#/$defs/$ref"}}
        });
        let (converted, components) = convert(&schema);
        assert_eq!(converted.schema["properties"], schema["properties"]);
        assert_eq!(converted.schema["required"], json!(["$ref"]));
        assert!(converted.unresolved.is_empty());
        assert_eq!(components["t_input___ref"], json!({"type": "integer"}));
        assert_eq!(
            components["t_input__A"],
            json!({"$ref": "#/components/schemas/t_input___ref"})
        );
    }

    #[test]
    fn names_never_collide() {
        let schema = json!({
            "properties": {"a": {"$ref": "#/$defs/A"}, "s": {"$ref": "#/$defs/a_b"}, "t": {"$ref": "#/$defs/a b"}},
            "items": {"$ref": "#"},
            "$defs": {"A": {"type": "string"}, "a b": {"const": 1}, "a_b": {"const": 2}},
            "definitions": {"A": {"type": "number"}}
        });
        let mut components = Map::new();
        components.insert("t_input__A".to_owned(), json!({"x-other-tool": true}));
        let first = convert_schema(&schema, "t_input", &mut components);
        assert_eq!(components["t_input__A"], json!({"x-other-tool": true}));
        assert_eq!(
            first.schema["properties"]["a"]["$ref"],
            "#/components/schemas/t_input__A_2"
        );
        assert_eq!(components["t_input__A_2"], json!({"type": "string"}));
        // `a b` comes first in `$defs`, so it keeps the plain name.
        assert_eq!(
            first.schema["properties"]["t"]["$ref"],
            "#/components/schemas/t_input__a_b"
        );
        assert_eq!(
            first.schema["properties"]["s"]["$ref"],
            "#/components/schemas/t_input__a_b_2"
        );
        assert_eq!(components["t_input__A_3"], json!({"type": "number"}));
        assert_eq!(
            first.schema["items"]["$ref"],
            "#/components/schemas/t_input"
        );

        // A second tool whose sanitized prefix is the same.
        let second = convert_schema(&schema, "t input", &mut components);
        assert_eq!(
            second.schema["items"]["$ref"],
            "#/components/schemas/t_input_2"
        );
        assert_eq!(
            second.schema["properties"]["a"]["$ref"],
            "#/components/schemas/t_input__A_4"
        );
        assert_eq!(components["t_input"], first.schema);
        assert_eq!(components["t_input_2"], second.schema);
        assert_eq!(components.len(), 1 + 5 + 5);
    }

    #[test]
    fn non_object_schemas_pass_through() {
        for schema in [
            json!(true),
            json!(false),
            json!(5),
            json!(null),
            json!("x"),
            json!([{"$ref": "#"}]),
        ] {
            let (converted, components) = convert(&schema);
            assert_eq!(converted.schema, schema);
            assert!(converted.unresolved.is_empty());
            assert!(components.is_empty());
        }
        let (converted, components) =
            convert(&json!({"$defs": {"T": true, "F": false}, "not": {"$ref": "#/$defs/F"}}));
        assert_eq!(
            converted.schema,
            json!({"not": {"$ref": "#/components/schemas/t_input__F"}})
        );
        assert_eq!(
            components_json(&components),
            json!({"t_input__T": true, "t_input__F": false})
        );
    }

    #[test]
    fn garbage_does_not_panic() {
        let schemas = [
            json!({"$defs": 5, "definitions": [1], "properties": [1], "items": "x", "allOf": {"$ref": "#"}}),
            json!({"$ref": "#/enum/0", "enum": [{"type": "string", "$ref": "#/enum/1"}, 3]}),
            json!({"$ref": "#/items/01", "items": [true]}),
            json!({"$ref": "#/items/1", "items": [true]}),
            json!({"$ref": "#/type/x", "type": "string"}),
            json!({"$ref": "%", "$id": "::::", "$anchor": 3, "$schema": 4}),
            json!({"$id": "http://[bad", "$ref": "#/../x", "dependencies": {"a": 1, "b": ["c"]}}),
            json!({"$ref": "#", "$dynamicRef": "#", "allOf": 7}),
        ];
        for schema in &schemas {
            let (converted, components) = convert(schema);
            let text = serde_json::to_string(&converted.schema).unwrap();
            assert!(!text.contains("\"$defs\""), "{text}");
            let _ = components;
        }
        let (converted, components) = convert(&schemas[1]);
        // A pointer into data treats the data as a schema, as validators do.
        assert_eq!(
            converted.schema["$ref"],
            "#/components/schemas/t_input__enum.0"
        );
        assert_eq!(
            components["t_input__enum.0"]["$ref"],
            "#/components/schemas/t_input__enum.1"
        );
        assert_eq!(converted.schema["enum"], schemas[1]["enum"]);
        let (converted, _) = convert(&schemas[2]);
        assert_eq!(converted.unresolved, ["#/items/01"]);
        let (converted, _) = convert(&schemas[7]);
        assert_eq!(
            converted.schema,
            json!({"allOf": [
                {"$ref": "#/components/schemas/t_input", "allOf": 7},
                {"$ref": "#/components/schemas/t_input"}
            ]})
        );
    }

    #[test]
    fn anchors_and_embedded_resources() {
        let schema = json!({
            "$id": "https://example.com/schemas/root.json",
            "properties": {
                "by_anchor": {"$ref": "item.json#item"},
                // The anchor belongs to `item.json`, not to the root resource.
                "wrong_scope": {"$ref": "#item"},
                "by_id": {"$ref": "item.json"},
                "by_absolute": {"$ref": "https://example.com/schemas/root.json#/$defs/Plain"},
                "inside": {"$ref": "item.json#/properties/sku"},
                "nested_base": {"$ref": "nested/thing.json"}
            },
            "$defs": {
                "Plain": {"type": "boolean"},
                "Item": {
                    "$id": "item.json",
                    "$anchor": "item",
                    "type": "object",
                    "properties": {"sku": {"type": "string"}, "self": {"$ref": "#"}, "sibling": {"$ref": "#/$defs/Local"}},
                    "$defs": {"Local": {"type": "integer"}}
                },
                "Thing": {"$id": "nested/thing.json", "const": "thing"}
            }
        });
        let (converted, components) = convert(&schema);
        let p = &converted.schema["properties"];
        assert_eq!(converted.unresolved, ["#item"]);
        assert_eq!(p["by_anchor"]["$ref"], "#/components/schemas/t_input__Item");
        assert_eq!(p["by_id"]["$ref"], "#/components/schemas/t_input__Item");
        assert_eq!(
            p["by_absolute"]["$ref"],
            "#/components/schemas/t_input__Plain"
        );
        assert_eq!(
            p["inside"]["$ref"],
            "#/components/schemas/t_input__Item.properties.sku"
        );
        assert_eq!(
            p["nested_base"]["$ref"],
            "#/components/schemas/t_input__Thing"
        );
        let item = &components["t_input__Item"];
        // `#` inside the embedded resource means that resource, not the document root.
        assert_eq!(
            item["properties"]["self"]["$ref"],
            "#/components/schemas/t_input__Item"
        );
        assert_eq!(
            item["properties"]["sibling"]["$ref"],
            "#/components/schemas/t_input__Item._defs.Local"
        );
        assert_eq!(
            components["t_input__Item._defs.Local"],
            json!({"type": "integer"})
        );
        assert!(
            item.get("$id").is_none()
                && item.get("$anchor").is_none()
                && item.get("$defs").is_none()
        );
        assert!(!components.contains_key("t_input"));
    }

    #[test]
    fn dynamic_refs_resolve_in_a_single_resource() {
        let schema = json!({
            "$dynamicAnchor": "node",
            "type": "object",
            "properties": {"next": {"$dynamicRef": "#node"}}
        });
        let (converted, components) = convert(&schema);
        assert_eq!(
            converted.schema["properties"]["next"],
            json!({"$ref": "#/components/schemas/t_input"})
        );
        assert_eq!(components["t_input"], converted.schema);
    }

    #[test]
    fn draft07_keywords_are_translated() {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "pair": {"type": "array", "items": [{"type": "string"}, {"type": "number"}], "additionalItems": false},
                "free": {"items": [{"type": "string"}]},
                "ref": {"$ref": "#/definitions/S", "description": "kept", "type": "integer", "minimum": 3},
                "late": {"prefixItems": [{"type": "string"}], "unevaluatedProperties": false}
            },
            "dependencies": {"a": ["b"], "c": {"required": ["d"]}},
            "definitions": {"S": {"type": "string"}}
        });
        let (converted, _) = convert(&schema);
        assert_eq!(
            converted.schema,
            json!({
                "type": "object",
                "properties": {
                    "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}], "items": false},
                    "free": {"prefixItems": [{"type": "string"}]},
                    "ref": {"$ref": "#/components/schemas/t_input__S", "description": "kept"},
                    "late": {}
                },
                "dependentRequired": {"a": ["b"]},
                "dependentSchemas": {"c": {"required": ["d"]}}
            })
        );
    }

    #[test]
    fn draft07_root_referenced_keeps_its_dialect() {
        // The root component is converted from the root again: its `$schema` must still count,
        // or the `type` sibling draft 7 ignores would start to apply.
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$ref": "#/definitions/A",
            "type": "integer",
            "definitions": {"A": {"properties": {"again": {"$ref": "#"}}, "items": [{"type": "string"}]}}
        });
        let (converted, components) = convert(&schema);
        assert_eq!(
            converted.schema,
            json!({"$ref": "#/components/schemas/t_input__A"})
        );
        assert_eq!(components["t_input"], converted.schema);
        assert_eq!(
            components["t_input__A"],
            json!({"properties": {"again": {"$ref": "#/components/schemas/t_input"}}, "prefixItems": [{"type": "string"}]})
        );
    }

    #[test]
    fn draft04_exclusive_bounds_become_numbers() {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "id": "http://example.com/s",
            "properties": {
                "open": {"minimum": 0, "exclusiveMinimum": true, "maximum": 10, "exclusiveMaximum": false},
                "c": {"const": 1, "type": "integer"}
            }
        });
        let (converted, _) = convert(&schema);
        assert_eq!(
            converted.schema,
            json!({"properties": {"open": {"exclusiveMinimum": 0, "maximum": 10}, "c": {"type": "integer"}}})
        );
    }

    #[test]
    fn discriminator_mapping_follows_the_components() {
        let schema = json!({
            "oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}],
            "discriminator": {"propertyName": "kind", "mapping": {"cat": "#/$defs/Cat", "dog": "Dog", "fox": "#/$defs/Fox"}},
            "$defs": {"Cat": {"properties": {"kind": {"const": "cat"}}}, "Dog": {"properties": {"kind": {"const": "dog"}}}}
        });
        let (converted, _) = convert(&schema);
        assert_eq!(
            converted.schema["discriminator"],
            json!({"propertyName": "kind", "mapping": {"cat": "#/components/schemas/t_input__Cat", "dog": "Dog", "fox": "#/$defs/Fox"}})
        );
        assert!(converted.unresolved.is_empty());
    }

    #[test]
    fn very_deep_values_are_cut_not_overflowed() {
        let mut schema = json!({"type": "string"});
        for _ in 0..2000 {
            // Not `json!`, which would serialize the interpolated value recursively.
            let mut wrapper = Map::new();
            wrapper.insert("not".to_owned(), schema);
            schema = Value::Object(wrapper);
        }
        let (converted, _) = convert(&schema);
        assert_eq!(
            converted.unresolved,
            ["(schema nested deeper than 128 levels)"]
        );
        // Dropping a 2000-deep value recurses too; leak the input instead.
        std::mem::forget(schema);
    }

    #[test]
    fn component_names_are_sanitized() {
        assert_eq!(component_name("get_sum input"), "get_sum_input");
        assert_eq!(component_name("a.b-c_D9"), "a.b-c_D9");
        assert_eq!(component_name("ünï/~$"), "_n____");
        assert_eq!(component_name(""), "_");
    }

    #[test]
    fn uri_resolution_follows_rfc3986() {
        let base = "http://a/b/c/d;p?q";
        for (reference, expected) in [
            ("g:h", "g:h"),
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q#s"),
            ("g#s", "http://a/b/c/g#s"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("g/../h", "http://a/b/c/h"),
        ] {
            assert_eq!(resolve_uri(base, reference), expected, "{reference}");
        }
        assert_eq!(
            resolve_uri(DEFAULT_BASE, "item.json"),
            "json-schema:///item.json"
        );
        assert_eq!(
            resolve_uri("urn:example:root", "#/a"),
            "urn:example:root#/a"
        );
    }
}
