//! Validation of names and ids that users give and that become object-store paths. Anything
//! that could escape its folder (`..`, absolute paths, empty segments), odd characters or
//! overlong names are refused with a message that names the problem.

use crate::RuntimeError;

/// Longest single name segment (a model name, an org, a version).
pub const MAX_SEGMENT: usize = 128;
/// Longest id made of several segments (a datastore item id).
pub const MAX_ID: usize = 255;

fn shown(value: &str) -> String {
    if value.chars().count() > 64 {
        format!("{}…", value.chars().take(64).collect::<String>())
    } else {
        value.to_string()
    }
}

fn invalid(what: &'static str, value: &str, reason: &'static str) -> RuntimeError {
    RuntimeError::InvalidName {
        what,
        value: shown(value),
        reason,
    }
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Checks one path segment: 1..=128 characters of `[A-Za-z0-9._-]`, not starting with '.'.
pub fn segment(what: &'static str, value: &str) -> Result<(), RuntimeError> {
    if value.is_empty() {
        return Err(invalid(what, value, "must not be empty"));
    }
    if value.len() > MAX_SEGMENT {
        return Err(invalid(what, value, "is longer than 128 characters"));
    }
    if value.starts_with('.') {
        return Err(invalid(what, value, "must not start with '.'"));
    }
    if !value.chars().all(allowed) {
        return Err(invalid(
            what,
            value,
            "may only contain letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(())
}

/// Checks a relative '/'-separated id: 1..=255 characters, each segment valid as in
/// [`segment`] (so no '', '.' or '..' segment and no leading '/').
pub fn relative_id(what: &'static str, value: &str) -> Result<(), RuntimeError> {
    if value.is_empty() {
        return Err(invalid(what, value, "must not be empty"));
    }
    if value.len() > MAX_ID {
        return Err(invalid(what, value, "is longer than 255 characters"));
    }
    for part in value.split('/') {
        if part.is_empty() {
            return Err(invalid(what, value, "has an empty path segment"));
        }
        if part == "." || part == ".." {
            return Err(invalid(what, value, "must not contain '.' or '..' segments"));
        }
        if part.starts_with('.') {
            return Err(invalid(what, value, "has a segment starting with '.'"));
        }
        if !part.chars().all(allowed) {
            return Err(invalid(
                what,
                value,
                "may only contain letters, digits, '-', '_', '.' and '/'",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments() {
        assert!(segment("model name", "annotation_mri_brain").is_ok());
        assert!(segment("version", "1.2.0").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b", "é"] {
            assert!(segment("model name", bad).is_err(), "{bad}");
        }
        let long = "x".repeat(300);
        let err = segment("model name", &long).unwrap_err().to_string();
        assert!(err.contains("longer than 128"), "{err}");
    }

    #[test]
    fn ids() {
        assert!(relative_id("item id", "train/im1.nii.gz").is_ok());
        for bad in ["", "../x", "a/../../b", "/abs", "a//b", "a/./b", "a/", "x\\y"] {
            let err = relative_id("item id", bad).unwrap_err().to_string();
            assert!(err.contains("item id"), "{err}");
        }
        assert!(relative_id("item id", &"y".repeat(300)).is_err());
    }
}
