//! X.509 for NVIDIA's chains: certificates parsed with `x509-cert` (already in the tree through
//! dcap-qvl), signatures checked with ring (ECDSA P-384/SHA-384, and P-256/SHA-256), and a small
//! path validator anchored at a root the verifier holds — never at a root the evidence supplies.

use super::asn1;
use crate::Timestamp;
use base64::Engine as _;
use der::Decode as _;
use ring::signature;
use x509_cert::Certificate;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};

/// Most certificates accepted in one chain (NVIDIA's are 4 or 5 long).
pub(crate) const MAX_CHAIN: usize = 8;
/// Largest certificate accepted (NVIDIA's are under 1 KiB).
const MAX_CERT_BYTES: usize = 16 * 1024;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
/// TCG DICE: the older "composite device identifier" extension that carries NVIDIA's FWID.
const OID_TCG_DICE_FWID: &str = "2.23.133.5.4.1";
/// The newer TCG DICE TcbInfo extension (NVIDIA's verifier also accepts it).
const OID_TCG_DICE_TCB_INFO: &str = "2.23.133.5.4.1.1";
/// Extensions we understand well enough to accept when marked critical.
const KNOWN_CRITICAL: &[&str] = &[
    "2.5.29.19", // basicConstraints
    "2.5.29.15", // keyUsage
    "2.5.29.37", // extKeyUsage
    "2.5.29.14", // subjectKeyIdentifier
    "2.5.29.35", // authorityKeyIdentifier
    "2.5.29.17", // subjectAltName
    OID_TCG_DICE_FWID,
    OID_TCG_DICE_TCB_INFO,
    "2.23.133.5.4.100.6", // TCG DICE Ueid-less extension on some NVIDIA leaves (informational)
];

/// Public key curves we verify with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
}

/// A parsed certificate with the raw bytes its signature covers.
#[derive(Clone)]
pub(crate) struct Cert {
    pub(crate) der: Vec<u8>,
    pub(crate) cert: Certificate,
    tbs: Vec<u8>,
    issuer_raw: Vec<u8>,
    subject_raw: Vec<u8>,
    pub(crate) curve: Curve,
    /// Uncompressed SEC1 public key.
    pub(crate) key: Vec<u8>,
    pub(crate) not_before: Timestamp,
    pub(crate) not_after: Timestamp,
}

impl std::fmt::Debug for Cert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cert").field("subject", &self.subject()).finish()
    }
}

fn oid_is(oid: &der::asn1::ObjectIdentifier, dotted: &str) -> bool {
    asn1::oid_value(dotted).is_some_and(|v| v == oid.as_bytes())
}

/// Issuer and subject names as DER, cut out of the raw TBS (version, serial, sigalg, issuer,
/// validity, subject).
fn raw_names(tbs_value: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let kids = asn1::children(tbs_value)?;
    let off = usize::from(kids.first()?.tag == 0xa0);
    let issuer = kids.get(off.checked_add(2)?)?;
    let subject = kids.get(off.checked_add(4)?)?;
    Some((issuer.raw.to_vec(), subject.raw.to_vec()))
}

impl Cert {
    /// Parses one DER certificate; only EC keys on P-256/P-384 are accepted.
    pub(crate) fn from_der(der_bytes: &[u8]) -> Result<Self, String> {
        if der_bytes.len() > MAX_CERT_BYTES {
            return Err(format!("certificate of {} bytes is too large", der_bytes.len()));
        }
        let cert = Certificate::from_der(der_bytes).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let (outer, rest) =
            asn1::expect(der_bytes, asn1::tag::SEQUENCE).ok_or("certificate is not a DER SEQUENCE")?;
        if !rest.is_empty() {
            return Err("trailing bytes after the certificate".into());
        }
        let (tbs, _) = asn1::expect(outer.value, asn1::tag::SEQUENCE).ok_or("no tbsCertificate")?;
        let (issuer_raw, subject_raw) = raw_names(tbs.value).ok_or("tbsCertificate without names")?;
        let tbs_cert = cert.tbs_certificate();
        let spki = tbs_cert.subject_public_key_info();
        if !oid_is(&spki.algorithm.oid, OID_EC_PUBLIC_KEY) {
            return Err(format!("public key algorithm {} is not EC", spki.algorithm.oid));
        }
        let curve_oid = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
            .ok_or("EC key without a named curve")?;
        let curve = if oid_is(&curve_oid, OID_P384) {
            Curve::P384
        } else if oid_is(&curve_oid, OID_P256) {
            Curve::P256
        } else {
            return Err(format!("EC curve {curve_oid} is not P-256 or P-384"));
        };
        let key = spki
            .subject_public_key
            .as_bytes()
            .ok_or("public key bit string has unused bits")?
            .to_vec();
        let validity = tbs_cert.validity();
        Ok(Cert {
            der: der_bytes.to_vec(),
            tbs: tbs.raw.to_vec(),
            issuer_raw,
            subject_raw,
            curve,
            key,
            not_before: Timestamp(validity.not_before.to_unix_duration().as_secs()),
            not_after: Timestamp(validity.not_after.to_unix_duration().as_secs()),
            cert,
        })
    }

    /// The subject as an RFC 4514 string.
    pub(crate) fn subject(&self) -> String {
        self.cert.tbs_certificate().subject().to_string()
    }

    /// The issuer as an RFC 4514 string.
    pub(crate) fn issuer(&self) -> String {
        self.cert.tbs_certificate().issuer().to_string()
    }

    /// The subject's common name (or the whole subject when it has none).
    pub(crate) fn name(&self) -> String {
        let s = self.subject();
        s.split(',')
            .find_map(|p| p.trim().strip_prefix("CN="))
            .map(str::to_owned)
            .unwrap_or(s)
    }

    /// The serial number's big-endian bytes as encoded.
    pub(crate) fn serial(&self) -> &[u8] {
        self.cert.tbs_certificate().serial_number().as_bytes()
    }

    /// DER of the subject name.
    pub(crate) fn subject_der(&self) -> &[u8] {
        &self.subject_raw
    }

    /// Whether issuer and subject are the same name.
    pub(crate) fn is_self_issued(&self) -> bool {
        self.issuer_raw == self.subject_raw
    }

    /// Whether `issuer` issued this certificate: names chain and the signature verifies.
    pub(crate) fn signed_by(&self, issuer: &Cert) -> Result<(), String> {
        if self.issuer_raw != issuer.subject_raw {
            return Err(format!(
                "is issued by '{}', not by '{}'",
                self.issuer(),
                issuer.subject()
            ));
        }
        let sig = self
            .cert
            .signature()
            .as_bytes()
            .ok_or("signature bit string has unused bits")?;
        verify_asn1(&self.cert.signature_algorithm().oid, issuer, &self.tbs, sig)
            .map_err(|e| format!("signature by '{}' does not verify ({e})", issuer.name()))
    }

    /// Verifies a raw `r‖s` ECDSA signature over `msg` with this certificate's key.
    pub(crate) fn verify_fixed(&self, msg: &[u8], sig: &[u8]) -> bool {
        let alg: &dyn signature::VerificationAlgorithm = match self.curve {
            Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
            Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
        };
        signature::UnparsedPublicKey::new(alg, &self.key)
            .verify(msg, sig)
            .is_ok()
    }

    fn extension(&self, dotted: &str) -> Option<&x509_cert::ext::Extension> {
        self.cert
            .tbs_certificate()
            .extensions()?
            .iter()
            .find(|e| oid_is(&e.extn_id, dotted))
    }

    fn basic_constraints(&self) -> Option<BasicConstraints> {
        let e = self.extension("2.5.29.19")?;
        BasicConstraints::from_der(e.extn_value.as_bytes()).ok()
    }

    fn key_usage(&self) -> Option<Result<KeyUsage, ()>> {
        let e = self.extension("2.5.29.15")?;
        Some(KeyUsage::from_der(e.extn_value.as_bytes()).map_err(|_| ()))
    }

    /// The 48-byte FWID from the TCG DICE extension (the last 48 bytes of its value in the
    /// composite-device-identifier shape NVIDIA uses; see testdata/gpu/README.md §5).
    pub(crate) fn fwid(&self) -> Option<Vec<u8>> {
        let e = self
            .extension(OID_TCG_DICE_FWID)
            .or_else(|| self.extension(OID_TCG_DICE_TCB_INFO))?;
        let v = e.extn_value.as_bytes();
        v.get(v.len().checked_sub(48)?..).map(<[u8]>::to_vec)
    }

    /// Whether the extended key usage lists `dotted` (e.g. OCSP signing).
    pub(crate) fn has_eku(&self, dotted: &str) -> bool {
        self.extension("2.5.29.37")
            .and_then(|e| ExtendedKeyUsage::from_der(e.extn_value.as_bytes()).ok())
            .is_some_and(|eku| eku.0.iter().any(|o| oid_is(o, dotted)))
    }

    /// The public key's BIT STRING contents (what OCSP's `issuerKeyHash` hashes).
    pub(crate) fn key_bits(&self) -> &[u8] {
        &self.key
    }

    fn unknown_critical(&self) -> Option<String> {
        self.cert
            .tbs_certificate()
            .extensions()?
            .iter()
            .find(|e| e.critical && !KNOWN_CRITICAL.iter().any(|k| oid_is(&e.extn_id, k)))
            .map(|e| e.extn_id.to_string())
    }
}

pub(crate) fn verify_asn1(
    sig_oid: &der::asn1::ObjectIdentifier,
    issuer: &Cert,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    let alg: &dyn signature::VerificationAlgorithm = match issuer.curve {
        Curve::P384 if oid_is(sig_oid, OID_ECDSA_SHA384) => &signature::ECDSA_P384_SHA384_ASN1,
        Curve::P256 if oid_is(sig_oid, OID_ECDSA_SHA256) => &signature::ECDSA_P256_SHA256_ASN1,
        c => {
            return Err(format!(
                "unsupported signature algorithm {sig_oid} with a {c:?} key"
            ));
        }
    };
    signature::UnparsedPublicKey::new(alg, &issuer.key)
        .verify(msg, sig)
        .map_err(|_| "bad signature".to_owned())
}

/// Memo of signature checks that succeeded, keyed by SHA-256 of (what was signed, the signature,
/// the key): a signature over the same bytes under the same key verifies the same way every time, so a
/// verifier that sees many reports from one fleet checks each intermediate certificate and RIM once.
/// Validity windows and everything time-dependent are still checked on every call. Bounded.
#[derive(Debug, Default)]
pub(crate) struct SigCache(std::sync::Mutex<std::collections::HashSet<[u8; 32]>>);

const SIG_CACHE_CAPACITY: usize = 4096;

impl SigCache {
    fn key(parts: &[&[u8]]) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        h.finalize().into()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<[u8; 32]>> {
        // Only hashes of successful checks inside: a poisoned set is still consistent.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `check` unless the same (`parts`) check succeeded before; remembers successes only.
    pub(crate) fn check<E>(&self, parts: &[&[u8]], check: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        let k = Self::key(parts);
        if self.lock().contains(&k) {
            return Ok(());
        }
        check()?;
        let mut set = self.lock();
        if set.len() >= SIG_CACHE_CAPACITY {
            set.clear();
        }
        set.insert(k);
        Ok(())
    }

    /// `cert.signed_by(issuer)`, memoised.
    pub(crate) fn signed_by(&self, cert: &Cert, issuer: &Cert) -> Result<(), String> {
        self.check(&[b"x509", &cert.der, &issuer.der], || cert.signed_by(issuer))
    }
}

/// Splits concatenated PEM certificates (any text between blocks is ignored) into DER.
pub(crate) fn pem_certs(text: &str) -> Result<Vec<Vec<u8>>, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let body_start = start.checked_add(BEGIN.len()).ok_or("overflow")?;
        let tail = rest.get(body_start..).ok_or("truncated PEM")?;
        let end = tail.find(END).ok_or("PEM certificate without an END line")?;
        let body: String = tail
            .get(..end)
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| format!("PEM certificate #{} is not base64: {e}", out.len()))?;
        out.push(der);
        if out.len() > MAX_CHAIN {
            return Err(format!("more than {MAX_CHAIN} certificates"));
        }
        rest = tail
            .get(end.checked_add(END.len()).ok_or("overflow")?..)
            .unwrap_or_default();
    }
    if out.is_empty() {
        return Err("no PEM certificate found".into());
    }
    Ok(out)
}

/// Concatenated PEM of DER certificates.
pub(crate) fn to_pem(ders: &[Vec<u8>]) -> String {
    let mut s = String::new();
    for d in ders {
        s.push_str("-----BEGIN CERTIFICATE-----\n");
        let b = base64::engine::general_purpose::STANDARD.encode(d);
        for chunk in b.as_bytes().chunks(64) {
            s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            s.push('\n');
        }
        s.push_str("-----END CERTIFICATE-----\n");
    }
    s
}

/// Where a chain failed: the certificate's position (0 = leaf, counting the evidence's order)
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainError {
    pub(crate) index: usize,
    pub(crate) reason: String,
}

impl std::fmt::Display for ChainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cert #{} {}", self.index, self.reason)
    }
}

/// Validates `chain` (leaf first, without the root) up to `anchor` at `now`: each certificate is
/// issued and signed by the next (the last by the anchor), every one of them — anchor included —
/// is inside its validity window, issuers are CAs allowed to sign certificates within their path
/// length, the leaf may sign (`digitalSignature` when key usage is present), and no unknown
/// critical extension appears. Returns the window in which the whole path is valid.
pub(crate) fn verify_chain(
    chain: &[Cert],
    anchor: &Cert,
    now: Timestamp,
    sigs: &SigCache,
) -> Result<(Timestamp, Timestamp), ChainError> {
    if chain.is_empty() {
        return Err(ChainError {
            index: 0,
            reason: "missing: the chain is empty".into(),
        });
    }
    if chain.len() > MAX_CHAIN {
        return Err(ChainError {
            index: MAX_CHAIN,
            reason: format!("chain longer than {MAX_CHAIN} certificates"),
        });
    }
    let mut window = (Timestamp(0), Timestamp(u64::MAX));
    let last = chain.len();
    for (i, cert) in chain.iter().chain(std::iter::once(anchor)).enumerate() {
        let err = |reason: String| ChainError { index: i, reason };
        let label = if i == last { "(trusted root)" } else { "" };
        if now < cert.not_before {
            return Err(err(format!(
                "'{}'{label} is not yet valid at {now}: notBefore {}",
                cert.name(),
                cert.not_before
            )));
        }
        if now > cert.not_after {
            return Err(err(format!(
                "'{}'{label} expired at {} (checked at {now})",
                cert.name(),
                cert.not_after
            )));
        }
        window.0 = window.0.max(cert.not_before);
        window.1 = window.1.min(cert.not_after);
        if let Some(oid) = cert.unknown_critical() {
            return Err(err(format!(
                "'{}' has an unknown critical extension {oid}",
                cert.name()
            )));
        }
        if i == last {
            break;
        }
        let issuer = chain.get(i.saturating_add(1)).unwrap_or(anchor);
        sigs.signed_by(cert, issuer).map_err(|r| {
            let who = if i.saturating_add(1) == last {
                " (the trusted root)"
            } else {
                ""
            };
            err(format!("'{}' {r}{who}", cert.name()))
        })?;
        if i == 0
            && let Some(ku) = cert.key_usage()
            && !ku.is_ok_and(|k| k.0.contains(KeyUsages::DigitalSignature))
        {
            return Err(err(format!("'{}' may not sign (key usage)", cert.name())));
        }
        // The issuer: a CA allowed to sign certificates, within its path length.
        let issuer_index = i.saturating_add(1);
        let below = i; // intermediate CAs between the issuer and the leaf
        match issuer.basic_constraints() {
            Some(bc) if bc.ca => {
                if let Some(max) = bc.path_len_constraint
                    && below > usize::from(max)
                {
                    return Err(ChainError {
                        index: issuer_index,
                        reason: format!(
                            "'{}' allows {max} intermediate CAs below it, the chain has {below}",
                            issuer.name()
                        ),
                    });
                }
            }
            _ => {
                return Err(ChainError {
                    index: issuer_index,
                    reason: format!("'{}' is not a CA (basicConstraints)", issuer.name()),
                });
            }
        }
        if let Some(ku) = issuer.key_usage() {
            match ku {
                Ok(k) if k.0.contains(KeyUsages::KeyCertSign) => {}
                _ => {
                    return Err(ChainError {
                        index: issuer_index,
                        reason: format!("'{}' may not sign certificates (key usage)", issuer.name()),
                    });
                }
            }
        }
    }
    Ok(window)
}

/// Parses a chain from DER blobs, naming the first bad one.
pub(crate) fn parse_chain(ders: &[Vec<u8>]) -> Result<Vec<Cert>, ChainError> {
    ders.iter()
        .enumerate()
        .map(|(i, d)| Cert::from_der(d).map_err(|reason| ChainError { index: i, reason }))
        .collect()
}

/// Drops a trailing self-issued certificate (the evidence's copy of a root): the anchor always
/// comes from the verifier's own trust store. Returns the rest and the dropped root, if any.
pub(crate) fn split_root(chain: &[Cert]) -> (&[Cert], Option<&Cert>) {
    match chain.split_last() {
        Some((last, rest)) if last.is_self_issued() && !rest.is_empty() => (rest, Some(last)),
        _ => (chain, None),
    }
}
