//! What a conversion holds at its peak: the input volume and the output volume, each in its
//! own type, and little else (no copy of the file's bytes beside the voxels, no
//! volume-sized `f32` intermediates while resampling, no encoded copy of the output before
//! it is written). Measured as the growth of the process's peak RSS (`VmHWM`, reset through
//! `/proc/self/clear_refs` before the conversion). Each conversion runs in a child process
//! of its own (this test binary, run again): in one process the allocator would keep memory
//! freed by the first conversion and the second would look cheaper than it is.

use aiaa_imaging::convert::{ConvertOptions, Input, convert_one};
use aiaa_imaging::{Geometry, Volume, Voxels, gz, nifti};

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Resets the peak RSS to the current RSS (Linux 4.0+).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

/// The child's environment variable naming the file to convert.
const CASE: &str = "AIAA_CONVERT_MEMORY_INPUT";

const DIMS: [usize; 3] = [384, 384, 80];
/// `DIMS` at 0.7 x 0.7 x 2.5 mm resampled to 1 mm.
const OUT_DIMS: [usize; 3] = [269, 269, 200];

#[test]
fn a_conversion_holds_the_input_and_the_output_and_little_else() {
    if let Ok(input) = std::env::var(CASE) {
        return convert_and_measure(std::path::Path::new(&input));
    }
    let dir = tempfile::tempdir().unwrap();
    // 384 x 384 x 80 int16 at 0.7 x 0.7 x 2.5 mm (24 MB) -> 269 x 269 x 200 at 1 mm (29 MB).
    let n: usize = DIMS.iter().product();
    let voxels: Vec<i16> = (0..n).map(|i| ((i * 37) % 2000) as i16 - 1000).collect();
    let vol = Volume::scalar(DIMS, Geometry::with_spacing([0.7, 0.7, 2.5]), Voxels::I16(voxels)).unwrap();
    for ext in [".nii", ".nii.gz"] {
        let src = dir.path().join(format!("in{ext}"));
        nifti::write(&vol, &src).unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_conversion_holds_the_input_and_the_output_and_little_else",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CASE, &src)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && log.contains("peak grew"), "{ext}:\n{log}");
        eprintln!(
            "{}",
            log.lines().find(|l| l.contains("peak grew")).unwrap_or_default()
        );
    }
}

/// In the child: converts `input` to 1 mm beside it, asserting the peak RSS grew by no more
/// than the input and output volumes and a little slack.
fn convert_and_measure(input: &std::path::Path) {
    let ext = if input.to_string_lossy().ends_with(".gz") {
        ".nii.gz"
    } else {
        ".nii"
    };
    let dir = input.parent().unwrap();
    let opts = ConvertOptions {
        input_dir: dir.into(),
        output_dir: dir.into(),
        input_suffix: ext.into(),
        output_suffix: ext.into(),
        spacing: Some([1.0; 3]),
        label: false,
        overwrite: true,
        read: Default::default(),
    };
    let out = dir.join(format!("out{ext}"));
    reset_peak();
    let before = status_kib("VmRSS:") << 10;
    convert_one(&Input::File(input.into()), &out, &opts).unwrap();
    let grew = (status_kib("VmHWM:") << 10).saturating_sub(before);
    let input_bytes = (DIMS.iter().product::<usize>() * 2) as u64;
    let output_bytes = (OUT_DIMS.iter().product::<usize>() * 2) as u64;
    // Compressed members wait to be written a batch at a time (two blocks per thread).
    let batch = if ext == ".nii.gz" {
        2 * rayon::current_num_threads() as u64 * gz::BLOCK_SIZE as u64
    } else {
        0
    };
    let slack = 16 << 20;
    let bound = input_bytes + output_bytes + batch + slack;
    assert!(
        grew <= bound,
        "{ext}: the peak RSS grew by {} MiB, more than input {} + output {} + {} MiB",
        grew >> 20,
        input_bytes >> 20,
        output_bytes >> 20,
        (batch + slack) >> 20
    );
    eprintln!("{ext}: peak grew {} MiB (bound {} MiB)", grew >> 20, bound >> 20);
    let back = aiaa_imaging::io::read_volume(&out, &Default::default()).unwrap();
    assert_eq!(back.dims, OUT_DIMS);
}
