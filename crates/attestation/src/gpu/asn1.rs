//! A minimal DER reader (bounded, panic-free) for the raw byte ranges typed X.509 parsing hides —
//! the signed `tbsCertificate` and OCSP `tbsResponseData` — and a minimal DER writer for the
//! simulated GPU's certificates. Typed certificate fields come from `x509-cert`.

/// One decoded TLV: the tag byte, the value bytes and the whole encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    pub(crate) value: &'a [u8],
    pub(crate) raw: &'a [u8],
}

/// Universal and context tags used here.
pub(crate) mod tag {
    pub(crate) const BOOLEAN: u8 = 0x01;
    pub(crate) const INTEGER: u8 = 0x02;
    pub(crate) const BIT_STRING: u8 = 0x03;
    pub(crate) const OCTET_STRING: u8 = 0x04;
    pub(crate) const OID: u8 = 0x06;
    pub(crate) const ENUMERATED: u8 = 0x0a;
    pub(crate) const UTF8_STRING: u8 = 0x0c;
    pub(crate) const GENERALIZED_TIME: u8 = 0x18;
    pub(crate) const SEQUENCE: u8 = 0x30;
    pub(crate) const SET: u8 = 0x31;
}

/// Reads one TLV from the front of `input`; returns it and the rest. Only low tag numbers and
/// definite, minimally encoded lengths up to 4 bytes are accepted (DER).
pub(crate) fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag number form: never used by the structures we read
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None; // indefinite length (BER) or absurd sizes
        }
        let (bytes, r) = rest.split_at_checked(n)?;
        rest = r;
        let len = bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len < 0x80 || bytes.first() == Some(&0) {
            return None; // not minimal
        }
        len
    };
    let (value, rest) = rest.split_at_checked(len)?;
    let header_len = input.len().checked_sub(rest.len())?.checked_sub(len)?;
    let raw = input.get(..header_len.checked_add(len)?)?;
    Some((Tlv { tag, value, raw }, rest))
}

/// Reads one TLV that must carry `want` as its tag.
pub(crate) fn expect(input: &[u8], want: u8) -> Option<(Tlv<'_>, &[u8])> {
    read(input).filter(|(t, _)| t.tag == want)
}

/// Splits the contents of a constructed value into its child TLVs.
pub(crate) fn children(mut value: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !value.is_empty() {
        let (t, rest) = read(value)?;
        out.push(t);
        value = rest;
    }
    Some(out)
}

/// The DER encoding of `oid` (dotted) — used to compare against OID TLV values.
pub(crate) fn oid_value(dotted: &str) -> Option<Vec<u8>> {
    let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().ok()).collect::<Option<_>>()?;
    let (&a, rest) = arcs.split_first()?;
    let (&b, rest) = rest.split_first()?;
    let mut out = Vec::new();
    push_base128(&mut out, a.checked_mul(40)?.checked_add(b)?);
    for &arc in rest {
        push_base128(&mut out, arc);
    }
    Some(out)
}

fn push_base128(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 10];
    let mut i = tmp.len();
    loop {
        i = i.saturating_sub(1);
        let last = i == tmp.len().saturating_sub(1);
        if let Some(slot) = tmp.get_mut(i) {
            // Truncation intended: one base-128 digit.
            *slot = (v & 0x7f) as u8 | if last { 0 } else { 0x80 };
        }
        v >>= 7;
        if v == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(tmp.get(i..).unwrap_or_default());
}

/// DER writer helpers (simulated certificates and OCSP requests).
pub(crate) mod write {
    use super::tag;

    /// `tag ‖ length ‖ value`.
    pub(crate) fn tlv(t: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![t];
        let len = value.len();
        if len < 0x80 {
            // len < 128 fits a byte.
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            let sig = bytes.get(skip..).unwrap_or_default();
            // At most 8 length bytes: fits the 0x80 | n form.
            out.push(0x80 | sig.len() as u8);
            out.extend_from_slice(sig);
        }
        out.extend_from_slice(value);
        out
    }

    /// A SEQUENCE of already-encoded parts.
    pub(crate) fn seq(parts: &[&[u8]]) -> Vec<u8> {
        tlv(tag::SEQUENCE, &parts.concat())
    }

    /// A SET of already-encoded parts (caller keeps DER order: one element here).
    pub(crate) fn set(parts: &[&[u8]]) -> Vec<u8> {
        tlv(tag::SET, &parts.concat())
    }

    /// A non-negative INTEGER from big-endian magnitude bytes.
    pub(crate) fn uint(magnitude: &[u8]) -> Vec<u8> {
        let skip = magnitude.iter().take_while(|b| **b == 0).count();
        let mut v: Vec<u8> = magnitude.get(skip..).unwrap_or_default().to_vec();
        if v.first().is_none_or(|b| b & 0x80 != 0) {
            v.insert(0, 0);
        }
        tlv(tag::INTEGER, &v)
    }

    /// An OBJECT IDENTIFIER from its dotted form (callers pass constants).
    pub(crate) fn oid(dotted: &str) -> Vec<u8> {
        tlv(tag::OID, &super::oid_value(dotted).unwrap_or_default())
    }

    /// A BIT STRING with no unused bits.
    pub(crate) fn bits(bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend_from_slice(bytes);
        tlv(tag::BIT_STRING, &v)
    }

    /// An OCTET STRING.
    pub(crate) fn octets(bytes: &[u8]) -> Vec<u8> {
        tlv(tag::OCTET_STRING, bytes)
    }

    /// A UTF8String.
    pub(crate) fn utf8(s: &str) -> Vec<u8> {
        tlv(tag::UTF8_STRING, s.as_bytes())
    }

    /// A GeneralizedTime `YYYYMMDDHHMMSSZ`.
    pub(crate) fn generalized_time(yyyymmddhhmmss: &str) -> Vec<u8> {
        tlv(tag::GENERALIZED_TIME, format!("{yyyymmddhhmmss}Z").as_bytes())
    }

    /// BOOLEAN TRUE.
    pub(crate) fn true_() -> Vec<u8> {
        tlv(tag::BOOLEAN, &[0xff])
    }

    /// Context-specific constructed `[n]` (EXPLICIT) around `inner`.
    pub(crate) fn explicit(n: u8, inner: &[u8]) -> Vec<u8> {
        tlv(0xa0 | n, inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let s = write::seq(&[&write::uint(&[0x80]), &write::oid("1.2.840.10045.4.3.3")]);
        let (t, rest) = read(&s).unwrap();
        assert!(rest.is_empty());
        assert_eq!(t.tag, tag::SEQUENCE);
        let kids = children(t.value).unwrap();
        assert_eq!(kids[0].value, [0x00, 0x80]);
        assert_eq!(kids[1].value, hex::decode("2a8648ce3d040303").unwrap());
        let long = write::octets(&[7u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(read(&long).unwrap().0.value.len(), 300);
        // Truncated, indefinite, non-minimal and overlong lengths are refused.
        assert!(read(&long[..100]).is_none());
        assert!(read(&[0x30, 0x80, 0, 0]).is_none());
        assert!(read(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5]).is_none());
        assert!(read(&[0x04, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert!(read(&[]).is_none());
    }
}
