//! Checks an event's `data` against its catalog schema. A small walker
//! over the JSON Schema subset the catalog's generated schemas use (`type`,
//! `properties`, `required`, `additionalProperties`, `items`, `anyOf`,
//! `oneOf`, `enum`, `const`, `minimum`, `$ref` into `$defs`), so no
//! general validator is pulled in; a keyword it does not know is an error,
//! so a schema it cannot check fails loudly instead of passing.

use serde_json::Value;

use crate::catalog::find;

/// Why an event does not match the catalog.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("event type {0:?} is not in the catalog")]
    UnknownType(String),
    #[error("{kind} data at {path}: {problem}")]
    Invalid {
        kind: String,
        path: String,
        problem: String,
    },
}

/// Checks `data` against the schema of type `kind`.
pub fn check(kind: &str, data: &Value) -> Result<(), CheckError> {
    let t = find(kind).ok_or_else(|| CheckError::UnknownType(kind.to_owned()))?;
    let schema = t.schema();
    walk(&schema, &schema, data, "$").map_err(|(path, problem)| CheckError::Invalid {
        kind: kind.to_owned(),
        path,
        problem,
    })
}

/// Keywords that only describe.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "title",
    "description",
    "$defs",
    "format",
    "default",
    "examples",
];

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        _ => false,
    }
}

fn walk(root: &Value, schema: &Value, v: &Value, path: &str) -> Result<(), (String, String)> {
    let fail = |p: String| Err((path.to_owned(), p));
    let s = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return fail("nothing is allowed here".into()),
        Value::Object(s) => s,
        _ => return fail("the schema is not an object".into()),
    };
    for (k, kw) in s {
        match k.as_str() {
            k if ANNOTATIONS.contains(&k) => {}
            "type" => {
                let ok = match kw {
                    Value::String(t) => type_ok(t, v),
                    Value::Array(ts) => {
                        ts.iter().any(|t| t.as_str().is_some_and(|t| type_ok(t, v)))
                    }
                    _ => false,
                };
                if !ok {
                    return fail(format!("expected type {kw}, found {v}"));
                }
            }
            "properties" | "required" | "additionalProperties" => {
                let Some(o) = v.as_object() else { continue };
                match k.as_str() {
                    "required" => {
                        for r in kw.as_array().into_iter().flatten() {
                            let r = r.as_str().unwrap_or_default();
                            if !o.contains_key(r) {
                                return fail(format!("required member {r:?} is missing"));
                            }
                        }
                    }
                    "properties" => {
                        let props = kw.as_object().cloned().unwrap_or_default();
                        for (name, sub) in &props {
                            if let Some(x) = o.get(name) {
                                walk(root, sub, x, &format!("{path}.{name}"))?;
                            }
                        }
                    }
                    _ => {
                        let props = s.get("properties").and_then(Value::as_object);
                        for (name, x) in o {
                            if props.is_some_and(|p| p.contains_key(name)) {
                                continue;
                            }
                            walk(root, kw, x, &format!("{path}.{name}")).map_err(|(p, e)| {
                                (p, format!("member not in the catalog ({e})"))
                            })?;
                        }
                    }
                }
            }
            "items" => {
                for (i, x) in v.as_array().into_iter().flatten().enumerate() {
                    walk(root, kw, x, &format!("{path}[{i}]"))?;
                }
            }
            "anyOf" | "oneOf" => {
                let n = kw
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|sub| walk(root, sub, v, path).is_ok())
                    .count();
                if n == 0 || (k == "oneOf" && n > 1) {
                    return fail(format!("{v} matches {n} of the {k} alternatives"));
                }
            }
            "enum" => {
                if !kw.as_array().is_some_and(|a| a.contains(v)) {
                    return fail(format!("{v} is not one of {kw}"));
                }
            }
            "const" => {
                if kw != v {
                    return fail(format!("{v} is not {kw}"));
                }
            }
            "minimum" => {
                if let (Some(min), Some(x)) = (kw.as_f64(), v.as_f64())
                    && x < min
                {
                    return fail(format!("{x} is below {min}"));
                }
            }
            "$ref" => {
                let r = kw.as_str().unwrap_or_default();
                let target = r
                    .strip_prefix('#')
                    .and_then(|p| root.pointer(p))
                    .ok_or_else(|| (path.to_owned(), format!("unresolved $ref {r}")))?;
                walk(root, target, v, path)?;
            }
            other => return fail(format!("the checker does not know keyword {other:?}")),
        }
    }
    Ok(())
}
