//! Segmentation metrics computed in physical space.
