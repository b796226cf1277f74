//! `convert`: batch conversion of a directory of DICOM series or volumes (the seed's
//! `tlt-dataconvert`), with optional resampling and a progress bar.

use std::path::PathBuf;

use aiaa_imaging::convert::{ConvertOptions, Event, convert_dir};
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

/// Flags follow the seed tool: `-d DIR -r RES -s .dcm -e .nii.gz -o OUT [-f] [-l]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConvertArgs {
    /// Input directory (searched recursively).
    #[arg(short = 'd', long = "dir")]
    pub dir: PathBuf,
    /// Output resolution in mm: one value (isotropic) or three, comma-separated.
    #[arg(short = 'r', long = "res", value_delimiter = ',', num_args = 1..=3)]
    pub res: Option<Vec<f64>>,
    /// Input file suffix: .dcm, .nii, .nii.gz, .mha or .mhd.
    #[arg(short = 's', long = "input-ext", default_value = ".dcm")]
    pub input_ext: String,
    /// Output file suffix: .nii, .nii.gz, .mha or .mhd.
    #[arg(short = 'e', long = "output-ext", default_value = ".nii.gz")]
    pub output_ext: String,
    /// Output directory.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Overwrite existing outputs.
    #[arg(short = 'f', long = "force")]
    pub force: bool,
    /// Inputs are label maps: nearest-neighbour resampling.
    #[arg(short = 'l', long = "label")]
    pub label: bool,
}

fn spacing(res: &Option<Vec<f64>>) -> anyhow::Result<Option<[f64; 3]>> {
    Ok(match res.as_deref() {
        None => None,
        Some([r]) => Some([*r; 3]),
        Some([x, y, z]) => Some([*x, *y, *z]),
        Some(other) => bail!("--res takes one or three values, got {}", other.len()),
    })
}

/// Runs the conversion, drawing a progress bar on stderr.
pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    let opts = ConvertOptions {
        input_dir: args.dir.clone(),
        output_dir: args.output.clone(),
        input_suffix: args.input_ext.clone(),
        output_suffix: args.output_ext.clone(),
        spacing: spacing(&args.res)?,
        label: args.label,
        overwrite: args.force,
        read: Default::default(),
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    let report = convert_dir(&opts, &mut |e| match e {
        Event::Planned { total } => bar.set_length(total as u64),
        Event::Skipped { path, reason } => bar.println(format!("skipped {}: {reason}", path.display())),
        Event::Converted { output, done, .. } => {
            bar.set_position(done as u64);
            bar.set_message(output.display().to_string());
        }
    })
    .with_context(|| format!("converting {}", args.dir.display()));
    bar.finish_and_clear();
    let report = report?;
    eprintln!(
        "converted {} input(s) into {} ({} skipped)",
        report.converted.len(),
        args.output.display(),
        report.skipped.len()
    );
    Ok(())
}
