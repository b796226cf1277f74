//! `aiaa datalist from-msd`: a datalist (seed 5.2, 5.3) from Medical Segmentation Decathlon
//! task folders.
//!
//! ```text
//! aiaa datalist from-msd TASK_DIR [TASK_DIR...] [-o datalist.json] [--validation-fraction 0.2]
//!     [--seed 0] [--label-map OLD=NEW[,OLD=NEW...]] [--channels C[,C...]] [--derived-dir DIR]
//!     [--no-testing] [--threads N]
//! ```
//!
//! Each task folder holds the Decathlon's `dataset.json` (`name`, `modality` `{"0": "CT"}`,
//! `labels` `{"0": "background", "1": "spleen"}`, `numTraining`, `training`
//! `[{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}]`, `test`
//! `["./imagesTs/y.nii.gz"]`). Every file it names must exist (the first missing one is named,
//! with the count of the others). The output is our datalist:
//!
//! - `training` and `validation`: the task's training cases split at random, each task on its
//!   own (so merged tasks keep their proportions): `round(n * fraction)` cases go to
//!   `validation`, at least one when the fraction is above 0 and the task has two or more
//!   cases, and never all of them. The draw is a Fisher–Yates shuffle driven by SplitMix64
//!   seeded with `--seed` and the task's position, so a seed gives the same split on every
//!   machine and version. Both lists keep the order of `dataset.json`.
//! - `testing`: the `test` images as `{"image": ...}` items (for `aiaa infer
//!   --data_list_key testing`), unless `--no-testing`.
//! - `name`, `description`, `modality` and `labels`: what the lists hold, after the options
//!   below (the trainer ignores these keys, as it ignores the Decathlon's).
//!
//! Paths are relative to the datalist's folder (the seed's convention), computed from the
//! canonical paths of both.
//!
//! Options that derive files (written atomically under `--derived-dir`, by default the
//! folder `<datalist stem>_files` next to the datalist, as `<task folder>/imagesTr/<file>`
//! and so on; the datalist then names these files):
//!
//! - `--label-map OLD=NEW,...`: every label file is rewritten as `u8` with each listed value
//!   `OLD` replaced by `NEW` and every value not listed set to 0 (`2=1` keeps only label 2, as
//!   1). Every `OLD` must be a label of each task's `dataset.json`. A case whose rewritten
//!   label has no foreground is left out (and named on stderr): the annotation recipes crop
//!   around the foreground and could not use it.
//! - `--channels C,...`: every image (training and test) is rewritten with only these
//!   channels, in this order (indices of `modality`; a Decathlon 4D image stores one
//!   modality per volume), e.g. `--channels 0` keeps the T2 of the prostate task.
//!
//! Merging several tasks (`from-msd Task03_Liver Task08_HepaticVessel`) needs the same
//! number of modalities in each; their label names are listed per value.

use std::path::PathBuf;

mod derive;
mod msd;
mod split;
mod write;

use write::from_msd;

/// `aiaa datalist`.
#[derive(Debug, clap::Args)]
pub struct DatalistArgs {
    #[command(subcommand)]
    kind: DatalistKind,
}

#[derive(Debug, clap::Subcommand)]
enum DatalistKind {
    /// Writes a datalist from Medical Segmentation Decathlon task folders (their dataset.json).
    #[command(name = "from-msd")]
    FromMsd(FromMsdArgs),
}

/// The flags of `aiaa datalist from-msd`.
#[derive(Debug, Clone, clap::Args)]
pub struct FromMsdArgs {
    /// Decathlon task folders (each with dataset.json); several are merged.
    #[arg(required = true, value_name = "TASK_DIR")]
    pub tasks: Vec<PathBuf>,
    /// The datalist to write; its paths are relative to its folder.
    #[arg(short = 'o', long, default_value = "datalist.json")]
    pub output: PathBuf,
    /// Fraction of each task's training cases that go to `validation` (0 to below 1).
    #[arg(
        long = "validation-fraction",
        visible_alias = "validation_fraction",
        default_value_t = 0.2
    )]
    pub validation_fraction: f64,
    /// Seed of the split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rewrite labels: OLD=NEW pairs, comma-separated; values not listed become 0.
    #[arg(
        long = "label-map",
        visible_alias = "label_map",
        value_name = "OLD=NEW[,OLD=NEW...]"
    )]
    pub label_map: Option<String>,
    /// Keep only these image channels (modality indices), in this order.
    #[arg(long, value_delimiter = ',', value_name = "C[,C...]")]
    pub channels: Option<Vec<usize>>,
    /// Where rewritten files go (default: `<datalist stem>_files` next to the datalist).
    #[arg(long = "derived-dir", visible_alias = "derived_dir")]
    pub derived_dir: Option<PathBuf>,
    /// Leave the test images out (no `testing` list).
    #[arg(long = "no-testing", visible_alias = "no_testing")]
    pub no_testing: bool,
    /// Files rewritten in parallel (default: the CPU count, at most 4: volumes can be large).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// `aiaa datalist`.
pub fn run(args: DatalistArgs) -> anyhow::Result<()> {
    match args.kind {
        DatalistKind::FromMsd(a) => {
            let report = from_msd(&a)?;
            for line in &report.left_out {
                eprintln!("left out {line}");
            }
            println!("{}", report.summary);
            Ok(())
        }
    }
}
