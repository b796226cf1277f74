//! Argument helpers shared by the transforms' `serde` argument structs: `fields` /
//! `applied_keys` given as one string or a list, and the argument error carried up to the
//! builder (which adds the transform's position and name).

use serde::{Deserialize, Deserializer};

/// One or more keys: the seed writes `"fields": "image"` or `"fields": ["image", "label"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys(pub Vec<String>);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let parsed = OneOrMany::deserialize(d).map_err(|e: D::Error| {
            // Keep serde's own messages (e.g. "missing field"); replace the untagged one.
            if e.to_string().contains("untagged") {
                serde::de::Error::custom("expected a key string or a list of key strings")
            } else {
                e
            }
        })?;
        let keys = match parsed {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        if keys.is_empty() || keys.iter().any(String::is_empty) {
            return Err(serde::de::Error::custom("keys must be non-empty strings"));
        }
        Ok(Keys(keys))
    }
}

impl Keys {
    /// The keys in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// A bad argument, found after parsing (range checks): the builder adds position and name.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgError {
    /// The argument's name as written in the config.
    pub argument: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ArgError {
    /// Builds an argument error.
    pub fn new(argument: &str, reason: impl Into<String>) -> ArgError {
        ArgError {
            argument: argument.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Result of a transform constructor.
pub type ArgResult<T> = Result<T, ArgError>;

/// Checks a 3-vector argument.
pub fn check3<T: Copy>(argument: &str, v: &[T]) -> ArgResult<[T; 3]> {
    <[T; 3]>::try_from(v).map_err(|_| ArgError::new(argument, format!("needs 3 values, got {}", v.len())))
}

/// Checks that `v` lies in `[lo, hi]`.
pub fn check_range(argument: &str, v: f64, lo: f64, hi: f64) -> ArgResult<f64> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(v)
    } else {
        Err(ArgError::new(argument, format!("{v} is outside [{lo}, {hi}]")))
    }
}

/// Checks that `v` is finite and `> 0`.
pub fn check_positive(argument: &str, v: f64) -> ArgResult<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(ArgError::new(argument, format!("{v} must be greater than zero")))
    }
}

/// Default probability of the random transforms that take one.
pub fn half() -> f64 {
    0.5
}

/// `1.0`, for serde defaults.
pub fn one() -> f64 {
    1.0
}

/// `true`, for serde defaults.
pub fn yes() -> bool {
    true
}
