//! Checks that the front end is built before `rust-embed` embeds it.
//!
//! `web/dist` is produced by `npm run build` in `web/` (run by
//! `scripts/setup`); it is not committed. Without this check a fresh clone
//! would fail inside the `RustEmbed` derive with a message that does not say
//! what to do.

use std::path::Path;

fn main() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/dist");
    let index = dist.join("index.html");
    // Release builds embed the files: rebuild when the front end is rebuilt.
    println!("cargo:rerun-if-changed={}", index.display());
    println!("cargo:rerun-if-changed={}", dist.join("assets").display());
    if !index.is_file() {
        panic!(
            "\n\nthe web workbench's front end is not built: {} is missing.\n\
             Run ./scripts/setup (or `npm ci && npm run build` in web/) and build again.\n\n",
            index.display()
        );
    }
}
