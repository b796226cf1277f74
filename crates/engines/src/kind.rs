//! [`EngineKind`]: the one place that maps the seed's engine class names, the model types
//! clients see and the REST endpoints to each other.
//!
//! | kind | engine classes (`engine_pool.json` `class`, a config's `engine`) | model type | endpoint |
//! |---|---|---|---|
//! | [`EngineKind::Dextr3dCropped`] | `Dextr3dCroppedEngine`, `Dextr3DEngine` (the seed's other name) | `annotation` | `/v1/dextr3d` |
//! | [`EngineKind::Segmentation`] | `SegmentationEngine` | `segmentation` | `/v1/segmentation` |
//! | [`EngineKind::Deepgrow`] | `DeepgrowEngine`, `DeepEditEngine` | `deepgrow` (`deepedit` read as it) | `/v1/deepgrow` |
//!
//! A config's `type` picks the engine when no class is named: `annotation` the dextr3d
//! engine, `deepgrow` or MONAI Label's `deepedit` the deepgrow engine, anything else the
//! segmentation engine. A new engine is one variant here and one module in
//! [`crate::engines`].

use crate::error::{EngineError, Result};

/// MONAI Label's model type for click models that re-infer from every click, which the
/// deepgrow engine serves (its clients send the same `foreground` / `background` lists).
pub const DEEPEDIT: &str = "deepedit";

/// An engine the platform can build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// `Dextr3dCroppedEngine`: annotation from six or more extreme points.
    Dextr3dCropped,
    /// `SegmentationEngine`: automatic segmentation of the whole volume.
    Segmentation,
    /// `DeepgrowEngine`: interactive segmentation from foreground and background clicks.
    Deepgrow,
}

impl EngineKind {
    /// Every kind.
    pub const ALL: [EngineKind; 3] = [
        EngineKind::Dextr3dCropped,
        EngineKind::Segmentation,
        EngineKind::Deepgrow,
    ];

    /// The engine class name written in configs and reported as the model's engine.
    pub fn class(self) -> &'static str {
        self.classes()[0]
    }

    /// Every class name that selects this engine (the first is [`EngineKind::class`]).
    pub fn classes(self) -> &'static [&'static str] {
        match self {
            EngineKind::Dextr3dCropped => &["Dextr3dCroppedEngine", "Dextr3DEngine"],
            EngineKind::Segmentation => &["SegmentationEngine"],
            EngineKind::Deepgrow => &["DeepgrowEngine", "DeepEditEngine"],
        }
    }

    /// The model type the registry and clients see (`GET /v1/models`' `type`).
    pub fn model_type(self) -> &'static str {
        match self {
            EngineKind::Dextr3dCropped => "annotation",
            EngineKind::Segmentation => "segmentation",
            EngineKind::Deepgrow => "deepgrow",
        }
    }

    /// The model type MONAI Label's clients (3D Slicer, OHIF) know this engine as. DEXTR3D
    /// has no type of its own there: it is `deepgrow`, whose clients send every click as
    /// `foreground` points, so a user clicks the six extreme points as foreground clicks.
    pub fn monailabel_type(self) -> &'static str {
        match self {
            EngineKind::Dextr3dCropped | EngineKind::Deepgrow => "deepgrow",
            EngineKind::Segmentation => "segmentation",
        }
    }

    /// The REST endpoint (`/v1/<endpoint>`) that serves models of this kind.
    pub fn endpoint(self) -> &'static str {
        match self {
            EngineKind::Dextr3dCropped => "dextr3d",
            EngineKind::Segmentation => "segmentation",
            EngineKind::Deepgrow => "deepgrow",
        }
    }

    /// Whether a request needs clicked points (`params.points`).
    pub fn needs_points(self) -> bool {
        self == EngineKind::Dextr3dCropped
    }

    /// The kind an engine class names (`Dextr3dCroppedEngine`, `Dextr3DEngine`,
    /// `SegmentationEngine`).
    pub fn from_class(class: &str) -> Option<EngineKind> {
        Self::ALL.into_iter().find(|k| k.classes().contains(&class))
    }

    /// The kind of a model type (`annotation`, `segmentation`, `deepgrow`, `deepedit`).
    pub fn from_type(model_type: &str) -> Option<EngineKind> {
        if model_type == DEEPEDIT {
            return Some(EngineKind::Deepgrow);
        }
        Self::ALL.into_iter().find(|k| k.model_type() == model_type)
    }

    /// The kind an endpoint serves (`dextr3d`, `segmentation`).
    pub fn from_endpoint(endpoint: &str) -> Option<EngineKind> {
        Self::ALL.into_iter().find(|k| k.endpoint() == endpoint)
    }

    /// Any of the names above: a class, a model type or an endpoint (a command-line
    /// `--engine`).
    pub fn parse(name: &str) -> Option<EngineKind> {
        Self::from_class(name)
            .or_else(|| Self::from_type(name))
            .or_else(|| Self::from_endpoint(name))
    }

    /// The engine a config of `model_type` gets when it names no class: `annotation` the
    /// dextr3d engine, `deepgrow` / `deepedit` the deepgrow engine, anything else (none
    /// included) segmentation.
    pub fn for_type(model_type: &str) -> Result<EngineKind> {
        Ok(Self::from_type(model_type).unwrap_or(EngineKind::Segmentation))
    }

    /// The kind of an engine class, or an error naming the known ones.
    pub fn require_class(class: &str) -> Result<EngineKind> {
        Self::from_class(class).ok_or_else(|| {
            EngineError::Config(format!(
                "unknown engine class {class:?}; known: {}",
                known_classes().join(", ")
            ))
        })
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.class())
    }
}

/// Every engine class name, for messages.
pub fn known_classes() -> Vec<&'static str> {
    EngineKind::ALL
        .iter()
        .flat_map(|k| k.classes().iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        for k in EngineKind::ALL {
            assert_eq!(EngineKind::from_class(k.class()), Some(k));
            assert_eq!(EngineKind::from_type(k.model_type()), Some(k));
            assert_eq!(EngineKind::from_endpoint(k.endpoint()), Some(k));
            for name in [k.class(), k.model_type(), k.endpoint()] {
                assert_eq!(EngineKind::parse(name), Some(k), "{name}");
            }
        }
        assert_eq!(
            EngineKind::from_class("Dextr3DEngine"),
            Some(EngineKind::Dextr3dCropped)
        );
        assert_eq!(EngineKind::from_class("annotation"), None);
        assert_eq!(EngineKind::parse("DeepEditEngine"), Some(EngineKind::Deepgrow));
        assert_eq!(EngineKind::parse("deepedit"), Some(EngineKind::Deepgrow));
        assert_eq!(EngineKind::parse("DeepgrowEngine"), Some(EngineKind::Deepgrow));
    }

    #[test]
    fn types_pick_engines() {
        assert_eq!(
            EngineKind::for_type("annotation").unwrap(),
            EngineKind::Dextr3dCropped
        );
        assert_eq!(EngineKind::for_type("").unwrap(), EngineKind::Segmentation);
        assert_eq!(
            EngineKind::for_type("segmentation").unwrap(),
            EngineKind::Segmentation
        );
        assert_eq!(EngineKind::for_type("deepgrow").unwrap(), EngineKind::Deepgrow);
        assert_eq!(EngineKind::for_type("deepedit").unwrap(), EngineKind::Deepgrow);
        let e = EngineKind::require_class("Nope").unwrap_err().to_string();
        assert!(
            e.contains(
                "Dextr3dCroppedEngine, Dextr3DEngine, SegmentationEngine, DeepgrowEngine, DeepEditEngine"
            ),
            "{e}"
        );
    }
}
