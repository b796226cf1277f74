//! Evaluation reports: per-file per-class rows and a per-class summary, as the text files
//! `tlt-evaluate` wrote (`mean_dice_raw_results.txt`, `mean_dice_summary_results.txt`) and
//! the same content as JSON (`mean_dice_raw_results.json`, `mean_dice_summary_results.json`).
//!
//! The seed manual names the two text files but does not show their layout, so the layout
//! is ours: UTF-8, tab-separated, one `#` comment line saying what the columns mean, then a
//! header row, then data rows. Numbers are printed with 6 decimals; an infinite HD95 (class
//! empty on one side, see [`crate::compare`]) prints as `inf`, an undefined statistic (no
//! finite value to average) as `-`. Tabs and line breaks in file names become spaces.
//!
//! `mean_dice_raw_results.txt`, one row per file and class (tabs shown as two spaces):
//!
//! ```text
//! # AIAA evaluation: one row per file and class; tab-separated; ...
//! file  class  name  dice  nsd  hd95_mm  case  prediction_voxels  reference_voxels  prediction_surface_voxels  reference_surface_voxels
//! case_001.nii.gz  1  spleen  0.951234  0.912345  2.236068  both_present  12034  11876  3012  2988
//! case_002.nii.gz  1  spleen  0.000000  0.000000  inf  prediction_empty  0  9120  0  2410
//! ```
//!
//! `mean_dice_summary_results.txt`, three rows (dice, nsd, hd95_mm) per class and for all
//! classes together (`class` = `all`; tabs shown as two spaces):
//!
//! ```text
//! # AIAA evaluation summary over 2 files; tab-separated; ...
//! class  name  metric  n  mean  std  min  max  excluded
//! 1  spleen  dice  2  0.475617  0.475617  0.000000  0.951234  0
//! 1  spleen  hd95_mm  1  2.236068  0.000000  2.236068  2.236068  1
//! ```
//!
//! Statistics are over the rows whose value is finite: `n` of them, mean, population standard
//! deviation (divisor `n`), min, max; `excluded` counts the rows left out (an infinite HD95).
//! Dice and NSD are always finite (both-empty rows count as 1, one-empty rows as 0).
//!
//! The JSON files hold the same rows (`null` where the text says `inf` or `-`; each raw row
//! keeps its `case`) plus the case counts per class. Every file is written atomically: to a
//! temporary file in the target folder, then renamed into place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use crate::compare::{Case, ClassMetrics, HD_PERCENTILE, PairMetrics};
use crate::{MetricsError, Result};

/// File name of the per-file per-class text report.
pub const RAW_TEXT: &str = "mean_dice_raw_results.txt";
/// File name of the summary text report.
pub const SUMMARY_TEXT: &str = "mean_dice_summary_results.txt";
/// File name of the per-file per-class JSON report.
pub const RAW_JSON: &str = "mean_dice_raw_results.json";
/// File name of the summary JSON report.
pub const SUMMARY_JSON: &str = "mean_dice_summary_results.json";

/// The metrics of one evaluated file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileMetrics {
    /// How the file is named in the report (e.g. the reference's path relative to the data
    /// root).
    pub file: String,
    /// Whether the prediction was resampled onto the reference grid first.
    pub prediction_resampled: bool,
    /// One entry per class.
    pub classes: Vec<ClassMetrics>,
}

/// Summary statistics of one metric over the rows where it is finite.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    /// Number of finite values.
    pub n: usize,
    /// Mean (NaN, `null` in JSON, when `n` is 0).
    pub mean: f64,
    /// Population standard deviation (divisor `n`).
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Values left out because they are not finite.
    pub excluded: usize,
}

impl Stats {
    /// Statistics of `values` (see the type docs).
    pub fn of(values: &[f64]) -> Stats {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let n = finite.len();
        let excluded = values.len() - n;
        if n == 0 {
            return Stats {
                n,
                mean: f64::NAN,
                std: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                excluded,
            };
        }
        let mean = finite.iter().sum::<f64>() / n as f64;
        let var = finite.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
        Stats {
            n,
            mean,
            std: var.sqrt(),
            min: finite.iter().copied().fold(f64::INFINITY, f64::min),
            max: finite.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            excluded,
        }
    }
}

/// The summary of one class (or of all classes together) over the report's files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassSummary {
    /// The class; `None` for the all-classes row.
    pub class: Option<u32>,
    /// The class name, when the report has one.
    pub name: Option<String>,
    /// Rows summarised.
    pub rows: usize,
    /// Rows per case.
    pub cases: BTreeMap<&'static str, usize>,
    /// Dice.
    pub dice: Stats,
    /// Normalized surface Dice.
    pub nsd: Stats,
    /// HD95 (mm).
    pub hd95_mm: Stats,
}

/// Where [`Report::write`] put the four files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    /// `mean_dice_raw_results.txt`.
    pub raw_text: PathBuf,
    /// `mean_dice_summary_results.txt`.
    pub summary_text: PathBuf,
    /// `mean_dice_raw_results.json`.
    pub raw_json: PathBuf,
    /// `mean_dice_summary_results.json`.
    pub summary_json: PathBuf,
}

/// The results of an evaluation run: every file's metrics and how they were computed.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The NSD tolerance used (mm).
    pub nsd_tolerance_mm: f64,
    /// Optional class names (e.g. from the model config), printed next to class ids.
    pub class_names: BTreeMap<u32, String>,
    /// Per-file metrics, in evaluation order.
    pub files: Vec<FileMetrics>,
}

const CASES: [Case; 4] = [
    Case::BothPresent,
    Case::BothEmpty,
    Case::PredictionEmpty,
    Case::ReferenceEmpty,
];

impl Report {
    /// An empty report for metrics computed at this NSD tolerance.
    pub fn new(nsd_tolerance_mm: f64) -> Report {
        Report {
            nsd_tolerance_mm,
            class_names: BTreeMap::new(),
            files: Vec::new(),
        }
    }

    /// Adds one file's metrics.
    pub fn push(&mut self, file: impl Into<String>, pair: PairMetrics) {
        self.files.push(FileMetrics {
            file: file.into(),
            prediction_resampled: pair.prediction_resampled,
            classes: pair.classes,
        });
    }

    /// Per-class summaries (class order), then the all-classes summary (`class: None`).
    pub fn summary(&self) -> Vec<ClassSummary> {
        let mut by_class: BTreeMap<u32, Vec<&ClassMetrics>> = BTreeMap::new();
        for f in &self.files {
            for c in &f.classes {
                by_class.entry(c.class).or_default().push(c);
            }
        }
        let all: Vec<&ClassMetrics> = self.files.iter().flat_map(|f| &f.classes).collect();
        by_class
            .iter()
            .map(|(&class, rows)| self.summarise(Some(class), rows))
            .chain(std::iter::once(self.summarise(None, &all)))
            .collect()
    }

    fn summarise(&self, class: Option<u32>, rows: &[&ClassMetrics]) -> ClassSummary {
        let col = |f: fn(&ClassMetrics) -> f64| rows.iter().map(|r| f(r)).collect::<Vec<f64>>();
        ClassSummary {
            class,
            name: class.and_then(|c| self.class_names.get(&c).cloned()),
            rows: rows.len(),
            cases: CASES
                .iter()
                .map(|&k| (k.as_str(), rows.iter().filter(|r| r.case == k).count()))
                .collect(),
            dice: Stats::of(&col(|r| r.dice)),
            nsd: Stats::of(&col(|r| r.nsd)),
            hd95_mm: Stats::of(&col(|r| r.hd95_mm)),
        }
    }

    fn name_of(&self, class: u32) -> String {
        self.class_names
            .get(&class)
            .map(|n| clean(n))
            .unwrap_or_else(|| "-".into())
    }

    /// The text of `mean_dice_raw_results.txt` (layout in the module docs).
    pub fn raw_text(&self) -> String {
        let mut s = format!(
            "# AIAA evaluation: one row per file and class; tab-separated; dice: Dice coefficient; \
             nsd: normalized surface Dice at tolerance {} mm; hd95_mm: {}th-percentile Hausdorff distance \
             in mm (inf: the class is empty on exactly one side); case: both_present, both_empty \
             (dice 1, nsd 1, hd95 0), prediction_empty or reference_empty (dice 0, nsd 0, hd95 inf); \
             voxel and surface (edge voxel) counts per side\n",
            self.nsd_tolerance_mm, HD_PERCENTILE
        );
        s.push_str(
            "file\tclass\tname\tdice\tnsd\thd95_mm\tcase\tprediction_voxels\treference_voxels\t\
             prediction_surface_voxels\treference_surface_voxels\n",
        );
        for f in &self.files {
            for c in &f.classes {
                s.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    clean(&f.file),
                    c.class,
                    self.name_of(c.class),
                    num(c.dice),
                    num(c.nsd),
                    num(c.hd95_mm),
                    c.case.as_str(),
                    c.prediction_voxels,
                    c.reference_voxels,
                    c.prediction_surface_voxels,
                    c.reference_surface_voxels
                ));
            }
        }
        s
    }

    /// The text of `mean_dice_summary_results.txt` (layout in the module docs).
    pub fn summary_text(&self) -> String {
        let mut s = format!(
            "# AIAA evaluation summary over {} files; tab-separated; per class (class all: every file \
             and class together) and metric: n finite values, their mean, population std, min and max \
             ('-': no finite value); excluded: rows left out because the value is infinite (hd95_mm of \
             a class empty on exactly one side); nsd tolerance {} mm\n",
            self.files.len(),
            self.nsd_tolerance_mm
        );
        s.push_str("class\tname\tmetric\tn\tmean\tstd\tmin\tmax\texcluded\n");
        for cs in self.summary() {
            let (class, name) = match cs.class {
                Some(c) => (c.to_string(), self.name_of(c)),
                None => ("all".to_string(), "-".to_string()),
            };
            for (metric, st) in [("dice", cs.dice), ("nsd", cs.nsd), ("hd95_mm", cs.hd95_mm)] {
                let stat = |v: f64| if st.n == 0 { "-".to_string() } else { num(v) };
                s.push_str(&format!(
                    "{class}\t{name}\t{metric}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    st.n,
                    stat(st.mean),
                    stat(st.std),
                    stat(st.min),
                    stat(st.max),
                    st.excluded
                ));
            }
        }
        s
    }

    /// The JSON of `mean_dice_raw_results.json`.
    pub fn raw_json(&self) -> Result<String> {
        let v = json!({
            "nsd_tolerance_mm": self.nsd_tolerance_mm,
            "hd_percentile": HD_PERCENTILE,
            "class_names": self.class_names,
            "files": self.files,
        });
        Ok(serde_json::to_string_pretty(&v)? + "\n")
    }

    /// The JSON of `mean_dice_summary_results.json`.
    pub fn summary_json(&self) -> Result<String> {
        let mut summary = self.summary();
        let all = summary.pop();
        let v = json!({
            "nsd_tolerance_mm": self.nsd_tolerance_mm,
            "hd_percentile": HD_PERCENTILE,
            "files": self.files.len(),
            "classes": summary,
            "all_classes": all,
        });
        Ok(serde_json::to_string_pretty(&v)? + "\n")
    }

    /// Writes the four report files into `dir` (created if missing), each atomically.
    pub fn write(&self, dir: &Path) -> Result<ReportFiles> {
        std::fs::create_dir_all(dir).map_err(|source| MetricsError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let files = ReportFiles {
            raw_text: dir.join(RAW_TEXT),
            summary_text: dir.join(SUMMARY_TEXT),
            raw_json: dir.join(RAW_JSON),
            summary_json: dir.join(SUMMARY_JSON),
        };
        aiaa_imaging::io::write_atomic(&files.raw_text, self.raw_text().as_bytes())?;
        aiaa_imaging::io::write_atomic(&files.summary_text, self.summary_text().as_bytes())?;
        aiaa_imaging::io::write_atomic(&files.raw_json, self.raw_json()?.as_bytes())?;
        aiaa_imaging::io::write_atomic(&files.summary_json, self.summary_json()?.as_bytes())?;
        Ok(files)
    }
}

/// A number for the text reports: 6 decimals, `inf`/`-inf`/`nan` spelled out.
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6}")
    } else if v.is_nan() {
        "nan".into()
    } else if v > 0.0 {
        "inf".into()
    } else {
        "-inf".into()
    }
}

/// A text cell: no tabs or line breaks.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if matches!(c, '\t' | '\n' | '\r') { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(class: u32, case: Case, dice: f64, nsd: f64, hd: f64) -> ClassMetrics {
        ClassMetrics {
            class,
            case,
            dice,
            nsd,
            hd95_mm: hd,
            prediction_voxels: 10,
            reference_voxels: 12,
            intersection_voxels: 9,
            prediction_surface_voxels: 8,
            reference_surface_voxels: 9,
        }
    }

    fn sample() -> Report {
        let mut r = Report::new(2.0);
        r.class_names.insert(1, "spleen".into());
        r.push(
            "a\tb.nii.gz",
            PairMetrics {
                classes: vec![
                    row(1, Case::BothPresent, 0.9, 0.8, 2.0),
                    row(2, Case::BothEmpty, 1.0, 1.0, 0.0),
                ],
                prediction_resampled: false,
            },
        );
        r.push(
            "c.nii.gz",
            PairMetrics {
                classes: vec![
                    row(1, Case::PredictionEmpty, 0.0, 0.0, f64::INFINITY),
                    row(2, Case::BothPresent, 0.5, 0.25, 4.0),
                ],
                prediction_resampled: true,
            },
        );
        r
    }

    #[test]
    fn stats_population_std_and_exclusions() {
        let s = Stats::of(&[1.0, 3.0, f64::INFINITY]);
        assert_eq!(
            (s.n, s.mean, s.std, s.min, s.max, s.excluded),
            (2, 2.0, 1.0, 1.0, 3.0, 1)
        );
        let e = Stats::of(&[f64::INFINITY]);
        assert_eq!(e.n, 0);
        assert!(e.mean.is_nan());
    }

    #[test]
    fn text_reports() {
        let r = sample();
        let raw = r.raw_text();
        let lines: Vec<&str> = raw.lines().collect();
        assert!(lines[0].starts_with("# ") && lines[0].contains("tolerance 2 mm"));
        assert_eq!(lines[1].split('\t').count(), 11);
        assert_eq!(
            lines[2],
            "a b.nii.gz\t1\tspleen\t0.900000\t0.800000\t2.000000\tboth_present\t10\t12\t8\t9"
        );
        assert!(lines[4].contains("\tinf\tprediction_empty\t"), "{}", lines[4]);
        assert_eq!(lines.len(), 6);

        let sum = r.summary_text();
        let rows: Vec<Vec<&str>> = sum.lines().skip(2).map(|l| l.split('\t').collect()).collect();
        assert_eq!(rows.len(), 9);
        assert_eq!(
            rows[0],
            [
                "1", "spleen", "dice", "2", "0.450000", "0.450000", "0.000000", "0.900000", "0"
            ]
        );
        assert_eq!(
            rows[2],
            [
                "1", "spleen", "hd95_mm", "1", "2.000000", "0.000000", "2.000000", "2.000000", "1"
            ]
        );
        assert_eq!(rows[6][..4], ["all", "-", "dice", "4"]);
        assert_eq!(rows[8][3], "3");
        assert_eq!(rows[8][8], "1");
    }

    #[test]
    fn json_reports_and_atomic_write() {
        let r = sample();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("eval");
        let files = r.write(&out).unwrap();
        let raw: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&files.raw_json).unwrap()).unwrap();
        let c = &raw["files"][1]["classes"][0];
        assert_eq!(c["case"], "prediction_empty");
        assert!(c["hd95_mm"].is_null());
        assert_eq!(raw["files"][1]["prediction_resampled"], true);
        let sum: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&files.summary_json).unwrap()).unwrap();
        assert_eq!(sum["classes"][0]["hd95_mm"]["excluded"], 1);
        assert_eq!(sum["classes"][0]["cases"]["prediction_empty"], 1);
        assert_eq!(sum["all_classes"]["rows"], 4);
        assert_eq!(
            std::fs::read_to_string(&files.raw_text).unwrap(),
            r.raw_text(),
            "text written as rendered"
        );
        assert!(files.summary_text.is_file());
        // Only the four reports: no temporary files left behind.
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 4);
    }
}
