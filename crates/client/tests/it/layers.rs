//! zg-client's modules depend on each other in one direction (issue 9, structure): each module may name
//! only the modules listed before it here, so there is no cycle and lower modules never reach up into the
//! `Client`.

/// Lowest first.
const LAYERS: &[&str] = &[
    "error", "clock", "dec", "config", "guard", "http", "receipt", "store", "verify", "funding", "stream",
    "grpc", "client", "gateway", "lib",
];

#[test]
fn modules_only_depend_on_lower_modules() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let rank = LAYERS
            .iter()
            .position(|l| *l == name)
            .unwrap_or_else(|| panic!("src/{name}.rs is not placed in LAYERS (tests/it/layers.rs)"));
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, other) in LAYERS.iter().enumerate() {
            let named = text.contains(&format!("crate::{other}::"))
                || text.contains(&format!("crate::{other}}}"))
                || text.contains(&format!("crate::{other};"))
                || text.contains(&format!("crate::{other},"));
            if named && i > rank && name != "lib" {
                panic!("src/{name}.rs uses crate::{other}, which sits above it: move the shared piece down");
            }
        }
        seen.push(name);
    }
    assert!(seen.len() > 5, "{seen:?}");
}
