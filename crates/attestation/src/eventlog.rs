//! Event logs and RTMR replay: the TDX boot log (ACPI CCEL table + TCG2 crypto-agile log, RTMR0-2)
//! and dstack-style JSON runtime logs (RTMR3, with named application events).
//!
//! Replay: every register starts at 48 zero bytes and each event extends it as
//! `rtmr = sha384(rtmr || digest)`. A dstack runtime event (type [`DSTACK_RUNTIME_EVENT_TYPE`]) has
//! `digest = sha384(le32(event_type) || ":" || event || ":" || payload)` (dstack `cc-eventlog`).

use crate::quote::Measurement;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha384};

/// Event type dstack uses for runtime (RTMR3) events.
pub const DSTACK_RUNTIME_EVENT_TYPE: u32 = 0x0800_0001;
/// TCG EV_NO_ACTION: informational, never extended.
const EV_NO_ACTION: u32 = 0x0000_0003;
/// TCG algorithm id of SHA-384.
const TPM_ALG_SHA384: u16 = 0x000C;
/// Upper bound on events accepted from one log (bounds memory and CPU on hostile input).
pub const MAX_EVENTS: usize = 65_536;

/// Extends a register: `sha384(rtmr || digest)`.
pub fn extend(rtmr: &Measurement, digest: &Measurement) -> Measurement {
    let mut h = Sha384::new();
    h.update(rtmr);
    h.update(digest);
    h.finalize().into()
}

/// The digest of a dstack runtime event: `sha384(le32(type) ":" event ":" payload)`.
pub fn runtime_event_digest(event_type: u32, event: &str, payload: &[u8]) -> Measurement {
    let mut h = Sha384::new();
    h.update(event_type.to_le_bytes());
    h.update(b":");
    h.update(event.as_bytes());
    h.update(b":");
    h.update(payload);
    h.finalize().into()
}

/// One event of a TDX event log, from either source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdxEvent {
    /// Register index: 0..=3 for RTMR0..RTMR3.
    pub imr: u32,
    /// TCG or dstack event type.
    pub event_type: u32,
    /// SHA-384 digest that was extended.
    #[serde(with = "hex48")]
    pub digest: Measurement,
    /// Event name (dstack runtime events), empty for boot events.
    pub event: String,
    /// Event data (for runtime events, the bytes the digest commits to).
    #[serde(with = "hexvec")]
    pub payload: Vec<u8>,
}

/// Outcome of checking one runtime event's digest against its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DigestCheck {
    /// The supplied digest equals the recomputed one.
    Matches,
    /// The log left the digest empty; it was recomputed from the payload.
    Recomputed,
    /// A boot event: its digest covers data the log does not carry, so it is taken as given.
    NotCheckable,
}

/// A parsed event log, ready to replay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLog {
    /// Events in log order.
    pub events: Vec<TdxEvent>,
    /// Per event, how its digest was established.
    pub digest_checks: Vec<DigestCheck>,
}

#[derive(Deserialize)]
struct JsonEvent<'a> {
    imr: u32,
    event_type: u32,
    #[serde(default, borrow)]
    digest: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    event: std::borrow::Cow<'a, str>,
    #[serde(default, borrow, alias = "payload")]
    event_payload: std::borrow::Cow<'a, str>,
}

impl EventLog {
    /// Parses a dstack-style JSON log: an array of `{imr, event_type, digest, event, event_payload}`
    /// (hex digest and payload), or a JSON string that contains such an array. Runtime events'
    /// digests are recomputed and must equal the supplied one when present.
    pub fn from_dstack_json(json: &str) -> Result<Self> {
        let bad = |index: Option<usize>, reason: String| Error::MalformedEventLog { index, reason };
        let trimmed = json.trim();
        // A JSON string holding the array (dstack's `event_log` field) is unwrapped first.
        let unwrapped;
        let array_text = if trimmed.starts_with('"') {
            unwrapped = serde_json::from_str::<String>(trimmed)
                .map_err(|e| bad(None, format!("not a JSON string: {e}")))?;
            unwrapped.as_str()
        } else {
            trimmed
        };
        let raw: Vec<JsonEvent<'_>> =
            serde_json::from_str(array_text).map_err(|e| bad(None, format!("not an event array: {e}")))?;
        if raw.len() > MAX_EVENTS {
            return Err(bad(
                None,
                format!("{} events, at most {MAX_EVENTS} accepted", raw.len()),
            ));
        }
        let mut log = EventLog::default();
        for (i, e) in raw.into_iter().enumerate() {
            if e.imr > 3 {
                return Err(bad(Some(i), format!("imr {} out of range 0..=3", e.imr)));
            }
            let payload = hex::decode(e.event_payload.trim_start_matches("0x"))
                .map_err(|err| bad(Some(i), format!("event_payload is not hex: {err}")))?;
            let supplied =
                if e.digest.is_empty() {
                    None
                } else {
                    let bytes = hex::decode(e.digest.trim_start_matches("0x"))
                        .map_err(|err| bad(Some(i), format!("digest is not hex: {err}")))?;
                    Some(<Measurement>::try_from(bytes.as_slice()).map_err(|_| {
                        bad(Some(i), format!("digest is {} bytes, SHA-384 is 48", bytes.len()))
                    })?)
                };
            let (digest, check) = if e.event_type == DSTACK_RUNTIME_EVENT_TYPE {
                let computed = runtime_event_digest(e.event_type, &e.event, &payload);
                match supplied {
                    Some(d) if d != computed => {
                        return Err(bad(
                            Some(i),
                            format!(
                                "digest of runtime event {:?} does not match its payload: log says {}, payload hashes to {}",
                                e.event,
                                hex::encode(d),
                                hex::encode(computed)
                            ),
                        ));
                    }
                    Some(_) => (computed, DigestCheck::Matches),
                    None => (computed, DigestCheck::Recomputed),
                }
            } else {
                let d = supplied.ok_or_else(|| bad(Some(i), "boot event without a digest".into()))?;
                (d, DigestCheck::NotCheckable)
            };
            log.events.push(TdxEvent {
                imr: e.imr,
                event_type: e.event_type,
                digest,
                event: e.event.into_owned(),
                payload,
            });
            log.digest_checks.push(check);
        }
        Ok(log)
    }

    /// Parses the boot log from an ACPI CCEL table and the log area it points to (the contents of
    /// `/sys/firmware/acpi/tables/CCEL` and `/sys/firmware/acpi/tables/data/CCEL`).
    pub fn from_ccel(table: &[u8], data: &[u8]) -> Result<Self> {
        let table = CcelTable::parse(table)?;
        let len = usize::try_from(table.laml).unwrap_or(usize::MAX).min(data.len());
        Self::from_tcg2(data.get(..len).unwrap_or(data))
    }

    /// Parses a TCG2 crypto-agile event log with SHA-384 digests (TDX: MR index 1..=4 = RTMR0..3;
    /// index 0 = MRTD events are kept out of the replay). Stops at the 0xFF fill after the last event.
    pub fn from_tcg2(data: &[u8]) -> Result<Self> {
        let mut r = Reader { data, pos: 0 };
        // First event: legacy TCG_PCR_EVENT carrying the "Spec ID Event03" header.
        let _pcr = r.u32(None)?;
        let ty = r.u32(None)?;
        r.take(20, None)?;
        let size = r.u32(None)? as usize;
        let spec = r.take(size, None)?;
        if ty != EV_NO_ACTION || !spec.starts_with(b"Spec ID Event03") {
            return Err(Error::MalformedEventLog {
                index: Some(0),
                reason: "first event is not Spec ID Event03".into(),
            });
        }
        let digest_sizes = parse_spec_id(spec)?;
        let mut log = EventLog::default();
        let mut index = 0usize;
        while r.remaining() >= 8 {
            index = index.saturating_add(1);
            let at = Some(index);
            let mr = r.u32(at)?;
            let ty = r.u32(at)?;
            if mr == u32::MAX || (mr == 0 && ty == 0) {
                break; // 0xFF fill or zeroed tail: end of log
            }
            if log.events.len() >= MAX_EVENTS {
                return Err(Error::MalformedEventLog {
                    index: at,
                    reason: format!("more than {MAX_EVENTS} events"),
                });
            }
            let count = r.u32(at)?;
            let mut sha384 = None;
            for _ in 0..count {
                let alg = r.u16(at)?;
                let sz = digest_sizes
                    .iter()
                    .find(|(a, _)| *a == alg)
                    .map(|(_, s)| *s as usize)
                    .ok_or_else(|| Error::MalformedEventLog {
                        index: at,
                        reason: format!("unknown digest algorithm {alg:#06x}"),
                    })?;
                let d = r.take(sz, at)?;
                if alg == TPM_ALG_SHA384 {
                    sha384 = Some(<Measurement>::try_from(d).map_err(|_| Error::MalformedEventLog {
                        index: at,
                        reason: "SHA-384 digest is not 48 bytes".into(),
                    })?);
                }
            }
            let size = r.u32(at)? as usize;
            let payload = r.take(size, at)?.to_vec();
            if ty == EV_NO_ACTION || mr == 0 || mr > 4 {
                continue;
            }
            let digest = sha384.ok_or_else(|| Error::MalformedEventLog {
                index: at,
                reason: "no SHA-384 digest".into(),
            })?;
            log.events.push(TdxEvent {
                imr: mr.saturating_sub(1),
                event_type: ty,
                digest,
                event: String::new(),
                payload,
            });
            log.digest_checks.push(DigestCheck::NotCheckable);
        }
        Ok(log)
    }

    /// Appends a runtime (RTMR3) event, computing its digest. Used by evidence producers.
    pub fn push_runtime(&mut self, event: &str, payload: &[u8]) -> Measurement {
        let digest = runtime_event_digest(DSTACK_RUNTIME_EVENT_TYPE, event, payload);
        self.events.push(TdxEvent {
            imr: 3,
            event_type: DSTACK_RUNTIME_EVENT_TYPE,
            digest,
            event: event.to_owned(),
            payload: payload.to_vec(),
        });
        self.digest_checks.push(DigestCheck::Matches);
        digest
    }

    /// Serialises as a dstack JSON log (what [`EventLog::from_dstack_json`] reads).
    pub fn to_dstack_json(&self) -> String {
        let items: Vec<serde_json::Value> = self
            .events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "imr": e.imr,
                    "event_type": e.event_type,
                    "digest": hex::encode(e.digest),
                    "event": e.event,
                    "event_payload": hex::encode(&e.payload),
                })
            })
            .collect();
        serde_json::Value::Array(items).to_string()
    }

    /// Replays all events: RTMR0..RTMR3, each from 48 zero bytes.
    pub fn replay(&self) -> [Measurement; 4] {
        let mut regs = [[0u8; 48]; 4];
        for e in &self.events {
            if let Some(r) = regs.get_mut(e.imr as usize) {
                *r = extend(r, &e.digest);
            }
        }
        regs
    }

    /// How many events extend each register.
    pub fn counts(&self) -> [usize; 4] {
        let mut c = [0usize; 4];
        for e in &self.events {
            if let Some(n) = c.get_mut(e.imr as usize) {
                *n = n.saturating_add(1);
            }
        }
        c
    }

    /// The named application events (RTMR3) as typed values.
    pub fn app_info(&self) -> AppInfo {
        let mut info = AppInfo::default();
        for e in self
            .events
            .iter()
            .filter(|e| e.imr == 3 && e.event_type == DSTACK_RUNTIME_EVENT_TYPE)
        {
            let p = &e.payload;
            match e.event.as_str() {
                "compose-hash" => info.compose_hash = Some(hex::encode(p)),
                "app-id" => info.app_id = Some(hex::encode(p)),
                "instance-id" => info.instance_id = Some(hex::encode(p)),
                "os-image-hash" => info.os_image_hash = Some(hex::encode(p)),
                "key-provider" => info.key_provider = serde_json::from_slice(p).ok(),
                "storage-fs" => info.storage_fs = Some(String::from_utf8_lossy(p).into_owned()),
                "system-preparing" | "boot-mr-done" | "system-ready" => info.markers.push(e.event.clone()),
                _ => info.other.push(NamedEvent {
                    name: e.event.clone(),
                    payload: String::from_utf8_lossy(p).into_owned(),
                }),
            }
        }
        info
    }
}

/// The ACPI CCEL table (Confidential Computing Event Log, ACPI 6.5 §5.2.34).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CcelTable {
    /// CC type (2 = Intel TDX).
    pub cc_type: u8,
    /// CC subtype.
    pub cc_subtype: u8,
    /// Log area minimum length.
    pub laml: u64,
    /// Log area start address.
    pub lasa: u64,
}

impl CcelTable {
    /// Parses the 56-byte table; checks the signature and the TDX CC type.
    pub fn parse(table: &[u8]) -> Result<Self> {
        let bad = |reason: String| Error::MalformedEventLog {
            index: None,
            reason: format!("CCEL table: {reason}"),
        };
        if table.len() < 56 {
            return Err(bad(format!("{} bytes, 56 expected", table.len())));
        }
        if table.get(..4) != Some(b"CCEL".as_slice()) {
            return Err(bad("signature is not \"CCEL\"".into()));
        }
        let mut r = Reader { data: table, pos: 36 };
        let cc_type = r.u8(None)?;
        let cc_subtype = r.u8(None)?;
        r.take(2, None)?;
        let laml = r.u64(None)?;
        let lasa = r.u64(None)?;
        if cc_type != 2 {
            return Err(bad(format!("CC type {cc_type} is not TDX (2)")));
        }
        Ok(CcelTable {
            cc_type,
            cc_subtype,
            laml,
            lasa,
        })
    }
}

fn parse_spec_id(spec: &[u8]) -> Result<Vec<(u16, u16)>> {
    let mut r = Reader {
        data: spec,
        pos: 16 + 4 + 4,
    };
    let n = r.u32(Some(0))?;
    if n == 0 || n > 16 {
        return Err(Error::MalformedEventLog {
            index: Some(0),
            reason: format!("{n} digest algorithms"),
        });
    }
    let mut out = Vec::new();
    for _ in 0..n {
        out.push((r.u16(Some(0))?, r.u16(Some(0))?));
    }
    Ok(out)
}

/// Named application events from RTMR3 (dstack conventions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    /// sha256 of the app's docker-compose / app-compose document (hex).
    pub compose_hash: Option<String>,
    /// dstack app id (hex).
    pub app_id: Option<String>,
    /// dstack instance id (hex).
    pub instance_id: Option<String>,
    /// OS image hash (hex), newer dstack.
    pub os_image_hash: Option<String>,
    /// Key provider descriptor (`{"name": ..., "id": ...}`).
    pub key_provider: Option<serde_json::Value>,
    /// Storage filesystem.
    pub storage_fs: Option<String>,
    /// Boot-progress markers seen (system-preparing, boot-mr-done, system-ready).
    pub markers: Vec<String>,
    /// Every other (app-emitted) event.
    pub other: Vec<NamedEvent>,
}

/// An application-defined runtime event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedEvent {
    /// Event name.
    pub name: String,
    /// Payload (lossy UTF-8).
    pub payload: String,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }
    fn take(&mut self, n: usize, index: Option<usize>) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or_else(|| Error::MalformedEventLog {
                index,
                reason: format!(
                    "truncated: need {n} bytes at offset {}, {} left",
                    self.pos,
                    self.remaining()
                ),
            })?;
        let s = self.data.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, i: Option<usize>) -> Result<u8> {
        Ok(self.take(1, i)?.first().copied().unwrap_or_default())
    }
    fn u16(&mut self, i: Option<usize>) -> Result<u16> {
        let b = self.take(2, i)?;
        Ok(u16::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn u32(&mut self, i: Option<usize>) -> Result<u32> {
        let b = self.take(4, i)?;
        Ok(u32::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn u64(&mut self, i: Option<usize>) -> Result<u64> {
        let b = self.take(8, i)?;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }
}

mod hex48 {
    use serde::{Deserialize as _, Deserializer, Serializer};
    pub(super) fn serialize<S: Serializer>(v: &[u8; 48], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 48], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(s).map_err(serde::de::Error::custom)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("expected 48 bytes"))
    }
}

mod hexvec {
    use serde::{Deserialize as _, Deserializer, Serializer};
    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_round_trip_and_tamper() {
        let mut log = EventLog::default();
        log.push_runtime("compose-hash", &[7u8; 32]);
        log.push_runtime("app-id", &[1u8; 20]);
        let json = log.to_dstack_json();
        let back = EventLog::from_dstack_json(&json).unwrap();
        assert_eq!(back.replay(), log.replay());
        assert_eq!(
            back.app_info().compose_hash.as_deref(),
            Some(hex::encode([7u8; 32]).as_str())
        );
        let tampered = json.replace(&hex::encode([1u8; 20]), &hex::encode([2u8; 20]));
        let err = EventLog::from_dstack_json(&tampered).unwrap_err();
        assert!(
            matches!(err, Error::MalformedEventLog { index: Some(1), .. }),
            "{err}"
        );
    }

    #[test]
    fn hostile_tcg_input_is_an_error() {
        assert!(EventLog::from_tcg2(&[]).is_err());
        assert!(EventLog::from_tcg2(&[0xff; 7]).is_err());
        assert!(CcelTable::parse(b"CCEL").is_err());
    }
}
