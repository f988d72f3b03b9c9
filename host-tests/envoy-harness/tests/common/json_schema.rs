//! A small JSON Schema (draft 2020-12) validator limited to the keywords
//! envoy/governance.schema.json uses. A keyword it does not know is an error, so the schema
//! cannot grow a keyword this check would silently skip.
//!
//! (The `jsonschema` crate builds, but it turns on serde_json's `float_roundtrip`, which
//! feature unification would then also turn on for the filter's native build in
//! `cargo test --workspace`: the tests would parse prices differently from the module.)

use regex::Regex;
use serde_json::{Map, Value};

/// Keywords that only annotate.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "title",
    "description",
    "default",
    "format",
    "examples",
];

pub struct Schema {
    root: Value,
}

impl Schema {
    /// Checks that every keyword in the schema is one this validator implements.
    pub fn new(root: Value) -> Result<Schema, String> {
        check_keywords(&root, "#")?;
        Ok(Schema { root })
    }

    /// Every violation, as `<instance path>: <problem>`; empty when valid.
    pub fn errors(&self, instance: &Value) -> Vec<String> {
        let mut out = Vec::new();
        self.validate(&self.root, instance, "", &mut out);
        out
    }

    fn resolve<'a>(&'a self, reference: &str) -> &'a Value {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local $ref supported: {reference}"));
        self.root
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling $ref {reference}"))
    }

    fn validate(&self, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
        let s = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                out.push(format!("{at}: not allowed"));
                return;
            }
            Value::Object(s) => s,
            other => panic!("bad schema {other}"),
        };
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            self.validate(self.resolve(r), v, at, out);
        }
        if let Some(t) = s.get("type") {
            let types: Vec<&str> = match t {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                other => panic!("bad type {other}"),
            };
            if !types.iter().any(|t| has_type(v, t)) {
                out.push(format!("{at}: {v} is not of type {t}"));
                return;
            }
        }
        if let Some(Value::Array(options)) = s.get("enum") {
            if !options.contains(v) {
                out.push(format!("{at}: {v} is not one of {options:?}"));
            }
        }
        if let Some(c) = s.get("const") {
            if c != v {
                out.push(format!("{at}: {v} is not {c}"));
            }
        }
        match v {
            Value::Object(obj) => self.object(s, obj, at, out),
            Value::Array(items) => {
                if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
                    if (items.len() as u64) < min {
                        out.push(format!("{at}: fewer than {min} items"));
                    }
                }
                if let Some(item) = s.get("items") {
                    for (i, x) in items.iter().enumerate() {
                        self.validate(item, x, &format!("{at}/{i}"), out);
                    }
                }
            }
            Value::String(text) => {
                if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
                    if (text.chars().count() as u64) < min {
                        out.push(format!("{at}: shorter than {min}"));
                    }
                }
                if let Some(p) = s.get("pattern").and_then(Value::as_str) {
                    let re = Regex::new(p).unwrap_or_else(|e| panic!("pattern {p}: {e}"));
                    if !re.is_match(text) {
                        out.push(format!("{at}: {text:?} does not match {p}"));
                    }
                }
            }
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                let bound = |k: &str| s.get(k).and_then(Value::as_f64);
                if bound("minimum").is_some_and(|m| x < m) {
                    out.push(format!("{at}: {x} < minimum"));
                }
                if bound("maximum").is_some_and(|m| x > m) {
                    out.push(format!("{at}: {x} > maximum"));
                }
                if bound("exclusiveMinimum").is_some_and(|m| x <= m) {
                    out.push(format!("{at}: {x} <= exclusiveMinimum"));
                }
            }
            _ => {}
        }
        if let Some(Value::Array(all)) = s.get("allOf") {
            for sub in all {
                self.validate(sub, v, at, out);
            }
        }
        if let Some(Value::Array(any)) = s.get("anyOf") {
            if !any.iter().any(|sub| self.is_valid(sub, v, at)) {
                out.push(format!("{at}: matches none of anyOf"));
            }
        }
        if let Some(Value::Array(one)) = s.get("oneOf") {
            let n = one.iter().filter(|sub| self.is_valid(sub, v, at)).count();
            if n != 1 {
                out.push(format!("{at}: matches {n} of oneOf, not exactly 1"));
            }
        }
        if let Some(not) = s.get("not") {
            if self.is_valid(not, v, at) {
                out.push(format!("{at}: matches a `not` schema"));
            }
        }
    }

    fn is_valid(&self, schema: &Value, v: &Value, at: &str) -> bool {
        let mut errs = Vec::new();
        self.validate(schema, v, at, &mut errs);
        errs.is_empty()
    }

    fn object(
        &self,
        s: &Map<String, Value>,
        obj: &Map<String, Value>,
        at: &str,
        out: &mut Vec<String>,
    ) {
        if let Some(Value::Array(req)) = s.get("required") {
            for k in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(k) {
                    out.push(format!("{at}: missing required {k:?}"));
                }
            }
        }
        if let Some(Value::Object(deps)) = s.get("dependentRequired") {
            for (k, needs) in deps {
                if obj.contains_key(k) {
                    for n in needs
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                    {
                        if !obj.contains_key(n) {
                            out.push(format!("{at}: {k:?} needs {n:?}"));
                        }
                    }
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, x) in obj {
            let here = format!("{at}/{k}");
            if let Some(names) = s.get("propertyNames") {
                self.validate(names, &Value::String(k.clone()), &here, out);
            }
            match props.and_then(|p| p.get(k)) {
                Some(sub) => self.validate(sub, x, &here, out),
                None => {
                    if let Some(extra) = s.get("additionalProperties") {
                        self.validate(extra, x, &here, out);
                    }
                }
            }
        }
    }
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        other => panic!("unknown type {other}"),
    }
}

const KEYWORDS: &[&str] = &[
    "$ref",
    "type",
    "enum",
    "const",
    "properties",
    "additionalProperties",
    "required",
    "propertyNames",
    "dependentRequired",
    "items",
    "minItems",
    "minLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
];

fn check_keywords(schema: &Value, at: &str) -> Result<(), String> {
    let Value::Object(s) = schema else {
        return match schema {
            Value::Bool(_) => Ok(()),
            other => Err(format!(
                "{at}: a schema must be an object or a boolean, not {other}"
            )),
        };
    };
    for (k, sub) in s {
        let here = format!("{at}/{k}");
        match k.as_str() {
            "$defs" | "properties" | "dependentRequired" if sub.is_object() => {
                if k != "dependentRequired" {
                    for (name, x) in sub.as_object().into_iter().flatten() {
                        check_keywords(x, &format!("{here}/{name}"))?;
                    }
                }
            }
            "allOf" | "anyOf" | "oneOf" => {
                for (i, x) in sub.as_array().into_iter().flatten().enumerate() {
                    check_keywords(x, &format!("{here}/{i}"))?;
                }
            }
            "items" | "additionalProperties" | "propertyNames" | "not" => {
                check_keywords(sub, &here)?
            }
            k if KEYWORDS.contains(&k) || ANNOTATIONS.contains(&k) => {}
            other => return Err(format!("{at}: keyword {other:?} is not implemented here")),
        }
    }
    Ok(())
}
