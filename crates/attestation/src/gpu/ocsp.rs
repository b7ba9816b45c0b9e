//! OCSP responses (RFC 6960) for NVIDIA's device and RIM certificates, checked offline: the
//! response is signed by the certificate's issuer or by a responder certificate that issuer
//! delegated (EKU OCSPSigning), names the certificate (CertID: hash of the issuer's name and key,
//! serial), says `good`, and `now` lies in `[thisUpdate, nextUpdate]`.
//!
//! NVIDIA's responses carry no nonce (testdata/gpu/README.md §8), so freshness is the
//! `nextUpdate` window; a stored response proves the status as of its `thisUpdate`, nothing later.

use super::asn1::{self, Tlv, tag};
use super::x509::{Cert, verify_asn1};
use crate::Timestamp;

const OID_OCSP_BASIC: &str = "1.3.6.1.5.5.7.48.1.1";
const OID_KP_OCSP_SIGNING: &str = "1.3.6.1.5.5.7.3.9";
const OID_SHA1: &str = "1.3.14.3.2.26";
const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const OID_SHA384: &str = "2.16.840.1.101.3.4.2.2";
/// Largest response accepted.
pub(crate) const MAX_OCSP_BYTES: usize = 64 * 1024;

/// A certificate's revocation status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CertStatus {
    Good,
    Revoked,
    Unknown,
}

/// One parsed response (the first SingleResponse; NVIDIA's carry exactly one).
#[derive(Debug, Clone)]
pub(crate) struct OcspResponse {
    pub(crate) der: Vec<u8>,
    tbs: Vec<u8>,
    sig_alg: der::asn1::ObjectIdentifier,
    signature: Vec<u8>,
    responder: Responder,
    hash_oid: Vec<u8>,
    issuer_name_hash: Vec<u8>,
    issuer_key_hash: Vec<u8>,
    pub(crate) serial: Vec<u8>,
    pub(crate) status: CertStatus,
    pub(crate) this_update: Timestamp,
    pub(crate) next_update: Option<Timestamp>,
    certs: Vec<Cert>,
}

#[derive(Debug, Clone)]
enum Responder {
    ByName(Vec<u8>),
    ByKey(Vec<u8>),
}

fn fail(what: &str) -> String {
    format!("malformed OCSP response: {what}")
}

fn gen_time(t: &Tlv<'_>) -> Result<Timestamp, String> {
    if t.tag != tag::GENERALIZED_TIME {
        return Err(fail("expected GeneralizedTime"));
    }
    let s = std::str::from_utf8(t.value).map_err(|_| fail("time is not ASCII"))?;
    let s = s.strip_suffix('Z').ok_or_else(|| fail("time is not UTC"))?;
    let s = s.split('.').next().unwrap_or(s);
    let dt = chrono::NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S").map_err(|_| fail("bad time"))?;
    u64::try_from(dt.and_utc().timestamp())
        .map(Timestamp)
        .map_err(|_| fail("time before 1970"))
}

fn digest(oid_value: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let alg = if asn1::oid_value(OID_SHA384).as_deref() == Some(oid_value) {
        &ring::digest::SHA384
    } else if asn1::oid_value(OID_SHA256).as_deref() == Some(oid_value) {
        &ring::digest::SHA256
    } else if asn1::oid_value(OID_SHA1).as_deref() == Some(oid_value) {
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY
    } else {
        return None;
    };
    Some(ring::digest::digest(alg, data).as_ref().to_vec())
}

impl OcspResponse {
    /// Parses a DER `OCSPResponse` (status `successful`, type `id-pkix-ocsp-basic`).
    pub(crate) fn parse(der_bytes: &[u8]) -> Result<Self, String> {
        if der_bytes.len() > MAX_OCSP_BYTES {
            return Err(fail("too large"));
        }
        let (outer, rest) = asn1::expect(der_bytes, tag::SEQUENCE).ok_or_else(|| fail("not a SEQUENCE"))?;
        if !rest.is_empty() {
            return Err(fail("trailing bytes"));
        }
        let kids = asn1::children(outer.value).ok_or_else(|| fail("OCSPResponse"))?;
        let status = kids
            .first()
            .filter(|t| t.tag == tag::ENUMERATED)
            .ok_or_else(|| fail("responseStatus"))?;
        if status.value != [0] {
            return Err(format!(
                "OCSP responder status {:?} is not successful",
                status.value
            ));
        }
        let bytes = kids
            .get(1)
            .filter(|t| t.tag == 0xa0)
            .ok_or_else(|| fail("no responseBytes"))?;
        let (rb, _) = asn1::expect(bytes.value, tag::SEQUENCE).ok_or_else(|| fail("ResponseBytes"))?;
        let rb = asn1::children(rb.value).ok_or_else(|| fail("ResponseBytes"))?;
        let rtype = rb
            .first()
            .filter(|t| t.tag == tag::OID)
            .ok_or_else(|| fail("responseType"))?;
        if asn1::oid_value(OID_OCSP_BASIC).as_deref() != Some(rtype.value) {
            return Err(fail("responseType is not id-pkix-ocsp-basic"));
        }
        let basic = rb
            .get(1)
            .filter(|t| t.tag == tag::OCTET_STRING)
            .ok_or_else(|| fail("response"))?;
        let (basic, _) = asn1::expect(basic.value, tag::SEQUENCE).ok_or_else(|| fail("BasicOCSPResponse"))?;
        let b = asn1::children(basic.value).ok_or_else(|| fail("BasicOCSPResponse"))?;
        let tbs = b
            .first()
            .filter(|t| t.tag == tag::SEQUENCE)
            .ok_or_else(|| fail("tbsResponseData"))?;
        let sig_alg = b
            .get(1)
            .filter(|t| t.tag == tag::SEQUENCE)
            .ok_or_else(|| fail("signatureAlgorithm"))?;
        let sig_alg_oid = asn1::children(sig_alg.value)
            .and_then(|k| k.first().copied())
            .filter(|t| t.tag == tag::OID)
            .ok_or_else(|| fail("signatureAlgorithm"))?;
        let sig_alg =
            der::asn1::ObjectIdentifier::from_bytes(sig_alg_oid.value).map_err(|_| fail("signature OID"))?;
        let sig = b
            .get(2)
            .filter(|t| t.tag == tag::BIT_STRING)
            .ok_or_else(|| fail("signature"))?;
        let signature = sig
            .value
            .split_first()
            .filter(|(unused, _)| **unused == 0)
            .map(|(_, s)| s.to_vec())
            .ok_or_else(|| fail("signature bits"))?;
        let mut certs = Vec::new();
        if let Some(c) = b.get(3).filter(|t| t.tag == 0xa0) {
            let (seq, _) = asn1::expect(c.value, tag::SEQUENCE).ok_or_else(|| fail("certs"))?;
            for cert in asn1::children(seq.value).ok_or_else(|| fail("certs"))? {
                certs.push(
                    Cert::from_der(cert.raw).map_err(|e| fail(&format!("responder certificate: {e}")))?,
                );
            }
        }
        // ResponseData
        let mut d = asn1::children(tbs.value)
            .ok_or_else(|| fail("ResponseData"))?
            .into_iter()
            .peekable();
        if d.peek().is_some_and(|t| t.tag == 0xa0) {
            d.next();
        }
        let rid = d.next().ok_or_else(|| fail("responderID"))?;
        let responder = match rid.tag {
            0xa1 => Responder::ByName(rid.value.to_vec()),
            0xa2 => Responder::ByKey(
                asn1::expect(rid.value, tag::OCTET_STRING)
                    .ok_or_else(|| fail("responderID byKey"))?
                    .0
                    .value
                    .to_vec(),
            ),
            _ => return Err(fail("responderID")),
        };
        let _produced_at = gen_time(&d.next().ok_or_else(|| fail("producedAt"))?)?;
        let responses = d
            .next()
            .filter(|t| t.tag == tag::SEQUENCE)
            .ok_or_else(|| fail("responses"))?;
        let single = asn1::children(responses.value).ok_or_else(|| fail("responses"))?;
        let [single] = single.as_slice() else {
            return Err(fail(&format!("{} SingleResponses, expected one", single.len())));
        };
        let s = asn1::children(single.value).ok_or_else(|| fail("SingleResponse"))?;
        let cert_id = s
            .first()
            .filter(|t| t.tag == tag::SEQUENCE)
            .ok_or_else(|| fail("certID"))?;
        let id = asn1::children(cert_id.value).ok_or_else(|| fail("certID"))?;
        let hash_oid = id
            .first()
            .and_then(|a| asn1::children(a.value))
            .and_then(|k| k.first().copied())
            .filter(|t| t.tag == tag::OID)
            .ok_or_else(|| fail("certID hashAlgorithm"))?
            .value
            .to_vec();
        let octets = |i: usize, what: &str| {
            id.get(i)
                .filter(|t| t.tag == tag::OCTET_STRING)
                .map(|t| t.value.to_vec())
                .ok_or_else(|| fail(what))
        };
        let issuer_name_hash = octets(1, "issuerNameHash")?;
        let issuer_key_hash = octets(2, "issuerKeyHash")?;
        let serial = id
            .get(3)
            .filter(|t| t.tag == tag::INTEGER)
            .ok_or_else(|| fail("serialNumber"))?
            .value
            .to_vec();
        let status = match s.get(1).map(|t| t.tag) {
            Some(0x80) => CertStatus::Good,
            Some(0xa1) => CertStatus::Revoked,
            Some(0x82) => CertStatus::Unknown,
            _ => return Err(fail("certStatus")),
        };
        let this_update = gen_time(s.get(2).ok_or_else(|| fail("thisUpdate"))?)?;
        let next_update = match s.get(3).filter(|t| t.tag == 0xa0) {
            Some(t) => Some(gen_time(
                &asn1::read(t.value).ok_or_else(|| fail("nextUpdate"))?.0,
            )?),
            None => None,
        };
        Ok(OcspResponse {
            der: der_bytes.to_vec(),
            tbs: tbs.raw.to_vec(),
            sig_alg,
            signature,
            responder,
            hash_oid,
            issuer_name_hash,
            issuer_key_hash,
            serial,
            status,
            this_update,
            next_update,
            certs,
        })
    }

    /// Whether this response is about `cert` as issued by `issuer` (CertID match).
    pub(crate) fn is_for(&self, cert: &Cert, issuer: &Cert) -> bool {
        self.serial == cert.serial()
            && digest(&self.hash_oid, issuer.subject_der()).as_deref()
                == Some(self.issuer_name_hash.as_slice())
            && digest(&self.hash_oid, issuer.key_bits()).as_deref() == Some(self.issuer_key_hash.as_slice())
    }

    /// Checks this response for `cert` (issued by `issuer`) at `now`; returns its status.
    pub(crate) fn check(&self, cert: &Cert, issuer: &Cert, now: Timestamp) -> Result<CertStatus, String> {
        if self.serial != cert.serial() {
            return Err(format!(
                "certID serial {} is not the serial {} of '{}'",
                hex::encode(&self.serial),
                hex::encode(cert.serial()),
                cert.name()
            ));
        }
        if !self.is_for(cert, issuer) {
            return Err(format!(
                "certID issuer hashes do not name '{}' as the issuer of '{}'",
                issuer.name(),
                cert.name()
            ));
        }
        // The signer: the issuer itself, or a delegated responder the issuer signed.
        let signer = match self.certs.iter().find(|c| self.responder_is(c)) {
            Some(r) if r.key_bits() != issuer.key_bits() => {
                r.signed_by(issuer)
                    .map_err(|e| format!("OCSP responder '{}' {e}", r.name()))?;
                if !r.has_eku(OID_KP_OCSP_SIGNING) {
                    return Err(format!("OCSP responder '{}' lacks the OCSPSigning EKU", r.name()));
                }
                if now < r.not_before || now > r.not_after {
                    return Err(format!(
                        "OCSP responder '{}' is not valid at {now} ({} .. {})",
                        r.name(),
                        r.not_before,
                        r.not_after
                    ));
                }
                r
            }
            _ if self.responder_is(issuer) => issuer,
            _ => return Err("the responder is neither the issuer nor a certificate it delegated".into()),
        };
        verify_asn1(&self.sig_alg, signer, &self.tbs, &self.signature)
            .map_err(|e| format!("OCSP signature does not verify ({e})"))?;
        if now < self.this_update {
            return Err(format!(
                "OCSP response not yet valid: thisUpdate {}",
                self.this_update
            ));
        }
        match self.next_update {
            Some(n) if now > n => return Err(format!("OCSP response expired: nextUpdate {n}")),
            None => return Err("OCSP response without nextUpdate (no freshness bound)".into()),
            _ => {}
        }
        Ok(self.status)
    }

    fn responder_is(&self, c: &Cert) -> bool {
        match &self.responder {
            Responder::ByName(n) => n.as_slice() == c.subject_der(),
            Responder::ByKey(h) => {
                ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, c.key_bits()).as_ref()
                    == h.as_slice()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::x509::{parse_chain, pem_certs};
    use zg_test_utils::testdata;

    fn response(name: &str) -> OcspResponse {
        let text = testdata::read_string(&format!(
            "gpu/ocsp/test_gpu_{name}_base64encoded_ocsp_response.dat"
        ));
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD
            .decode(text.trim().replace(['\n', '\r'], ""))
            .unwrap();
        OcspResponse::parse(&der).unwrap()
    }

    fn device_chain() -> Vec<Cert> {
        parse_chain(&pem_certs(&testdata::read_string("gpu/hopperCertChain.txt")).unwrap()).unwrap()
    }

    #[test]
    fn device_responses_good_inside_their_window_only() {
        let c = device_chain();
        let at = Timestamp::from_rfc3339("2025-08-21T12:00:00Z").unwrap();
        for (name, i) in [
            ("certificate_l4", 1),
            ("certificate_l3", 2),
            ("certificate_l2", 3),
        ] {
            let r = response(name);
            assert!(r.is_for(&c[i], &c[i + 1]), "{name}");
            assert_eq!(r.check(&c[i], &c[i + 1], at), Ok(CertStatus::Good), "{name}");
            let late = r.next_update.unwrap().plus(1);
            assert!(
                r.check(&c[i], &c[i + 1], late).unwrap_err().contains("expired"),
                "{name}"
            );
        }
    }

    #[test]
    fn n11_response_for_another_certificate() {
        // The BROM (#1) response presented for ICA 1 (#2).
        let c = device_chain();
        let at = Timestamp::from_rfc3339("2025-08-21T12:00:00Z").unwrap();
        let e = response("certificate_l4").check(&c[2], &c[3], at).unwrap_err();
        assert!(e.starts_with("certID serial"), "{e}");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(OcspResponse::parse(&[]).is_err());
        assert!(
            OcspResponse::parse(&[0x30, 0x03, 0x0a, 0x01, 0x01])
                .unwrap_err()
                .contains("not successful")
        );
        let good = response("certificate_l4").der;
        for n in 0..good.len() {
            assert!(OcspResponse::parse(&good[..n]).is_err(), "prefix {n}");
        }
    }
}
