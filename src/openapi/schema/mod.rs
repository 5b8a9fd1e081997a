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
//! * rewrites every `$ref` to `#/components/schemas/NAME`, resolving it with the `referencing`
//!   crate, the resolver of the `jsonschema` crate that validates requests, so a reference
//!   lands here exactly where the validator takes it: against the base URI in effect (`$id`s
//!   included), through JSON pointers with `~0`/`~1`/percent escapes, or through `$anchor`s;
//!   `$dynamicRef` (and 2019-09's `$recursiveRef`) too when the document is a single schema
//!   resource, where it can only land where a static reference would; OpenAPI
//!   `discriminator.mapping` values that point into the schema follow their targets,
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
//!
//! One module per concern: [`components`] names and collects what moves into
//! `components.schemas`, [`resolve`] finds where a reference lands, [`rewrite`] rebuilds each
//! schema object with its references rewritten, [`translate`] turns older drafts' keywords
//! into 2020-12 ones, and [`vocabulary`] knows which keywords hold sub-schemas and which draft
//! defines what. This file only drives them.

mod components;
mod resolve;
mod rewrite;
mod translate;
mod vocabulary;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

pub use components::component_name;

use components::Components;
use resolve::References;
use rewrite::Converter;

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

/// Schema nesting the conversion follows. Parsed JSON is at most 128 levels deep (serde_json's
/// limit) and every schema level is at least one JSON level, so this only cuts values built in
/// code; it bounds the recursion to well under a 2 MiB thread stack even in debug builds
/// (about 6 KiB a level there).
const MAX_DEPTH: usize = 128;

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
    // A document the registry refuses is one the validator refuses too; its usable
    // references should resolve all the same.
    let copy;
    let mut registered = schema;
    let mut registry = resolve::registry_for(schema).ok();
    if registry.is_none() {
        copy = resolve::without_unusable_references(schema);
        registered = &copy;
        registry = resolve::registry_for(registered).ok();
    }
    let (registry, root_base) = registry.unzip();
    let references = match &registry {
        Some(registry) => References::new(schema, registered, registry, root_base),
        None => References::new(
            schema,
            schema,
            resolve::registry_without_the_document(),
            None,
        ),
    };
    let mut converter = Converter::new(
        schema,
        references,
        Components::new(component_name(prefix), components),
    );
    converter.components.register_root_definitions(schema);
    let initial = converter.references.initial().clone();
    let inline = converter.convert(schema, &initial, true, 0);
    // Hoisted targets are converted one after another rather than recursively, so ref cycles
    // end (each target is queued once) and long ref chains do not deepen the stack.
    while let Some(job) = converter.components.next_job() {
        let scope = converter.references.scope_outside(schema, &job.path);
        let body = converter.convert(job.target, &scope, job.path.is_empty(), 0);
        converter.components.finish(job.name, body);
    }
    let (produced, unresolved) = converter.into_results();
    for (name, body) in produced {
        components.insert(name, body);
    }
    Converted {
        schema: inline,
        unresolved,
    }
}
