//! Amounts in JSON: 256-bit integers as decimal strings (JSON numbers cannot hold them; hex is unreadable).

use alloy_primitives::U256;

/// Serialises an amount as a decimal string (`#[serde(serialize_with = "crate::dec::ser_dec")]`).
pub(crate) fn ser_dec<S: serde::Serializer>(v: &U256, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}
