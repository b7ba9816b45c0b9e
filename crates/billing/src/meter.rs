//! Metering: fees from the upstream's OpenAI `usage`, in neuron, never floats and never guesses.

use std::sync::atomic::{AtomicU64, Ordering};

use alloy_primitives::U256;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Token counts from an OpenAI-compatible `usage` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct Usage {
    /// `usage.prompt_tokens`.
    pub prompt_tokens: u64,
    /// `usage.completion_tokens` (0 for embeddings, which omit it).
    #[serde(default)]
    pub completion_tokens: u64,
}

/// A service's prices per token, in neuron (1e-18 0G), as registered on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prices {
    /// `Service.inputPrice`: per prompt token.
    pub input: U256,
    /// `Service.outputPrice`: per completion token.
    pub output: U256,
}

impl Prices {
    /// `prompt_tokens × input + completion_tokens × output`, checked.
    pub fn fee(&self, usage: &Usage) -> Result<U256> {
        let overflow = || Error::FeeOverflow {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            input_price: self.input,
            output_price: self.output,
        };
        let a = self
            .input
            .checked_mul(U256::from(usage.prompt_tokens))
            .ok_or_else(overflow)?;
        let b = self
            .output
            .checked_mul(U256::from(usage.completion_tokens))
            .ok_or_else(overflow)?;
        a.checked_add(b).ok_or_else(overflow)
    }
}

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<Usage>,
}

/// Extracts `usage` from a non-streaming OpenAI response body; `Ok(None)` when it is absent or null.
pub fn usage_from_json(body: &[u8]) -> Result<Option<Usage>> {
    serde_json::from_slice::<WithUsage>(body)
        .map(|w| w.usage)
        .map_err(|e| Error::UpstreamJson(e.to_string()))
}

/// Incremental scanner of an OpenAI SSE stream that keeps the `usage` chunk.
///
/// Feed it the bytes exactly as forwarded to the client; lines may be split across chunks.
#[derive(Debug, Default)]
pub struct StreamUsage {
    line: Vec<u8>,
    usage: Option<Usage>,
    malformed: u64,
}

impl StreamUsage {
    /// Feeds the next bytes of the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if b == b'\n' {
                let line = std::mem::take(&mut self.line);
                self.line_done(&line);
            } else if self.line.len() < 4 * 1024 * 1024 {
                self.line.push(b);
            }
        }
    }

    fn line_done(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.trim_ascii();
        if data.is_empty() || data == b"[DONE]" {
            return;
        }
        match serde_json::from_slice::<WithUsage>(data) {
            Ok(WithUsage { usage: Some(u) }) => self.usage = Some(u),
            Ok(_) => {}
            Err(_) => self.malformed = self.malformed.saturating_add(1),
        }
    }

    /// Ends the stream; returns the last usage seen.
    pub fn finish(mut self) -> Option<Usage> {
        let rest = std::mem::take(&mut self.line);
        self.line_done(&rest);
        self.usage
    }

    /// Number of `data:` lines that were not JSON.
    pub fn malformed_lines(&self) -> u64 {
        self.malformed
    }
}

/// Prices plus the counters a provider exports as metrics.
#[derive(Debug, Default)]
pub struct Meter {
    prices: Prices,
    billed: AtomicU64,
    unbilled: AtomicU64,
}

impl Meter {
    /// A meter for one service's prices.
    pub fn new(prices: Prices) -> Self {
        Self {
            prices,
            billed: AtomicU64::new(0),
            unbilled: AtomicU64::new(0),
        }
    }

    /// The prices.
    pub fn prices(&self) -> Prices {
        self.prices
    }

    /// The fee for a response's usage; `Ok(None)` (and the `unbilled` counter goes up) when the
    /// upstream reported no usage: such a request is not billed, and never estimated.
    pub fn charge(&self, usage: Option<Usage>) -> Result<Option<U256>> {
        match usage {
            Some(u) => {
                let fee = self.prices.fee(&u)?;
                self.billed.fetch_add(1, Ordering::Relaxed);
                Ok(Some(fee))
            }
            None => {
                self.unbilled.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("upstream returned no usage; request not billed");
                Ok(None)
            }
        }
    }

    /// Requests billed so far.
    pub fn billed(&self) -> u64 {
        self.billed.load(Ordering::Relaxed)
    }

    /// Requests served without usage (not billed).
    pub fn unbilled(&self) -> u64 {
        self.unbilled.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    #[test]
    fn fee_is_exact_and_overflow_is_an_error() {
        let p = Prices {
            input: U256::from(2_000_000_000u64),
            output: U256::from(5_000_000_000u64),
        };
        let u = Usage {
            prompt_tokens: 1234,
            completion_tokens: 567,
        };
        assert_eq!(
            p.fee(&u).unwrap(),
            U256::from(1234u64 * 2_000_000_000 + 567 * 5_000_000_000)
        );
        let huge = Prices {
            input: U256::MAX,
            output: U256::ZERO,
        };
        assert!(matches!(
            huge.fee(&u),
            Err(Error::FeeOverflow {
                prompt_tokens: 1234,
                ..
            })
        ));
        assert_eq!(huge.fee(&Usage::default()).unwrap(), U256::ZERO);
    }

    #[test]
    fn usage_extraction() {
        let body = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#;
        assert_eq!(
            usage_from_json(body).unwrap(),
            Some(Usage {
                prompt_tokens: 9,
                completion_tokens: 12
            })
        );
        assert_eq!(usage_from_json(br#"{"usage":null}"#).unwrap(), None);
        assert_eq!(usage_from_json(br#"{"id":"x"}"#).unwrap(), None);
        let emb = br#"{"data":[],"usage":{"prompt_tokens":5,"total_tokens":5}}"#;
        assert_eq!(
            usage_from_json(emb).unwrap(),
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 0
            })
        );
        assert!(matches!(
            usage_from_json(b"not json"),
            Err(Error::UpstreamJson(_))
        ));
        assert!(usage_from_json(br#"{"usage":{"prompt_tokens":-1}}"#).is_err());
    }

    #[test]
    fn stream_usage_across_chunk_boundaries() {
        let sse = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
                   data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\r\n\r\n\
                   data: [DONE]\n\n";
        for split in [1, 7, 50, sse.len()] {
            let mut s = StreamUsage::default();
            for c in sse.as_bytes().chunks(split) {
                s.push(c);
            }
            assert_eq!(s.malformed_lines(), 0);
            assert_eq!(
                s.finish(),
                Some(Usage {
                    prompt_tokens: 3,
                    completion_tokens: 4
                })
            );
        }
        let mut s = StreamUsage::default();
        s.push(b"data: {\"choices\":[]}\n\ndata: oops\n");
        assert_eq!(s.malformed_lines(), 1);
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn meter_counts_unbilled() {
        let m = Meter::new(Prices {
            input: U256::from(1),
            output: U256::from(2),
        });
        assert_eq!(
            m.charge(Some(Usage {
                prompt_tokens: 1,
                completion_tokens: 1
            }))
            .unwrap(),
            Some(U256::from(3))
        );
        assert_eq!(m.charge(None).unwrap(), None);
        assert_eq!((m.billed(), m.unbilled()), (1, 1));
    }
}
