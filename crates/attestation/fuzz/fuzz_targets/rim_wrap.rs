//! XML signature wrapping, differentially: start from NVIDIA's signed driver RIM (seed the corpus with
//! `testdata/gpu/NV_GPU_*.xml`, as `just fuzz` does) and let libFuzzer mutate it. Whatever the mutation
//! (comments, namespaces, entities, a second Signature, moved Resources, whitespace, quoting), if the
//! verifier still accepts the document with the real report at a time the RIM is valid, then what it read
//! (version and every golden measurement) must be exactly what NVIDIA signed. No input may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use zg_attestation::{AttestationPolicy, GpuCollateral, GpuEvidence, Rim, Timestamp, Verifier};

const DRIVER_ID: &str = "NV_GPU_DRIVER_GH100_550.90.07";
const VBIOS_ID: &str = "NV_GPU_VBIOS_1010_0200_882_96009F0001";
static DRIVER: &[u8] = include_bytes!("../../../../testdata/gpu/NV_GPU_DRIVER_GH100_550.90.07.xml");
static VBIOS: &[u8] = include_bytes!("../../../../testdata/gpu/NV_GPU_VBIOS_1010_0200_882_96009F0001.xml");
static REPORT: &str = include_str!("../../../../testdata/gpu/hopperAttestationReport.txt");
static CHAIN: &str = include_str!("../../../../testdata/gpu/hopperCertChain.txt");
const NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

struct Fixture {
    verifier: Verifier,
    evidence: String,
    policy: AttestationPolicy,
    originals: [Rim; 2],
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let ev = GpuEvidence::from_report_and_chain(REPORT.as_bytes(), CHAIN).expect("set A");
    let nonce: [u8; 32] = hex::decode(NONCE).expect("hex").try_into().expect("32 bytes");
    Fixture {
        verifier: Verifier::new_prod(),
        evidence: ev.to_json(None),
        policy: AttestationPolicy::default().with_nonce(nonce),
        originals: [
            Rim::parse(DRIVER).expect("driver RIM"),
            Rim::parse(VBIOS).expect("VBIOS RIM"),
        ],
    }
});

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let Ok(mutated) = Rim::parse(data) else {
        return;
    };
    // Try the mutated document in the slot whose version it claims.
    for (slot, id) in [(0usize, DRIVER_ID), (1, VBIOS_ID)] {
        let mut c = GpuCollateral::new();
        let (d, v) = if slot == 0 { (data, VBIOS) } else { (DRIVER, data) };
        if c.add_rim(DRIVER_ID, d).is_err() || c.add_rim(VBIOS_ID, v).is_err() {
            continue;
        }
        let r = f
            .verifier
            .verify_gpu(&f.evidence, &f.policy, Some(&c), Timestamp(1_735_689_600));
        let name = if slot == 0 { "gpu.rim.driver" } else { "gpu.rim.vbios" };
        if r.check(name).is_some_and(|c| c.ok) {
            let original = &f.originals[slot];
            assert_eq!(mutated.version, original.version, "{id}: version changed under a valid signature");
            assert_eq!(
                mutated.measurements, original.measurements,
                "{id}: golden measurements changed under a valid signature"
            );
        }
    }
});
