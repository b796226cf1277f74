//! The convert command (the seed's `tlt-dataconvert`): batch conversion of a directory of
//! DICOM series or volumes, with optional resampling and a progress bar.
//!
//! It is a crate and a binary of its own, `aiaa-convert`, because the `aiaa` binary links
//! libtorch: loading it costs every start of `aiaa` about 120 MB and 0.2-0.4 s, as much as
//! converting a CT volume takes. `aiaa convert` parses the same flags ([`ConvertArgs`]) and
//! hands over to the `aiaa-convert` beside it (exec: the process then holds no libtorch
//! while it converts); scripts converting many folders can call `aiaa-convert` directly and
//! skip the start-up too.

use std::ffi::OsString;
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

impl ConvertArgs {
    /// The command line that parses back into these arguments (for handing over to the
    /// `aiaa-convert` binary).
    pub fn to_args(&self) -> Vec<OsString> {
        // `--flag=value`: a value starting with `-` stays a value.
        let flag = |name: &str, value: &std::ffi::OsStr| {
            let mut f = OsString::from(format!("--{name}="));
            f.push(value);
            f
        };
        let mut out = vec![flag("dir", self.dir.as_os_str())];
        if let Some(res) = &self.res {
            let res: Vec<String> = res.iter().map(f64::to_string).collect();
            out.push(flag("res", res.join(",").as_ref()));
        }
        out.push(flag("input-ext", self.input_ext.as_ref()));
        out.push(flag("output-ext", self.output_ext.as_ref()));
        out.push(flag("output", self.output.as_os_str()));
        if self.force {
            out.push("--force".into());
        }
        if self.label {
            out.push("--label".into());
        }
        out
    }
}

fn spacing(res: &Option<Vec<f64>>) -> anyhow::Result<Option<[f64; 3]>> {
    Ok(match res.as_deref() {
        None => None,
        Some([r]) => Some([*r; 3]),
        Some([x, y, z]) => Some([*x, *y, *z]),
        Some(other) => bail!("--res takes one or three values, got {}", other.len()),
    })
}

/// Runs the conversion in this process, drawing a progress bar on stderr.
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::ConvertArgs;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ConvertArgs,
    }

    fn parse(args: &[&str]) -> ConvertArgs {
        Cli::parse_from(std::iter::once("aiaa-convert").chain(args.iter().copied())).args
    }

    /// What `aiaa convert` hands to `aiaa-convert` parses back into the same arguments,
    /// awkward values included (a folder starting with `-`, a resolution of three values).
    #[test]
    fn handed_over_arguments_parse_back() {
        for case in [
            &["-d", "in", "-o", "out"][..],
            &[
                "--dir=-odd dir",
                "-r",
                "0.7,0.7,2.5",
                "-s",
                ".nii",
                "-e",
                ".nii.gz",
                "-o",
                "o",
                "-f",
                "-l",
            ],
            &["--dir", "a/b", "--res", "1", "--output", "c", "--label"],
        ] {
            let args = parse(case);
            let again = Cli::parse_from(std::iter::once("aiaa-convert".into()).chain(args.to_args())).args;
            assert_eq!(format!("{args:?}"), format!("{again:?}"), "{case:?}");
        }
    }
}
