//! 0G Storage client: Merkle roots and proofs identical to 0G's, local and 0G-node backends.
