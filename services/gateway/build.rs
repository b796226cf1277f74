//! Rebuilds the gateway when the annotation page's assets (`web/dist`, built by
//! `scripts/web.sh`) change or appear, so that a release binary embeds the page that was
//! built last (`crate::page`), and says so when there is none to embed.

fn main() {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/dist");
    // A folder makes cargo look at every file inside it; a missing one reruns this script
    // every build until it appears (cheap: it only prints).
    println!("cargo::rerun-if-changed={}", dist.display());
    if !dist.join("index.html").is_file() {
        println!(
            "cargo::warning=web/dist is not built: the gateway will serve a page saying how to \
             build the annotation page (scripts/web.sh, then build again)"
        );
    }
}
