//! Batch conversion of a directory tree (the seed's `tlt-dataconvert`): one output per input
//! volume file or per DICOM series, optionally resampled (linear, or nearest in label mode).
//!
//! Output paths mirror the input tree under the output directory: `a/b/img.mha` becomes
//! `a/b/img<out_suffix>`; a DICOM series becomes `<its directory><out_suffix>` next to where
//! the directory would be (with `_<n>` appended when a directory holds several series).
//! Every output is checked before anything is written: an existing output is refused unless
//! `overwrite` is set, and two inputs may not map to one output. Files are written whole
//! (temporary name in the target directory, then rename).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::resample::{Interpolation, resample_to_spacing};
use crate::{ImagingError, ReadOptions, Result, Volume, dicom, io};

/// Input suffixes handled by [`convert_dir`].
pub const INPUT_SUFFIXES: &[&str] = &[".dcm", ".nii", ".nii.gz", ".mha", ".mhd"];
/// Output suffixes accepted by [`convert_dir`].
pub const OUTPUT_SUFFIXES: &[&str] = &[".nii", ".nii.gz", ".mha", ".mhd"];

/// What to convert and how.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub input_dir: PathBuf,
    pub output_dir: PathBuf,
    /// Input file suffix (`.dcm`, `.nii`, `.nii.gz`, `.mha`, `.mhd`).
    pub input_suffix: String,
    /// Output suffix (`.nii`, `.nii.gz`, `.mha`, `.mhd`).
    pub output_suffix: String,
    /// Target spacing in mm (`None` keeps the grid).
    pub spacing: Option<[f64; 3]>,
    /// Label maps: nearest-neighbour resampling.
    pub label: bool,
    /// Replace existing outputs.
    pub overwrite: bool,
    pub read: ReadOptions,
}

/// One unit of work.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    File(PathBuf),
    Series(dicom::Series),
}

impl Input {
    /// A path naming the input in messages.
    pub fn path(&self) -> &Path {
        match self {
            Input::File(p) => p,
            Input::Series(s) => s.files.first().map_or(Path::new(""), |p| p.as_path()),
        }
    }
}

/// Progress events passed to the callback.
#[derive(Debug)]
pub enum Event<'a> {
    /// Planning finished: this many outputs will be produced.
    Planned { total: usize },
    /// A file could not be read as DICOM while scanning and was skipped.
    Skipped { path: &'a Path, reason: &'a str },
    /// One output was written.
    Converted {
        input: &'a Path,
        output: &'a Path,
        done: usize,
        total: usize,
    },
}

/// Summary of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub converted: Vec<(PathBuf, PathBuf)>,
    pub skipped: Vec<(PathBuf, String)>,
}

fn norm_suffix(s: &str) -> String {
    let s = s.trim().to_ascii_lowercase();
    if s.starts_with('.') { s } else { format!(".{s}") }
}

/// Jobs (input, output path) and the files skipped while scanning (path, reason).
pub type Plan = (Vec<(Input, PathBuf)>, Vec<(PathBuf, String)>);

/// Lists the jobs and their output paths without converting.
pub fn plan(opts: &ConvertOptions) -> Result<Plan> {
    let ins = norm_suffix(&opts.input_suffix);
    let outs = norm_suffix(&opts.output_suffix);
    if !INPUT_SUFFIXES.contains(&ins.as_str()) {
        return Err(ImagingError::InvalidArgument(format!(
            "input suffix {ins} (use one of {INPUT_SUFFIXES:?})"
        )));
    }
    if !OUTPUT_SUFFIXES.contains(&outs.as_str()) {
        return Err(ImagingError::InvalidArgument(format!(
            "output suffix {outs} (use one of {OUTPUT_SUFFIXES:?})"
        )));
    }
    if !opts.input_dir.is_dir() {
        return Err(ImagingError::io(
            &opts.input_dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        ));
    }
    let rel = |p: &Path| {
        p.strip_prefix(&opts.input_dir)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let mut jobs = Vec::new();
    let mut skipped = Vec::new();
    if ins == ".dcm" {
        let scan = dicom::scan(&opts.input_dir, true, &ins)?;
        skipped = scan.skipped;
        let mut by_dir: BTreeMap<PathBuf, Vec<dicom::Series>> = BTreeMap::new();
        for s in scan.series {
            let dir = s.files[0].parent().map(Path::to_path_buf).unwrap_or_default();
            by_dir.entry(dir).or_default().push(s);
        }
        for (dir, list) in by_dir {
            let r = rel(&dir);
            let base = if r.as_os_str().is_empty() {
                PathBuf::from(
                    opts.input_dir
                        .file_name()
                        .map_or("series".into(), |n| n.to_string_lossy().into_owned()),
                )
            } else {
                r
            };
            let several = list.len() > 1;
            for (n, s) in list.into_iter().enumerate() {
                let mut name = base
                    .file_name()
                    .map(|x| x.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if several {
                    name += &format!("_{}", n + 1);
                }
                let out = opts
                    .output_dir
                    .join(base.parent().unwrap_or(Path::new("")))
                    .join(name + &outs);
                jobs.push((Input::Series(s), out));
            }
        }
    } else {
        for e in walkdir::WalkDir::new(&opts.input_dir).sort_by_file_name() {
            let e = e.map_err(|e| {
                let p = e.path().unwrap_or(&opts.input_dir).to_path_buf();
                ImagingError::io(
                    p,
                    e.into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("walk error")),
                )
            })?;
            let p = e.path();
            // ".nii" must not also pick up ".nii.gz" files.
            if !e.file_type().is_file()
                || !io::has_suffix(p, &ins)
                || (ins == ".nii" && io::has_suffix(p, ".nii.gz"))
            {
                continue;
            }
            let r = rel(p);
            let name = r
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let stem = &name[..name.len() - ins.len()];
            jobs.push((
                Input::File(p.to_path_buf()),
                opts.output_dir
                    .join(r.parent().unwrap_or(Path::new("")))
                    .join(format!("{stem}{outs}")),
            ));
        }
    }
    let mut seen = HashSet::new();
    for (input, out) in &jobs {
        if !seen.insert(out.clone()) {
            return Err(ImagingError::InvalidArgument(format!(
                "{}: two inputs map to the same output (last: {})",
                out.display(),
                input.path().display()
            )));
        }
        if !opts.overwrite && out.exists() {
            return Err(ImagingError::OutputExists { path: out.clone() });
        }
    }
    Ok((jobs, skipped))
}

/// Reads one input.
pub fn read_input(input: &Input, opts: &ReadOptions) -> Result<Volume> {
    match input {
        Input::File(p) => io::read_volume(p, opts),
        Input::Series(s) => dicom::read_files(&s.files, opts),
    }
}

/// Reads, optionally resamples, and writes one job.
pub fn convert_one(input: &Input, output: &Path, opts: &ConvertOptions) -> Result<()> {
    let mut vol = read_input(input, &opts.read)?;
    if let Some(sp) = opts.spacing {
        let interp = if opts.label {
            Interpolation::Nearest
        } else {
            Interpolation::Linear
        };
        vol = resample_to_spacing(&vol, sp, interp)?;
    }
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ImagingError::io(dir, e))?;
    }
    io::write_volume(&vol, output)
}

/// Converts everything under `opts.input_dir`; stops at the first failing job.
pub fn convert_dir(opts: &ConvertOptions, progress: &mut dyn FnMut(Event<'_>)) -> Result<Report> {
    let (jobs, skipped) = plan(opts)?;
    for (p, why) in &skipped {
        progress(Event::Skipped { path: p, reason: why });
    }
    progress(Event::Planned { total: jobs.len() });
    let mut report = Report {
        skipped,
        ..Report::default()
    };
    for (i, (input, out)) in jobs.iter().enumerate() {
        convert_one(input, out, opts)?;
        progress(Event::Converted {
            input: input.path(),
            output: out,
            done: i + 1,
            total: jobs.len(),
        });
        report.converted.push((input.path().to_path_buf(), out.clone()));
    }
    Ok(report)
}
