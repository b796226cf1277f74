//! `aiaa-convert`: the convert command without libtorch (see the crate docs); `aiaa convert`
//! runs this binary when it lies beside `aiaa`.

use aiaa_convert::ConvertArgs;
use clap::Parser;

/// Converts DICOM series and volumes to NIfTI or MHA, as tlt-dataconvert (the same flags as
/// `aiaa convert`).
#[derive(Debug, Parser)]
#[command(name = "aiaa-convert", version, about)]
struct Cli {
    #[command(flatten)]
    args: ConvertArgs,
}

fn main() -> anyhow::Result<()> {
    aiaa_convert::run(Cli::parse().args)
}
