//! Strict reading of the seed's JSON config objects: every key is either read or reported.
//!
//! [`Fields`] wraps one JSON object; each accessor marks its key as known, and
//! [`Fields::finish`] fails on the first key nobody asked for, naming it. Errors name the
//! object (`context`) and the key, so a typo in a train config points at itself.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::error::{NetsError, Result};

/// A JSON object being read key by key.
pub(crate) struct Fields<'a> {
    context: String,
    map: &'a Map<String, Value>,
    known: BTreeSet<&'static str>,
}

impl<'a> Fields<'a> {
    /// Wraps `value`, which must be a JSON object.
    pub(crate) fn new(value: &'a Value, context: &str) -> Result<Self> {
        let map = value
            .as_object()
            .ok_or_else(|| NetsError::config(context, "", format!("expected a JSON object, got {value}")))?;
        Ok(Fields {
            context: context.to_string(),
            map,
            known: BTreeSet::new(),
        })
    }

    /// An error about `key` in this object.
    pub(crate) fn error(&self, key: &str, message: impl Into<String>) -> NetsError {
        NetsError::config(&self.context, key, message)
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.insert(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A string value, if present.
    pub(crate) fn str(&mut self, key: &'static str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => Err(self.error(key, format!("expected a string, got {v}"))),
        }
    }

    /// A required string value.
    pub(crate) fn req_str(&mut self, key: &'static str) -> Result<&'a str> {
        self.str(key)?.ok_or_else(|| self.error(key, "missing"))
    }

    /// A boolean value, if present.
    pub(crate) fn bool(&mut self, key: &'static str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.error(key, format!("expected true or false, got {v}"))),
        }
    }

    /// A number, if present.
    pub(crate) fn f64(&mut self, key: &'static str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(self.error(key, format!("expected a number, got {v}"))),
            },
        }
    }

    /// A number that must lie in `[lo, hi]` (or `[lo, hi)` when `hi_open`), if present.
    pub(crate) fn f64_in(
        &mut self,
        key: &'static str,
        lo: f64,
        hi: f64,
        hi_open: bool,
    ) -> Result<Option<f64>> {
        let Some(x) = self.f64(key)? else { return Ok(None) };
        let ok = x >= lo && if hi_open { x < hi } else { x <= hi };
        if ok {
            Ok(Some(x))
        } else {
            let close = if hi_open { ')' } else { ']' };
            Err(self.error(key, format!("{x} is outside [{lo}, {hi}{close}")))
        }
    }

    /// A non-negative integer, if present (a float with no fraction, like `5e4`, counts).
    pub(crate) fn u64(&mut self, key: &'static str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                if let Some(n) = v.as_u64() {
                    return Ok(Some(n));
                }
                match v.as_f64() {
                    Some(x) if x >= 0.0 && x.fract() == 0.0 && x < 9.0e15 => Ok(Some(x as u64)),
                    _ => Err(self.error(key, format!("expected a non-negative integer, got {v}"))),
                }
            }
        }
    }

    /// A list of numbers, if present.
    pub(crate) fn f64_list(&mut self, key: &'static str) -> Result<Option<Vec<f64>>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let bad = || self.error(key, format!("expected a list of numbers, got {v}"));
        let items = v.as_array().ok_or_else(bad)?;
        items
            .iter()
            .map(|x| x.as_f64().ok_or_else(bad))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Fails on the first key that no accessor asked for.
    pub(crate) fn finish(self) -> Result<()> {
        match self.map.keys().find(|k| !self.known.contains(k.as_str())) {
            None => Ok(()),
            Some(k) => {
                let known: Vec<&str> = self.known.iter().copied().collect();
                Err(NetsError::config(
                    &self.context,
                    k.as_str(),
                    format!("unknown key (known: {})", known.join(", ")),
                ))
            }
        }
    }
}
