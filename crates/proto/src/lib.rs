//! zg-proto
