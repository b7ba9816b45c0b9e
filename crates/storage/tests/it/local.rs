//! LocalStore: round trips, corruption, crash leftovers.

use super::vectors::pattern;
use zg_storage::{B256, BlobStore, Error, LocalStore, root_of_bytes};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn put_get_round_trip_through_the_trait() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let data = pattern(3 * 256 * 1024 + 17);
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let root = block_on(store.put_file(&src)).unwrap();
    assert_eq!(root, root_of_bytes(&data).unwrap());
    assert!(block_on(store.exists(root)).unwrap());
    assert_eq!(block_on(store.size(root)).unwrap(), Some(data.len() as u64));
    let out = dir.path().join("out.bin");
    assert_eq!(block_on(store.get_file(root, &out)).unwrap(), data.len() as u64);
    assert_eq!(std::fs::read(&out).unwrap(), data);
    // Idempotent put; same bytes, same blob.
    assert_eq!(store.put_bytes(&data).unwrap(), root);
    assert_eq!(store.get_bytes(root).unwrap(), data);
    let tmp_left = std::fs::read_dir(dir.path().join("store/tmp")).unwrap().count();
    assert_eq!(tmp_left, 0, "no temp files after successful writes");
}

#[test]
fn missing_and_empty_and_corrupt_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let nothing = B256::repeat_byte(1);
    assert!(!block_on(store.exists(nothing)).unwrap());
    assert_eq!(block_on(store.size(nothing)).unwrap(), None);
    assert!(
        matches!(store.get_file_blocking(nothing, &dir.path().join("x")), Err(Error::NotFound { root }) if root == nothing)
    );
    assert!(matches!(store.put_bytes(&[]), Err(Error::Empty { .. })));
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(store.put_file_blocking(&empty), Err(Error::Empty { path: Some(p) }) if p == empty));

    // Bit rot in the store is caught on the way out, and nothing is written to the output.
    let root = store.put_bytes(b"precious").unwrap();
    let blob = store.blob_path(root);
    std::fs::write(&blob, b"precioUs").unwrap();
    let out = dir.path().join("out");
    assert!(
        matches!(store.get_file_blocking(root, &out), Err(Error::RootMismatch { expected, .. }) if expected == root)
    );
    assert!(!out.exists());
    assert!(matches!(store.get_bytes(root), Err(Error::RootMismatch { .. })));
}

#[test]
fn crash_leftovers_are_ignored_and_old_ones_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    // A crash mid-write leaves a part file in tmp/ and no blob: the root is simply absent.
    let part = dir.path().join("tmp/123-0.part");
    std::fs::write(&part, b"half a fi").unwrap();
    let root = root_of_bytes(b"half a file").unwrap();
    assert!(!block_on(store.exists(root)).unwrap());
    // A fresh part file survives reopening (another process may own it) ...
    LocalStore::open(dir.path()).unwrap();
    assert!(part.exists());
    // ... and a put of the same content works regardless.
    assert_eq!(store.put_bytes(b"half a file").unwrap(), root);
    assert!(block_on(store.exists(root)).unwrap());
}

/// The async `BlobStore` methods copy, hash and fsync on a worker thread, not on the caller's executor
/// (issue 9 item 11): on a current-thread runtime, the hashing progress callback of `put_file` and
/// `get_file` never fires on the test's own thread. They also need no tokio runtime (see `blocking.rs`).
#[test]
fn async_methods_do_file_work_off_the_executor_thread() {
    let dir = tempfile::tempdir().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let store = LocalStore::open(dir.path().join("store"))
        .unwrap()
        .with_threads(1)
        .with_progress(move |_| s2.lock().unwrap().push(std::thread::current().id()));
    let data = pattern(2 * 256 * 1024 + 5);
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let out = dir.path().join("out.bin");
    let root = block_on(store.put_file(&src)).unwrap();
    assert_eq!(block_on(store.get_file(root, &out)).unwrap(), data.len() as u64);
    assert_eq!(std::fs::read(&out).unwrap(), data);
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 2, "progress from both the put and the get");
    let here = std::thread::current().id();
    assert!(
        seen.iter().all(|t| *t != here),
        "file work ran on the executor thread"
    );
}
