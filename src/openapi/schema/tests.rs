//! Behaviour of the whole conversion, pinned on small schemas.

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
        item.get("$id").is_none() && item.get("$anchor").is_none() && item.get("$defs").is_none()
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
fn one_unusable_reference_leaves_the_others_resolved() {
    // The registry refuses each of these documents as a whole (as the validator does); the
    // references it could have resolved still are.
    for schema in [
        json!({"$defs": {"A": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/A"}, "b": {"$ref": "%"}}}),
        json!({"$id": "http://[bad", "$defs": {"A": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/A"}, "b": {"$ref": "https://example.com/x.json"}}}),
        json!({"$defs": {"A": {"type": "string"}, "B": {"$ref": "http://[bad"}}, "properties": {"a": {"$ref": "#/$defs/A"}, "b": {"$ref": "#/$defs/B"}}}),
    ] {
        let (converted, components) = convert(&schema);
        let p = &converted.schema["properties"];
        assert_eq!(
            p["a"],
            json!({"$ref": "#/components/schemas/t_input__A"}),
            "{schema}"
        );
        assert_eq!(components["t_input__A"], json!({"type": "string"}));
        assert_eq!(converted.unresolved.len(), 1, "{schema}");
        assert!(!converted.unresolved[0].starts_with('#'), "{schema}");
    }
}
