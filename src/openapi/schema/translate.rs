//! Draft-04/06/07 and 2019-09 keywords turned into their 2020-12 equivalents.
//!
//! Exists because OpenAPI 3.1 reads every schema as 2020-12, and a few keywords changed
//! meaning on the way there: read as 2020-12, an older schema would accept other instances
//! than its own draft's validator does. For each schema object a [`Translation`] is planned
//! from its draft and keywords; the rewrite asks it which keywords to drop and lets it write
//! the ones it translates.

use referencing::Draft;
use serde_json::{Map, Value};

use super::resolve::Scope;
use super::rewrite::Converter;
use super::vocabulary::{Keywords, is_assertion_or_applicator, lacks};

/// What changes in one schema object.
pub(super) struct Translation<'d> {
    dialect: Draft,
    /// Drafts 4-7: `$ref` overrides its siblings.
    ref_overrides: bool,
    /// Array-form `items` is the tuple form of drafts up to 2019-09; 2020-12 spells it
    /// `prefixItems` (and rejects the array form). Only a 2020-12 schema that also has
    /// `prefixItems` keeps it as it is, being garbage anyway.
    tuple_items: bool,
    /// `dependencies` is gone from 2020-12; split it unless its successors are already there
    /// (then it stays, for the validators that still read it).
    split_dependencies: bool,
    exclusive_maximum: Option<&'d Value>,
    exclusive_minimum: Option<&'d Value>,
}

impl<'d> Translation<'d> {
    pub(super) fn plan(dialect: Draft, keywords: &Keywords<'d>) -> Translation<'d> {
        Translation {
            dialect,
            ref_overrides: dialect <= Draft::Draft7 && keywords.reference,
            tuple_items: matches!(keywords.items, Some(Value::Array(_)))
                && !(dialect == Draft::Draft202012 && keywords.prefix_items),
            split_dependencies: matches!(keywords.dependencies, Some(Value::Object(_)))
                && !(dialect >= Draft::Draft201909 && keywords.dependent),
            exclusive_maximum: keywords.exclusive_maximum,
            exclusive_minimum: keywords.exclusive_minimum,
        }
    }

    /// Whether `keyword` goes: ignored by the source draft here, so it must not start to
    /// count under 2020-12.
    pub(super) fn drops(&self, keyword: &str) -> bool {
        (self.ref_overrides && is_assertion_or_applicator(keyword)) || lacks(self.dialect, keyword)
    }
}

impl<'d, 'r> Converter<'d, 'r, '_> {
    /// Writes the 2020-12 form of `key` into `out` when the plan translates it; `false` when
    /// the keyword is left to the ordinary copy.
    pub(super) fn translate(
        &mut self,
        plan: &Translation<'d>,
        key: &str,
        value: &'d Value,
        scope: &Scope<'r>,
        depth: usize,
        out: &mut Map<String, Value>,
    ) -> bool {
        match key {
            "maximum" | "minimum" if plan.dialect == Draft::Draft4 => {
                let (exclusive, flag) = if key == "maximum" {
                    ("exclusiveMaximum", plan.exclusive_maximum)
                } else {
                    ("exclusiveMinimum", plan.exclusive_minimum)
                };
                let name = if flag == Some(&Value::Bool(true)) {
                    exclusive
                } else {
                    key
                };
                out.insert(name.to_owned(), value.clone());
            }
            // Draft 4 reads these only as flags of `maximum`/`minimum`, folded above.
            "exclusiveMaximum" | "exclusiveMinimum" if plan.dialect == Draft::Draft4 => {}
            "items" if plan.tuple_items => {
                let converted = self.convert_array(value, scope, depth);
                out.insert("prefixItems".to_owned(), converted);
            }
            // Only a schema moves: under `items`, a garbage array would read as a tuple.
            "additionalItems" if plan.tuple_items && (value.is_object() || value.is_boolean()) => {
                let converted = self.convert(value, scope, false, depth + 1);
                out.insert("items".to_owned(), converted);
            }
            "dependencies" if plan.split_dependencies => {
                self.split_dependencies(value, scope, depth, out);
            }
            _ => return false,
        }
        true
    }

    /// Splits `dependencies` into `dependentRequired` (arrays of names) and
    /// `dependentSchemas` (schemas), which together mean the same.
    fn split_dependencies(
        &mut self,
        value: &'d Value,
        scope: &Scope<'r>,
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
}
