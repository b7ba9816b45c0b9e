//! Untrusted datasets in archives: 0G's zip layout works; traversal, links, bombs and oversize are refused.

use std::io::Write as _;

use zg_finetune::{Dataset, DatasetFormat, DatasetLimits, Error};
use zip::write::SimpleFileOptions;

use crate::common::baking;

/// A zip of (name, bytes) entries, deflated.
pub fn zip_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn load(bytes: &[u8], limits: &DatasetLimits) -> zg_finetune::Result<Dataset> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ds");
    std::fs::write(&p, bytes).unwrap();
    Dataset::load(&p, limits)
}

#[test]
fn zero_g_zip_layout_is_read_in_name_order() {
    let a = baking(3);
    let b = baking(2);
    let z = zip_with(&[
        ("data/", b""),
        ("data/b.jsonl", &b),
        ("data/a.jsonl", &a),
        ("dataset_info.json", b"{}"),
    ]);
    let d = load(&z, &DatasetLimits::default()).unwrap();
    assert_eq!(d.format, DatasetFormat::Chat);
    assert_eq!(d.records.len(), 5);
    assert!(d.records[0].line.contains("loaf 0"));
    assert_eq!(
        d.records[3].line,
        String::from_utf8(b.clone()).unwrap().lines().next().unwrap()
    );
}

#[test]
fn hostile_archives_are_refused_by_name() {
    let lim = DatasetLimits::default();
    for (name, why) in [
        ("../evil.jsonl", "traversal"),
        ("data/../../evil.jsonl", "traversal"),
        ("/abs.jsonl", "absolute"),
    ] {
        let z = zip_with(&[("data/ok.jsonl", &baking(2)), (name, &baking(2))]);
        match load(&z, &lim).unwrap_err() {
            Error::Archive { entry, reason } => {
                assert_eq!(entry, name);
                assert!(reason.contains(why), "{reason}");
            }
            e => panic!("{name}: {e}"),
        }
    }
    // A symlink entry.
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("data/ok.jsonl", SimpleFileOptions::default())
        .unwrap();
    w.write_all(&baking(2)).unwrap();
    w.add_symlink("data/link.jsonl", "/etc/shadow", SimpleFileOptions::default())
        .unwrap();
    let z = w.finish().unwrap().into_inner();
    let e = load(&z, &lim).unwrap_err();
    assert!(
        matches!(&e, Error::Archive { reason, .. } if reason.contains("links")),
        "{e}"
    );
    // No JSONL at all.
    let e = load(&zip_with(&[("readme.txt", b"hi")]), &lim).unwrap_err();
    assert!(e.to_string().contains("no .jsonl"), "{e}");
    // Gzip is named, not guessed at.
    let e = load(&[0x1f, 0x8b, 8, 0, 0, 0], &lim).unwrap_err();
    assert!(e.to_string().contains("gzip"), "{e}");
}

#[test]
fn a_compression_bomb_is_stopped_at_the_ratio_not_after_inflating() {
    // 50 MiB of one repeated record compresses ~1000:1.
    let line =
        br#"{"text":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#;
    let mut big = Vec::with_capacity(50 << 20);
    while big.len() < 50 << 20 {
        big.extend_from_slice(line);
        big.push(b'\n');
    }
    let z = zip_with(&[("data/bomb.jsonl", &big)]);
    assert!(z.len() < 1 << 20, "compressed to {}", z.len());
    let started = std::time::Instant::now();
    let e = load(&z, &DatasetLimits::default()).unwrap_err();
    assert!(
        matches!(&e, Error::Archive { reason, .. } if reason.contains("compression bomb")),
        "{e}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // The total unpacked budget applies across entries too.
    let lim = DatasetLimits {
        max_unpacked_bytes: 1000,
        ..DatasetLimits::default()
    };
    let e = load(&zip_with(&[("a.jsonl", &baking(20))]), &lim).unwrap_err();
    assert!(
        matches!(
            e,
            Error::DatasetTooLarge {
                what: "unpacked bytes",
                ..
            }
        ),
        "{e}"
    );
    let lim = DatasetLimits {
        max_entries: 2,
        ..DatasetLimits::default()
    };
    let e = load(
        &zip_with(&[("a.jsonl", b""), ("b.jsonl", b""), ("c.jsonl", b"")]),
        &lim,
    )
    .unwrap_err();
    assert!(matches!(e, Error::DatasetTooLarge { what: "entries", .. }), "{e}");
}
