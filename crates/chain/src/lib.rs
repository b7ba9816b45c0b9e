//! zg-chain
