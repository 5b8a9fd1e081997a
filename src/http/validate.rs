//! Request bodies checked against the tool's own JSON Schema, with failures reported in the
//! shape FastAPI (and so mcpo) uses: `{"detail": [{type, loc, msg, input, ctx?}]}`.
//!
//! Clients of mcpo parse these errors (and LLM front ends show `msg` to the model so it can
//! fix its call), so the `type` and `msg` wording follows pydantic's where one exists.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use serde::Serialize;
use serde_json::{Value, json};

/// One entry of FastAPI's `detail` list.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldError {
    #[serde(rename = "type")]
    pub kind: String,
    pub loc: Vec<Value>,
    pub msg: String,
    pub input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx: Option<Value>,
}

impl FieldError {
    fn new(kind: &str, loc: Vec<Value>, msg: impl Into<String>, input: Value) -> Self {
        FieldError {
            kind: kind.into(),
            loc,
            msg: msg.into(),
            input,
            ctx: None,
        }
    }

    fn with_ctx(mut self, ctx: Value) -> Self {
        self.ctx = Some(ctx);
        self
    }

    /// The body was not valid JSON.
    pub fn json_invalid(error: &serde_json::Error, body: &[u8]) -> Self {
        // FastAPI reports the byte offset of the error as the second location element.
        let offset = offset_of(body, error.line(), error.column());
        FieldError::new(
            "json_invalid",
            vec![json!("body"), json!(offset)],
            "JSON decode error",
            json!({}),
        )
        .with_ctx(json!({"error": error.to_string()}))
    }

    /// The body is JSON but not an object.
    pub fn not_an_object(value: &Value) -> Self {
        FieldError::new(
            "model_attributes_type",
            vec![json!("body")],
            "Input should be a valid dictionary or object to extract fields from",
            input_of(value),
        )
    }

    /// The body nests deeper than the tool's recursive schema can be checked to.
    pub fn too_deep(depth: usize) -> Self {
        FieldError::new(
            "value_error",
            vec![json!("body")],
            format!(
                "The arguments nest {depth} levels deep, too deep to be checked against this tool's recursive schema; send them less deeply nested"
            ),
            Value::Null,
        )
    }

    /// The body is missing but the tool needs arguments.
    pub fn body_missing() -> Self {
        FieldError::new(
            "missing",
            vec![json!("body")],
            "Field required",
            Value::Null,
        )
    }
}

fn offset_of(body: &[u8], line: usize, column: usize) -> usize {
    let mut current = 1;
    let mut start = 0;
    for (i, b) in body.iter().enumerate() {
        if current == line {
            break;
        }
        if *b == b'\n' {
            current += 1;
            start = i + 1;
        }
    }
    (start + column.saturating_sub(1)).min(body.len())
}

/// Errors listed in one 422 at most; the rest are summed up in a last entry.
pub const MAX_ERRORS: usize = 20;
/// Bodies with more JSON values than this are not walked error by error: jsonschema collects
/// every error of an instance at once (each with its own paths), so listing them all for a body
/// of a hundred thousand bad items costs gigabytes. Such bodies get a few lax conversions and
/// their first error.
pub const LAX_VALUES: usize = 10_000;
/// Serialized size above which an error's `input` is shown as a truncated preview.
const INPUT_BYTES: usize = 256;
/// Lax conversions tried one at a time on a large body.
const LARGE_BODY_FIXES: usize = 32;

/// Validates `body` (holding about `values` JSON values) the way pydantic's default (lax)
/// mode does for mcpo: a string that spells a number or a boolean where the schema wants one
/// is accepted and converted (`"5"` for an integer, `"true"` for a boolean), as is a whole
/// float for an integer. LLMs produce such arguments often, and mcpo accepted them; everything
/// else must match the schema exactly. Returns at most [`MAX_ERRORS`] problems (plus a note
/// when more were cut); `body` holds the converted values.
pub fn validate_lax(
    validator: &jsonschema::Validator,
    body: &mut Value,
    values: usize,
) -> Vec<FieldError> {
    if validator.is_valid(body) {
        return Vec::new();
    }
    if values > LAX_VALUES {
        return validate_large(validator, body);
    }
    // Each round fixes the leaves the validator names; a few rounds cover values that only
    // become reachable once a parent is valid.
    for _ in 0..4 {
        let mut fixes: Vec<(Vec<LocationSegment<'static>>, Value)> = Vec::new();
        for error in validator.iter_errors(body) {
            if let Some(fix) = lax_fix(&error) {
                fixes.push(fix);
            }
        }
        if fixes.is_empty() {
            break;
        }
        for (path, value) in fixes {
            if let Some(slot) = pointer_mut(body, &path) {
                *slot = value;
            }
        }
    }
    validate(validator, body)
}

/// The conversion that would cure `error`, as (where, new value), if it is a lax one.
fn lax_fix(
    error: &jsonschema::ValidationError<'_>,
) -> Option<(Vec<LocationSegment<'static>>, Value)> {
    let ValidationErrorKind::Type { kind } = error.kind() else {
        return None;
    };
    let fixed = coerce(error.instance(), kind)?;
    let path = error
        .instance_path()
        .iter()
        .map(|s| match s {
            LocationSegment::Property(p) => LocationSegment::Property(p.into_owned().into()),
            LocationSegment::Index(i) => LocationSegment::Index(i),
        })
        .collect();
    Some((path, fixed))
}

/// A large body: a few lax conversions, one first-error pass at a time, then the first error.
fn validate_large(validator: &jsonschema::Validator, body: &mut Value) -> Vec<FieldError> {
    for _ in 0..LARGE_BODY_FIXES {
        let fix = match validator.validate(body) {
            Ok(()) => return Vec::new(),
            Err(error) => lax_fix(&error),
        };
        let Some((path, value)) = fix else { break };
        match pointer_mut(body, &path) {
            Some(slot) => *slot = value,
            None => break,
        }
    }
    let Err(error) = validator.validate(body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    push_field_errors(&error, &mut out);
    out.truncate(MAX_ERRORS);
    out.push(FieldError::new(
        "too_many_errors",
        vec![json!("body")],
        format!(
            "Only the first error is listed for bodies of more than {LAX_VALUES} values; fix it and send again to see the next"
        ),
        Value::Null,
    ));
    out
}

/// Whole numbers written as floats (`2.0`) where the schema asks for an integer are sent as
/// integers (`2`), as pydantic does: JSON Schema counts `2.0` as an integer, so validation
/// passes them, but a server that reads an integer type may not. Follows `properties`,
/// `items`, `additionalProperties`, local `$ref`s and the branches of `allOf`/`anyOf`/`oneOf`
/// that ask for an integer (never one that also allows any number).
pub fn normalize_integers(schema: &Value, value: &mut Value) {
    normalize_at(schema, schema, value, 0);
}

fn normalize_at(root: &Value, schema: &Value, value: &mut Value, depth: usize) {
    if depth > 32 {
        return;
    }
    let Some(node) = schema.as_object() else {
        return;
    };
    if let Some(Value::String(r)) = node.get("$ref")
        && let Some(pointer) = r.strip_prefix('#')
        && let Some(target) = root.pointer(pointer)
    {
        normalize_at(root, target, value, depth + 1);
    }
    let types: Vec<&str> = match node.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.contains(&"integer")
        && !types.contains(&"number")
        && let Value::Number(n) = value
        && n.is_f64()
        && let Some(f) = n.as_f64()
        && f.fract() == 0.0
        && f.abs() < 9.0e15
    {
        *value = json!(f as i64);
        return;
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = node.get(key) {
            for branch in branches {
                normalize_at(root, branch, value, depth + 1);
            }
        }
    }
    match value {
        Value::Object(map) => {
            let props = node.get("properties").and_then(Value::as_object);
            let extra = node.get("additionalProperties");
            for (k, v) in map.iter_mut() {
                match props.and_then(|p| p.get(k)) {
                    Some(sub) => normalize_at(root, sub, v, depth + 1),
                    None => {
                        if let Some(sub) = extra {
                            normalize_at(root, sub, v, depth + 1);
                        }
                    }
                }
            }
        }
        Value::Array(items) => match node.get("items") {
            Some(Value::Array(tuple)) => {
                for (sub, v) in tuple.iter().zip(items.iter_mut()) {
                    normalize_at(root, sub, v, depth + 1);
                }
            }
            Some(sub) => {
                for v in items.iter_mut() {
                    normalize_at(root, sub, v, depth + 1);
                }
            }
            None => {
                if let Some(Value::Array(prefix)) = node.get("prefixItems") {
                    for (sub, v) in prefix.iter().zip(items.iter_mut()) {
                        normalize_at(root, sub, v, depth + 1);
                    }
                }
            }
        },
        _ => {}
    }
}

/// The lax conversion of `value` to one of the expected types, if there is one.
fn coerce(value: &Value, expected: &TypeKind) -> Option<Value> {
    let wants = |t: &str| match expected {
        TypeKind::Single(single) => single.to_string() == t,
        TypeKind::Multiple(set) => set.iter().any(|x| x.to_string() == t),
    };
    match value {
        Value::String(s) => {
            let s = s.trim();
            if wants("integer")
                && let Ok(i) = s.parse::<i64>()
            {
                return Some(json!(i));
            }
            if wants("number")
                && let Ok(f) = s.parse::<f64>()
                && f.is_finite()
            {
                return serde_json::Number::from_f64(f).map(Value::Number);
            }
            if wants("boolean") {
                match s.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" | "y" | "t" => return Some(json!(true)),
                    "false" | "0" | "no" | "off" | "n" | "f" => return Some(json!(false)),
                    _ => {}
                }
            }
            None
        }
        Value::Number(n) if wants("integer") => {
            let f = n.as_f64()?;
            (f.fract() == 0.0 && f.abs() < 9.0e15).then(|| json!(f as i64))
        }
        _ => None,
    }
}

fn pointer_mut<'a>(root: &'a mut Value, path: &[LocationSegment<'_>]) -> Option<&'a mut Value> {
    let mut current = root;
    for segment in path {
        current = match segment {
            LocationSegment::Property(p) => current.get_mut(p.as_ref())?,
            LocationSegment::Index(i) => current.get_mut(*i)?,
        };
    }
    Some(current)
}

/// Validates `body` against a compiled tool schema and returns the problems found, at most
/// [`MAX_ERRORS`] of them plus a last entry counting the rest.
pub fn validate(validator: &jsonschema::Validator, body: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    let mut cut = 0usize;
    for error in validator.iter_errors(body) {
        if out.len() >= MAX_ERRORS {
            cut += 1;
            continue;
        }
        push_field_errors(&error, &mut out);
    }
    if out.len() > MAX_ERRORS {
        cut += out.len() - MAX_ERRORS;
        out.truncate(MAX_ERRORS);
    }
    if cut > 0 {
        out.push(FieldError::new(
            "too_many_errors",
            vec![json!("body")],
            format!(
                "{cut} more error{} not listed",
                if cut == 1 { "" } else { "s" }
            ),
            Value::Null,
        ));
    }
    out
}

/// The FastAPI entries for one validation error (an `additionalProperties` error names each
/// unexpected property on its own).
fn push_field_errors(error: &jsonschema::ValidationError<'_>, out: &mut Vec<FieldError>) {
    let mut loc = vec![json!("body")];
    for segment in error.instance_path() {
        loc.push(match segment {
            LocationSegment::Property(p) => json!(p),
            LocationSegment::Index(i) => json!(i),
        });
    }
    let instance = error.instance();
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_string);
            loc.push(json!(name));
            out.push(FieldError::new(
                "missing",
                loc,
                "Field required",
                input_of(instance),
            ));
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            for prop in unexpected.iter().take(MAX_ERRORS) {
                let mut loc = loc.clone();
                loc.push(json!(prop));
                let value = instance.get(prop).map_or(Value::Null, input_of);
                out.push(FieldError::new(
                    "extra_forbidden",
                    loc,
                    "Extra inputs are not permitted",
                    value,
                ));
            }
        }
        kind => out.push(describe(kind, loc, input_of(instance), &capped_text(error))),
    }
}

/// The `input` of an error entry: the value itself when small, else a truncated preview, so an
/// error about a huge object does not copy it into the answer.
fn input_of(value: &Value) -> Value {
    let mut preview = Capped {
        buf: Vec::new(),
        cap: INPUT_BYTES,
        full: false,
    };
    // The capped writer stops serialization early with an error once it is full.
    let _ = serde_json::to_writer(&mut preview, value);
    if !preview.full {
        return value.clone();
    }
    let text = String::from_utf8_lossy(&preview.buf);
    let mut end = text.len().min(INPUT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Value::String(format!("{}... (truncated)", &text[..end]))
}

/// Bytes of a validation message at most: the validator's messages quote the value (`"..." is
/// not valid under any of the schemas listed in the 'oneOf' keyword`), which a client may make
/// megabytes long.
pub const MESSAGE_BYTES: usize = 512;

/// `value` as text, cut at [`MESSAGE_BYTES`] (on a character boundary, marked), without ever
/// formatting more than that: the formatter is stopped once the cap is reached.
pub fn capped_text(value: &impl std::fmt::Display) -> String {
    struct Cap {
        text: String,
        full: bool,
    }
    impl std::fmt::Write for Cap {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = MESSAGE_BYTES.saturating_sub(self.text.len());
            if s.len() <= room {
                self.text.push_str(s);
                return Ok(());
            }
            let mut end = room;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.text.push_str(&s[..end]);
            self.full = true;
            Err(std::fmt::Error)
        }
    }
    let mut cap = Cap {
        text: String::new(),
        full: false,
    };
    let _ = std::fmt::write(&mut cap, format_args!("{value}"));
    if cap.full {
        cap.text.push_str("... (truncated)");
    }
    cap.text
}

/// A writer that keeps the first `cap` bytes and then refuses more.
struct Capped {
    buf: Vec<u8>,
    cap: usize,
    full: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.cap.saturating_sub(self.buf.len());
        if data.len() > room {
            self.buf.extend_from_slice(&data[..room]);
            self.full = true;
            return Err(std::io::Error::other("preview full"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn describe(kind: &ValidationErrorKind, loc: Vec<Value>, input: Value, text: &str) -> FieldError {
    let top_level = loc.len() == 1;
    match kind {
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(set) => set
                    .iter()
                    .map(|t| t.to_string())
                    .find(|t| t != "null")
                    .unwrap_or_else(|| "null".into()),
            };
            let (ty, msg) = match expected.as_str() {
                "string" => ("string_type", "Input should be a valid string"),
                "integer" => ("int_type", "Input should be a valid integer"),
                "number" => ("float_type", "Input should be a valid number"),
                "boolean" => ("bool_type", "Input should be a valid boolean"),
                "array" => ("list_type", "Input should be a valid list"),
                "object" if top_level => (
                    "model_attributes_type",
                    "Input should be a valid dictionary or object to extract fields from",
                ),
                "object" => ("dict_type", "Input should be a valid dictionary"),
                "null" => ("none_required", "Input should be None"),
                _ => ("type_error", "Input has the wrong type"),
            };
            FieldError::new(ty, loc, msg, input)
        }
        ValidationErrorKind::Enum { options } => {
            let expected = expected_list(options);
            FieldError::new("enum", loc, format!("Input should be {expected}"), input)
                .with_ctx(json!({"expected": expected}))
        }
        ValidationErrorKind::Constant { expected_value } => {
            let expected = python_repr(expected_value);
            FieldError::new(
                "literal_error",
                loc,
                format!("Input should be {expected}"),
                input,
            )
            .with_ctx(json!({"expected": expected}))
        }
        ValidationErrorKind::MinLength { limit } => FieldError::new(
            "string_too_short",
            loc,
            format!(
                "String should have at least {limit} character{}",
                plural(*limit)
            ),
            input,
        )
        .with_ctx(json!({"min_length": limit})),
        ValidationErrorKind::MaxLength { limit } => FieldError::new(
            "string_too_long",
            loc,
            format!(
                "String should have at most {limit} character{}",
                plural(*limit)
            ),
            input,
        )
        .with_ctx(json!({"max_length": limit})),
        ValidationErrorKind::Minimum { limit } => FieldError::new(
            "greater_than_equal",
            loc,
            format!("Input should be greater than or equal to {limit}"),
            input,
        )
        .with_ctx(json!({"ge": limit})),
        ValidationErrorKind::Maximum { limit } => FieldError::new(
            "less_than_equal",
            loc,
            format!("Input should be less than or equal to {limit}"),
            input,
        )
        .with_ctx(json!({"le": limit})),
        ValidationErrorKind::ExclusiveMinimum { limit } => FieldError::new(
            "greater_than",
            loc,
            format!("Input should be greater than {limit}"),
            input,
        )
        .with_ctx(json!({"gt": limit})),
        ValidationErrorKind::ExclusiveMaximum { limit } => FieldError::new(
            "less_than",
            loc,
            format!("Input should be less than {limit}"),
            input,
        )
        .with_ctx(json!({"lt": limit})),
        ValidationErrorKind::MinItems { limit } => FieldError::new(
            "too_short",
            loc,
            format!("List should have at least {limit} item{}", plural(*limit)),
            input,
        )
        .with_ctx(json!({"min_length": limit})),
        ValidationErrorKind::MaxItems { limit } => FieldError::new(
            "too_long",
            loc,
            format!("List should have at most {limit} item{}", plural(*limit)),
            input,
        )
        .with_ctx(json!({"max_length": limit})),
        ValidationErrorKind::Pattern { pattern } => FieldError::new(
            "string_pattern_mismatch",
            loc,
            format!("String should match pattern '{pattern}'"),
            input,
        )
        .with_ctx(json!({"pattern": pattern})),
        ValidationErrorKind::MultipleOf { .. } => {
            FieldError::new("multiple_of", loc, text.to_string(), input)
        }
        ValidationErrorKind::Format { format } => FieldError::new(
            "value_error",
            loc,
            format!("Value error, input is not a valid {format}"),
            input,
        )
        .with_ctx(json!({"format": format})),
        _ => FieldError::new("value_error", loc, format!("Value error, {text}"), input),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Pydantic's "'a', 'b' or 'c'".
fn expected_list(options: &Value) -> String {
    let items: Vec<String> = match options {
        Value::Array(items) => items.iter().map(python_repr).collect(),
        other => vec![python_repr(other)],
    };
    match items.len() {
        0 => String::new(),
        1 => items[0].clone(),
        n => format!("{} or {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

fn python_repr(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(schema: Value, body: Value) -> Vec<FieldError> {
        let validator = jsonschema::validator_for(&schema).unwrap();
        validate(&validator, &body)
    }

    #[test]
    fn missing_field_matches_fastapi() {
        let e = errors(
            json!({"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}),
            json!({}),
        );
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!([{"type": "missing", "loc": ["body", "timezone"], "msg": "Field required", "input": {}}])
        );
    }

    #[test]
    fn wrong_types_name_the_field() {
        let e = errors(
            json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "array", "items": {"type": "integer"}}}}),
            json!({"a": "x", "b": [1, "two"]}),
        );
        let by_loc: Vec<_> = e.iter().map(|e| (e.loc.clone(), e.kind.clone())).collect();
        assert!(by_loc.contains(&(vec![json!("body"), json!("a")], "float_type".into())));
        assert!(by_loc.contains(&(vec![json!("body"), json!("b"), json!(1)], "int_type".into())));
    }

    #[test]
    fn enum_lists_the_choices() {
        let e = errors(
            json!({"type": "object", "properties": {"m": {"enum": ["error", "success", "debug"]}}}),
            json!({"m": "nope"}),
        );
        assert_eq!(e[0].kind, "enum");
        assert_eq!(e[0].msg, "Input should be 'error', 'success' or 'debug'");
    }

    #[test]
    fn lax_mode_converts_what_pydantic_converts() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "integer"}, "b": {"type": "number"}, "c": {"type": "boolean"},
            "d": {"type": "array", "items": {"type": "integer"}}, "e": {"type": "string"},
            "f": {"type": ["integer", "null"]}
        }});
        let validator = jsonschema::validator_for(&schema).unwrap();
        let mut body =
            json!({"a": "5", "b": "2.5", "c": "true", "d": ["1", 2], "e": "x", "f": "7"});
        assert!(validate_lax(&validator, &mut body, 10).is_empty());
        assert_eq!(
            body,
            json!({"a": 5, "b": 2.5, "c": true, "d": [1, 2], "e": "x", "f": 7})
        );
        // What pydantic refuses stays refused.
        let mut body = json!({"a": "five", "e": 5, "a2": 1});
        let errors = validate_lax(&validator, &mut body, 10);
        let kinds: Vec<_> = errors.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["int_type", "string_type"]);
        let mut body = json!({"a": 1.5});
        assert_eq!(validate_lax(&validator, &mut body, 10)[0].kind, "int_type");
    }

    /// Finding 1 of the hardening issue: every error used to be listed, each copying its
    /// instance, so one request could take gigabytes and answer with megabytes.
    #[test]
    fn errors_are_capped_and_inputs_truncated() {
        let schema = json!({"type": "object", "properties": {
            "numbers": {"type": "array", "items": {"type": "number"}}}, "required": ["numbers", "other"]});
        let validator = jsonschema::validator_for(&schema).unwrap();
        // Small enough to be walked error by error: capped at MAX_ERRORS plus a note.
        let mut body = json!({"numbers": vec!["x"; 500], "pad": "y".repeat(10_000)});
        let errors = validate_lax(&validator, &mut body, 502);
        assert_eq!(errors.len(), MAX_ERRORS + 1);
        let last = errors.last().unwrap();
        assert_eq!(last.kind, "too_many_errors");
        assert!(last.msg.starts_with("481 more errors"), "{}", last.msg);
        // The missing field's input is the whole object: shown as a short preview.
        let missing = errors.iter().find(|e| e.kind == "missing").unwrap();
        let shown = serde_json::to_string(&missing.input).unwrap();
        assert!(
            shown.len() < 400 && shown.contains("(truncated)"),
            "{shown}"
        );
        // Too large to walk: a few lax fixes, the first error, and a note.
        let mut body = json!({"numbers": vec!["x"; 100_000], "other": 1});
        let errors = validate_lax(&validator, &mut body, 100_002);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].kind, "float_type");
        assert_eq!(errors[1].kind, "too_many_errors");
        // Lax conversion still works on large bodies for a few values.
        let mut body = json!({"numbers": [1, "2", 3], "other": 1});
        let mut padded = body.clone();
        assert!(validate_lax(&validator, &mut body, 20_000).is_empty());
        assert_eq!(body["numbers"], json!([1, 2.0, 3]));
        assert!(validate_lax(&validator, &mut padded, 4).is_empty());
    }

    #[test]
    fn whole_floats_become_integers_where_the_schema_says_integer() {
        let schema = json!({"type": "object", "$defs": {"N": {"type": "integer"}}, "properties": {
            "a": {"type": "integer"}, "b": {"type": "number"}, "c": {"type": ["integer", "null"]},
            "d": {"type": "array", "items": {"type": "integer"}}, "e": {"$ref": "#/$defs/N"},
            "f": {"anyOf": [{"type": "integer"}, {"type": "string"}]}, "g": {"type": "integer"}
        }});
        let mut body =
            json!({"a": 2.0, "b": 2.0, "c": 3.0, "d": [1.0, 2], "e": 4.0, "f": 5.0, "g": 2.5});
        normalize_integers(&schema, &mut body);
        assert_eq!(
            body,
            json!({"a": 2, "b": 2.0, "c": 3, "d": [1, 2], "e": 4, "f": 5, "g": 2.5})
        );
        assert!(body["a"].is_i64() && body["b"].is_f64());
    }

    #[test]
    fn body_that_is_not_an_object() {
        let e = errors(json!({"type": "object"}), json!([1]));
        assert_eq!(e[0].kind, "model_attributes_type");
        assert_eq!(e[0].loc, vec![json!("body")]);
    }

    #[test]
    fn broken_json_reports_offset() {
        let body = b"{\"a\": }";
        let err = serde_json::from_slice::<Value>(body).unwrap_err();
        let e = FieldError::json_invalid(&err, body);
        assert_eq!(e.kind, "json_invalid");
        assert_eq!(e.loc, vec![json!("body"), json!(6)]);
    }
}
