//! Test helper for the agreement scripts (scripts/imaging/*.py).
//!
//! ```text
//! dump read <input> <out-prefix>                   -> <prefix>.json + <prefix>.raw (LE voxels)
//! dump dicom <dir> <out-prefix>                    -> same, for the single series in <dir>
//! dump write <input> <output>                      -> re-write in the format of <output>
//! dump resample <input> <sx,sy,sz> <linear|linear-f32|nearest> <out-prefix>   (-f32: cast first)
//! dump convert <input> <output> <sx,sy,sz> <linear|nearest>   (read, resample, write; timed)
//! dump time-read <input>                            (prints seconds for the read)
//! dump time-resample <input> <sx,sy,sz> <linear|nearest>   (prints seconds for the resample)
//! ```

use std::path::Path;
use std::time::Instant;

use aiaa_imaging::resample::{Interpolation, resample_to_spacing};
use aiaa_imaging::{ReadOptions, Volume, VoxelType, dicom, io};

fn dump(vol: &Volume, prefix: &str) -> Result<(), Box<dyn std::error::Error>> {
    let g = &vol.geometry;
    let ty = match vol.voxel_type() {
        VoxelType::U8 => "uint8",
        VoxelType::I16 => "int16",
        VoxelType::U16 => "uint16",
        VoxelType::I32 => "int32",
        VoxelType::F32 => "float32",
        VoxelType::F64 => "float64",
    };
    let json = format!(
        "{{\"dims\": {:?}, \"channels\": {}, \"dtype\": \"{ty}\", \"spacing\": {:?}, \"origin\": {:?}, \"direction\": {:?}}}\n",
        vol.dims, vol.channels, g.spacing, g.origin, g.direction
    );
    std::fs::write(format!("{prefix}.json"), json)?;
    std::fs::write(format!("{prefix}.raw"), vol.voxels.to_le_bytes())?;
    Ok(())
}

fn spacing(s: &str) -> Result<[f64; 3], Box<dyn std::error::Error>> {
    let v: Vec<f64> = s.split(',').map(str::parse).collect::<Result<_, _>>()?;
    Ok(match v.as_slice() {
        [x] => [*x; 3],
        [x, y, z] => [*x, *y, *z],
        _ => return Err("spacing: one or three numbers".into()),
    })
}

fn interp(s: &str) -> Interpolation {
    if s == "nearest" {
        Interpolation::Nearest
    } else {
        Interpolation::Linear
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = ReadOptions::default();
    let a = |i: usize| {
        args.get(i)
            .map(String::as_str)
            .ok_or("missing argument (see the example's docs)")
    };
    match a(0)? {
        "read" => dump(&io::read_volume(Path::new(a(1)?), &opts)?, a(2)?)?,
        "dicom" => dump(&dicom::read_dir(Path::new(a(1)?), &opts)?, a(2)?)?,
        "write" => io::write_volume(&io::read_volume(Path::new(a(1)?), &opts)?, Path::new(a(2)?))?,
        "resample" => {
            let mut v = io::read_volume(Path::new(a(1)?), &opts)?;
            if a(3)? == "linear-f32" {
                v = v.cast(VoxelType::F32);
            }
            dump(&resample_to_spacing(&v, spacing(a(2)?)?, interp(a(3)?))?, a(4)?)?;
        }
        "convert" => {
            let t = Instant::now();
            let v = io::read_volume(Path::new(a(1)?), &opts)?;
            let t_read = t.elapsed();
            let r = resample_to_spacing(&v, spacing(a(3)?)?, interp(a(4)?))?;
            let t_res = t.elapsed();
            io::write_volume(&r, Path::new(a(2)?))?;
            let t_all = t.elapsed();
            println!(
                "read {:.3}s resample {:.3}s write {:.3}s total {:.3}s",
                t_read.as_secs_f64(),
                (t_res - t_read).as_secs_f64(),
                (t_all - t_res).as_secs_f64(),
                t_all.as_secs_f64()
            );
        }
        "time-read" => {
            let t = Instant::now();
            let v = io::read_volume(Path::new(a(1)?), &opts)?;
            println!("{:.4}", t.elapsed().as_secs_f64());
            drop(v);
        }
        "time-resample" => {
            let v = io::read_volume(Path::new(a(1)?), &opts)?;
            let t = Instant::now();
            let r = resample_to_spacing(&v, spacing(a(2)?)?, interp(a(3)?))?;
            println!("{:.4}", t.elapsed().as_secs_f64());
            drop(r);
        }
        other => return Err(format!("unknown command {other}").into()),
    }
    Ok(())
}
