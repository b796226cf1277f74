//! `aiaa convert`: hands over to the `aiaa-convert` binary beside this one, which links no
//! libtorch (see `aiaa_convert`'s docs for why), or converts in this process when that
//! binary is not there (a build of the `aiaa` package alone).

use std::path::PathBuf;

pub use aiaa_convert::ConvertArgs;

/// The `aiaa-convert` binary next to the running `aiaa`, if there is one.
fn sibling() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.join("aiaa-convert");
    path.is_file().then_some(path)
}

/// Runs the conversion: in `aiaa-convert` (exec: this process becomes it, so its libtorch
/// is unmapped before any volume is read), else here.
pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    if let Some(bin) = sibling() {
        use std::os::unix::process::CommandExt;
        // exec returns only when it failed; the conversion then runs here.
        let err = std::process::Command::new(&bin).args(args.to_args()).exec();
        eprintln!(
            "aiaa: could not run {} ({err}); converting in this process",
            bin.display()
        );
    }
    aiaa_convert::run(args)
}
