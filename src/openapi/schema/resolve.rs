//! Where a reference lands: base URIs, JSON pointers, anchors.
//!
//! Exists because a reference means something only against the base URI in effect where it
//! is written (`$id`s included) and the identifiers and anchors of the whole document, so
//! resolving one needs an index of the document ([`Index`]) and URI and pointer handling
//! (RFC 3986 resolution, RFC 6901 pointers, percent-decoding), all of it here.

use std::borrow::Cow;
use std::collections::HashMap;
use std::rc::Rc;

use serde_json::Value;

use super::MAX_DEPTH;
use super::vocabulary::{Dialect, Holds, Keywords, holds};

/// The base URI of a schema without `$id`; the same one the `jsonschema` crate uses, so a
/// relative reference resolves to the same absolute URI here as in the request validator.
const DEFAULT_BASE: &str = "json-schema:///";

/// Base URI and draft in effect inside a schema object.
#[derive(Debug, Clone)]
pub(super) struct Scope {
    base: Rc<str>,
    pub(super) dialect: Dialect,
}

impl Scope {
    /// The scope outside the root: no `$id` yet, and 2020-12 unless `$schema` says otherwise
    /// (the default of the MCP specification and of the `jsonschema` crate).
    pub(super) fn initial() -> Scope {
        Scope {
            base: Rc::from(DEFAULT_BASE),
            dialect: Dialect::Draft2020,
        }
    }
}

/// What entering a schema object changes.
pub(super) struct Entered<'d> {
    pub(super) scope: Scope,
    /// The object starts a new schema resource (it has an identifier with a URI part).
    pub(super) new_resource: bool,
    /// Plain-name fragments this object defines: a draft 6/7 `$id: "#name"`, `$anchor`,
    /// `$dynamicAnchor`.
    pub(super) anchors: [Option<&'d str>; 3],
}

pub(super) fn enter<'d>(outer: &Scope, keywords: &Keywords<'d>, at_root: bool) -> Entered<'d> {
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
pub(super) struct Index {
    /// Absolute URI (without fragment) of each schema resource -> its JSON pointer.
    resources: HashMap<String, String>,
    /// `URI#name` of each plain-name fragment -> JSON pointer of the schema defining it.
    anchors: HashMap<String, String>,
    /// JSON pointer of each schema resource (the root included) -> the scope inside it.
    scopes: HashMap<String, Scope>,
}

impl Index {
    pub(super) fn build(doc: &Value) -> Index {
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
    pub(super) fn scope_outside(&self, pointer: &str) -> Scope {
        let mut end = pointer.len();
        while let Some(slash) = pointer[..end].rfind('/') {
            if let Some(scope) = self.scopes.get(&pointer[..slash]) {
                return scope.clone();
            }
            end = slash;
        }
        Scope::initial()
    }

    /// Resolves `reference` as written in a schema of `doc` with scope `scope` to a canonical
    /// JSON pointer in `doc` and the value there.
    pub(super) fn resolve<'d>(
        &self,
        doc: &'d Value,
        reference: &str,
        scope: &Scope,
        kind: RefKind,
    ) -> Option<(String, &'d Value)> {
        // With a single schema resource, a dynamic reference lands where a static one would:
        // the outermost dynamic scope is that same resource. With several, the target depends
        // on the path taken at validation time, which a static `$ref` cannot express.
        if kind == RefKind::Dynamic && self.scopes.len() > 1 {
            return None;
        }
        let absolute = resolve_uri(&scope.base, reference);
        let (document, fragment) = split_fragment(&absolute);
        let resource = self.resources.get(document)?;
        let pointer = match fragment {
            None | Some("") => resource.clone(),
            Some(fragment) if fragment.starts_with('/') => {
                format!("{resource}{}", percent_decode(fragment)?)
            }
            Some(fragment) => {
                let name = percent_decode(fragment)?;
                self.anchors.get(&format!("{document}#{name}"))?.clone()
            }
        };
        let target = lookup_pointer(doc, &pointer)?;
        Some((pointer, target))
    }
}

/// Whether a reference keyword follows the dynamic scope (`$dynamicRef`, `$recursiveRef`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefKind {
    Static,
    Dynamic,
}

/// Splits `uri#fragment`; the fragment is `None` when there is no `#` at all.
fn split_fragment(uri: &str) -> (&str, Option<&str>) {
    match uri.split_once('#') {
        Some((document, fragment)) => (document, Some(fragment)),
        None => (uri, None),
    }
}

/// RFC 6901 escaping of one pointer token.
pub(super) fn escape_token(token: &str) -> Cow<'_, str> {
    if token.contains(['~', '/']) {
        Cow::Owned(token.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(token)
    }
}

/// RFC 6901 unescaping of one pointer token; `None` for a `~` not followed by `0` or `1`.
pub(super) fn unescape_token(token: &str) -> Option<Cow<'_, str>> {
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
    use super::*;

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
