//! 0G session tokens (`Authorization: Bearer app-sk-...`), byte-compatible with the official
//! `@0gfoundation/0g-compute-ts-sdk` 0.9.0 (DESIGN.md §8).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use alloy_primitives::{Address, B256, Signature, U256, keccak256};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sig::{EthSigner, parse_signature_hex, signature_hex};

/// The bearer prefix of 0G session tokens.
pub const SESSION_TOKEN_PREFIX: &str = "app-sk-";
/// Token id of ephemeral (default) tokens; ids 0–254 are long-lived API keys.
pub const EPHEMERAL_TOKEN_ID: u8 = 255;
/// Longest lifetime of an ephemeral token: 24 h, the SDK default.
pub const MAX_EPHEMERAL_LIFETIME_MS: u64 = 24 * 60 * 60 * 1000;
/// Default age limit of never-expiring tokens (`expiresAt = 0`, API keys): 90 days.
///
/// 0G's token format carries no chain id or contract address (its key order and fields are fixed by the SDK), so a
/// token is bound only to the provider address: the same token is valid on every deployment where that provider
/// address serves and the customer has an account. Ephemeral tokens live at most 24 h; API keys are revocable on
/// chain, per deployment, and a provider refuses those older than this policy, which bounds how long a leaked or
/// cross-deployment key can be replayed.
pub const DEFAULT_MAX_UNEXPIRING_AGE_MS: u64 = 90 * 24 * 60 * 60 * 1000;

/// The claims of a 0G session token, in the SDK's key order:
/// `address, provider, timestamp, expiresAt, nonce, generation, tokenId`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionClaims {
    /// The customer.
    pub address: Address,
    /// The provider as the caller spelled it (compared case-insensitively).
    pub provider: String,
    /// Issue time, ms since the Unix epoch.
    pub timestamp: u64,
    /// Expiry, ms since the Unix epoch; 0 = never (API keys only).
    pub expires_at: u64,
    /// Free-form nonce chosen by the SDK.
    pub nonce: String,
    /// Must equal the account's on-chain generation.
    pub generation: u64,
    /// 255 = ephemeral, 0–254 = API key slot.
    pub token_id: u8,
}

/// Serialisation twin of [`SessionClaims`]: the SDK writes a checksummed address.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClaimsOut<'a> {
    address: String,
    provider: &'a str,
    timestamp: u64,
    expires_at: u64,
    nonce: &'a str,
    generation: u64,
    token_id: u8,
}

/// On-chain token state of a (customer, provider) account: `getAccount(..).generation` and
/// `.revokedBitmap` (bit `tokenId` set = revoked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenState {
    /// `Account.generation`.
    pub generation: U256,
    /// `Account.revokedBitmap`.
    pub revoked_bitmap: U256,
}

/// A parsed session token whose signature has been checked against its `address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionToken {
    claims: SessionClaims,
    raw_json: Vec<u8>,
    signature: Signature,
}

impl SessionToken {
    /// Creates and signs a token the way the official SDK does; returns the token and the full
    /// header value `Bearer app-sk-...`.
    pub fn create(signer: &EthSigner, claims: &SessionClaims) -> Result<(Self, String)> {
        if claims.address != signer.address() {
            return Err(Error::Signing(format!(
                "claims name {} but the key is {}",
                claims.address,
                signer.address()
            )));
        }
        let out = ClaimsOut {
            address: claims.address.to_checksum(None),
            provider: &claims.provider,
            timestamp: claims.timestamp,
            expires_at: claims.expires_at,
            nonce: &claims.nonce,
            generation: claims.generation,
            token_id: claims.token_id,
        };
        let raw_json = serde_json::to_vec(&out).map_err(|e| Error::TokenJson(e.to_string()))?;
        let digest = keccak256(&raw_json);
        let signature = signer.sign_message(digest.as_slice())?;
        let mut body = raw_json.clone();
        body.push(b'|');
        body.extend_from_slice(signature_hex(&signature).as_bytes());
        let header = format!("Bearer {SESSION_TOKEN_PREFIX}{}", STANDARD.encode(&body));
        Ok((
            Self {
                claims: claims.clone(),
                raw_json,
                signature,
            },
            header,
        ))
    }

    /// Parses an `Authorization` header value (`Bearer app-sk-...`, or the bare `app-sk-...`)
    /// and checks the signature over the raw JSON bytes. Does not check time, provider or chain
    /// state: see [`SessionToken::check`].
    pub fn parse(authorization: &str) -> Result<Self> {
        let value = authorization.trim();
        let value = match value.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => {
                value.get(7..).unwrap_or("").trim_start()
            }
            _ => value,
        };
        let b64 = value
            .strip_prefix(SESSION_TOKEN_PREFIX)
            .ok_or(Error::TokenPrefix)?;
        let body = STANDARD
            .decode(b64)
            .map_err(|e| Error::TokenBase64(e.to_string()))?;
        // Split on the LAST `|`: the JSON may contain `|` inside strings, the hex signature never does.
        let bar = body
            .iter()
            .rposition(|&b| b == b'|')
            .ok_or(Error::TokenNoSeparator)?;
        let (raw_json, sig_part) = body.split_at(bar);
        let sig_text = sig_part.get(1..).unwrap_or_default();
        let sig_text = std::str::from_utf8(sig_text)
            .map_err(|_| Error::SignatureFormat("signature is not UTF-8".to_owned()))?;
        let signature = parse_signature_hex(sig_text)?;
        let claims: SessionClaims =
            serde_json::from_slice(raw_json).map_err(|e| Error::TokenJson(e.to_string()))?;
        let token = Self {
            claims,
            raw_json: raw_json.to_vec(),
            signature,
        };
        token.check_signature()?;
        Ok(token)
    }

    fn check_signature(&self) -> Result<()> {
        let digest = self.digest();
        let recovered = self
            .signature
            .recover_address_from_msg(digest.as_slice())
            .map_err(|_| Error::BadSignature {
                claimed: self.claims.address,
                recovered: None,
            })?;
        if recovered != self.claims.address {
            return Err(Error::BadSignature {
                claimed: self.claims.address,
                recovered: Some(recovered),
            });
        }
        Ok(())
    }

    /// keccak256 of the raw JSON bytes: the 32 bytes that are `personal_sign`ed.
    pub fn digest(&self) -> B256 {
        keccak256(&self.raw_json)
    }

    /// The claims.
    pub fn claims(&self) -> &SessionClaims {
        &self.claims
    }

    /// The customer's address (already proven by the signature).
    pub fn user(&self) -> Address {
        self.claims.address
    }

    /// The raw JSON exactly as signed.
    pub fn raw_json(&self) -> &[u8] {
        &self.raw_json
    }

    /// Checks the stateless rules: provider match (case-insensitive), not future-dated beyond
    /// `max_skew_ms`, not expired, and the ephemeral-token lifetime (≤ 24 h, expiry required).
    pub fn check_time_and_provider(&self, provider: Address, now_ms: u64, max_skew_ms: u64) -> Result<()> {
        let c = &self.claims;
        let matches = c
            .provider
            .parse::<Address>()
            .map(|p| p == provider)
            .unwrap_or(false);
        if !matches {
            return Err(Error::TokenWrongProvider {
                token_provider: c.provider.clone(),
                expected: provider,
            });
        }
        if c.timestamp > now_ms.saturating_add(max_skew_ms) {
            return Err(Error::TokenFutureDated {
                timestamp_ms: c.timestamp,
                now_ms,
            });
        }
        if c.token_id == EPHEMERAL_TOKEN_ID {
            let lifetime = (c.expires_at != 0).then(|| c.expires_at.saturating_sub(c.timestamp));
            match lifetime {
                Some(l) if l <= MAX_EPHEMERAL_LIFETIME_MS && c.expires_at > c.timestamp => {}
                _ => {
                    return Err(Error::TokenLifetime {
                        lifetime_ms: lifetime,
                    });
                }
            }
        }
        if c.expires_at != 0 && now_ms >= c.expires_at {
            return Err(Error::TokenExpired {
                expires_at_ms: c.expires_at,
                now_ms,
            });
        }
        Ok(())
    }

    /// Refuses a never-expiring token (`expiresAt = 0`) issued more than `max_age_ms` before `now_ms`
    /// (see [`DEFAULT_MAX_UNEXPIRING_AGE_MS`] for why).
    pub fn check_unexpiring_age(&self, now_ms: u64, max_age_ms: u64) -> Result<()> {
        let c = &self.claims;
        if c.expires_at == 0 && now_ms.saturating_sub(c.timestamp) > max_age_ms {
            return Err(Error::TokenTooOld {
                timestamp_ms: c.timestamp,
                max_age_ms,
                now_ms,
            });
        }
        Ok(())
    }

    /// Checks generation and revocation against the account's on-chain state.
    pub fn check_chain_state(&self, state: &TokenState) -> Result<()> {
        if U256::from(self.claims.generation) != state.generation {
            return Err(Error::TokenWrongGeneration {
                token: self.claims.generation,
                chain: state.generation,
            });
        }
        if state.revoked_bitmap.bit(usize::from(self.claims.token_id)) {
            return Err(Error::TokenRevoked {
                token_id: self.claims.token_id,
            });
        }
        Ok(())
    }
}

/// Verifies session tokens for one provider, caching each token's signature check.
///
/// A token is reused for every request of a session, so the (costly) signature recovery is done once
/// per distinct header value; time, provider, generation and revocation are checked on every call.
#[derive(Debug)]
pub struct SessionVerifier {
    provider: Address,
    max_skew_ms: u64,
    max_unexpiring_age_ms: u64,
    capacity: usize,
    cache: Mutex<HashMap<Box<str>, Arc<SessionToken>>>,
}

impl SessionVerifier {
    /// A verifier for `provider` allowing `max_skew_ms` of client clock skew (60 000 is sensible).
    pub fn new(provider: Address, max_skew_ms: u64) -> Self {
        Self {
            provider,
            max_skew_ms,
            max_unexpiring_age_ms: DEFAULT_MAX_UNEXPIRING_AGE_MS,
            capacity: 100_000,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Sets the age limit of never-expiring tokens (default [`DEFAULT_MAX_UNEXPIRING_AGE_MS`]).
    pub fn with_max_unexpiring_age(mut self, max_age_ms: u64) -> Self {
        self.max_unexpiring_age_ms = max_age_ms;
        self
    }

    /// The checks that need no chain state: provider, time, ephemeral lifetime and the age of never-expiring
    /// tokens. A provider runs them before it reads the customer's account, so stale or foreign tokens cost no
    /// chain call.
    pub fn check_stateless(&self, token: &SessionToken, now_ms: u64) -> Result<()> {
        token.check_time_and_provider(self.provider, now_ms, self.max_skew_ms)?;
        token.check_unexpiring_age(now_ms, self.max_unexpiring_age_ms)
    }

    /// The provider this verifier accepts tokens for.
    pub fn provider(&self) -> Address {
        self.provider
    }

    /// Authenticates an `Authorization` header at `now_ms`, with the account's on-chain token state
    /// looked up by the token's user (`None` = unknown account).
    pub fn verify(
        &self,
        authorization: &str,
        now_ms: u64,
        state: impl FnOnce(Address) -> Option<TokenState>,
    ) -> Result<Arc<SessionToken>> {
        let (token, cached) = self.lookup_or_parse(authorization)?;
        self.accept(authorization, token, cached, now_ms, state)
    }

    /// Finishes [`SessionVerifier::verify`] for a token [`SessionVerifier::lookup_or_parse`] returned (a provider
    /// reads the account from the chain in between): the stateless rules and the on-chain state, then the token is
    /// cached unless it came from the cache (`cached`). Only tokens that passed everything are cached, so keys
    /// without an account (anyone can make one) cannot fill the cache.
    pub fn accept(
        &self,
        authorization: &str,
        token: Arc<SessionToken>,
        cached: bool,
        now_ms: u64,
        state: impl FnOnce(Address) -> Option<TokenState>,
    ) -> Result<Arc<SessionToken>> {
        self.check_stateless(&token, now_ms)?;
        let user = token.user();
        let st = state(user).ok_or(Error::UnknownAccount { user })?;
        token.check_chain_state(&st)?;
        if !cached && let Ok(mut c) = self.cache.lock() {
            if c.len() >= self.capacity {
                c.clear();
            }
            c.insert(authorization.into(), Arc::clone(&token));
        }
        Ok(token)
    }

    /// Number of tokens remembered (each passed every check once).
    pub fn cached_tokens(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Parses and signature-checks a header, or finds it among the tokens already accepted.
    pub fn authenticate(&self, authorization: &str) -> Result<Arc<SessionToken>> {
        self.lookup_or_parse(authorization).map(|(t, _)| t)
    }

    /// [`SessionVerifier::authenticate`], also telling whether the token came from the cache (pass that to
    /// [`SessionVerifier::accept`]).
    pub fn lookup_or_parse(&self, authorization: &str) -> Result<(Arc<SessionToken>, bool)> {
        if let Some(t) = self.cache.lock().ok().and_then(|c| c.get(authorization).cloned()) {
            return Ok((t, true));
        }
        Ok((Arc::new(SessionToken::parse(authorization)?), false))
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

    /// anvil's account #1.
    pub(crate) const USER_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    const PROVIDER: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

    fn claims(user: Address) -> SessionClaims {
        SessionClaims {
            address: user,
            provider: PROVIDER.to_lowercase(),
            timestamp: 1_700_000_000_000,
            expires_at: 1_700_000_000_000 + MAX_EPHEMERAL_LIFETIME_MS,
            nonce: "n-1".into(),
            generation: 0,
            token_id: 255,
        }
    }

    fn provider() -> Address {
        PROVIDER.parse().unwrap()
    }

    #[test]
    fn create_parse_round_trip_keeps_raw_bytes_and_key_order() {
        let s = EthSigner::from_hex(USER_KEY).unwrap();
        let (tok, header) = SessionToken::create(&s, &claims(s.address())).unwrap();
        let json = String::from_utf8(tok.raw_json().to_vec()).unwrap();
        assert_eq!(
            json,
            format!(
                "{{\"address\":\"{}\",\"provider\":\"{}\",\"timestamp\":1700000000000,\"expiresAt\":1700086400000,\"nonce\":\"n-1\",\"generation\":0,\"tokenId\":255}}",
                s.address().to_checksum(None),
                PROVIDER.to_lowercase()
            )
        );
        let parsed = SessionToken::parse(&header).unwrap();
        assert_eq!(parsed, tok);
        parsed
            .check_time_and_provider(provider(), 1_700_000_000_001, 0)
            .unwrap();
    }

    #[test]
    fn each_bad_token_has_its_own_error() {
        let s = EthSigner::from_hex(USER_KEY).unwrap();
        let now = 1_700_000_000_001;
        let (_, header) = SessionToken::create(&s, &claims(s.address())).unwrap();
        assert!(matches!(
            SessionToken::parse("Bearer sk-abc"),
            Err(Error::TokenPrefix)
        ));
        assert!(matches!(
            SessionToken::parse("Bearer app-sk-!!!"),
            Err(Error::TokenBase64(_))
        ));
        let nobar = format!("app-sk-{}", STANDARD.encode(b"{}"));
        assert!(matches!(
            SessionToken::parse(&nobar),
            Err(Error::TokenNoSeparator)
        ));
        let sig = signature_hex(&s.sign_message(b"x").unwrap());
        let badjson = format!("app-sk-{}", STANDARD.encode(format!("{{\"address\":1}}|{sig}")));
        assert!(matches!(SessionToken::parse(&badjson), Err(Error::TokenJson(_))));
        let badsig = format!("app-sk-{}", STANDARD.encode(b"{}|0x12"));
        assert!(matches!(
            SessionToken::parse(&badsig),
            Err(Error::SignatureFormat(_))
        ));

        // Tamper with one byte of the JSON (timestamp digit): the signature no longer matches.
        let body = STANDARD
            .decode(header.strip_prefix("Bearer app-sk-").unwrap())
            .unwrap();
        let mut tampered = body.clone();
        let pos = tampered.windows(4).position(|w| w == b"1700").unwrap();
        tampered[pos] = b'2';
        let t = format!("app-sk-{}", STANDARD.encode(&tampered));
        assert!(matches!(SessionToken::parse(&t), Err(Error::BadSignature { .. })));

        let tok = SessionToken::parse(&header).unwrap();
        let other: Address = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC".parse().unwrap();
        assert!(matches!(
            tok.check_time_and_provider(other, now, 0),
            Err(Error::TokenWrongProvider { .. })
        ));
        assert!(matches!(
            tok.check_time_and_provider(provider(), 1_700_000_000_000 + MAX_EPHEMERAL_LIFETIME_MS, 0),
            Err(Error::TokenExpired { .. })
        ));
        assert!(matches!(
            tok.check_time_and_provider(provider(), 1_600_000_000_000, 1000),
            Err(Error::TokenFutureDated { .. })
        ));

        let mut long = claims(s.address());
        long.expires_at += 1;
        let (t, _) = SessionToken::create(&s, &long).unwrap();
        assert!(matches!(
            t.check_time_and_provider(provider(), now, 0),
            Err(Error::TokenLifetime { .. })
        ));
        let mut never = claims(s.address());
        never.expires_at = 0;
        let (t, _) = SessionToken::create(&s, &never).unwrap();
        assert!(matches!(
            t.check_time_and_provider(provider(), now, 0),
            Err(Error::TokenLifetime { lifetime_ms: None })
        ));
        never.token_id = 3; // API keys may never expire, within the age policy
        let (old, _) = SessionToken::create(&s, &never).unwrap();
        old.check_unexpiring_age(now, now - never.timestamp).unwrap();
        assert!(matches!(
            old.check_unexpiring_age(now, now - never.timestamp - 1),
            Err(Error::TokenTooOld { .. })
        ));
        let v = SessionVerifier::new(provider(), 0).with_max_unexpiring_age(0);
        assert!(matches!(
            v.check_stateless(&old, now),
            Err(Error::TokenTooOld { .. })
        ));
        let (t, _) = SessionToken::create(&s, &never).unwrap();
        t.check_time_and_provider(provider(), u64::MAX, 0).unwrap();

        let st = TokenState {
            generation: U256::from(1),
            revoked_bitmap: U256::ZERO,
        };
        assert!(matches!(
            tok.check_chain_state(&st),
            Err(Error::TokenWrongGeneration { .. })
        ));
        let st = TokenState {
            generation: U256::ZERO,
            revoked_bitmap: U256::from(1) << 255,
        };
        assert!(matches!(
            tok.check_chain_state(&st),
            Err(Error::TokenRevoked { token_id: 255 })
        ));
        let st = TokenState {
            generation: U256::ZERO,
            revoked_bitmap: U256::from(1) << 254,
        };
        tok.check_chain_state(&st).unwrap();
    }

    #[test]
    fn json_with_bar_inside_splits_on_last_bar_and_duplicates_are_rejected() {
        let s = EthSigner::from_hex(USER_KEY).unwrap();
        let mut c = claims(s.address());
        c.nonce = "a|b|c".into();
        let (tok, header) = SessionToken::create(&s, &c).unwrap();
        assert_eq!(SessionToken::parse(&header).unwrap().claims().nonce, "a|b|c");
        assert_eq!(tok.claims().nonce, "a|b|c");
        // A duplicated key would make the JSON ambiguous; serde rejects it.
        let json = format!(
            "{{\"address\":\"{}\",\"address\":\"{}\",\"provider\":\"x\",\"timestamp\":1,\"expiresAt\":2,\"nonce\":\"\",\"generation\":0,\"tokenId\":1}}",
            s.address(),
            s.address()
        );
        let sig = signature_hex(&s.sign_message(keccak256(json.as_bytes()).as_slice()).unwrap());
        let t = format!("app-sk-{}", STANDARD.encode(format!("{json}|{sig}")));
        assert!(matches!(SessionToken::parse(&t), Err(Error::TokenJson(_))));
    }

    /// Made by ethers 6 exactly as SDK 0.9.0 does (`JSON.stringify` in key order, then
    /// `wallet.signMessage(getBytes(keccak256(toUtf8Bytes(json))))`), anvil key #1.
    pub(crate) const SDK_TOKEN: &str = "app-sk-eyJhZGRyZXNzIjoiMHg3MDk5Nzk3MEM1MTgxMmRjM0EwMTBDN2QwMWI1MGUwZDE3ZGM3OUM4IiwicHJvdmlkZXIiOiIweDNjNDRjZGRkYjZhOTAwZmEyYjU4NWRkMjk5ZTAzZDEyZmE0MjkzYmMiLCJ0aW1lc3RhbXAiOjE3MDAwMDAwMDAwMDAsImV4cGlyZXNBdCI6MTcwMDA4NjQwMDAwMCwibm9uY2UiOiIwMTIzNDU2Nzg5YWJjZGVmIiwiZ2VuZXJhdGlvbiI6MCwidG9rZW5JZCI6MjU1fXwweGY1MThhNGEyMGYyNDkzM2M1OTk1MzIwNGQ1Njk2NDUwZmU0YTk1YzAzN2FjZTIwNzBhMDA3ODYxZTk1OWZlMjc1NWE1ZmQzODlhNzM2OThjNDJkZjdjZTgyMzljOTQyNWQ3YzUxMWMwZGVmMzJmYzZmZmJlMmQ5NjhjNjcyNDNhMWM=";

    #[test]
    fn sdk_vector_parses_and_we_produce_it_byte_for_byte() {
        let tok = SessionToken::parse(&format!("Bearer {SDK_TOKEN}")).unwrap();
        let s = EthSigner::from_hex(USER_KEY).unwrap();
        assert_eq!(tok.user(), s.address());
        assert_eq!(tok.claims().nonce, "0123456789abcdef");
        let p3: Address = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC".parse().unwrap();
        tok.check_time_and_provider(p3, 1_700_000_000_000, 0).unwrap();
        let (_, header) = SessionToken::create(&s, tok.claims()).unwrap();
        assert_eq!(header, format!("Bearer {SDK_TOKEN}"));
    }

    #[test]
    fn verifier_caches_signature_but_rechecks_time_and_state() {
        let s = EthSigner::from_hex(USER_KEY).unwrap();
        let (_, header) = SessionToken::create(&s, &claims(s.address())).unwrap();
        let v = SessionVerifier::new(provider(), 0);
        let ok = |_| Some(TokenState::default());
        v.verify(&header, 1_700_000_000_001, ok).unwrap();
        v.verify(&header, 1_700_000_000_002, ok).unwrap();
        assert!(matches!(
            v.verify(&header, u64::MAX, ok),
            Err(Error::TokenExpired { .. })
        ));
        assert!(matches!(
            v.verify(&header, 1_700_000_000_002, |_| None),
            Err(Error::UnknownAccount { .. })
        ));
        assert_eq!(v.cached_tokens(), 1);
    }

    /// Anyone can sign a token with a fresh key: only tokens whose account is known are remembered.
    #[test]
    fn tokens_of_unknown_accounts_are_not_cached() {
        let v = SessionVerifier::new(provider(), 0);
        for _ in 0..10 {
            let s = EthSigner::random();
            let (_, header) = SessionToken::create(&s, &claims(s.address())).unwrap();
            assert!(v.verify(&header, 1_700_000_000_001, |_| None).is_err());
        }
        assert_eq!(v.cached_tokens(), 0);
    }
}
