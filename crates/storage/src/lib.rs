#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod blocking;
mod error;
mod hasher;
mod layout;
mod merkle;
mod root;
mod store;
#[cfg(feature = "zgs")]
mod zgs;

pub use alloy_primitives::B256;
pub use error::{Error, ProofError, Result};
pub use hasher::{FileTree, MerkleBuilder};
pub use layout::{
    CHUNK_SIZE, FileLayout, SEGMENT_CHUNKS, SEGMENT_SIZE, SubmissionNode, compute_padded_chunks,
};
pub use merkle::{MerkleTree, Proof, root_of_leaves, segment_root};
pub use root::parse_root;
pub use store::{BlobStore, LocalStore};
#[cfg(feature = "zgs")]
pub use zgs::{AlloyFlow, FileInfo, FileTx, FlowSubmitter, HttpFlow, ZgsStore};

/// Root of in-memory data, using all cores.
///
/// ```
/// let root = zg_storage::root_of_bytes(&[1u8; 256])?;
/// assert_eq!(root.to_string(), "0x10c18b0ffc7f89e6da317ea664365820b9f7f954fa9f03733072f5ccd0826818");
/// # Ok::<(), zg_storage::Error>(())
/// ```
pub fn root_of_bytes(data: &[u8]) -> Result<B256> {
    Ok(MerkleBuilder::new().hash_bytes(data)?.root())
}

/// Root of a file, read once with bounded memory, using all cores.
pub fn root_of_file(path: impl AsRef<std::path::Path>) -> Result<B256> {
    Ok(MerkleBuilder::new().hash_file(path.as_ref())?.root())
}
