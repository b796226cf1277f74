//! Lenient reading of the request params and the query, as the AIAA clients send them:
//! `params` is a JSON object (absent or empty means `{}`); arrays may arrive as strings
//! holding JSON (`"points": "[[1,2,3]]"`); keys may come in camelCase; unknown keys are
//! ignored. Query values are `+`-encoded.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::error::{GatewayError, Result};
use crate::geometry::{MAX_POINTS, check_coordinate};

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(msg.into())
}

/// The query string's values (`+` and `%xx` decoded); the last of repeated keys wins.
pub fn query(raw: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Parses the `params` text: absent or blank is `{}`; otherwise a JSON object (or a string
/// holding one).
pub fn parse(text: Option<&str>) -> Result<Map<String, Value>> {
    let text = text.unwrap_or("").trim();
    if text.is_empty() {
        return Ok(Map::new());
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| bad(format!("params is not valid JSON: {e}")))?;
    match lenient(&value).into_owned() {
        Value::Object(map) => Ok(map),
        other => Err(bad(format!("params must be a JSON object, not {}", kind(&other)))),
    }
}

/// A value, or the JSON a string value holds (the clients double-encode arrays); borrowed
/// unless a string had to be parsed.
pub fn lenient(value: &Value) -> Cow<'_, Value> {
    if let Value::String(s) = value {
        let t = s.trim();
        if (t.starts_with('[') || t.starts_with('{'))
            && let Ok(inner) = serde_json::from_str::<Value>(t)
        {
            return Cow::Owned(inner);
        }
    }
    Cow::Borrowed(value)
}

/// Like [`lenient`], but a string that starts like JSON and is not valid JSON is an error
/// saying why (`key` names the field).
fn lenient_checked<'a>(key: &str, value: &'a Value) -> Result<Cow<'a, Value>> {
    if let Value::String(s) = value {
        let t = s.trim();
        if t.starts_with('[') || t.starts_with('{') {
            return serde_json::from_str::<Value>(t)
                .map(Cow::Owned)
                .map_err(|e| bad(format!("{key} holds a string that is not valid JSON: {e}")));
        }
    }
    Ok(Cow::Borrowed(value))
}

/// A short name of a JSON value's kind, for messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The first of `keys` present in `params`.
pub fn get<'a>(params: &'a Map<String, Value>, keys: &[&str]) -> Option<(&'a str, &'a Value)> {
    keys.iter()
        .find_map(|k| params.get_key_value(*k).map(|(k, v)| (k.as_str(), v)))
}

/// A number: a JSON number or a string holding one.
pub fn number(key: &str, value: &Value) -> Result<f64> {
    let n = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    n.filter(|n| n.is_finite())
        .ok_or_else(|| bad(format!("{key} must be a number, not {}", kind(value))))
}

/// A non-negative integer (a whole number, or a string holding one).
pub fn index(key: &str, value: &Value) -> Result<usize> {
    let n = number(key, value)?;
    if n < 0.0 || n.fract() != 0.0 || n > u32::MAX as f64 {
        return Err(bad(format!("{key} must be a non-negative whole number, not {n}")));
    }
    Ok(n as usize)
}

/// A list of points with `dims` coordinates each: an array or a string holding one. A single
/// point (`[x,y,z]`) is accepted where a list is expected. At most [`MAX_POINTS`] points
/// (413), each coordinate finite and within [`crate::geometry::MAX_COORDINATE`] (400).
pub fn points(key: &str, value: &Value, dims: usize) -> Result<Vec<Vec<f64>>> {
    let value = lenient_checked(key, value)?;
    let Value::Array(items) = value.as_ref() else {
        return Err(bad(format!(
            "{key} must be a list of [x, y, z] points, not {}",
            kind(&value)
        )));
    };
    let single = !items.is_empty() && items.iter().all(|v| !v.is_array());
    let list: &[Value] = if single {
        std::slice::from_ref(value.as_ref())
    } else {
        items
    };
    if list.len() > MAX_POINTS {
        return Err(GatewayError::FieldTooLarge(format!(
            "{key} has {} points; at most {MAX_POINTS} are accepted",
            list.len()
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            let p = lenient_checked(&format!("{key}[{i}]"), p)?;
            let Value::Array(coords) = p.as_ref() else {
                return Err(bad(format!(
                    "{key}[{i}] must be a point [x, y, z], not {}",
                    kind(&p)
                )));
            };
            if coords.len() != dims {
                return Err(bad(format!(
                    "{key}[{i}] has {} coordinates; a point has {dims}",
                    coords.len()
                )));
            }
            coords
                .iter()
                .enumerate()
                .map(|(c, v)| {
                    let what = format!("{key}[{i}][{c}]");
                    let n = number(&what, v)?;
                    check_coordinate(&what, n)?;
                    Ok(n)
                })
                .collect()
        })
        .collect()
}

/// Checks that every point lies inside a grid of `dims` voxels.
pub fn check_inside(key: &str, points: &[Vec<f64>], dims: &[usize]) -> Result<()> {
    for (i, p) in points.iter().enumerate() {
        for (c, (&v, &n)) in p.iter().zip(dims).enumerate() {
            if v < 0.0 || v > (n as f64 - 1.0) {
                return Err(bad(format!(
                    "{key}[{i}] = {p:?} lies outside the image: coordinate {c} must be in 0..{}",
                    n.saturating_sub(1)
                )));
            }
        }
    }
    Ok(())
}

/// A boolean query parameter (`true`/`false`, `1`/`0`; absent: false).
pub fn flag(query: &HashMap<String, String>, key: &str) -> Result<bool> {
    match query.get(key).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(GatewayError::BadRequest(format!(
            "{key}={other:?}: expected true or false"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lenient_points() {
        let p = parse(Some(r#"{"points": "[[1,2,3],[4,5,6]]", "sigma": 3}"#)).unwrap();
        assert_eq!(points("points", &p["points"], 3).unwrap().len(), 2);
        assert_eq!(
            points("current_point", &json!([1, 2, 3]), 3).unwrap(),
            vec![vec![1.0, 2.0, 3.0]]
        );
        assert_eq!(points("current_point", &json!([[1, 2, 3]]), 3).unwrap().len(), 1);
        let err = points("points", &json!([[1, "a", 3]]), 3)
            .unwrap_err()
            .to_string();
        assert!(err.contains("points[0][1]") && err.contains("number"), "{err}");
        assert!(
            points("points", &json!([[1, 2]]), 3)
                .unwrap_err()
                .to_string()
                .contains("2 coordinates")
        );
        for absurd in [
            json!(1e300),
            json!(-1e300),
            json!("NaN"),
            json!("-inf"),
            json!(2e6),
        ] {
            let err = points("points", &json!([[1, absurd, 3]]), 3)
                .unwrap_err()
                .to_string();
            assert!(err.contains("points[0][1]"), "{absurd}: {err}");
        }
        let many: Vec<Value> = (0..=MAX_POINTS).map(|_| json!([1, 2, 3])).collect();
        let err = points("foreground", &Value::Array(many), 3).unwrap_err();
        assert_eq!(err.status().as_u16(), 413);
        assert!(err.to_string().contains("10000"), "{err}");
        assert!(parse(Some("")).unwrap().is_empty());
        assert!(
            parse(Some("[1]"))
                .unwrap_err()
                .to_string()
                .contains("JSON object")
        );
        assert!(
            parse(Some("{nope"))
                .unwrap_err()
                .to_string()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn query_plus_encoding() {
        let q = query(Some("model=my+model&label=spleen%20x"));
        assert_eq!(q["model"], "my model");
        assert_eq!(q["label"], "spleen x");
    }

    #[test]
    fn inside() {
        let pts = vec![vec![0.0, 9.0, 4.0]];
        assert!(check_inside("points", &pts, &[10, 10, 5]).is_ok());
        assert!(
            check_inside("points", &pts, &[10, 9, 5])
                .unwrap_err()
                .to_string()
                .contains("outside")
        );
    }
}
