//! Segment proofs and Flow submission nodes.

use super::vectors::{naive_tree, pattern};
use alloy_primitives::keccak256;
use zg_storage::{B256, MerkleBuilder, MerkleTree, ProofError};

#[test]
fn every_segment_proof_validates_and_tampering_fails() {
    let data = pattern(13 * 256 * 1024 + 999);
    let tree = MerkleBuilder::new().hash_bytes(&data).unwrap();
    let n = tree.layout().segments();
    let root = tree.root();
    for i in 0..n {
        let p = tree.segment_proof(i).unwrap();
        let leaf = tree.segment_roots()[i as usize];
        p.validate(root, leaf, i, n).unwrap();
        assert_eq!(p.position(n), i);
        // wrong position
        let other = (i + 1) % n;
        assert!(matches!(
            p.validate(root, leaf, other, n),
            Err(ProofError::PositionMismatch { .. })
        ));
        // wrong leaf
        assert_eq!(
            p.validate(root, B256::ZERO, i, n),
            Err(ProofError::ContentMismatch)
        );
        // flipped sibling
        let mut bad = p.clone();
        bad.lemma[1].0[0] ^= 1;
        assert_eq!(bad.validate(root, leaf, i, n), Err(ProofError::Invalid));
        // wrong root
        assert_eq!(p.validate(B256::ZERO, leaf, i, n), Err(ProofError::RootMismatch));
    }
    assert!(tree.segment_proof(n).is_err());
}

#[test]
fn proofs_on_odd_trees_skip_promoted_levels() {
    for n in 1..=19usize {
        let leaves: Vec<B256> = (0..n).map(|i| keccak256([i as u8])).collect();
        let t = MerkleTree::new(leaves.clone()).unwrap();
        assert_eq!(t.root(), naive_tree(leaves.clone()), "n={n}");
        for (i, leaf) in leaves.iter().enumerate() {
            let p = t.proof(i).unwrap();
            p.validate(t.root(), *leaf, i as u64, n as u64)
                .unwrap_or_else(|e| panic!("n={n} i={i}: {e}"));
        }
    }
    let single = MerkleTree::new(vec![B256::repeat_byte(7)])
        .unwrap()
        .proof(0)
        .unwrap();
    assert_eq!(single.lemma.len(), 1);
    assert!(single.path.is_empty());
    let bad = zg_storage::Proof {
        lemma: vec![B256::ZERO; 3],
        path: vec![true, false],
    };
    assert_eq!(
        bad.validate(B256::ZERO, B256::ZERO, 0, 4),
        Err(ProofError::WrongFormat { lemma: 3, path: 2 })
    );
}

fn fold_right(nodes: &[zg_storage::SubmissionNode]) -> B256 {
    let mut acc = nodes.last().unwrap().root;
    for n in nodes.iter().rev().skip(1) {
        acc = keccak256([n.root.as_slice(), acc.as_slice()].concat());
    }
    acc
}

#[test]
fn submission_nodes_fold_to_the_root() {
    let seg = 256 * 1024;
    for size in [
        1,
        300,
        17 * 256,
        1025 * 256,
        3 * seg + 5,
        17 * seg + 300 * 256,
        33 * seg + 1,
    ] {
        let data = pattern(size);
        let tree = MerkleBuilder::new().hash_bytes(&data).unwrap();
        let nodes = tree.submission_nodes();
        let sectors: u64 = nodes.iter().map(|n| 1u64 << n.height).sum();
        assert_eq!(sectors, tree.layout().padded_chunks(), "size {size}");
        assert!(
            nodes.windows(2).all(|w| w[0].height > w[1].height),
            "largest first, size {size}"
        );
        assert_eq!(fold_right(&nodes), tree.root(), "size {size}: {nodes:?}");
    }
}
