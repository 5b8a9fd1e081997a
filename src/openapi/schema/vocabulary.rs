//! Which keywords hold sub-schemas, and which draft defines what.
//!
//! Exists because both walks over a schema (the resolution index and the rewrite) must agree
//! on what is a schema and what is data, and the draft translation needs to know what each
//! draft evaluates. `referencing` has the same tables, but keeps them private; its public
//! `Draft::is_known_keyword` also counts annotations (`contentSchema`, `contentMediaType`...)
//! that are harmless to keep, so it cannot say what must be dropped.

use referencing::Draft;
use serde_json::{Map, Value};

/// The draft a `$schema` URI names, recognized by `referencing` as the validator does; a
/// custom or unknown meta-schema reads as 2020-12, whose keywords it is assumed to use.
pub(super) fn dialect_of(schema_uri: &str) -> Draft {
    match Draft::from_schema_uri(schema_uri) {
        Draft::Unknown => Draft::Draft202012,
        known => known,
    }
}

/// Whether `keyword` is one a 2020-12 validator evaluates but `dialect` does not define:
/// the source validator ignores it, so the converted schema must not carry it.
pub(super) fn lacks(dialect: Draft, keyword: &str) -> bool {
    match keyword {
        "const" | "contains" | "propertyNames" => dialect < Draft::Draft6,
        "if" | "then" | "else" => dialect < Draft::Draft7,
        "dependentRequired"
        | "dependentSchemas"
        | "maxContains"
        | "minContains"
        | "unevaluatedItems"
        | "unevaluatedProperties" => dialect < Draft::Draft201909,
        "prefixItems" | "$dynamicRef" => dialect < Draft::Draft202012,
        _ => false,
    }
}

/// Keywords that constrain instances (or may, like `format` and the content keywords when a
/// validator asserts them). Drafts 4-7 ignore these next to a `$ref`; annotations and unknown
/// keywords are inert either way and are kept.
pub(super) fn is_assertion_or_applicator(keyword: &str) -> bool {
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
pub(super) enum Holds {
    Schema,
    SchemaArray,
    SchemaMap,
    /// `dependencies`: a map whose values are schemas or arrays of property names.
    Dependencies,
    Data,
}

pub(super) fn holds(keyword: &str, value: &Value) -> Holds {
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

/// The keywords of one schema object that decide how the others are read, found in one pass
/// over its keys: most schema objects have a handful of keys, so this is cheaper than a hash
/// lookup for each (on the benchmark schema it took the conversion from 3.4x to 3.0x the time
/// of a deep clone; the rest is mostly hashing every key into the new maps, which a clone
/// does not do).
#[derive(Default)]
pub(super) struct Keywords<'d> {
    pub(super) schema: Option<&'d Value>,
    pub(super) id: Option<&'d Value>,
    pub(super) legacy_id: Option<&'d Value>,
    pub(super) reference: bool,
    pub(super) items: Option<&'d Value>,
    pub(super) prefix_items: bool,
    pub(super) dependencies: Option<&'d Value>,
    pub(super) dependent: bool,
    pub(super) exclusive_maximum: Option<&'d Value>,
    pub(super) exclusive_minimum: Option<&'d Value>,
}

impl<'d> Keywords<'d> {
    pub(super) fn scan(obj: &'d Map<String, Value>) -> Keywords<'d> {
        let mut found = Keywords::default();
        for (key, value) in obj {
            match key.as_str() {
                "$schema" => found.schema = Some(value),
                "$id" => found.id = Some(value),
                "id" => found.legacy_id = Some(value),
                "$ref" => found.reference = true,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_uris_name_drafts_as_the_validator_reads_them() {
        for (uri, draft) in [
            ("http://json-schema.org/draft-04/schema#", Draft::Draft4),
            ("https://json-schema.org/draft-06/schema", Draft::Draft6),
            ("http://json-schema.org/draft-07/schema#", Draft::Draft7),
            (
                "https://json-schema.org/draft/2019-09/schema",
                Draft::Draft201909,
            ),
            (
                "https://json-schema.org/draft/2020-12/schema",
                Draft::Draft202012,
            ),
            ("https://json-schema.org/schema", Draft::Draft202012),
            ("https://example.com/my-meta-schema", Draft::Draft202012),
        ] {
            assert_eq!(dialect_of(uri), draft, "{uri}");
        }
    }
}
