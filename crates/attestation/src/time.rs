//! Explicit verification time: every check takes a [`Timestamp`] instead of reading the clock.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Seconds since the Unix epoch (UTC). Verification always takes one explicitly, so tests can pin
/// it inside the validity window of expired fixtures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current wall-clock time (clamped to 0 before 1970). Only callers at the edge (CLI,
    /// provider) should use this; libraries pass time in.
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Timestamp(secs)
    }

    /// Parses RFC 3339 (`2025-06-20T00:00:00Z`, offsets allowed); rejects times before 1970.
    pub fn from_rfc3339(s: &str) -> Result<Self> {
        let dt = chrono::DateTime::parse_from_rfc3339(s.trim()).map_err(|e| Error::InvalidTime {
            input: s.to_owned(),
            reason: e.to_string(),
        })?;
        let secs = u64::try_from(dt.timestamp()).map_err(|_| Error::InvalidTime {
            input: s.to_owned(),
            reason: "before 1970".into(),
        })?;
        Ok(Timestamp(secs))
    }

    /// Unix seconds.
    pub fn as_secs(self) -> u64 {
        self.0
    }

    /// `self + secs`, saturating.
    pub fn plus(self, secs: u64) -> Self {
        Timestamp(self.0.saturating_add(secs))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, e.g. `2025-06-20T00:00:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match i64::try_from(self.0)
            .ok()
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        {
            Some(dt) => write!(f, "{}", dt.format("%Y-%m-%dT%H:%M:%SZ")),
            None => write!(f, "@{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::from_rfc3339("2025-06-20T00:00:00Z").unwrap();
        assert_eq!(t.as_secs(), 1_750_377_600);
        assert_eq!(t.to_string(), "2025-06-20T00:00:00Z");
        let off = Timestamp::from_rfc3339("2025-06-20T02:00:00+02:00").unwrap();
        assert_eq!(off, t);
        assert!(Timestamp::from_rfc3339("yesterday").is_err());
        assert!(Timestamp::from_rfc3339("1969-12-31T23:59:59Z").is_err());
    }
}
