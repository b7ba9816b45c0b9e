//! NVIDIA reference integrity manifests (RIMs): ISO 19770-2 SWID tags with the golden
//! measurements of a driver or VBIOS, signed with an enveloped XML signature (ECDSA P-384 /
//! SHA-384 over canonical XML) by a certificate chain that ends at NVIDIA's RIM root.
//!
//! Parsing does the expensive, time-independent work once (XML parse, both canonical forms, the
//! document digest, the certificate parse); [`Rim::verify`] then checks digest, signature and
//! chain at a given time in well under a millisecond, so parsed RIMs are what collateral caches hold.
//!
//! Signature wrapping is ruled out by construction: exactly one `ds:Signature`, a direct child of
//! the document element; exactly one `Reference` with `URI=""` (the whole document); exactly the
//! enveloped-signature and C14N transforms; and every value the verifier uses (version,
//! measurements) is read from the document element's own `Meta` and `Payload` children, which that
//! digest covers.

use super::c14n::canonicalize;
use super::x509::{Cert, ChainError, SigCache, parse_chain, split_root, verify_chain};
use crate::{Error, Result, Timestamp};
use base64::Engine as _;
use roxmltree::{Document, Node, ParsingOptions};
use sha2::{Digest as _, Sha384};

/// Largest RIM accepted (NVIDIA's are about 20 KiB).
pub const MAX_RIM_BYTES: usize = 1 << 20;
/// XML node limit (a RIM has a few hundred).
const MAX_NODES: u32 = 20_000;

const NS_SWID: &str = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd";
const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const NS_SHA384: &str = "http://www.w3.org/2001/04/xmlenc#sha384";
const C14N_11: &str = "http://www.w3.org/2006/12/xml-c14n11";
const C14N_10: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const ECDSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384";
const DIGEST_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#sha384";
const DIGEST_SHA384_ENC: &str = "http://www.w3.org/2001/04/xmlenc#sha384";

/// One golden measurement of a RIM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RimMeasurement {
    /// Golden index (0-based; compared with SPDM block `index + 1`).
    pub index: u16,
    /// Whether the verifier compares it.
    pub active: bool,
    /// Digest size in bytes (48).
    pub size: usize,
    /// Acceptable values (`Hash0..Hash{alternatives-1}`).
    pub alternatives: Vec<Vec<u8>>,
}

/// A parsed (not yet verified) RIM.
#[derive(Clone)]
pub struct Rim {
    /// `SoftwareIdentity@tagId`.
    pub tag_id: String,
    /// `Meta@colloquialVersion` (the driver or VBIOS version).
    pub version: String,
    /// Golden measurements in document order.
    pub measurements: Vec<RimMeasurement>,
    /// SHA-384 of the canonical document without its signature.
    pub(crate) computed_digest: [u8; 48],
    /// The `DigestValue` the signature covers.
    pub(crate) signed_digest: Vec<u8>,
    /// The canonical `ds:SignedInfo` (the signed bytes).
    pub(crate) signed_info: Vec<u8>,
    /// The raw `r‖s` signature.
    pub(crate) signature: Vec<u8>,
    /// The KeyInfo certificates, leaf first.
    pub(crate) chain: Vec<Cert>,
    /// SHA-256 of the file bytes (identifies the RIM in caches and reports).
    pub(crate) sha256: [u8; 32],
}

impl std::fmt::Debug for Rim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rim")
            .field("tag_id", &self.tag_id)
            .field("version", &self.version)
            .field("sha256", &hex::encode(self.sha256))
            .finish_non_exhaustive()
    }
}

/// How a RIM failed verification, by the part at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RimFailure {
    /// The canonical document does not hash to the signed `DigestValue`.
    Digest { signed: String, computed: String },
    /// `SignatureValue` does not verify over `SignedInfo` with the KeyInfo leaf.
    Signature,
    /// The KeyInfo chain does not reach the RIM root at `now`.
    Chain(ChainError),
}

impl std::fmt::Display for RimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RimFailure::Digest { signed, computed } => write!(
                f,
                "reference digest mismatch: the signature covers {signed}, the document hashes to {computed}"
            ),
            RimFailure::Signature => {
                f.write_str("SignatureValue does not verify over SignedInfo with the KeyInfo leaf key")
            }
            RimFailure::Chain(e) => write!(f, "RIM certificate chain: {e}"),
        }
    }
}

fn bad(reason: impl Into<String>) -> Error {
    Error::MalformedGpuEvidence {
        field: "rim",
        reason: reason.into(),
    }
}

fn child<'a, 'i>(n: Node<'a, 'i>, ns: &str, local: &str) -> Result<Node<'a, 'i>> {
    let mut it = n
        .children()
        .filter(|c| c.is_element() && c.tag_name().namespace() == Some(ns) && c.tag_name().name() == local);
    let first = it
        .next()
        .ok_or_else(|| bad(format!("no {local} in {}", n.tag_name().name())))?;
    if it.next().is_some() {
        return Err(bad(format!("{local} appears twice in {}", n.tag_name().name())));
    }
    Ok(first)
}

fn algorithm<'a>(n: Node<'a, '_>) -> Result<&'a str> {
    n.attribute("Algorithm")
        .ok_or_else(|| bad(format!("{} without Algorithm", n.tag_name().name())))
}

fn b64(text: &str, what: &str) -> Result<Vec<u8>> {
    let clean: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|e| bad(format!("{what} is not base64: {e}")))
}

impl Rim {
    /// Parses a RIM and precomputes its canonical forms.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_RIM_BYTES {
            return Err(bad(format!("{} bytes, more than {MAX_RIM_BYTES}", bytes.len())));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| bad(format!("not UTF-8: {e}")))?;
        let opts = ParsingOptions {
            allow_dtd: false,
            nodes_limit: MAX_NODES,
            ..ParsingOptions::default()
        };
        let doc = Document::parse_with_options(text, opts).map_err(|e| bad(format!("not XML: {e}")))?;
        let root = doc.root_element();
        if root.tag_name().namespace() != Some(NS_SWID) || root.tag_name().name() != "SoftwareIdentity" {
            return Err(bad("the document element is not a SWID SoftwareIdentity"));
        }
        let signatures: Vec<Node<'_, '_>> = doc
            .descendants()
            .filter(|n| {
                n.is_element()
                    && n.tag_name().namespace() == Some(NS_DSIG)
                    && n.tag_name().name() == "Signature"
            })
            .collect();
        let [sig] = signatures.as_slice() else {
            return Err(bad(format!(
                "{} ds:Signature elements, expected exactly one",
                signatures.len()
            )));
        };
        if sig.parent_element() != Some(root) {
            return Err(bad("ds:Signature is not a child of SoftwareIdentity"));
        }
        let signed_info = child(*sig, NS_DSIG, "SignedInfo")?;
        let c14n_alg = algorithm(child(signed_info, NS_DSIG, "CanonicalizationMethod")?)?;
        if c14n_alg != C14N_11 && c14n_alg != C14N_10 {
            return Err(bad(format!(
                "CanonicalizationMethod {c14n_alg} is not inclusive C14N 1.0/1.1"
            )));
        }
        let sig_alg = algorithm(child(signed_info, NS_DSIG, "SignatureMethod")?)?;
        if sig_alg != ECDSA_SHA384 {
            return Err(bad(format!("SignatureMethod {sig_alg} is not ecdsa-sha384")));
        }
        let reference = child(signed_info, NS_DSIG, "Reference")?;
        if reference.attribute("URI") != Some("") {
            return Err(bad("the Reference does not cover the whole document (URI=\"\")"));
        }
        let transforms: Vec<&str> = child(reference, NS_DSIG, "Transforms")?
            .children()
            .filter(Node::is_element)
            .map(algorithm)
            .collect::<Result<_>>()?;
        if !matches!(transforms.as_slice(), [ENVELOPED, c] if *c == C14N_11 || *c == C14N_10) {
            return Err(bad(format!(
                "transforms {transforms:?}: expected enveloped-signature then C14N"
            )));
        }
        let digest_alg = algorithm(child(reference, NS_DSIG, "DigestMethod")?)?;
        if digest_alg != DIGEST_SHA384 && digest_alg != DIGEST_SHA384_ENC {
            return Err(bad(format!("DigestMethod {digest_alg} is not sha384")));
        }
        let signed_digest = b64(
            child(reference, NS_DSIG, "DigestValue")?.text().unwrap_or(""),
            "DigestValue",
        )?;
        let signature = b64(
            child(*sig, NS_DSIG, "SignatureValue")?.text().unwrap_or(""),
            "SignatureValue",
        )?;
        let x509data = child(child(*sig, NS_DSIG, "KeyInfo")?, NS_DSIG, "X509Data")?;
        let ders: Vec<Vec<u8>> = x509data
            .children()
            .filter(|c| c.is_element() && c.tag_name().name() == "X509Certificate")
            .map(|c| b64(c.text().unwrap_or(""), "X509Certificate"))
            .collect::<Result<_>>()?;
        let chain = parse_chain(&ders).map_err(|e| bad(format!("KeyInfo certificate {e}")))?;
        if chain.is_empty() {
            return Err(bad("KeyInfo carries no certificate"));
        }
        let err = |e: super::c14n::C14nError| bad(format!("canonicalisation: {}", e.0));
        let document = canonicalize(root, Some(*sig)).map_err(err)?;
        let signed_info_c14n = canonicalize(signed_info, None).map_err(err)?;

        let tag_id = root.attribute("tagId").unwrap_or_default().to_owned();
        let meta = child(root, NS_SWID, "Meta")?;
        let version = meta
            .attribute("colloquialVersion")
            .ok_or_else(|| bad("Meta without colloquialVersion"))?
            .to_owned();
        let payload = child(root, NS_SWID, "Payload")?;
        let mut measurements = Vec::new();
        for r in payload
            .children()
            .filter(|c| c.is_element() && c.tag_name().name() == "Resource")
        {
            let attr = |name: &str| {
                r.attribute(name)
                    .ok_or_else(|| bad(format!("Resource without {name}")))
            };
            let index: u16 = attr("index")?
                .parse()
                .map_err(|e| bad(format!("Resource index: {e}")))?;
            let alternatives: usize = attr("alternatives")?
                .parse()
                .map_err(|e| bad(format!("Resource {index} alternatives: {e}")))?;
            if alternatives == 0 || alternatives > 16 {
                return Err(bad(format!("Resource {index}: {alternatives} alternatives")));
            }
            let size: usize = attr("size")?
                .parse()
                .map_err(|e| bad(format!("Resource {index} size: {e}")))?;
            let active = !attr("active")?.eq_ignore_ascii_case("false");
            let hashes = (0..alternatives)
                .map(|k| {
                    let name = format!("Hash{k}");
                    let h = r
                        .attribute((NS_SHA384, name.as_str()))
                        .ok_or_else(|| bad(format!("Resource {index} without {name}")))?;
                    hex::decode(h).map_err(|e| bad(format!("Resource {index} {name}: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            if measurements.iter().any(|m: &RimMeasurement| m.index == index) {
                return Err(bad(format!("Resource index {index} appears twice")));
            }
            measurements.push(RimMeasurement {
                index,
                active,
                size,
                alternatives: hashes,
            });
        }
        Ok(Rim {
            tag_id,
            version,
            measurements,
            computed_digest: Sha384::digest(&document).into(),
            signed_digest,
            signed_info: signed_info_c14n,
            signature,
            chain,
            sha256: sha2::Sha256::digest(bytes).into(),
        })
    }

    /// Checks digest, signature and the KeyInfo chain to `root` at `now`; on success returns the
    /// window in which the chain is valid.
    pub(crate) fn verify(
        &self,
        root: &Cert,
        now: Timestamp,
        sigs: &SigCache,
    ) -> Result<(Timestamp, Timestamp), RimFailure> {
        if self.computed_digest.as_slice() != self.signed_digest.as_slice() {
            return Err(RimFailure::Digest {
                signed: hex::encode(&self.signed_digest),
                computed: hex::encode(self.computed_digest),
            });
        }
        let leaf = self.chain.first().ok_or(RimFailure::Signature)?;
        sigs.check(&[b"rim", &self.signed_info, &self.signature, &leaf.der], || {
            if leaf.verify_fixed(&self.signed_info, &self.signature) {
                Ok(())
            } else {
                Err(RimFailure::Signature)
            }
        })?;
        let (path, _) = split_root(&self.chain);
        verify_chain(path, root, now, sigs).map_err(RimFailure::Chain)
    }

    /// The validity window of the KeyInfo chain (without checking it), for messages.
    pub(crate) fn chain_window(&self) -> (Timestamp, Timestamp) {
        self.chain
            .iter()
            .fold((Timestamp(0), Timestamp(u64::MAX)), |w, c| {
                (w.0.max(c.not_before), w.1.min(c.not_after))
            })
    }

    /// The KeyInfo chain, leaf first.
    pub(crate) fn certs(&self) -> &[Cert] {
        &self.chain
    }

    /// Short identity for reports: version and file hash prefix.
    pub fn label(&self) -> String {
        format!(
            "{} (sha256 {})",
            self.version,
            hex::encode(self.sha256.get(..6).unwrap_or_default())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zg_test_utils::testdata;

    fn canonical(file: &str) -> (Vec<u8>, Vec<u8>) {
        let text = testdata::read_string(&format!("gpu/{file}"));
        let doc = Document::parse(&text).unwrap();
        let root = doc.root_element();
        let sig = root.last_element_child().unwrap();
        let si = sig.first_element_child().unwrap();
        (
            canonicalize(root, Some(sig)).unwrap(),
            canonicalize(si, None).unwrap(),
        )
    }

    #[test]
    fn canonical_forms_equal_the_committed_ones() {
        for name in [
            "NV_GPU_DRIVER_GH100_550.90.07",
            "NV_GPU_VBIOS_1010_0200_882_96009F0001",
        ] {
            let (doc, si) = canonical(&format!("{name}.xml"));
            assert_eq!(
                doc,
                testdata::read(&format!("gpu/derived/{name}.c14n-document.xml")),
                "{name}"
            );
            assert_eq!(
                si,
                testdata::read(&format!("gpu/derived/{name}.c14n-signedinfo.xml")),
                "{name}"
            );
            assert_eq!(si.len(), 896);
        }
        // Set B document digests from the README (§6.3).
        for (file, want) in [
            (
                "Driver_RIM_test_no_gpu.swidtag",
                "0dcd829b862b573145d06ea37e1a3397bf944e6d8d9e9821892971a64ea270daeb075f1cab9beef86a3d972b603887c1",
            ),
            (
                "1010_0200_882_96005E0001_test_no_gpu.swidtag",
                "c1e2aaf082e2bffe2b47882e6f5b7bdf8e73bb1d69e236d043559dc82747ac406c2b841a996ccd682c8b9940c0d87b2d",
            ),
            (
                "1010_0200_882_96005E0001_PROD.swidtag",
                "0f705ce3c653de7dda7c5251d4c132cd3b69c1ba4e02e831c1979694cb55a41d6c36a8fd73eb31e5b88a6469cc3c1fdb",
            ),
        ] {
            assert_eq!(hex::encode(Sha384::digest(canonical(file).0)), want, "{file}");
            let rim = Rim::parse(&testdata::read(&format!("gpu/{file}"))).unwrap();
            assert_eq!(hex::encode(rim.computed_digest), want);
            assert_eq!(rim.computed_digest.as_slice(), rim.signed_digest.as_slice());
        }
    }

    #[test]
    fn parsed_rim_contents() {
        let rim = Rim::parse(&testdata::read("gpu/NV_GPU_DRIVER_GH100_550.90.07.xml")).unwrap();
        assert_eq!(rim.version, "550.90.07");
        assert_eq!(rim.measurements.len(), 64);
        let active: Vec<u16> = rim
            .measurements
            .iter()
            .filter(|m| m.active)
            .map(|m| m.index)
            .collect();
        let mut want = vec![7];
        want.extend(21..=40);
        assert_eq!(active, want);
        assert_eq!(rim.measurements[35].alternatives.len(), 4);
        assert_eq!(rim.chain.len(), 4);
        assert_eq!(rim.chain[0].name(), "HCC RIM L4 Signer");
    }

    #[test]
    fn hostile_xml_is_refused() {
        let rim = testdata::read_string("gpu/NV_GPU_DRIVER_GH100_550.90.07.xml");
        // A second signature (wrapping), a DTD (entity expansion), a reference to a fragment.
        let two = rim.replacen(
            "<ns0:Payload",
            "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"/><ns0:Payload",
            1,
        );
        assert!(
            Rim::parse(two.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("2 ds:Signature")
        );
        let dtd = format!("<!DOCTYPE x [<!ENTITY a \"aaaa\">]>{rim}");
        assert!(
            Rim::parse(dtd.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("not XML")
        );
        let frag = rim.replacen("URI=\"\"", "URI=\"#x\"", 1);
        assert!(
            Rim::parse(frag.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("whole document")
        );
        assert!(Rim::parse(b"<a/>").is_err());
        assert!(Rim::parse(&[0xff, 0xfe]).is_err());
    }
}
