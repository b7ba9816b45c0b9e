//! Amounts of 0G: parsing from what people type and formatting both ways (0G and neuron).

use crate::Error;
use alloy::primitives::U256;
use std::{fmt, str::FromStr};

/// Neuron per 0G (10^18), like wei per ether.
pub const NEURON_PER_ZG: u128 = 1_000_000_000_000_000_000;

/// An amount of the native token, held exactly in neuron (1 0G = 10^18 neuron).
///
/// Parses `1.5`, `1.5 0G`, `1.5 0g`, `1500000000000000000 neuron` and `1500000000000000000neuron`;
/// a plain number is 0G. Displays as 0G with trailing zeros trimmed (`1.5 0G`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(pub U256);

impl Amount {
    /// Zero.
    pub const ZERO: Self = Self(U256::ZERO);

    /// An amount in neuron.
    pub const fn from_neuron(neuron: U256) -> Self {
        Self(neuron)
    }

    /// Whole 0G.
    pub fn from_zg(zg: u64) -> Self {
        Self(U256::from(zg) * U256::from(NEURON_PER_ZG))
    }

    /// The amount in neuron.
    pub const fn neuron(self) -> U256 {
        self.0
    }

    /// Decimal 0G without unit, trailing zeros trimmed: `1.5`, `3`, `0.000000000000000001`.
    pub fn to_zg_string(self) -> String {
        let unit = U256::from(NEURON_PER_ZG);
        let whole = self.0 / unit;
        let frac = self.0 % unit;
        if frac.is_zero() {
            return whole.to_string();
        }
        let frac = format!("{:0>18}", frac.to_string());
        format!("{whole}.{}", frac.trim_end_matches('0'))
    }

    /// `"1.5 0G (1500000000000000000 neuron)"`: both units, for people.
    pub fn both(self) -> String {
        format!("{} 0G ({} neuron)", self.to_zg_string(), self.0)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} 0G", self.to_zg_string())
    }
}

/// Serialised as `{"zg": "1.5", "neuron": "1500000000000000000"}`: exact, and readable both ways.
impl serde::Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Amount", 2)?;
        st.serialize_field("zg", &self.to_zg_string())?;
        st.serialize_field("neuron", &self.0.to_string())?;
        st.end()
    }
}

impl From<U256> for Amount {
    fn from(v: U256) -> Self {
        Self(v)
    }
}

impl FromStr for Amount {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::InvalidAmount {
            input: input.to_owned(),
            reason: why.to_owned(),
        };
        let s = input.trim();
        let lower = s.to_ascii_lowercase();
        let (number, neuron) = if let Some(n) = lower.strip_suffix("neuron") {
            (n.trim(), true)
        } else if let Some(n) = lower.strip_suffix("0g") {
            (n.trim(), false)
        } else {
            (lower.as_str(), false)
        };
        if number.is_empty() {
            return Err(bad("no number"));
        }
        if number.starts_with('-') {
            return Err(bad("amounts cannot be negative"));
        }
        if neuron {
            if number.contains('.') {
                return Err(bad("neuron is the smallest unit: no fractions"));
            }
            return U256::from_str_radix(number, 10)
                .map(Self)
                .map_err(|_| bad("not a whole number"));
        }
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if frac.len() > 18 {
            return Err(bad("more than 18 decimal places (smaller than one neuron)"));
        }
        let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if !digits_ok(whole) || !digits_ok(frac) || (whole.is_empty() && frac.is_empty()) {
            return Err(bad(
                "expected a decimal number such as 1.5, or a value with a unit: 2 0G, 5 neuron",
            ));
        }
        let whole = if whole.is_empty() {
            U256::ZERO
        } else {
            U256::from_str_radix(whole, 10).map_err(|_| bad("too large"))?
        };
        let frac = if frac.is_empty() {
            U256::ZERO
        } else {
            U256::from_str_radix(&format!("{frac:0<18}"), 10).map_err(|_| bad("bad fraction"))?
        };
        whole
            .checked_mul(U256::from(NEURON_PER_ZG))
            .and_then(|w| w.checked_add(frac))
            .map(Self)
            .ok_or_else(|| bad("too large"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, neuron: &str) {
        let a: Amount = input.parse().unwrap();
        assert_eq!(a.neuron().to_string(), neuron, "{input}");
    }

    #[test]
    fn parses_zg_and_neuron() {
        check("1", "1000000000000000000");
        check("1.5", "1500000000000000000");
        check("1.5 0G", "1500000000000000000");
        check(".25", "250000000000000000");
        check("0.000000000000000001", "1");
        check("7 neuron", "7");
        check("7neuron", "7");
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "-1",
            "1.2.3",
            "abc",
            "1.0000000000000000001",
            "1.5 neuron",
            "0G",
        ] {
            assert!(bad.parse::<Amount>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn formats_trimmed() {
        assert_eq!(Amount::from_zg(3).to_string(), "3 0G");
        assert_eq!("1.50".parse::<Amount>().unwrap().to_zg_string(), "1.5");
        assert_eq!(Amount(U256::from(1)).both(), "0.000000000000000001 0G (1 neuron)");
    }
}
