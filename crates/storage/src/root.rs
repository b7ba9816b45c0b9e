//! Parsing roots given as text.

use crate::error::{Error, Result};
use alloy_primitives::B256;

/// Parses a root written as `0x` + 64 hex digits (the `0x` is optional; case is ignored).
///
/// ```
/// let r = zg_storage::parse_root("0x200e594efa2ab0b924e60f9bb9445f75b8d058f0de13b35a83c71d494b0a15ca")?;
/// assert_eq!(r.0[0], 0x20);
/// assert!(zg_storage::parse_root("0x1234").is_err());
/// # Ok::<(), zg_storage::Error>(())
/// ```
pub fn parse_root(input: &str) -> Result<B256> {
    let s = input.trim();
    let hex_part = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    let bad = |reason| Error::InvalidRoot {
        input: input.chars().take(80).collect(),
        reason,
    };
    if hex_part.len() != 64 {
        return Err(bad("wrong length"));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| bad("not hexadecimal"))?;
    Ok(B256::from(out))
}
