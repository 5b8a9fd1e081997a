//! Where a reference lands, decided by the `referencing` crate.
//!
//! Exists so that references resolve here exactly as they do in the request validator: the
//! `jsonschema` crate resolves with `referencing`, so this module registers the document the
//! way `jsonschema` does and asks the same resolver (RFC 3986 resolution against `$id`s,
//! percent-decoding, JSON pointers, `$anchor`/`$dynamicAnchor` and draft-specific identifier
//! rules all happen there). What stays here is what the resolver does not answer:
//!
//! * the base URI and draft in effect at each schema object while the conversion walks the
//!   document ([`Scope`], [`enter`]), the draft being the conversion's own reading (it decides
//!   which keywords to translate) and the base URI the resolver's own `in_subresource`;
//! * where in the document a resolved value sits ([`locate`]): the resolver hands back the
//!   value, and a component is named after its path and converted in the scope around it
//!   ([`References::scope_outside`]);
//! * whether a dynamic reference may be read statically (one schema resource only);
//! * a second try for documents the registry refuses as a whole
//!   ([`without_unusable_references`]), so one bad reference does not unresolve the others.

use std::collections::HashMap;
use std::fmt;

use referencing::{Draft, Registry, Resolver, ResourceRef, Retrieve, Uri, UriRef};
use serde_json::Value;

use super::MAX_DEPTH;
use super::vocabulary::{Holds, Keywords, dialect_of, holds};

/// The base URI of a schema without `$id`; the same one the `jsonschema` crate uses, so a
/// relative reference resolves to the same absolute URI here as in the request validator.
const DEFAULT_BASE: &str = "json-schema:///";

/// The key a value of the original document is known by: its address, stable while the
/// document is borrowed, and the same whichever spelling of a reference led to it.
pub(super) fn address(value: &Value) -> *const Value {
    value
}

/// Stands in for every document outside the schema. The conversion fetches nothing, but a
/// registry does not build while a `$ref` names a document it could not retrieve; `null` is
/// no part of the schema, so a reference into it stays unresolved.
struct NothingRemote;

impl Retrieve for NothingRemote {
    fn retrieve(&self, _: &Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Value::Null)
    }
}

/// The document registered the way `jsonschema` registers a schema it compiles: under its
/// `$id` (resolved against the default base) or the default base, in the draft its `$schema`
/// names; with the URI it is registered under, the base URI of its root. Fails when an `$id`
/// or a non-local `$ref` is no URI reference, which the validator refuses too.
pub(super) fn registry_for(doc: &Value) -> Result<(Registry<'_>, Uri<String>), referencing::Error> {
    let dialect = root_dialect(doc);
    let resource = ResourceRef::new(doc, dialect);
    let base = referencing::uri::from_str(resource.id().unwrap_or(DEFAULT_BASE))?;
    let registry = Registry::new()
        .retriever(NothingRemote)
        .draft(dialect)
        .retrieve_known_draft_meta_schemas(false)
        .add(base.as_str(), resource)?
        .prepare()?;
    Ok((registry, base))
}

/// A copy of `doc` the registry can take when it refused `doc` itself: every non-local `$ref`
/// becomes `#` and every `$id` that is no URI reference becomes `#`, which leaves the base
/// URI alone. The registry reads references only to fetch the documents they name, which
/// this conversion never does, so what it indexes is otherwise the same; the blanked
/// references themselves still fail to resolve. `referencing` has no lenient mode, and
/// without this one bad reference would leave every other one unresolved. Every path of
/// `doc` is a path of the copy (only strings change), which [`References`] relies on.
pub(super) fn without_unusable_references(doc: &Value) -> Value {
    let mut copy = doc.clone();
    let mut stack = vec![&mut copy];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    let blank = match (key.as_str(), &*child) {
                        ("$ref", Value::String(reference)) => !reference.starts_with('#'),
                        ("$id", Value::String(id)) => UriRef::parse(id.as_str()).is_err(),
                        _ => false,
                    };
                    if blank {
                        *child = Value::String("#".to_owned());
                    } else {
                        stack.push(child);
                    }
                }
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
    copy
}

/// A registry the document is not in, for when even [`without_unusable_references`] is
/// refused (an `$id` that parses but does not resolve, a nested `$schema` that is no URI):
/// every reference into the document then stays unresolved (the meta-schemas it holds are no
/// part of the document either).
pub(super) fn registry_without_the_document() -> &'static Registry<'static> {
    &referencing::SPECIFICATIONS
}

fn root_dialect(doc: &Value) -> Draft {
    match doc.get("$schema") {
        Some(Value::String(uri)) => dialect_of(uri),
        _ => Draft::Draft202012,
    }
}

/// Base URI and draft in effect inside a schema object.
#[derive(Clone)]
pub(super) struct Scope<'r> {
    /// Resolves references against the base URI in effect. `None` only if the default base URI
    /// failed to parse, which it does not; nothing resolves then.
    resolver: Option<Resolver<'r>>,
    pub(super) dialect: Draft,
}

/// What entering a schema object changes.
pub(super) struct Entered<'r> {
    /// The scope inside, when it differs from the one outside.
    pub(super) scope: Option<Scope<'r>>,
    /// The object starts a new schema resource (it has an identifier with a URI part).
    pub(super) new_resource: bool,
}

impl<'r> Entered<'r> {
    /// The scope inside, given the one outside.
    pub(super) fn inside<'s>(&'s self, outer: &'s Scope<'r>) -> &'s Scope<'r> {
        self.scope.as_ref().unwrap_or(outer)
    }
}

/// Enters the schema object `value` (with keywords `keywords`) from scope `outer`.
pub(super) fn enter<'r>(
    outer: &Scope<'r>,
    value: &Value,
    keywords: &Keywords<'_>,
    at_root: bool,
) -> Entered<'r> {
    let mut dialect = outer.dialect;
    // `$schema` is honoured only where a schema resource starts, as validators do.
    if (at_root || keywords.id.is_some() || keywords.legacy_id.is_some())
        && let Some(Value::String(uri)) = keywords.schema
    {
        dialect = dialect_of(uri);
    }
    let mut entered = Entered {
        scope: (dialect != outer.dialect).then(|| Scope {
            resolver: outer.resolver.clone(),
            dialect,
        }),
        new_resource: false,
    };
    // The root's identifier is already the base it was registered under (see
    // [`References::new`]), as in the validator.
    if at_root || (keywords.id.is_none() && keywords.legacy_id.is_none()) {
        return entered;
    }
    // The identifier as this draft reads it (`id` in draft 4, none beside a `$ref` in drafts
    // 4-7). A fragment-only one names an anchor, which the registry has indexed, and leaves
    // the base URI alone, as in the registry's own walk.
    let resource = ResourceRef::new(value, dialect);
    if resource
        .id()
        .is_none_or(|id| id.is_empty() || id.starts_with('#'))
    {
        return entered;
    }
    // An identifier that is no URI reference leaves the base as it was: the registry did not
    // build, so nothing resolves anyway.
    if let Some(resolver) = outer
        .resolver
        .as_ref()
        .and_then(|resolver| resolver.in_subresource(resource).ok())
    {
        entered.scope = Some(Scope {
            resolver: Some(resolver),
            dialect,
        });
        entered.new_resource = true;
    }
    entered
}

/// Whether a reference keyword follows the dynamic scope (`$dynamicRef`, `$recursiveRef`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefKind {
    Static,
    Dynamic,
}

/// One step of a path into the document, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Step<'d> {
    Key(&'d str),
    Index(usize),
}

impl<'d> Step<'d> {
    fn child(self, value: &'d Value) -> Option<&'d Value> {
        match (self, value) {
            (Step::Key(key), Value::Object(map)) => map.get(key),
            (Step::Index(i), Value::Array(items)) => items.get(i),
            _ => None,
        }
    }
}

/// The token itself, unescaped (component names are derived from it).
impl fmt::Display for Step<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Key(key) => f.write_str(key),
            Step::Index(i) => write!(f, "{i}"),
        }
    }
}

/// A value of the original document and the path to it.
pub(super) struct Located<'d> {
    pub(super) path: Vec<Step<'d>>,
    pub(super) target: &'d Value,
}

/// Finds `wanted` in `doc`, data included (a pointer may lead into `enum` values, which
/// validators then read as a schema). `None` when it is not part of `doc` (a registry's
/// stand-in for a remote document, a meta-schema).
///
/// The resolver answers with the value, not its path, and `referencing` has no reverse
/// lookup; this is a depth-first search, iterative so no nesting overflows the stack. It runs
/// once per hoisted target that is not a root definition (those are known up front).
pub(super) fn locate<'d>(doc: &'d Value, wanted: *const Value) -> Option<Located<'d>> {
    let mut path: Vec<Step<'d>> = Vec::new();
    // (length of the parent's path, step from the parent, value)
    let mut stack: Vec<(usize, Option<Step<'d>>, &'d Value)> = vec![(0, None, doc)];
    while let Some((depth, step, value)) = stack.pop() {
        path.truncate(depth);
        if let Some(step) = step {
            path.push(step);
        }
        if std::ptr::eq(value, wanted) {
            return Some(Located {
                path,
                target: value,
            });
        }
        let depth = path.len();
        match value {
            Value::Object(map) => stack.extend(
                map.iter()
                    .rev()
                    .map(|(key, child)| (depth, Some(Step::Key(key)), child)),
            ),
            Value::Array(items) => stack.extend(
                items
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(i, child)| (depth, Some(Step::Index(i)), child)),
            ),
            _ => {}
        }
    }
    None
}

/// Resolution for one document: the resolver, and where its schema resources are.
pub(super) struct References<'r> {
    initial: Scope<'r>,
    /// The scope inside each schema resource (the root included), by the address of its
    /// schema object.
    scopes: HashMap<*const Value, Scope<'r>>,
    /// The copy the registry holds instead of the document, if it refused the document (see
    /// [`without_unusable_references`]); resolved values are then in the copy.
    copy: Option<&'r Value>,
}

impl<'r> References<'r> {
    /// Indexes `doc`, which `registry` holds as `registered` (`doc` itself or its copy) under
    /// `root_base`; `None` for a registry without it.
    pub(super) fn new(
        doc: &Value,
        registered: &'r Value,
        registry: &'r Registry<'r>,
        root_base: Option<Uri<String>>,
    ) -> References<'r> {
        let base = root_base.or_else(|| referencing::uri::from_str(DEFAULT_BASE).ok());
        let initial = Scope {
            resolver: base.map(|base| registry.resolver(base)),
            // The default of the MCP specification and of the `jsonschema` crate.
            dialect: Draft::Draft202012,
        };
        let mut references = References {
            initial,
            scopes: HashMap::new(),
            copy: (!std::ptr::eq(registered, doc)).then_some(registered),
        };
        let initial = references.initial.clone();
        references.visit(doc, &initial, true, 0);
        references
    }

    /// The scope the root is entered from: based where the document was registered, 2020-12
    /// unless its `$schema` says otherwise.
    pub(super) fn initial(&self) -> &Scope<'r> {
        &self.initial
    }

    fn visit(&mut self, value: &Value, outer: &Scope<'r>, at_root: bool, depth: usize) {
        let Value::Object(obj) = value else { return };
        if depth > MAX_DEPTH {
            return;
        }
        let entered = enter(outer, value, &Keywords::scan(obj), at_root);
        let scope = entered.inside(outer);
        if at_root || entered.new_resource {
            self.scopes.insert(address(value), scope.clone());
        }
        let scope = scope.clone();
        for (key, child) in obj {
            match holds(key, child) {
                Holds::Schema => self.visit(child, &scope, false, depth + 1),
                Holds::SchemaArray => {
                    if let Value::Array(items) = child {
                        for item in items {
                            self.visit(item, &scope, false, depth + 1);
                        }
                    }
                }
                Holds::SchemaMap | Holds::Dependencies => {
                    if let Value::Object(map) = child {
                        for item in map.values() {
                            self.visit(item, &scope, false, depth + 1);
                        }
                    }
                }
                Holds::Data => {}
            }
        }
    }

    /// The scope a schema at `path` is entered from: the one inside the nearest schema
    /// resource strictly above it (its own `$id`/`$schema` apply when it is converted).
    pub(super) fn scope_outside(&self, doc: &Value, path: &[Step<'_>]) -> Scope<'r> {
        let Some((_, above)) = path.split_last() else {
            return self.initial.clone();
        };
        let mut scope = self.scopes.get(&address(doc)).unwrap_or(&self.initial);
        let mut node = doc;
        for step in above {
            let Some(child) = step.child(node) else { break };
            node = child;
            if let Some(inside) = self.scopes.get(&address(node)) {
                scope = inside;
            }
        }
        scope.clone()
    }

    /// Resolves `reference` as written in a schema of `doc` with scope `scope`; the address of
    /// the value of `doc` it lands on, which may still lie outside `doc` (see [`locate`]).
    pub(super) fn resolve(
        &self,
        doc: &Value,
        reference: &str,
        scope: &Scope<'r>,
        kind: RefKind,
    ) -> Option<*const Value> {
        // With a single schema resource, a dynamic reference lands where a static one would:
        // the outermost dynamic scope is that same resource. With several, the target depends
        // on the path taken at validation time, which a static `$ref` cannot express.
        if kind == RefKind::Dynamic && self.scopes.len() > 1 {
            return None;
        }
        let resolved = scope.resolver.as_ref()?.lookup(reference).ok()?;
        let landed = address(resolved.contents());
        let Some(copy) = self.copy else {
            return Some(landed);
        };
        let located = locate(copy, landed)?;
        let mut node = doc;
        for step in located.path {
            node = step.child(node)?;
        }
        Some(address(node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The URI resolution every `$id` and `$ref` goes through is `referencing`'s (on
    /// `fluent-uri`); these are RFC 3986's own examples (section 5.4.1), which the conversion
    /// relied on before it delegated resolution.
    #[test]
    fn uri_resolution_follows_rfc3986() {
        let resolve = |base: &str, reference: &str| {
            let base = referencing::uri::from_str(base).map_err(|e| e.to_string())?;
            referencing::uri::resolve_against(&base.borrow(), reference)
                .map(|uri| uri.as_str().to_owned())
                .map_err(|e| e.to_string())
        };
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
            assert_eq!(
                resolve(base, reference).as_deref(),
                Ok(expected),
                "{reference}"
            );
        }
        assert_eq!(
            resolve(DEFAULT_BASE, "item.json").as_deref(),
            Ok("json-schema:///item.json")
        );
        assert_eq!(
            resolve("urn:example:root", "#/a").as_deref(),
            Ok("urn:example:root#/a")
        );
    }

    #[test]
    fn locate_finds_data_and_nothing_outside() {
        let doc = serde_json::json!({"a": [1, {"b": 2}], "c": {"d~/": 3}});
        let located = locate(&doc, address(&doc["a"][1]["b"]));
        let path: Vec<String> = located
            .iter()
            .flat_map(|l| l.path.iter().map(Step::to_string))
            .collect();
        assert_eq!(path, ["a", "1", "b"]);
        assert!(locate(&doc, address(&doc)).is_some_and(|l| l.path.is_empty()));
        let elsewhere = serde_json::json!(2);
        assert!(locate(&doc, address(&elsewhere)).is_none());
    }
}
