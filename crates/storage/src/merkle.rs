//! 0G's binary Merkle tree: keccak256 leaves, `keccak256(left ‖ right)` nodes, an unpaired last node
//! promoted unchanged to the next level (`core/merkle/tree.go` `TreeBuilder.Build`), and its proofs
//! (`core/merkle/proof.go`).

use crate::error::ProofError;
use crate::layout::{CHUNK_SIZE, SEGMENT_CHUNKS};
use alloy_primitives::{B256, keccak256};
use std::sync::OnceLock;

/// `keccak256(left ‖ right)`: an interior node.
#[inline]
pub(crate) fn hash_pair(left: &B256, right: &B256) -> B256 {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(left.as_slice());
    buf[32..].copy_from_slice(right.as_slice());
    keccak256(buf)
}

/// keccak256 of a zero chunk (`EmptyChunkHash` in `core/dataflow.go`).
pub(crate) fn empty_chunk_hash() -> B256 {
    static H: OnceLock<B256> = OnceLock::new();
    *H.get_or_init(|| keccak256([0u8; CHUNK_SIZE]))
}

/// Reduces `nodes[..n]` in place, level by level, to the root. `n` must be at least 1.
fn reduce_in_place(nodes: &mut [B256]) -> B256 {
    let mut n = nodes.len();
    while n > 1 {
        let mut w = 0;
        let mut i = 0;
        while i + 1 < n {
            nodes[w] = hash_pair(&nodes[i], &nodes[i + 1]);
            w += 1;
            i += 2;
        }
        if i < n {
            // Unpaired last node: promoted unchanged.
            nodes[w] = nodes[i];
            w += 1;
        }
        n = w;
    }
    nodes.first().copied().unwrap_or_default()
}

/// Root of a tree over `leaves` (already hashed); `None` when there are none.
pub fn root_of_leaves(leaves: &[B256]) -> Option<B256> {
    if leaves.is_empty() {
        return None;
    }
    let mut v = leaves.to_vec();
    Some(reduce_in_place(&mut v))
}

/// Merkle root of one segment: `data` split in 256-byte chunks (the last zero-padded), followed by zero
/// chunks up to `chunks` leaves (`SegmentRoot` in `core/dataflow.go`).
///
/// `chunks` is clamped to 1..=1024 and to at least the chunks `data` fills; extra data is ignored.
pub fn segment_root(data: &[u8], chunks: usize) -> B256 {
    let mut leaves = [B256::ZERO; SEGMENT_CHUNKS];
    let n = segment_leaves(data, chunks, &mut leaves);
    reduce_in_place(&mut leaves[..n])
}

/// Fills the chunk leaf hashes of a segment (see [`segment_root`]); returns how many there are.
pub(crate) fn segment_leaves(data: &[u8], chunks: usize, leaves: &mut [B256; SEGMENT_CHUNKS]) -> usize {
    let data_chunks = data.len().div_ceil(CHUNK_SIZE).min(SEGMENT_CHUNKS);
    let chunks = chunks.clamp(data_chunks.max(1), SEGMENT_CHUNKS);
    let mut iter = data.chunks(CHUNK_SIZE);
    for leaf in leaves.iter_mut().take(chunks) {
        *leaf = match iter.next() {
            Some(c) if c.len() == CHUNK_SIZE => keccak256(c),
            Some(c) => {
                let mut pad = [0u8; CHUNK_SIZE];
                pad[..c.len()].copy_from_slice(c);
                keccak256(pad)
            }
            None => empty_chunk_hash(),
        };
    }
    chunks
}

/// A full tree kept level by level, for proofs (the file tree over segment roots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    /// `levels[0]` = leaves, last = `[root]`.
    levels: Vec<Vec<B256>>,
}

impl MerkleTree {
    /// Builds the tree; `None` for no leaves.
    pub fn new(leaves: Vec<B256>) -> Option<Self> {
        if leaves.is_empty() {
            return None;
        }
        let mut levels = vec![leaves];
        while let Some(prev) = levels.last().filter(|l| l.len() > 1) {
            let next: Vec<B256> = prev
                .chunks(2)
                .map(|p| if let [l, r] = p { hash_pair(l, r) } else { p[0] })
                .collect();
            levels.push(next);
        }
        Some(Self { levels })
    }

    /// The root.
    pub fn root(&self) -> B256 {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or_default()
    }

    /// The leaves.
    pub fn leaves(&self) -> &[B256] {
        self.levels.first().map(Vec::as_slice).unwrap_or_default()
    }

    /// Proof of leaf `index` (`Tree.ProofAt`); `None` past the end.
    pub fn proof(&self, index: usize) -> Option<Proof> {
        let leaves = self.leaves();
        let leaf = *leaves.get(index)?;
        if leaves.len() == 1 {
            return Some(Proof {
                lemma: vec![leaf],
                path: vec![],
            });
        }
        let mut lemma = vec![leaf];
        let mut path = Vec::new();
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            if i.is_multiple_of(2) {
                if let Some(sib) = level.get(i + 1) {
                    lemma.push(*sib);
                    path.push(true);
                } // else: promoted, no sibling at this level
            } else {
                lemma.push(level[i - 1]);
                path.push(false);
            }
            i /= 2;
        }
        lemma.push(self.root());
        Some(Proof { lemma, path })
    }
}

/// A Merkle proof in 0G's JSON shape: `lemma` = [leaf, siblings bottom-up…, root]; `path[i]` is true when
/// the node at level `i` is a left child.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "zgs", derive(serde::Serialize, serde::Deserialize))]
pub struct Proof {
    /// Leaf hash, sibling hashes from the bottom up, root hash.
    pub lemma: Vec<B256>,
    /// For each sibling: whether the proved node is on the left.
    pub path: Vec<bool>,
}

impl Proof {
    /// Checks the proof for a leaf hash at `position` of a tree with `leaves` leaves under `root`
    /// (`Proof.ValidateHash`).
    pub fn validate(&self, root: B256, leaf: B256, position: u64, leaves: u64) -> Result<(), ProofError> {
        let n = self.path.len();
        let ok_format = if n == 0 {
            self.lemma.len() == 1
        } else {
            self.lemma.len() == n + 2
        };
        let (Some(first), Some(last), true) = (self.lemma.first(), self.lemma.last(), ok_format) else {
            return Err(ProofError::WrongFormat {
                lemma: self.lemma.len(),
                path: n,
            });
        };
        if *first != leaf {
            return Err(ProofError::ContentMismatch);
        }
        if *last != root {
            return Err(ProofError::RootMismatch);
        }
        let actual = self.position(leaves);
        if actual != position {
            return Err(ProofError::PositionMismatch {
                expected: position,
                actual,
            });
        }
        let mut h = leaf;
        for (is_left, sib) in self.path.iter().zip(self.lemma.iter().skip(1)) {
            h = if *is_left {
                hash_pair(&h, sib)
            } else {
                hash_pair(sib, &h)
            };
        }
        if h != root {
            return Err(ProofError::Invalid);
        }
        Ok(())
    }

    /// Leaf position the path encodes in a tree of `leaves` leaves (`calculateProofPosition`): at each
    /// level from the top, the left subtree holds `nextPow2(n) / 2` leaves.
    pub fn position(&self, mut leaves: u64) -> u64 {
        let mut pos = 0u64;
        for is_left in self.path.iter().rev() {
            let left_side = leaves.max(1).checked_next_power_of_two().unwrap_or(1 << 63) / 2;
            if *is_left {
                leaves = left_side;
            } else {
                pos = pos.saturating_add(left_side);
                leaves = leaves.saturating_sub(left_side);
            }
        }
        pos
    }
}
