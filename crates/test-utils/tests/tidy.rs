//! Repository hygiene (rust-analyzer's `tidy`): the docs name what exists, and every Rust file says what it is.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failure is a test failure"
)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `members = [ ... ]` of the root Cargo.toml.
fn workspace_members() -> Vec<String> {
    let toml = read("Cargo.toml");
    let start = toml.find("members = [").expect("members list");
    let list = &toml[start..];
    let end = list.find(']').expect("end of members list");
    list[..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The paths named in ARCHITECTURE.md's `### \`path\`` headings.
fn architecture_paths() -> Vec<String> {
    read("ARCHITECTURE.md")
        .lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn architecture_md_names_every_member_and_only_what_exists() {
    let named = architecture_paths();
    for path in &named {
        assert!(
            root().join(path).exists(),
            "ARCHITECTURE.md names `{path}`, which does not exist"
        );
    }
    for member in workspace_members() {
        assert!(
            named.contains(&member),
            "workspace member `{member}` has no section in ARCHITECTURE.md"
        );
    }
    for path in &named {
        if root().join(path).join("Cargo.toml").exists() {
            assert!(
                workspace_members().contains(path),
                "`{path}` has a Cargo.toml but is not a workspace member"
            );
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if p.is_dir() {
            if !matches!(name.as_ref(), "target" | "node_modules" | "corpus" | "artifacts")
                && !name.starts_with('.')
            {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_doc_comment() {
    let mut files = Vec::new();
    for dir in ["crates", "bins", "examples"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(
        files.len() > 20,
        "found only {} files: is the walk broken?",
        files.len()
    );
    let undocumented: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
            !(first.starts_with("//!") || first.starts_with("#![doc"))
        })
        .map(|f| f.strip_prefix(root()).unwrap_or(f).display().to_string())
        .collect();
    assert!(
        undocumented.is_empty(),
        "files without a leading `//!` doc comment: {undocumented:#?}"
    );
}

#[test]
fn readme_and_ci_run_the_same_test_command() {
    let readme = read("README.md");
    assert!(
        readme.contains("just demo") && readme.contains("just test"),
        "README.md must give both quick-start commands"
    );
    assert!(
        read(".ci/run").contains("just test"),
        ".ci/run must run README.md's test command"
    );
}
