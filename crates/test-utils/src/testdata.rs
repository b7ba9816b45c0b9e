//! Loaders for the repository's `testdata/` folder (real quotes, collateral, event logs).

use std::path::PathBuf;

/// Absolute path of the repository's `testdata/` folder.
pub fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata"))
}

/// Absolute path of a file under `testdata/`, e.g. `attestation/dcap-qvl/tdx_quote.bin`.
pub fn path(relative: &str) -> PathBuf {
    dir().join(relative)
}

/// Reads a file under `testdata/`; panics with the path when it is missing (tests only).
#[allow(
    clippy::panic,
    clippy::expect_used,
    reason = "a missing fixture is a broken checkout: fail the test loudly"
)]
pub fn read(relative: &str) -> Vec<u8> {
    let p = path(relative);
    std::fs::read(&p).unwrap_or_else(|e| panic!("testdata {} unreadable: {e}", p.display()))
}

/// Reads a UTF-8 file under `testdata/`.
#[allow(clippy::panic, reason = "tests only")]
pub fn read_string(relative: &str) -> String {
    String::from_utf8(read(relative)).unwrap_or_else(|e| panic!("testdata {relative} is not UTF-8: {e}"))
}
