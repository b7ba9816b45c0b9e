//! Known roots from the official client, and a naive reference port compared on many sizes.

use alloy_primitives::keccak256;
use zg_storage::{B256, Error, FileLayout, MerkleBuilder, root_of_bytes};

/// A deliberately naive port of the official client's algorithm (pad the whole file, hash every segment,
/// queue-based tree build): the differential oracle for the streaming, parallel implementation.
pub(crate) fn naive_root(data: &[u8]) -> B256 {
    let layout = FileLayout::new(data.len() as u64).unwrap();
    let mut padded = data.to_vec();
    padded.resize(layout.padded_size() as usize, 0);
    let seg_roots: Vec<B256> = padded
        .chunks(256 * 1024)
        .map(|seg| naive_tree(seg.chunks(256).map(keccak256).collect()))
        .collect();
    naive_tree(seg_roots)
}

pub(crate) fn naive_tree(mut level: Vec<B256>) -> B256 {
    use std::collections::VecDeque;
    let mut q: VecDeque<B256> = VecDeque::new();
    let mut i = 0;
    while i < level.len() {
        if i == level.len() - 1 {
            q.push_back(level[i]);
        } else {
            q.push_back(keccak256([level[i].as_slice(), level[i + 1].as_slice()].concat()));
        }
        i += 2;
    }
    while q.len() > 1 {
        let n = q.len();
        for _ in 0..n / 2 {
            let l = q.pop_front().unwrap();
            let r = q.pop_front().unwrap();
            q.push_back(keccak256([l.as_slice(), r.as_slice()].concat()));
        }
        if n % 2 == 1 {
            let x = q.pop_front().unwrap();
            q.push_back(x);
        }
    }
    level.clear();
    q[0]
}

pub(crate) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[track_caller]
fn check(data: &[u8], expected: &str) {
    assert_eq!(root_of_bytes(data).unwrap().to_string(), expected);
}

#[test]
fn official_vectors() {
    check(
        b"a",
        "0x200e594efa2ab0b924e60f9bb9445f75b8d058f0de13b35a83c71d494b0a15ca",
    );
    check(
        &[1u8; 256],
        "0x10c18b0ffc7f89e6da317ea664365820b9f7f954fa9f03733072f5ccd0826818",
    );
    check(
        &pattern(1 << 20),
        "0x536080d522b3b2f374e16c533265540ed26688995b200ed724fa3ef81fb8184b",
    );
}

#[test]
fn matches_naive_reference_on_boundary_sizes() {
    let seg = 256 * 1024;
    let sizes = [
        1,
        255,
        256,
        257,
        511,
        4096,
        16 * 256 + 1,
        seg - 1,
        seg,
        seg + 1,
        3 * seg + 77,
        16 * seg,
        17 * seg + 3,
        33 * seg - 5,
        40 * seg + 256 * 17,
    ];
    for size in sizes {
        let data = pattern(size);
        let expected = naive_root(&data);
        for threads in [1, 2, 3] {
            let got = MerkleBuilder::new()
                .threads(threads)
                .hash_bytes(&data)
                .unwrap()
                .root();
            assert_eq!(got, expected, "size {size}, {threads} threads");
        }
    }
}

#[test]
fn file_reader_and_bytes_agree() {
    let data = pattern(5 * 256 * 1024 + 1000);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.bin");
    std::fs::write(&p, &data).unwrap();
    let a = zg_storage::root_of_file(&p).unwrap();
    let b = MerkleBuilder::new()
        .hash_reader(std::io::Cursor::new(&data), data.len() as u64)
        .unwrap()
        .root();
    assert_eq!(a, b);
    assert_eq!(a, naive_root(&data));
}

#[test]
fn progress_reports_every_byte() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let seen = Arc::new(AtomicU64::new(0));
    let s2 = seen.clone();
    let data = pattern(70 * 256 * 1024 + 5);
    MerkleBuilder::new()
        .threads(2)
        .progress(move |n| {
            s2.fetch_max(n, Ordering::Relaxed);
        })
        .hash_bytes(&data)
        .unwrap();
    assert_eq!(seen.load(Ordering::Relaxed), data.len() as u64);
}

#[test]
fn empty_and_truncated_are_typed_errors() {
    assert!(matches!(root_of_bytes(&[]), Err(Error::Empty { .. })));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty");
    std::fs::write(&p, b"").unwrap();
    match zg_storage::root_of_file(&p) {
        Err(Error::Empty { path: Some(q) }) => assert_eq!(q, p),
        other => panic!("{other:?}"),
    }
    let short = vec![7u8; 1000];
    match MerkleBuilder::new().hash_reader(&short[..], 5000) {
        Err(Error::Truncated {
            expected: 5000,
            read: 1000,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        zg_storage::root_of_file(dir.path().join("missing")),
        Err(Error::Io { .. })
    ));
}

#[test]
fn layout_padding_rules() {
    // (chunks) -> padded chunks, from ComputePaddedSize.
    for (chunks, padded) in [
        (1, 1),
        (2, 2),
        (3, 3),
        (5, 5),
        (17, 18),
        (33, 36),
        (1025, 1152),
        (1024, 1024),
        (2000, 2048),
    ] {
        let l = FileLayout::new(chunks * 256).unwrap();
        assert_eq!(l.padded_chunks(), padded, "chunks {chunks}");
    }
    let l = FileLayout::new(1025 * 256).unwrap();
    assert_eq!(l.segments(), 2);
    assert_eq!(l.data_segments(), 2);
    assert_eq!(l.segment_chunks(1), 128);
    assert_eq!(l.submission_node_chunks(), vec![1024, 128]);
}

#[test]
fn parse_root_rejects_bad_text() {
    use zg_storage::parse_root;
    assert!(matches!(
        parse_root("0x12"),
        Err(Error::InvalidRoot {
            reason: "wrong length",
            ..
        })
    ));
    assert!(matches!(
        parse_root(&format!("0x{}", "g".repeat(64))),
        Err(Error::InvalidRoot {
            reason: "not hexadecimal",
            ..
        })
    ));
    let r = parse_root(&format!("0X{}", "AB".repeat(32))).unwrap();
    assert_eq!(r, B256::repeat_byte(0xab));
}
