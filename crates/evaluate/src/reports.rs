//! The evaluation reports: `aiaa-metrics`' four files (`mean_dice_raw_results.txt`,
//! `mean_dice_summary_results.txt` and their JSON twins, layout in `aiaa_metrics::report`),
//! plus the cases that failed, so a report never silently covers fewer files than the list:
//!
//! * the raw text ends with one comment line per failed case:
//!   `# failed<TAB><file><TAB><stage><TAB><reason>`;
//! * the summary text ends with `# failed: N of M files (not in the statistics; listed in mean_dice_raw_results.txt)`
//!   when any failed;
//! * both JSON files get `"failed": [{"file", "stage", "error"}, ...]` (the summary JSON
//!   also `"files_in_list"`).
//!
//! Failed cases are left out of the statistics rather than counted as Dice 0: a missing
//! file says nothing about the model. Every file is written atomically.

use std::path::Path;

use aiaa_metrics::Report;
use aiaa_metrics::report::{RAW_JSON, RAW_TEXT, ReportFiles, SUMMARY_JSON, SUMMARY_TEXT};
use serde_json::{Value, json};

use crate::error::{EvaluateError, Result};
use crate::run::Failure;

fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if matches!(c, '\t' | '\n' | '\r') { ' ' } else { c })
        .collect()
}

fn with_failures(json: String, failed: &[Failure], total: Option<usize>) -> Result<String> {
    let mut v: Value = serde_json::from_str(&json).map_err(aiaa_metrics::MetricsError::from)?;
    if let Value::Object(m) = &mut v {
        m.insert(
            "failed".into(),
            json!(
                failed
                    .iter()
                    .map(|f| json!({"file": f.file, "stage": f.stage, "error": f.error}))
                    .collect::<Vec<_>>()
            ),
        );
        if let Some(n) = total {
            m.insert("files_in_list".into(), json!(n));
        }
    }
    Ok(serde_json::to_string_pretty(&v).map_err(aiaa_metrics::MetricsError::from)? + "\n")
}

/// Writes the four reports with the failures of a list of `total` cases into `dir`.
pub fn write(report: &Report, failed: &[Failure], total: usize, dir: &Path) -> Result<ReportFiles> {
    std::fs::create_dir_all(dir).map_err(|source| EvaluateError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let files = ReportFiles {
        raw_text: dir.join(RAW_TEXT),
        summary_text: dir.join(SUMMARY_TEXT),
        raw_json: dir.join(RAW_JSON),
        summary_json: dir.join(SUMMARY_JSON),
    };
    let mut raw = report.raw_text();
    for f in failed {
        raw.push_str(&format!(
            "# failed\t{}\t{}\t{}\n",
            clean(&f.file),
            f.stage,
            clean(&f.error)
        ));
    }
    let mut summary = report.summary_text();
    if !failed.is_empty() {
        summary.push_str(&format!(
            "# failed: {} of {total} files (not in the statistics; listed in {RAW_TEXT})\n",
            failed.len()
        ));
    }
    aiaa_imaging::io::write_atomic(&files.raw_text, raw.as_bytes())?;
    aiaa_imaging::io::write_atomic(&files.summary_text, summary.as_bytes())?;
    let raw_json = with_failures(report.raw_json()?, failed, None)?;
    aiaa_imaging::io::write_atomic(&files.raw_json, raw_json.as_bytes())?;
    let summary_json = with_failures(report.summary_json()?, failed, Some(total))?;
    aiaa_imaging::io::write_atomic(&files.summary_json, summary_json.as_bytes())?;
    Ok(files)
}
