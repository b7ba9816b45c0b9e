//! zg-storage tour: compute a file's 0G Storage root (the official client's "root hash"), prove a segment,
//! keep blobs in the local content-addressed store. Run with
//! `cargo run -p zg-examples --example storage_roots [FILE]`.
#![allow(clippy::print_stdout, reason = "an example program: stdout is its output")]

use zg_storage::{BlobStore, LocalStore, MerkleBuilder};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), zg_storage::Error> {
    let dir = std::env::temp_dir().join(format!("zg-storage-example-{}", std::process::id()));
    let file = match std::env::args().nth(1) {
        Some(f) => f.into(),
        None => {
            // 1 MiB where byte i = i % 251: the official client's root is 0x536080d5…b8184b.
            std::fs::create_dir_all(&dir).map_err(|e| zg_storage::Error::Config(e.to_string()))?;
            let p = dir.join("sample.bin");
            let data: Vec<u8> = (0..1usize << 20).map(|i| (i % 251) as u8).collect();
            std::fs::write(&p, data).map_err(|e| zg_storage::Error::Config(e.to_string()))?;
            p
        }
    };

    // One streaming pass on every core.
    let tree = MerkleBuilder::new().hash_file(&file)?;
    let layout = tree.layout();
    println!("root      {}", tree.root());
    println!(
        "size      {} bytes, {} chunks, padded to {} chunks",
        layout.size(),
        layout.chunks(),
        layout.padded_chunks()
    );
    println!(
        "segments  {} (Flow nodes: {:?})",
        layout.segments(),
        layout.submission_node_chunks()
    );

    // The proof a storage node checks when segment 0 is uploaded.
    let proof = tree.segment_proof(0)?;
    proof
        .validate(tree.root(), tree.segment_roots()[0], 0, layout.segments())
        .map_err(|reason| zg_storage::Error::BadSegment { index: 0, reason })?;
    println!("segment 0 proof: {} siblings, valid", proof.path.len());

    // The local store: same roots as 0G, verified on the way out.
    let store = LocalStore::open(dir.join("store"))?;
    let root = store.put_file(&file).await?;
    assert_eq!(root, tree.root());
    let out = dir.join("copy.bin");
    store.get_file(root, &out).await?;
    println!(
        "stored and read back {} bytes under {root}",
        std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
