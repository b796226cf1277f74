//! The inference service.
