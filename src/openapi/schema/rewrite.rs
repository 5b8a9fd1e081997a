//! Rebuilding each schema object with its references pointed at the components.
//!
//! Exists because this is the one pass that touches every keyword: it copies data and unknown
//! keywords verbatim, recurses into sub-schemas, drops the identifier keywords that would
//! change resolution once schemas move, turns every `$ref` (and `discriminator.mapping`
//! value) into a `#/components/schemas/NAME` reference or the unresolved marker, and hands
//! the draft-specific keywords to [`super::translate`].

use std::collections::HashSet;

use referencing::Draft;
use serde_json::{Map, Value};

use super::components::Components;
use super::resolve::{RefKind, References, Scope, enter, locate};
use super::translate::Translation;
use super::vocabulary::{Holds, Keywords, holds};
use super::{COMPONENT_REF_PREFIX, MAX_DEPTH, UNRESOLVED_REF_KEY};

/// Extension marking a sub-schema cut because it was nested too deep.
const TRUNCATED_KEY: &str = "x-mcpo-truncated";

pub(super) struct Converter<'d, 'r, 'c> {
    doc: &'d Value,
    pub(super) references: References<'r>,
    pub(super) components: Components<'d, 'c>,
    unresolved: Vec<String>,
    /// The entries of `unresolved`, to keep it free of duplicates in linear time.
    unresolved_seen: HashSet<String>,
}

impl<'d, 'r, 'c> Converter<'d, 'r, 'c> {
    pub(super) fn new(
        doc: &'d Value,
        references: References<'r>,
        components: Components<'d, 'c>,
    ) -> Self {
        Converter {
            doc,
            references,
            components,
            unresolved: Vec::new(),
            unresolved_seen: HashSet::new(),
        }
    }

    /// The converted components, in the order their names were given out, and the
    /// unresolved references.
    pub(super) fn into_results(self) -> (Vec<(String, Value)>, Vec<String>) {
        (self.components.into_produced(), self.unresolved)
    }

    fn note_unresolved(&mut self, text: String) {
        if self.unresolved_seen.insert(text.clone()) {
            self.unresolved.push(text);
        }
    }

    /// The component `reference` (written in a schema with scope `scope`) lands on, queued for
    /// conversion when new; `None` when it lands nowhere in the document.
    fn component_for(
        &mut self,
        reference: &str,
        scope: &Scope<'r>,
        kind: RefKind,
    ) -> Option<String> {
        let target = self.references.resolve(self.doc, reference, scope, kind)?;
        if let Some(name) = self.components.known(target) {
            return Some(name.to_owned());
        }
        let located = locate(self.doc, target)?;
        Some(self.components.add(located))
    }

    /// The rewritten form of one reference keyword: `("$ref", "#/components/schemas/NAME")`,
    /// or the unresolved marker.
    pub(super) fn rewrite_ref(
        &mut self,
        value: &Value,
        scope: &Scope<'r>,
        kind: RefKind,
    ) -> (&'static str, Value) {
        let Some(reference) = value.as_str() else {
            let text = value.to_string();
            self.note_unresolved(text.clone());
            return (UNRESOLVED_REF_KEY, Value::String(text));
        };
        match self.component_for(reference, scope, kind) {
            Some(name) => (
                "$ref",
                Value::String(format!("{COMPONENT_REF_PREFIX}{name}")),
            ),
            None => {
                self.note_unresolved(reference.to_owned());
                (UNRESOLVED_REF_KEY, Value::String(reference.to_owned()))
            }
        }
    }

    pub(super) fn convert(
        &mut self,
        value: &'d Value,
        outer: &Scope<'r>,
        at_root: bool,
        depth: usize,
    ) -> Value {
        match value {
            Value::Object(obj) => self.convert_object(value, obj, outer, at_root, depth),
            // Boolean schemas are valid as they are; anything else is not a schema, and is
            // kept verbatim so the conversion stays lossless (the validator reports it).
            other => other.clone(),
        }
    }

    pub(super) fn convert_array(
        &mut self,
        value: &'d Value,
        scope: &Scope<'r>,
        depth: usize,
    ) -> Value {
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

    fn convert_map(&mut self, value: &'d Value, scope: &Scope<'r>, depth: usize) -> Value {
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
        value: &'d Value,
        obj: &'d Map<String, Value>,
        outer: &Scope<'r>,
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
        let entered = enter(outer, value, &keywords, at_root);
        let scope = entered.inside(outer);
        let dialect = scope.dialect;
        let translation = Translation::plan(dialect, &keywords);

        let mut out = Map::with_capacity(obj.len());
        // Reference keywords beyond the first that lands on a key already taken (e.g. `$ref`
        // next to `$dynamicRef`); they go into `allOf`, which means the same.
        let mut extra: Vec<Value> = Vec::new();
        for (key, value) in obj {
            match key.as_str() {
                "$schema" | "$vocabulary" | "$id" | "$anchor" | "$dynamicAnchor"
                | "$recursiveAnchor" | "$defs" | "definitions" => continue,
                "id" if dialect == Draft::Draft4 => continue,
                "$ref" => {
                    let (k, v) = self.rewrite_ref(value, scope, RefKind::Static);
                    insert_or_defer(&mut out, &mut extra, k, v);
                    continue;
                }
                "$dynamicRef" => {
                    if dialect == Draft::Draft202012 {
                        let (k, v) = self.rewrite_ref(value, scope, RefKind::Dynamic);
                        insert_or_defer(&mut out, &mut extra, k, v);
                    }
                    continue;
                }
                "$recursiveRef" if dialect == Draft::Draft201909 => {
                    let (k, v) = self.rewrite_ref(value, scope, RefKind::Dynamic);
                    insert_or_defer(&mut out, &mut extra, k, v);
                    continue;
                }
                _ => {}
            }
            if translation.drops(key)
                || self.translate(&translation, key, value, scope, depth, &mut out)
            {
                continue;
            }
            if key == "discriminator" {
                let rewritten = self.rewrite_discriminator(value, scope);
                out.insert(key.clone(), rewritten);
                continue;
            }
            let converted = match holds(key, value) {
                Holds::Schema => self.convert(value, scope, false, depth + 1),
                Holds::SchemaArray => self.convert_array(value, scope, depth),
                Holds::SchemaMap => self.convert_map(value, scope, depth),
                Holds::Dependencies => self.convert_dependencies(value, scope, depth),
                Holds::Data => value.clone(),
            };
            out.insert(key.clone(), converted);
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
    fn convert_dependencies(&mut self, value: &'d Value, scope: &Scope<'r>, depth: usize) -> Value {
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

    /// OpenAPI's `discriminator.mapping` values are references too (pydantic writes
    /// `#/$defs/Cat` there); those that resolve are pointed at the components. Others (plain
    /// component names, remote URLs) stay: the keyword is an annotation, never validated.
    fn rewrite_discriminator(&mut self, value: &'d Value, scope: &Scope<'r>) -> Value {
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
                if let Some(name) = self.component_for(reference, scope, RefKind::Static) {
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
