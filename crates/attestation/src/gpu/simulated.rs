//! The simulated GPU: SPDM reports, device certificates and signed RIMs made in software for
//! development and tests, in exactly NVIDIA's formats, so they exercise the real verifier. They
//! chain to locally generated P-384 roots named [`SIMULATED_GPU_ROOT_CN`] and
//! [`SIMULATED_RIM_ROOT_CN`] — never NVIDIA's — and the verifier refuses them unless the policy sets
//! `dangerous_allow_simulated` (check `gpu.simulated.allowed`), and then labels the report
//! "SIMULATED — NOT A REAL TEE". The driver version is `SIMULATED.0.1`, so no version policy
//! written for real drivers matches it by accident.

use super::asn1::write as w;
use super::c14n::canonicalize;
use super::{GpuDeviceEvidence, GpuEvidence, GpuProducer};
use crate::{Error, Result};
use base64::Engine as _;
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use sha2::{Digest as _, Sha384};

/// Common name of the simulated device root.
pub const SIMULATED_GPU_ROOT_CN: &str = "ZG SIMULATED GPU ROOT - NOT NVIDIA";
/// Common name of the simulated RIM root.
pub const SIMULATED_RIM_ROOT_CN: &str = "ZG SIMULATED RIM ROOT - NOT NVIDIA";
/// Driver version the simulated GPU reports.
pub const SIMULATED_DRIVER_VERSION: &str = "SIMULATED.0.1";
const PROJECT: &str = "ZGSI";
const PROJECT_SKU: &str = "0000";
const CHIP_SKU: &str = "SIM";
/// VBIOS bytes b0..b7 (version `00.00.00.00.01`).
const VBIOS: [u8; 8] = [0, 0, 0, 0, 1, 0, 0, 0];

fn fail(reason: impl Into<String>) -> Error {
    Error::Backend {
        backend: "simulated-gpu",
        reason: reason.into(),
    }
}

struct Key {
    asn1: EcdsaKeyPair,
    fixed: EcdsaKeyPair,
}

impl Key {
    fn new(rng: &SystemRandom) -> Result<Self> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, rng)
            .map_err(|e| fail(format!("key generation: {e}")))?;
        let load = |alg| {
            EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), rng).map_err(|e| fail(format!("key load: {e}")))
        };
        Ok(Key {
            asn1: load(&signature::ECDSA_P384_SHA384_ASN1_SIGNING)?,
            fixed: load(&signature::ECDSA_P384_SHA384_FIXED_SIGNING)?,
        })
    }

    fn public(&self) -> &[u8] {
        self.fixed.public_key().as_ref()
    }
}

fn name(cn: &str) -> Vec<u8> {
    w::seq(&[&w::set(&[&w::seq(&[&w::oid("2.5.4.3"), &w::utf8(cn)])])])
}

/// A minimal X.509 v3 certificate (P-384, ecdsa-with-SHA384).
#[allow(
    clippy::too_many_arguments,
    reason = "private builder with four call sites, each naming every field"
)]
fn certificate(
    rng: &SystemRandom,
    serial: &[u8],
    issuer_cn: &str,
    subject_cn: &str,
    subject_key: &[u8],
    signer: &Key,
    ca: bool,
    fwid: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let alg = w::seq(&[&w::oid("1.2.840.10045.4.3.3")]);
    let validity = w::seq(&[
        &w::tlv(0x17, b"240101000000Z"),
        &w::generalized_time("99991231235959"),
    ]);
    let spki = w::seq(&[
        &w::seq(&[&w::oid("1.2.840.10045.2.1"), &w::oid("1.3.132.0.34")]),
        &w::bits(subject_key),
    ]);
    let basic = if ca { w::seq(&[&w::true_()]) } else { w::seq(&[]) };
    // keyUsage: keyCertSign|cRLSign (CA) or digitalSignature (leaf).
    let ku = if ca {
        w::tlv(0x03, &[0x01, 0x06])
    } else {
        w::tlv(0x03, &[0x07, 0x80])
    };
    let mut exts = vec![
        w::seq(&[&w::oid("2.5.29.19"), &w::true_(), &w::octets(&basic)]),
        w::seq(&[&w::oid("2.5.29.15"), &w::true_(), &w::octets(&ku)]),
    ];
    if let Some(f) = fwid {
        let value = w::seq(&[&w::uint(&[1]), &w::octets(f)]);
        exts.push(w::seq(&[&w::oid("2.23.133.5.4.1"), &w::octets(&value)]));
    }
    let ext_refs: Vec<&[u8]> = exts.iter().map(Vec::as_slice).collect();
    let tbs = w::seq(&[
        &w::explicit(0, &w::uint(&[2])),
        &w::uint(serial),
        &alg,
        &name(issuer_cn),
        &validity,
        &name(subject_cn),
        &spki,
        &w::explicit(3, &w::seq(&ext_refs)),
    ]);
    let sig = signer
        .asn1
        .sign(rng, &tbs)
        .map_err(|e| fail(format!("certificate signing: {e}")))?;
    Ok(w::seq(&[&tbs, &alg, &w::bits(sig.as_ref())]))
}

fn measurement(k: u8) -> Vec<u8> {
    Sha384::digest(format!("zg-simulated-gpu/measurement/{k}").as_bytes()).to_vec()
}

struct Device {
    key: Key,
    chain: Vec<Vec<u8>>,
    fwid: Vec<u8>,
}

/// A software GPU (or several) producing NVIDIA-format evidence signed by simulated roots.
pub struct SimulatedGpu {
    rng: SystemRandom,
    root: Key,
    root_cert: Vec<u8>,
    devices: Vec<Device>,
    rims: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for SimulatedGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedGpu")
            .field("gpus", &self.devices.len())
            .field("root", &hex::encode(self.root.public()))
            .finish_non_exhaustive()
    }
}

impl SimulatedGpu {
    /// `count` simulated GPUs (1..=16) with fresh keys, and their signed RIMs.
    pub fn new(count: usize) -> Result<Self> {
        if count == 0 || count > super::MAX_GPUS {
            return Err(fail(format!("{count} GPUs: choose 1 to {}", super::MAX_GPUS)));
        }
        let rng = SystemRandom::new();
        let root = Key::new(&rng)?;
        let root_cert = certificate(
            &rng,
            &[1],
            SIMULATED_GPU_ROOT_CN,
            SIMULATED_GPU_ROOT_CN,
            root.public(),
            &root,
            true,
            None,
        )?;
        let mut devices = Vec::with_capacity(count);
        for i in 0..count {
            let key = Key::new(&rng)?;
            let fwid = Sha384::digest(format!("zg-simulated-gpu/fwid/{i}").as_bytes()).to_vec();
            let serial = [0x10, u8::try_from(i).unwrap_or(u8::MAX)];
            let leaf = certificate(
                &rng,
                &serial,
                SIMULATED_GPU_ROOT_CN,
                &format!("ZG SIMULATED GPU {i} - NOT NVIDIA"),
                key.public(),
                &root,
                false,
                Some(&fwid),
            )?;
            devices.push(Device {
                key,
                chain: vec![leaf, root_cert.clone()],
                fwid,
            });
        }
        let rim_root = Key::new(&rng)?;
        let rim_root_cert = certificate(
            &rng,
            &[2],
            SIMULATED_RIM_ROOT_CN,
            SIMULATED_RIM_ROOT_CN,
            rim_root.public(),
            &rim_root,
            true,
            None,
        )?;
        let signer = Key::new(&rng)?;
        let signer_cert = certificate(
            &rng,
            &[3],
            SIMULATED_RIM_ROOT_CN,
            "ZG SIMULATED RIM SIGNER - NOT NVIDIA",
            signer.public(),
            &rim_root,
            false,
            None,
        )?;
        let certs = [signer_cert, rim_root_cert];
        let vbios_version = "00.00.00.00.01";
        let rims = vec![
            (
                format!("NV_GPU_DRIVER_GH100_{SIMULATED_DRIVER_VERSION}"),
                rim_xml(&rng, SIMULATED_DRIVER_VERSION, 32..=63, &signer, &certs)?,
            ),
            (
                format!("NV_GPU_VBIOS_{PROJECT}_{PROJECT_SKU}_{CHIP_SKU}_0000000001"),
                rim_xml(&rng, vbios_version, 0..=31, &signer, &certs)?,
            ),
        ];
        Ok(SimulatedGpu {
            rng,
            root,
            root_cert,
            devices,
            rims,
        })
    }

    /// The simulated device root's public key (SEC1, 97 bytes): pin it in
    /// `AttestationPolicy::dangerous_simulated_roots` (hex) if wanted.
    pub fn root_public_key(&self) -> Vec<u8> {
        self.root.public().to_vec()
    }

    /// The simulated device root certificate (DER).
    pub fn root_certificate(&self) -> &[u8] {
        &self.root_cert
    }

    fn report(&self, d: &Device, nonce: &[u8; 32]) -> Result<Vec<u8>> {
        let mut r = vec![0x11, 0xE0, 0x01, 0xFF];
        r.extend_from_slice(nonce);
        r.push(0);
        let mut record = Vec::new();
        for k in 1..=64u8 {
            record.extend_from_slice(&[k, 1, 51, 0, 1, 48, 0]);
            record.extend_from_slice(&measurement(k));
        }
        let mut opaque = Vec::new();
        let mut tlv = |t: u16, v: &[u8]| {
            opaque.extend_from_slice(&t.to_le_bytes());
            // Every value here is far below 64 KiB.
            opaque.extend_from_slice(&u16::try_from(v.len()).unwrap_or(u16::MAX).to_le_bytes());
            opaque.extend_from_slice(v);
        };
        tlv(
            super::spdm::opaque::DRIVER_VERSION,
            format!("{SIMULATED_DRIVER_VERSION}\0").as_bytes(),
        );
        tlv(super::spdm::opaque::VBIOS_VERSION, &VBIOS);
        tlv(super::spdm::opaque::PROJECT, format!("{PROJECT}\0").as_bytes());
        tlv(
            super::spdm::opaque::PROJECT_SKU,
            format!("{PROJECT_SKU}\0").as_bytes(),
        );
        tlv(super::spdm::opaque::CHIP_SKU, format!("{CHIP_SKU}\0").as_bytes());
        tlv(super::spdm::opaque::FWID, &d.fwid);
        let mut responder_nonce = [0u8; 32];
        self.rng
            .fill(&mut responder_nonce)
            .map_err(|_| fail("random nonce"))?;
        r.extend_from_slice(&[0x11, 0x60, 0, 0, 64]);
        let len = u32::try_from(record.len()).map_err(|_| fail("record too long"))?;
        r.extend_from_slice(len.to_le_bytes().get(..3).unwrap_or_default());
        r.extend_from_slice(&record);
        r.extend_from_slice(&responder_nonce);
        r.extend_from_slice(
            &u16::try_from(opaque.len())
                .map_err(|_| fail("opaque too long"))?
                .to_le_bytes(),
        );
        r.extend_from_slice(&opaque);
        let sig = d
            .key
            .fixed
            .sign(&self.rng, &r)
            .map_err(|e| fail(format!("report signing: {e}")))?;
        r.extend_from_slice(sig.as_ref());
        Ok(r)
    }
}

impl GpuProducer for SimulatedGpu {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn evidence(&self, nonce: &[u8; 32]) -> Result<GpuEvidence> {
        let devices = self
            .devices
            .iter()
            .map(|d| {
                Ok(GpuDeviceEvidence {
                    report: self.report(d, nonce)?,
                    cert_chain: d.chain.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GpuEvidence {
            arch: "HOPPER".into(),
            devices,
            rims: self.rims.clone(),
            ocsp: Vec::new(),
        })
    }
}

/// A signed RIM whose active golden values are the simulated measurements at `active` (golden
/// index k = SPDM block k+1).
fn rim_xml(
    rng: &SystemRandom,
    version: &str,
    active: std::ops::RangeInclusive<u16>,
    signer: &Key,
    certs: &[Vec<u8>],
) -> Result<Vec<u8>> {
    const DIGEST: &str = "ZGDIGESTPLACEHOLDER";
    const SIGVAL: &str = "ZGSIGNATUREPLACEHOLDER";
    let mut x = String::from(
        "<SoftwareIdentity xmlns=\"http://standards.iso.org/iso/19770/-2/2015/schema.xsd\" \
         xmlns:ns0=\"http://standards.iso.org/iso/19770/-2/2015/schema.xsd\" \
         xmlns:ns2=\"http://www.w3.org/2001/04/xmlenc#sha384\" corpus=\"false\" name=\"ZG-SIMULATED-GPU\" \
         patch=\"false\" supplemental=\"false\" tagId=\"zg-simulated\" version=\"1.0\" tagVersion=\"0\">\n",
    );
    x.push_str("    <ns0:Entity name=\"zg-compute SIMULATED GPU - NOT NVIDIA\" role=\"softwareCreator tagCreator\"/>\n");
    x.push_str(&format!(
        "    <ns0:Meta colloquialVersion=\"{version}\" edition=\"GPU\" product=\"ZG-SIMULATED\" revision=\"r1\"/>\n    <ns0:Payload>\n"
    ));
    for i in 0..64u16 {
        let on = active.contains(&i);
        let value = u8::try_from(i.saturating_add(1))
            .map(measurement)
            .unwrap_or_default();
        x.push_str(&format!(
            "        <ns0:Resource type=\"Measurement\" index=\"{i}\" active=\"{}\" alternatives=\"1\" ns2:Hash0=\"{}\" name=\"Measurement_{i}\" size=\"48\"/>\n",
            if on { "True" } else { "False" },
            hex::encode(value)
        ));
    }
    x.push_str("    </ns0:Payload>\n");
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let cert_xml: String = certs
        .iter()
        .map(|c| format!("<ds:X509Certificate>{}</ds:X509Certificate>", b64(c)))
        .collect();
    x.push_str(&format!(
        "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>\
         <ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2006/12/xml-c14n11\"/>\
         <ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384\"/>\
         <ds:Reference URI=\"\"><ds:Transforms>\
         <ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\
         <ds:Transform Algorithm=\"http://www.w3.org/2006/12/xml-c14n11\"/></ds:Transforms>\
         <ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#sha384\"/>\
         <ds:DigestValue>{DIGEST}</ds:DigestValue></ds:Reference></ds:SignedInfo>\
         <ds:SignatureValue>{SIGVAL}</ds:SignatureValue>\
         <ds:KeyInfo><ds:X509Data>{cert_xml}</ds:X509Data></ds:KeyInfo></ds:Signature></SoftwareIdentity>"
    ));
    let c14n_err = |e: super::c14n::C14nError| fail(format!("canonicalisation: {}", e.0));
    let digest = {
        let doc = roxmltree::Document::parse(&x).map_err(|e| fail(format!("RIM XML: {e}")))?;
        let root = doc.root_element();
        let sig = root.last_element_child();
        b64(&Sha384::digest(canonicalize(root, sig).map_err(c14n_err)?))
    };
    let x = x.replace(DIGEST, &digest);
    let signed_info = {
        let doc = roxmltree::Document::parse(&x).map_err(|e| fail(format!("RIM XML: {e}")))?;
        let si = doc
            .descendants()
            .find(|n| n.tag_name().name() == "SignedInfo")
            .ok_or_else(|| fail("no SignedInfo"))?;
        canonicalize(si, None).map_err(c14n_err)?
    };
    let sig = signer
        .fixed
        .sign(rng, &signed_info)
        .map_err(|e| fail(format!("RIM signing: {e}")))?;
    Ok(x.replace(SIGVAL, &b64(sig.as_ref())).into_bytes())
}
