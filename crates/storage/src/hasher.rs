//! Streaming, parallel computation of a file's segment roots and root.
//!
//! Memory is bounded by `threads × BATCH_SEGMENTS × 256 KiB` of read buffers plus 32 bytes per segment
//! (1 MiB of roots per 8 GiB of data), whatever the file size. Workers take turns reading the next batch
//! under a lock and hash it outside the lock, so reading overlaps hashing without a separate reader
//! thread. Plain `std::thread::scope`: no thread-pool dependency for a single fork-join per file.

use crate::error::{Error, Result};
use crate::layout::SEGMENT_CHUNKS;
use crate::layout::{FileLayout, SEGMENT_SIZE, SubmissionNode};
use crate::merkle::{MerkleTree, Proof, root_of_leaves, segment_leaves, segment_root};
use alloy_primitives::B256;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

/// Segments a worker reads per turn (4 MiB).
const BATCH_SEGMENTS: usize = 16;

type ProgressFn = dyn Fn(u64) + Send + Sync;

/// Computes roots with a chosen parallelism and an optional progress callback.
///
/// ```
/// let tree = zg_storage::MerkleBuilder::new().threads(2).hash_bytes(b"a")?;
/// assert_eq!(
///     tree.root().to_string(),
///     "0x200e594efa2ab0b924e60f9bb9445f75b8d058f0de13b35a83c71d494b0a15ca"
/// );
/// # Ok::<(), zg_storage::Error>(())
/// ```
#[derive(Default)]
pub struct MerkleBuilder {
    threads: Option<usize>,
    progress: Option<Box<ProgressFn>>,
}

impl fmt::Debug for MerkleBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerkleBuilder")
            .field("threads", &self.threads)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl MerkleBuilder {
    /// All available cores, no progress callback.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of hashing threads (default: `std::thread::available_parallelism`); 0 means default.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = (threads > 0).then_some(threads);
        self
    }

    /// Called with the number of file bytes hashed so far (from any worker thread).
    pub fn progress(mut self, f: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    fn thread_count(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Tree of in-memory data.
    pub fn hash_bytes(&self, data: &[u8]) -> Result<FileTree> {
        self.hash_reader(data, data.len() as u64)
    }

    /// Tree of a file on disk, read once.
    pub fn hash_file(&self, path: &Path) -> Result<FileTree> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::io(
                path,
                std::io::Error::other("is a directory, expected a file"),
            ));
        }
        self.hash_reader(file, meta.len()).map_err(|e| match e {
            Error::Empty { .. } => Error::Empty {
                path: Some(path.to_owned()),
            },
            Error::Io { source, .. } => Error::io(path, source),
            e => e,
        })
    }

    /// Tree of exactly `size` bytes read from `reader` (fewer bytes is [`Error::Truncated`]).
    pub fn hash_reader<R: Read + Send>(&self, reader: R, size: u64) -> Result<FileTree> {
        let layout = FileLayout::new(size)?;
        let data_segs = usize::try_from(layout.data_segments()).map_err(|_| Error::TooLarge { size })?;
        let all_segs = usize::try_from(layout.segments()).map_err(|_| Error::TooLarge { size })?;
        let threads = self.thread_count().min(data_segs.div_ceil(BATCH_SEGMENTS)).max(1);

        let state = Mutex::new(ReadState {
            reader,
            next: 0,
            read: 0,
            failed: None,
            last_leaves: Vec::new(),
        });
        let work = || worker(&state, &layout, data_segs, self.progress.as_deref());
        let mut parts: Vec<(usize, Vec<B256>)> = if threads == 1 {
            work()
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            })
        };
        let st = state
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = st.failed {
            return Err(e);
        }
        parts.sort_unstable_by_key(|(start, _)| *start);
        let mut roots = Vec::with_capacity(all_segs);
        for (_, r) in parts {
            roots.extend(r);
        }
        if roots.len() != data_segs {
            // A worker panicked (join returned Err): treat as a short read rather than a wrong root.
            return Err(Error::Truncated {
                expected: size,
                read: st.read,
            });
        }
        // Padding-only segments at the end of the flow-padded data.
        for index in data_segs..all_segs {
            roots.push(segment_root(&[], layout.segment_chunks(index as u64)));
        }
        let last_leaves = if data_segs == all_segs {
            st.last_leaves
        } else {
            let mut leaves = [B256::ZERO; SEGMENT_CHUNKS];
            let n = segment_leaves(&[], layout.segment_chunks(all_segs as u64 - 1), &mut leaves);
            leaves[..n].to_vec()
        };
        FileTree::new(layout, roots, last_leaves)
    }
}

struct ReadState<R> {
    reader: R,
    next: usize,
    read: u64,
    failed: Option<Error>,
    /// Chunk leaves of the last padded segment, when it holds data.
    last_leaves: Vec<B256>,
}

fn worker<R: Read>(
    state: &Mutex<ReadState<R>>,
    layout: &FileLayout,
    data_segs: usize,
    progress: Option<&ProgressFn>,
) -> Vec<(usize, Vec<B256>)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; BATCH_SEGMENTS * SEGMENT_SIZE];
    loop {
        let (start, len, done) = {
            let Ok(mut st) = state.lock() else { return out };
            if st.failed.is_some() || st.next >= data_segs {
                return out;
            }
            let start = st.next;
            let count = BATCH_SEGMENTS.min(data_segs - start);
            // Bytes of file data in these segments (the last batch may end mid-segment).
            let want = usize::try_from(layout.size() - st.read)
                .unwrap_or(usize::MAX)
                .min(count * SEGMENT_SIZE);
            if let Err(e) = read_full(&mut st.reader, &mut buf[..want]) {
                st.failed = Some(match e {
                    ReadErr::Short(got) => Error::Truncated {
                        expected: layout.size(),
                        read: st.read + got as u64,
                    },
                    ReadErr::Io(e) => Error::io("<reader>", e),
                });
                return out;
            }
            st.next += count;
            st.read += want as u64;
            (start, want, st.read)
        };
        let last = layout.segments() - 1;
        let roots: Vec<B256> = buf[..len]
            .chunks(SEGMENT_SIZE)
            .enumerate()
            .map(|(k, seg)| {
                let index = (start + k) as u64;
                if index == last {
                    let mut leaves = [B256::ZERO; SEGMENT_CHUNKS];
                    let n = segment_leaves(seg, layout.segment_chunks(index), &mut leaves);
                    let leaves = leaves[..n].to_vec();
                    let root = root_of_leaves(&leaves).unwrap_or_default();
                    if let Ok(mut st) = state.lock() {
                        st.last_leaves = leaves;
                    }
                    root
                } else {
                    segment_root(seg, layout.segment_chunks(index))
                }
            })
            .collect();
        out.push((start, roots));
        if let Some(p) = progress {
            p(done);
        }
    }
}

enum ReadErr {
    Short(usize),
    Io(std::io::Error),
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<(), ReadErr> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Err(ReadErr::Short(got)),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadErr::Io(e)),
        }
    }
    Ok(())
}

/// A file's layout, segment roots and top-level tree: everything needed to prove any segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTree {
    layout: FileLayout,
    tree: MerkleTree,
    /// Chunk leaves of the last padded segment (at most 1024), for sub-segment submission nodes.
    last_leaves: Vec<B256>,
}

impl FileTree {
    fn new(layout: FileLayout, roots: Vec<B256>, last_leaves: Vec<B256>) -> Result<Self> {
        if roots.len() as u64 != layout.segments() {
            return Err(Error::SegmentOutOfRange {
                index: roots.len() as u64,
                segments: layout.segments(),
            });
        }
        let tree = MerkleTree::new(roots).ok_or(Error::Empty { path: None })?;
        Ok(Self {
            layout,
            tree,
            last_leaves,
        })
    }

    /// The file root (0G's "root hash", `dataMerkleRoot`).
    pub fn root(&self) -> B256 {
        self.tree.root()
    }

    /// Sizes and padding.
    pub fn layout(&self) -> &FileLayout {
        &self.layout
    }

    /// Roots of all segments of the padded data.
    pub fn segment_roots(&self) -> &[B256] {
        self.tree.leaves()
    }

    /// Proof of segment `index` against the file root, as a storage node expects it.
    pub fn segment_proof(&self, index: u64) -> Result<Proof> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.tree.proof(i))
            .ok_or(Error::SegmentOutOfRange {
                index,
                segments: self.layout.segments(),
            })
    }

    /// The Flow `submit` node list: for each power-of-two subtree (largest first), its root and height.
    /// Folding the roots from the right with `keccak(left ‖ acc)` gives [`Self::root`]
    /// (`Submission.Root` in `contract/contract.go`).
    pub fn submission_nodes(&self) -> Vec<SubmissionNode> {
        let seg_chunks = crate::layout::SEGMENT_CHUNKS as u64;
        let leaves = self.segment_roots();
        let mut offset_chunks = 0u64;
        let mut nodes = Vec::new();
        for chunks in self.layout.submission_node_chunks() {
            let height = chunks.trailing_zeros();
            let root = if chunks < seg_chunks {
                // Smaller than a segment: only at the tail, inside the last padded segment, whose chunk
                // leaves we kept (`createNode` hashes exactly these chunks as one segment).
                let off = (offset_chunks % seg_chunks) as usize;
                root_of_leaves(
                    self.last_leaves
                        .get(off..off + chunks as usize)
                        .unwrap_or_default(),
                )
                .unwrap_or_default()
            } else {
                let first = (offset_chunks / seg_chunks) as usize;
                let count = (chunks / seg_chunks) as usize;
                root_of_leaves(leaves.get(first..first + count).unwrap_or_default()).unwrap_or_default()
            };
            nodes.push(SubmissionNode { root, height });
            offset_chunks += chunks;
        }
        nodes
    }
}
