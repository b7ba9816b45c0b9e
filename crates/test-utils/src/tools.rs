//! Where the pinned tools live: the repo's `node_modules` (installed by `just setup`), else `PATH`.

use std::path::PathBuf;

/// The real anvil binary (not the npm node shim, whose SIGKILL would orphan anvil): `$ZG_ANVIL`, else the
/// repo's `node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil`, else `anvil` on `PATH`.
pub fn anvil() -> PathBuf {
    if let Some(p) = std::env::var_os("ZG_ANVIL") {
        return PathBuf::from(p);
    }
    let local = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
    ));
    if local.is_file() {
        local
    } else {
        PathBuf::from("anvil")
    }
}
