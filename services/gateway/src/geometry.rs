//! Client geometry, parsed and bounded before any work depends on it: points, polygons,
//! offsets, indices and sizes from the `params` JSON.
//!
//! Every number that drives a loop or an allocation comes from the client, so every one is
//! checked: coordinates must be finite and within [`MAX_COORDINATE`] (larger than any image
//! axis; the polygon endpoints then clip them to the image), point lists hold at most
//! [`MAX_POINTS`] points, sizes at most [`MAX_SPATIAL_SIZE`], and polygons at most the
//! configured number of vertices. Refusals name the field and the limit.
//!
//! Polygons can be big (a 3D `poly` holds every slice's contours, tens of MB), so they are
//! read straight from the JSON text into typed vectors (16 bytes a vertex), never through
//! a `serde_json::Value` tree (about ten times that). The clients' leniency is kept: any
//! list may arrive as a string holding its JSON, numbers as strings holding a number, and a
//! single point where a list of points is expected.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, SeqAccess, Unexpected, Visitor};
use serde_json::value::RawValue;

use crate::error::{GatewayError, Result};
use crate::polygon::{Point, Polygon};

/// Largest coordinate magnitude accepted, in voxels: beyond any image axis.
pub const MAX_COORDINATE: f64 = 1_000_000.0;
/// Most points in one list (`points`, `foreground`, `background`).
pub const MAX_POINTS: usize = 10_000;
/// Largest entry of `spatial_size`.
pub const MAX_SPATIAL_SIZE: usize = 2048;

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(msg.into())
}

/// Checks one coordinate: finite and within [`MAX_COORDINATE`]. `what` names it.
pub fn check_coordinate(what: &dyn fmt::Display, v: f64) -> Result<()> {
    if !v.is_finite() || v.abs() > MAX_COORDINATE {
        return Err(bad(format!(
            "{what} = {v} is out of range: coordinates are voxel indices, at most ±{MAX_COORDINATE}"
        )));
    }
    Ok(())
}

/// A finite number: a JSON number, or a string holding one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Num(pub f64);

struct NumVisitor;

impl<'de> Visitor<'de> for NumVisitor {
    type Value = Num;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a finite number")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
        if v.is_finite() {
            Ok(Num(v))
        } else {
            Err(E::invalid_value(Unexpected::Float(v), &self))
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
        Ok(Num(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
        Ok(Num(v as f64))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Num, E> {
        match s.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Num(v)),
            _ => Err(E::invalid_value(Unexpected::Str(s), &self)),
        }
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumVisitor)
    }
}

/// A `T` read from a JSON list, or from a string holding that list's JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct Lenient<T>(pub T);

struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: DeserializeOwned> Visitor<'de> for LenientVisitor<T> {
    type Value = Lenient<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list (or a string holding one)")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        serde_json::from_str::<T>(s.trim())
            .map(Lenient)
            .map_err(|e| E::custom(format!("in the JSON this string holds: {e}")))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        T::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Lenient)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientVisitor(PhantomData))
    }
}

/// A point `[x, y]` (or a string holding one).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point2(pub Point);

impl<'de> Deserialize<'de> for Point2 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Lenient(coords) = Lenient::<Vec<Num>>::deserialize(d)?;
        match coords.as_slice() {
            [x, y] => Ok(Point2([x.0, y.0])),
            _ => Err(de::Error::custom(format!(
                "a point has 2 coordinates [x, y], not {}",
                coords.len()
            ))),
        }
    }
}

/// One element of a polygon's list: a point, or (for a single point written flat) a number.
enum Item {
    Num(f64),
    Point(Point),
}

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a point [x, y]")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Item, E> {
        NumVisitor.visit_f64(v).map(|n| Item::Num(n.0))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Item, E> {
        Ok(Item::Num(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Item, E> {
        Ok(Item::Num(v as f64))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Item, E> {
        if s.trim_start().starts_with('[') {
            serde_json::from_str::<Point2>(s.trim())
                .map(|p| Item::Point(p.0))
                .map_err(|e| E::custom(format!("in the JSON this string holds: {e}")))
        } else {
            NumVisitor.visit_str(s).map(|n| Item::Num(n.0))
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Item, A::Error> {
        Point2::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(|p| Item::Point(p.0))
    }
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ItemVisitor)
    }
}

/// A polygon: a list of points `[[x, y], ...]`, or one point `[x, y]`, or a string holding
/// either.
#[derive(Clone, Debug, PartialEq)]
pub struct Poly(pub Polygon);

impl<'de> Deserialize<'de> for Poly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Lenient(items) = Lenient::<Vec<Item>>::deserialize(d)?;
        let mut points = Vec::with_capacity(items.len());
        let mut numbers = Vec::new();
        for item in items {
            match item {
                Item::Num(n) => numbers.push(n),
                Item::Point(p) => points.push(p),
            }
        }
        match (numbers.as_slice(), points.is_empty()) {
            ([], _) => Ok(Poly(points)),
            ([x, y], true) => Ok(Poly(vec![[*x, *y]])),
            (_, true) => Err(de::Error::custom(format!(
                "a point has 2 coordinates [x, y], not {}",
                numbers.len()
            ))),
            (_, false) => Err(de::Error::custom(
                "a polygon is a list of points [[x, y], ...]; this one mixes numbers and points",
            )),
        }
    }
}

/// How deeply the first number of a JSON value is nested (`[[[1,2]]]` is 3); none when
/// there is no number. Reads without building anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Depth(pub Option<usize>);

struct DepthVisitor;

impl<'de> Visitor<'de> for DepthVisitor {
    type Value = Depth;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Depth, E> {
        Ok(Depth(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Depth, E> {
        Ok(Depth(Some(0)))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Depth, E> {
        Ok(Depth(Some(0)))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Depth, E> {
        Ok(Depth(Some(0)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Depth, E> {
        let t = s.trim();
        Ok(if t.starts_with('[') {
            serde_json::from_str::<Depth>(t).unwrap_or(Depth(None))
        } else {
            Depth(None)
        })
    }
    fn visit_unit<E>(self) -> Result<Depth, E> {
        Ok(Depth(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Depth, A::Error> {
        let mut found = None;
        while let Some(Depth(d)) = seq.next_element::<Depth>()? {
            if found.is_none() {
                found = d.map(|d| d + 1);
            }
        }
        Ok(Depth(found))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Depth, A::Error> {
        while map.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
        Ok(Depth(None))
    }
}

impl<'de> Deserialize<'de> for Depth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DepthVisitor)
    }
}

/// Params read as their keys and the raw JSON text of each value, without parsing the
/// values (they are parsed one by one, typed, when needed).
#[derive(Debug, Default)]
pub struct RawParams<'a> {
    map: HashMap<String, &'a RawValue>,
}

/// The JSON object text of `params`: blank is `{}`; a JSON string holding an object is
/// unwrapped.
pub fn object_text(text: Option<&str>) -> Result<std::borrow::Cow<'_, str>> {
    let text = text.unwrap_or("").trim();
    if text.is_empty() {
        return Ok("{}".into());
    }
    if text.starts_with('"') {
        let inner: String =
            serde_json::from_str(text).map_err(|e| bad(format!("params is not valid JSON: {e}")))?;
        return Ok(inner.trim().to_string().into());
    }
    Ok(text.into())
}

impl<'a> RawParams<'a> {
    /// Reads a JSON object's keys and raw values.
    pub fn parse(text: &'a str) -> Result<Self> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let map = serde_json::from_str::<HashMap<String, &'a RawValue>>(text).map_err(|e| {
            if e.is_data() {
                bad(format!("params must be a JSON object: {e}"))
            } else {
                bad(format!("params is not valid JSON: {e}"))
            }
        })?;
        Ok(RawParams { map })
    }

    /// The first of `keys` present, with its raw value.
    pub fn get(&self, keys: &[&'static str]) -> Option<(&'static str, &'a RawValue)> {
        keys.iter().find_map(|k| self.map.get(*k).map(|v| (*k, *v)))
    }

    /// A scalar value (string, number, boolean) of at most 256 bytes of JSON, as a `Value`;
    /// anything else is `None` (the caller treats it as absent or wrong).
    pub fn scalar(&self, key: &'static str) -> Option<serde_json::Value> {
        let raw = self.map.get(key)?;
        if raw.get().len() > 256 {
            return None;
        }
        serde_json::from_str(raw.get())
            .ok()
            .filter(|v: &serde_json::Value| !v.is_array() && !v.is_object())
    }
}

/// Parses `raw` (the value of `params.<key>`) as a `T`, naming the path to what is wrong.
pub fn typed<T: DeserializeOwned>(key: &str, raw: &RawValue) -> Result<T> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        bad(format!("params.{key}{path}: {}", e.inner()))
    })
}

/// A finite number within [`MAX_COORDINATE`].
pub fn number(key: &str, raw: &RawValue) -> Result<f64> {
    let Num(v) = typed(key, raw)?;
    check_coordinate(&format_args!("params.{key}"), v)?;
    Ok(v)
}

/// A non-negative whole number (a number or a string holding one), at most `u32::MAX`.
pub fn index(key: &str, raw: &RawValue) -> Result<usize> {
    let Num(n) = typed(key, raw)?;
    if n < 0.0 || n.fract() != 0.0 || n > u32::MAX as f64 {
        return Err(bad(format!(
            "params.{key} must be a non-negative whole number, not {n}"
        )));
    }
    Ok(n as usize)
}

/// Checks every vertex of `polys` (`what[i]` names polygon i) and counts them into `count`,
/// refusing more than `max`.
fn check_polygons(what: &str, polys: &[Polygon], count: &mut usize, max: usize) -> Result<()> {
    for (i, poly) in polys.iter().enumerate() {
        *count += poly.len().max(1);
        if *count > max {
            return Err(GatewayError::FieldTooLarge(format!(
                "params.{what} holds more than {max} polygon vertices (--gateway-max-polygon-vertices, AIAA_GATEWAY_MAX_POLYGON_VERTICES)"
            )));
        }
        for (j, p) in poly.iter().enumerate() {
            for (c, &v) in p.iter().enumerate() {
                check_coordinate(&format_args!("params.{what}[{i}][{j}][{c}]"), v)?;
            }
        }
    }
    Ok(())
}

/// A list of polygons (2D), each vertex checked, at most `max_vertices` in all.
pub fn polygons(key: &str, raw: &RawValue, max_vertices: usize) -> Result<Vec<Polygon>> {
    let Lenient(polys) = typed::<Lenient<Vec<Poly>>>(key, raw)?;
    let polys: Vec<Polygon> = polys.into_iter().map(|p| p.0).collect();
    check_polygons(key, &polys, &mut 0, max_vertices)?;
    Ok(polys)
}

/// Per slice a list of polygons (3D), each vertex checked, at most `max_vertices` in all.
pub fn slices(key: &str, raw: &RawValue, max_vertices: usize) -> Result<Vec<Vec<Polygon>>> {
    let Lenient(slices) = typed::<Lenient<Vec<Lenient<Vec<Poly>>>>>(key, raw)?;
    let mut count = 0;
    slices
        .into_iter()
        .enumerate()
        .map(|(z, Lenient(polys))| {
            let polys: Vec<Polygon> = polys.into_iter().map(|p| p.0).collect();
            check_polygons(&format!("{key}[{z}]"), &polys, &mut count, max_vertices)?;
            Ok(polys)
        })
        .collect()
}

/// One offset `[dx, dy]` (or `[[dx, dy]]`), within [`MAX_COORDINATE`].
pub fn offset(key: &str, raw: &RawValue) -> Result<Point> {
    let Poly(points) = typed::<Poly>(key, raw)?;
    let [p] = points.as_slice() else {
        return Err(bad(format!("params.{key} must be one offset [dx, dy]")));
    };
    for (c, &v) in p.iter().enumerate() {
        check_coordinate(&format_args!("params.{key}[{c}]"), v)?;
    }
    Ok(*p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    #[test]
    fn lenient_polygons() {
        let p = polygons(
            "poly",
            &raw(r#"[[[1,2],[3,4],[5,"6"]], "[[7,8]]", [9,10], []]"#),
            100,
        )
        .unwrap();
        assert_eq!(
            p,
            vec![
                vec![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
                vec![[7.0, 8.0]],
                vec![[9.0, 10.0]],
                vec![]
            ]
        );
        let s = slices("poly", &raw(r#"[[], "[[[1,2],[3,4]]]", [[[5,6]]]]"#), 100).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[1][0], vec![[1.0, 2.0], [3.0, 4.0]]);
        assert_eq!(offset("vertex_offset", &raw("[3, -4]")).unwrap(), [3.0, -4.0]);
        assert_eq!(offset("vertex_offset", &raw("[[3, -4]]")).unwrap(), [3.0, -4.0]);
    }

    #[test]
    fn refusals_name_the_path_and_limit() {
        let err = polygons("poly", &raw(r#"[[[1,2],[3,"x"]]]"#), 100)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("params.poly[0][1][1]") && err.contains("finite number"),
            "{err}"
        );
        let err = polygons("poly", &raw("[[[1,2],[3,4,5]]]"), 100)
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 coordinates"), "{err}");
        for absurd in ["1e300", "-1e300", "\"NaN\"", "\"inf\"", "1000001"] {
            let text = format!("[[[1,2],[3,{absurd}]]]");
            let err = polygons("poly", &raw(&text), 100).unwrap_err().to_string();
            assert!(
                err.contains("params.poly") && (err.contains("1000000") || err.contains("finite")),
                "{absurd}: {err}"
            );
        }
        let err = offset("vertex_offset", &raw("[1e300, 0]"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("vertex_offset[0]") && err.contains("1000000"),
            "{err}"
        );
        assert!(offset("vertex_offset", &raw("[[1,2],[3,4]]")).is_err());
        let many = format!("[[{}[0,0]]]", "[1,1],".repeat(200));
        let err = polygons("poly", &raw(&many), 100).unwrap_err();
        assert_eq!(err.status().as_u16(), 413);
        assert!(
            err.to_string().contains("--gateway-max-polygon-vertices"),
            "{err}"
        );
        // 1e400 is not a JSON number serde accepts: refused as invalid, not infinite.
        assert!(polygons("poly", &raw("[[[1e400,0]]]"), 100).is_err());
    }

    #[test]
    fn depth_and_params() {
        let d = |t: &str| serde_json::from_str::<Depth>(t).unwrap().0;
        assert_eq!(d("[[[1,2]]]"), Some(3));
        assert_eq!(d("[[], [[[1,2]]]]"), Some(4));
        assert_eq!(d("\"[[1,2]]\""), Some(2));
        assert_eq!(d("[]"), None);
        let text = object_text(Some(r#""{\"a\": 1}""#)).unwrap();
        assert_eq!(text, r#"{"a": 1}"#);
        let p = RawParams::parse(r#"{"polygonIndex": "2", "result_extension": ".png", "x": [1]}"#).unwrap();
        let (k, v) = p.get(&["polygon_index", "polygonIndex"]).unwrap();
        assert_eq!(k, "polygonIndex");
        assert_eq!(index(k, v).unwrap(), 2);
        assert_eq!(p.scalar("result_extension").unwrap(), ".png");
        assert!(p.scalar("x").is_none());
        assert!(
            RawParams::parse("[1]")
                .unwrap_err()
                .to_string()
                .contains("JSON object")
        );
        assert!(
            RawParams::parse("{nope")
                .unwrap_err()
                .to_string()
                .contains("not valid JSON")
        );
    }
}
