//! Sizes, flow padding and the Flow submission node list, as 0G Storage computes them.
//!
//! Sources: `core/dataflow.go` (chunk and segment sizes), `core/flow.go` (`ComputePaddedSize`,
//! `splitNodes`, `createNode`), `core/iterator.go` (`IteratorPaddedSize`) in 0glabs/0g-storage-client.

use crate::error::{Error, Result};

/// Bytes per chunk, the Merkle leaf (`DefaultChunkSize`).
pub const CHUNK_SIZE: usize = 256;
/// Chunks per segment (`DefaultSegmentMaxChunks`).
pub const SEGMENT_CHUNKS: usize = 1024;
/// Bytes per segment, the unit of upload and download (`DefaultSegmentSize`, 256 KiB).
pub const SEGMENT_SIZE: usize = CHUNK_SIZE * SEGMENT_CHUNKS;

const CHUNK: u64 = CHUNK_SIZE as u64;
const SEG_CHUNKS: u64 = SEGMENT_CHUNKS as u64;

/// Flow padding of a chunk count: `(padded_chunks, next_pow2)`.
///
/// `p2 = nextPow2(chunks)`; a power of two stays as is; otherwise chunks are rounded up to a multiple of
/// `max(1, p2 / 16)` (`ComputePaddedSize` in `core/flow.go`). `chunks` must be at least 1.
pub fn compute_padded_chunks(chunks: u64) -> (u64, u64) {
    let p2 = chunks.max(1).next_power_of_two();
    if p2 == chunks {
        return (p2, p2);
    }
    let min_chunk = (p2 / 16).max(1);
    // `chunks >= 1` and `min_chunk >= 1`, and the result is at most `p2`: no overflow, no division by zero.
    let padded = chunks.div_ceil(min_chunk) * min_chunk;
    (padded, p2)
}

/// How a file of a given size is cut into chunks and segments and padded for the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileLayout {
    size: u64,
    chunks: u64,
    padded_chunks: u64,
    next_pow2: u64,
}

/// One node of a Flow `submit` call: a subtree of `2^height` chunks and its Merkle root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubmissionNode {
    /// Merkle root of the subtree.
    pub root: alloy_primitives::B256,
    /// log2 of the chunks the subtree covers.
    pub height: u32,
}

impl FileLayout {
    /// Layout of `size` bytes; empty data is rejected, as 0G does.
    pub fn new(size: u64) -> Result<Self> {
        if size == 0 {
            return Err(Error::Empty { path: None });
        }
        // Keep every later `* CHUNK` product in range.
        if size > u64::MAX / 4 {
            return Err(Error::TooLarge { size });
        }
        let chunks = size.div_ceil(CHUNK);
        let (padded_chunks, next_pow2) = compute_padded_chunks(chunks);
        Ok(Self {
            size,
            chunks,
            padded_chunks,
            next_pow2,
        })
    }

    /// File size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Chunks holding file data (the last one zero-padded).
    pub fn chunks(&self) -> u64 {
        self.chunks
    }
    /// Chunks after flow padding (what the Merkle tree and the Flow contract cover).
    pub fn padded_chunks(&self) -> u64 {
        self.padded_chunks
    }
    /// Bytes after flow padding.
    pub fn padded_size(&self) -> u64 {
        self.padded_chunks * CHUNK
    }
    /// Segments of the padded data: the leaves of the file's top-level tree.
    pub fn segments(&self) -> u64 {
        self.padded_chunks.div_ceil(SEG_CHUNKS)
    }
    /// Segments that hold file data (the ones uploaded and downloaded).
    pub fn data_segments(&self) -> u64 {
        self.chunks.div_ceil(SEG_CHUNKS)
    }
    /// Chunks in segment `index` of the padded data (1024 except, possibly, the last).
    pub fn segment_chunks(&self, index: u64) -> usize {
        let start = index.saturating_mul(SEG_CHUNKS);
        // At most SEGMENT_CHUNKS: fits usize.
        self.padded_chunks.saturating_sub(start).min(SEG_CHUNKS) as usize
    }
    /// File bytes in segment `index` (0 for padding-only segments).
    pub fn segment_data_len(&self, index: u64) -> usize {
        let start = index.saturating_mul(SEG_CHUNKS * CHUNK);
        // At most SEGMENT_SIZE: fits usize.
        self.size.saturating_sub(start).min(SEG_CHUNKS * CHUNK) as usize
    }
    /// Sectors (chunks) the Flow contract charges for: the padded chunk count.
    pub fn sectors(&self) -> u64 {
        self.padded_chunks
    }
    /// Subtree sizes (in chunks) of the Flow submission: the binary decomposition of the padded chunk
    /// count, largest first, starting at `nextPow2(chunks)` (`splitNodes` in `core/flow.go`).
    pub fn submission_node_chunks(&self) -> Vec<u64> {
        let mut nodes = Vec::new();
        let mut left = self.padded_chunks;
        let mut next = self.next_pow2;
        while left > 0 && next > 0 {
            if left >= next {
                left -= next;
                nodes.push(next);
            }
            next /= 2;
        }
        nodes
    }
}
