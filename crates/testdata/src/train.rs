//! The small training setups on the real brain data that the tests which train share (the
//! training core's own tests, the `aiaa train` and trainer-service end-to-end suites): a
//! DEXTR3D-style train config in the seed's format, each test picking its size and
//! augmentation ([`TinyTrain`]), and the datalist of the brain volumes ([`brain_datalist`]).

use serde_json::{Value, json};

use crate::testdata;

/// A DEXTR3D-style train config on the brain data: `size`³ crops around the brain, a U-Net
/// of 4 filters, two input channels (image + extreme points), Dice + cross-entropy, Adam at
/// 1e-2, a checkpoint after every epoch, validation by mean Dice. The fields are what the
/// tests vary; [`TinyTrain::config`] writes it.
#[derive(Clone, Debug)]
pub struct TinyTrain {
    /// The crop and the network input: a cube of this side.
    pub size: u64,
    /// The U-Net's levels.
    pub levels: u64,
    /// Loader threads (one makes the loop wait for data, so a kill lands inside a step).
    pub num_workers: u64,
    /// `epochs`.
    pub epochs: u64,
    /// `num_training_epoch_per_valid`.
    pub per_valid: u64,
    /// `seed`.
    pub seed: u64,
    /// `train.lr_policy`, when any.
    pub lr_policy: Option<Value>,
    /// Training transforms between the crop and the intensity normalisation.
    pub spatial_augment: Vec<Value>,
    /// Training transforms after the intensity normalisation.
    pub intensity_augment: Vec<Value>,
}

impl Default for TinyTrain {
    /// 16³ crops, a one-level U-Net, two loader threads, one epoch, seed 3, no augmentation.
    fn default() -> Self {
        TinyTrain {
            size: 16,
            levels: 1,
            num_workers: 2,
            epochs: 1,
            per_valid: 1,
            seed: 3,
            lr_policy: None,
            spatial_augment: Vec::new(),
            intensity_augment: Vec::new(),
        }
    }
}

impl TinyTrain {
    /// The train config (the seed's JSON).
    pub fn config(&self) -> Value {
        let size = self.size;
        let crop = |pad: u64| {
            json!({"name": "transforms.CropForegroundObject", "size": [size, size, size],
                   "image_field": "image", "label_field": "label", "pad": pad})
        };
        let load = json!({"name": "transforms.LoadNifty", "fields": ["image", "label"]});
        let normalize = json!({"name": "transforms.NormalizeIntensity", "fields": "image"});
        let points = |pert: u64| {
            json!({"name": "transforms.AddExtremePointsChannel", "image_field": "image",
                   "label_field": "label", "sigma": 2, "pert": pert})
        };
        let mut train_transforms = vec![load.clone(), crop(20)];
        train_transforms.extend(self.spatial_augment.iter().cloned());
        train_transforms.push(normalize.clone());
        train_transforms.extend(self.intensity_augment.iter().cloned());
        train_transforms.push(points(1));
        let mut train = json!({
            "loss": {"name": "losses.dice_ce_loss"},
            "optimizer": {"name": "Adam", "lr": 1e-2},
            "pre_transforms": train_transforms
        });
        if let Some(policy) = &self.lr_policy {
            train["lr_policy"] = policy.clone();
        }
        json!({
            "num_channels": 2,
            "num_classes": 2,
            "batch_size": 2,
            "epochs": self.epochs,
            "num_workers": self.num_workers,
            "network_input_size": [size, size, size],
            "num_training_epoch_per_valid": self.per_valid,
            "seed": self.seed,
            "checkpoint_interval_s": 0,
            "net_config": {"name": "UNet3D", "num_filters": 4, "levels": self.levels},
            "train": train,
            "validate": {
                "metrics": [{"name": "MetricAverageFromArrayDice", "tag": "mean_dice",
                             "stopping_metric": true, "applied_key": "model"}],
                "pre_transforms": [load, crop(13), normalize, points(0)]
            }
        })
    }
}

/// A random flip of image and label along the first axis (a spatial augmentation).
pub fn flip() -> Value {
    json!({"name": "transforms.FlipAxisRandom", "fields": ["image", "label"], "axis": [0]})
}

/// A datalist with the MNI152 head `copies` times in `training` (each copy gets its own
/// augmentation) and the first of the MNI152 validation variants (another grid, pose and
/// intensity response: `scripts/imaging/mni152_variants.py`) in `validation`, as absolute
/// paths. The ROBEX head is held out for final evaluations.
pub fn brain_datalist(copies: usize) -> Value {
    let t = testdata();
    let item = |dir: &str, image: &str, label: &str| json!({"image": t.join(dir).join(image), "label": t.join(dir).join(label)});
    json!({
        "training": (0..copies).map(|_| item("mni152", "MNI152_T1.nii.gz", "MNI152_mask.nii.gz")).collect::<Vec<_>>(),
        "validation": [item("mni152/variants", "mni152_v1.nii.gz", "mni152_v1_mask.nii.gz")]
    })
}
