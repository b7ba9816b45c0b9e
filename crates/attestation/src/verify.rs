//! The verifier: DCAP (or the simulated chain), then every policy check, into one report; plus a
//! cache so a repeated check of the same evidence under the same policy and collateral is cheap.

use crate::dcap::{self, STEPS};
use crate::eventlog::{DigestCheck, EventLog};
use crate::gpu::{self, ExpectedNonce, GpuCollateral, GpuRoots};
use crate::producer::simulated::{SIMULATED_QE_VENDOR_ID, check_simulated};
use crate::report::{SIMULATED_BANNER, VerificationReport};
use crate::reportdata::{ReportData, ReportDataLayout};
use crate::{AttestationPolicy, Collateral, Evidence, TcbStatus, TdQuote, Timestamp};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Intel SGX Root CA (DER), SHA-256 `44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3`.
pub const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("intel_sgx_root_ca.der");
/// Allowed clock skew for a binding's `issued_at` in the future.
const CLOCK_SKEW_SECS: u64 = 300;
/// Cache entries kept before the cache is cleared.
const CACHE_CAPACITY: usize = 4096;

struct CacheEntry {
    /// The exact evidence the report is for: compared in full on every hit, so the cache key only
    /// has to hash the quote (the evidence's event log can be tens of kilobytes).
    evidence: Evidence,
    report: Arc<VerificationReport>,
    valid_from: Timestamp,
    valid_until: Timestamp,
}

/// Verifies evidence against a trust root, a policy, collateral and an explicit time. Pure: does
/// no I/O. Keeps a cache of passing reports keyed by (evidence hash, policy hash, collateral digest),
/// each valid only inside the time window it was computed for.
pub struct Verifier {
    root_ca_der: Vec<u8>,
    gpu_roots: GpuRoots,
    /// Memo of certificate/RIM signature checks that succeeded (time checks are never memoised).
    sigs: gpu::x509::SigCache,
    cache: Mutex<HashMap<[u8; 32], CacheEntry>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("root_ca_sha256", &hex::encode(Sha256::digest(&self.root_ca_der)))
            .field("cached", &self.cache_len())
            .finish()
    }
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new_prod()
    }
}

impl Verifier {
    /// A verifier anchored at Intel's production SGX Root CA (embedded).
    pub fn new_prod() -> Self {
        Self::with_root_ca(INTEL_SGX_ROOT_CA_DER.to_vec())
    }

    /// A verifier anchored at another root (tests, Intel's pre-production root).
    pub fn with_root_ca(root_ca_der: Vec<u8>) -> Self {
        Verifier {
            root_ca_der,
            gpu_roots: GpuRoots::nvidia(),
            sigs: gpu::x509::SigCache::default(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The same verifier with other GPU trust anchors (default: NVIDIA's, embedded).
    pub fn with_gpu_roots(mut self, roots: GpuRoots) -> Self {
        self.gpu_roots = roots;
        self
    }

    /// Number of cached reports.
    pub fn cache_len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], CacheEntry>> {
        // The map only holds immutable reports, so a poisoned lock still guards consistent data.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Verifies `evidence` under `policy` with `collateral` (None only for simulated evidence) at `now`.
    /// GPU evidence, if any, is checked with only the collateral it staples; see
    /// [`Verifier::verify_with_gpu`].
    pub fn verify(
        &self,
        evidence: &Evidence,
        policy: &AttestationPolicy,
        collateral: Option<&Collateral>,
        now: Timestamp,
    ) -> Arc<VerificationReport> {
        self.verify_with_gpu(evidence, policy, collateral, None, now)
    }

    /// Verifies `evidence` (TDX quote and, when present or required, NVIDIA GPU evidence) with
    /// DCAP `collateral` and GPU collateral (RIMs, OCSP responses) at `now`.
    pub fn verify_with_gpu(
        &self,
        evidence: &Evidence,
        policy: &AttestationPolicy,
        collateral: Option<&Collateral>,
        gpu_collateral: Option<&GpuCollateral>,
        now: Timestamp,
    ) -> Arc<VerificationReport> {
        let mut h = Sha256::new();
        h.update(Sha256::digest(&evidence.quote));
        h.update(policy.digest());
        h.update(collateral.map(Collateral::digest).unwrap_or_default());
        h.update(gpu_collateral.map(GpuCollateral::digest).unwrap_or_default());
        h.update(self.gpu_roots.digest());
        let key: [u8; 32] = h.finalize().into();
        if let Some(e) = self.lock().get(&key)
            && e.evidence == *evidence
            && e.valid_from <= now
            && now <= e.valid_until
        {
            let mut report = (*e.report).clone();
            report.verified_at = now;
            return Arc::new(report);
        }
        let (report, window) = self.evaluate(evidence, policy, collateral, gpu_collateral, now);
        let report = Arc::new(report);
        if report.passed() {
            let mut cache = self.lock();
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(
                key,
                CacheEntry {
                    evidence: evidence.clone(),
                    report: report.clone(),
                    valid_from: window.0,
                    valid_until: window.1,
                },
            );
        }
        report
    }

    /// Verifies NVIDIA GPU evidence alone (JSON, see [`crate::GpuEvidence`]): the `gpu.*` checks
    /// against `policy.nonce`, with `gpu_collateral` at `now`. Not cached.
    pub fn verify_gpu(
        &self,
        gpu_evidence: &str,
        policy: &AttestationPolicy,
        gpu_collateral: Option<&GpuCollateral>,
        now: Timestamp,
    ) -> VerificationReport {
        let mut r = VerificationReport::new(now);
        let expected = ExpectedNonce {
            nonce: policy.nonce,
            source: "the policy",
        };
        gpu::verify_into(
            &mut r,
            gpu_evidence,
            gpu_collateral,
            &self.gpu_roots,
            &self.sigs,
            policy,
            expected,
            now,
        );
        r.finish()
    }

    /// Runs every check; returns the report and the time window in which its result holds.
    fn evaluate(
        &self,
        ev: &Evidence,
        policy: &AttestationPolicy,
        collateral: Option<&Collateral>,
        gpu_collateral: Option<&GpuCollateral>,
        now: Timestamp,
    ) -> (VerificationReport, (Timestamp, Timestamp)) {
        let mut r = VerificationReport::new(now);
        let mut window = (Timestamp(0), Timestamp(u64::MAX));
        let quote = match TdQuote::parse(&ev.quote) {
            Ok(q) => {
                r.push(
                    "quote.parse",
                    "a TDX quote v4/v5",
                    format!("v{} {:?} body, {} bytes", q.version, q.body, ev.quote.len()),
                    true,
                );
                q
            }
            Err(e) => {
                r.push("quote.parse", "a TDX quote v4/v5", e.to_string(), false);
                return (r.finish(), window);
            }
        };
        let hx = |b: &[u8]| hex::encode(b);
        r.quote_version = Some(quote.version);
        r.mrtd = Some(hx(&quote.mrtd));
        let [r0, r1, r2, r3] = quote.rtmr;
        (r.rtmr0, r.rtmr1, r.rtmr2, r.rtmr3) = (Some(hx(&r0)), Some(hx(&r1)), Some(hx(&r2)), Some(hx(&r3)));
        r.mr_config_id = Some(hx(&quote.mr_config_id));
        r.report_data = Some(hx(&quote.report_data));

        if quote.qe_vendor_id == SIMULATED_QE_VENDOR_ID {
            self.simulated_chain(&mut r, ev, policy);
        } else {
            r.fmspc = quote.fmspc().ok();
            self.dcap_chain(&mut r, ev, policy, collateral, now, &mut window);
        }
        tcb_checks(&mut r, policy);
        r.push(
            "td.debug",
            if policy.dangerous_allow_debug {
                "debug allowed (dangerous_allow_debug)"
            } else {
                "not a debug TD"
            },
            if quote.is_debug() { "DEBUG TD" } else { "not debug" },
            !quote.is_debug() || policy.dangerous_allow_debug,
        );
        image_check(&mut r, &quote, policy);
        event_log_checks(&mut r, &quote, ev, policy);
        binding_checks(&mut r, &quote, ev, policy, now, &mut window);
        self.gpu_checks(&mut r, &quote, ev, policy, gpu_collateral, now, &mut window);
        (r.finish(), window)
    }

    /// The `gpu.*` checks: GPU evidence is verified whenever present, and required by `require_gpu`.
    /// Its nonce must be the policy's, else the one REPORTDATA binds, else SHA-256 of REPORTDATA
    /// (layouts without a nonce: the provider binds its GPU reports to that quote).
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site; the arguments are the verification inputs"
    )]
    fn gpu_checks(
        &self,
        r: &mut VerificationReport,
        quote: &TdQuote,
        ev: &Evidence,
        policy: &AttestationPolicy,
        gpu_collateral: Option<&GpuCollateral>,
        now: Timestamp,
        window: &mut (Timestamp, Timestamp),
    ) {
        let Some(text) = &ev.gpu_evidence else {
            if policy.require_gpu {
                r.push(
                    "gpu.present",
                    "NVIDIA GPU evidence (policy require_gpu)",
                    "none supplied",
                    false,
                );
            }
            return;
        };
        let expected = match policy.nonce {
            Some(n) => ExpectedNonce {
                nonce: Some(n),
                source: "the verifier",
            },
            None => match ReportData::parse(policy.report_data_layout, &quote.report_data)
                .ok()
                .and_then(|p| p.nonce())
            {
                Some(n) => ExpectedNonce {
                    nonce: Some(n),
                    source: "REPORTDATA",
                },
                None => ExpectedNonce {
                    nonce: Some(Sha256::digest(quote.report_data).into()),
                    source: "SHA-256 of REPORTDATA",
                },
            },
        };
        let simulated_before = r.simulated;
        let w = gpu::verify_into(
            r,
            text,
            gpu_collateral,
            &self.gpu_roots,
            &self.sigs,
            policy,
            expected,
            now,
        );
        if simulated_before && r.simulated {
            r.notice = Some(SIMULATED_BANNER.to_owned());
        }
        window.0 = window.0.max(w.0);
        window.1 = window.1.min(w.1);
    }

    fn simulated_chain(&self, r: &mut VerificationReport, ev: &Evidence, policy: &AttestationPolicy) {
        r.simulated = true;
        r.notice = Some(SIMULATED_BANNER.to_owned());
        r.not_verified.push(format!(
            "{SIMULATED_BANNER}: no hardware attests these measurements or keys"
        ));
        r.push(
            "simulated.allowed",
            "real Intel TDX evidence (or policy dangerous_allow_simulated = true)",
            if policy.dangerous_allow_simulated {
                "simulated evidence, allowed by policy"
            } else {
                "simulated evidence"
            },
            policy.dangerous_allow_simulated,
        );
        match check_simulated(&ev.quote) {
            Ok(c) => {
                let root = hex::encode(&c.root);
                if policy.dangerous_simulated_roots.is_empty() {
                    r.info(
                        "simulated.root",
                        "a pinned simulated root",
                        format!("{root} (not pinned)"),
                        false,
                    );
                } else {
                    let ok = policy
                        .dangerous_simulated_roots
                        .iter()
                        .any(|p| p.trim_start_matches("0x").eq_ignore_ascii_case(&root));
                    r.push("simulated.root", "one of dangerous_simulated_roots", root, ok);
                }
                let v = |b: bool| if b { "valid" } else { "INVALID" };
                r.push(
                    "quote.qe_report_signature",
                    "QE report signed by the simulated root",
                    v(c.qe_report_signature),
                    c.qe_report_signature,
                );
                r.push(
                    "quote.qe_report_data",
                    "QE report binds the attestation key",
                    v(c.qe_report_data),
                    c.qe_report_data,
                );
                r.push(
                    "quote.signature",
                    "TD report signed by the attestation key",
                    v(c.quote_signature),
                    c.quote_signature,
                );
            }
            Err(e) => r.push(
                "quote.signature",
                "a simulated signature chain",
                e.to_string(),
                false,
            ),
        }
    }

    fn dcap_chain(
        &self,
        r: &mut VerificationReport,
        ev: &Evidence,
        policy: &AttestationPolicy,
        collateral: Option<&Collateral>,
        now: Timestamp,
        window: &mut (Timestamp, Timestamp),
    ) {
        let Some(collateral) = collateral else {
            r.push(
                "collateral.present",
                "DCAP collateral for this platform",
                "none supplied",
                false,
            );
            return;
        };
        match dcap::verify(
            &self.root_ca_der,
            &ev.quote,
            collateral,
            now,
            policy.dangerous_allow_debug,
        ) {
            Ok(ok) => {
                for (name, expected) in STEPS {
                    let found = match name {
                        "collateral.tcb_info" => format!(
                            "valid at {now}; evaluation data #{}",
                            collateral.tcb_evaluation_data_number()
                        ),
                        "tcb.level" => format!("platform {}, QE {}", ok.platform_status, ok.qe_status),
                        _ => "verified".to_owned(),
                    };
                    r.push(name, expected, found, true);
                }
                r.push(
                    "collateral.validity",
                    format!("{now} inside the collateral window"),
                    format!("{} .. {}", ok.window.0, ok.window.1),
                    ok.window.0 <= now && now <= ok.window.1,
                );
                r.collateral_window = Some(ok.window);
                *window = ok.window;
                r.tcb_status = Some(ok.status);
                r.advisory_ids = ok.advisory_ids;
            }
            Err(err) => {
                let failed_at = err.step.unwrap_or(usize::MAX);
                if err.step.is_none() {
                    r.push("dcap", "Intel DCAP verification", err.message.clone(), false);
                }
                for (i, (name, expected)) in STEPS.iter().enumerate() {
                    if err.step.is_none() || i > failed_at {
                        r.push(
                            name,
                            *expected,
                            "not evaluated (an earlier DCAP step failed)",
                            false,
                        );
                    } else if i == failed_at {
                        r.push(name, *expected, err.message.clone(), false);
                    } else {
                        r.push(name, *expected, "verified", true);
                    }
                }
            }
        }
    }
}

fn tcb_checks(r: &mut VerificationReport, policy: &AttestationPolicy) {
    if r.simulated {
        r.info(
            "tcb.status",
            format!("{} or better", policy.min_tcb_status.as_str()),
            "n/a (simulated)",
            false,
        );
        return;
    }
    let expected = format!("{} or better", policy.min_tcb_status.as_str());
    match r.tcb_status.clone() {
        Some(s) => {
            let ok = TcbStatus::parse(&s)
                .is_some_and(|st| st != TcbStatus::Revoked && st <= policy.min_tcb_status);
            r.push("tcb.status", expected, s, ok);
        }
        None => r.push(
            "tcb.status",
            expected,
            "unknown: DCAP verification did not complete",
            false,
        ),
    }
    let bad: Vec<&String> = r
        .advisory_ids
        .iter()
        .filter(|a| {
            !policy
                .allowed_advisory_ids
                .iter()
                .any(|x| x.eq_ignore_ascii_case(a))
        })
        .collect();
    let expected = if policy.allowed_advisory_ids.is_empty() {
        "no advisories".to_owned()
    } else {
        format!("only {}", policy.allowed_advisory_ids.join(", "))
    };
    let found = if r.advisory_ids.is_empty() {
        "none".to_owned()
    } else {
        r.advisory_ids.join(", ")
    };
    let ok = bad.is_empty();
    r.push("tcb.advisories", expected, found, ok);
}

fn eq_hex(expected: &str, actual: &[u8]) -> bool {
    expected
        .trim_start_matches("0x")
        .eq_ignore_ascii_case(&hex::encode(actual))
}

fn image_check(r: &mut VerificationReport, q: &TdQuote, policy: &AttestationPolicy) {
    let found = format!(
        "mrtd {} rtmr0 {} rtmr1 {} rtmr2 {}",
        hex::encode(q.mrtd),
        hex::encode(q.rtmr[0]),
        hex::encode(q.rtmr[1]),
        hex::encode(q.rtmr[2])
    );
    // Issue 9 item 10: a policy that pins nothing accepts any genuine TD running any code.
    if policy.has_allowlist() {
        r.push(
            "measurements.allowlist",
            "the policy pins the image or application (images, allowed_compose_hashes, allowed_app_ids)",
            format!(
                "{} image(s), {} compose hash(es), {} app id(s)",
                policy.images.len(),
                policy.allowed_compose_hashes.len(),
                policy.allowed_app_ids.len()
            ),
            true,
        );
    } else if policy.dangerous_any_image {
        r.push(
            "measurements.allowlist",
            "the policy pins the image or application, or says dangerous_any_image",
            "empty allow-list, accepted because dangerous_any_image = true: ANY image and application pass",
            true,
        );
        r.allowlist_matches.push("any image (dangerous_any_image)".into());
        r.not_verified
            .push("which image and application run: the policy allows any (dangerous_any_image)".into());
    } else {
        r.push(
            "measurements.allowlist",
            "the policy pins the image or application (images, allowed_compose_hashes, allowed_app_ids), \
             or says dangerous_any_image = true",
            "empty allow-list: any genuine TD running modified code would pass; list the image measurements \
             (e.g. deploy/policy.toml) or set dangerous_any_image",
            false,
        );
    }
    if policy.images.is_empty() {
        r.info(
            "measurements.image",
            "an allow-listed OS image (policy images)",
            format!("not pinned: the policy lists no image ({found})"),
            false,
        );
        return;
    }
    let matches = |img: &crate::ImagePolicy| {
        [
            (&img.mrtd, &q.mrtd),
            (&img.rtmr0, &q.rtmr[0]),
            (&img.rtmr1, &q.rtmr[1]),
            (&img.rtmr2, &q.rtmr[2]),
        ]
        .iter()
        .all(|(want, got)| want.as_ref().is_none_or(|w| eq_hex(w, got.as_slice())))
    };
    let names: Vec<&str> = policy.images.iter().map(|i| i.name.as_str()).collect();
    match policy.images.iter().find(|i| matches(i)) {
        Some(img) => {
            r.allowlist_matches.push(format!("image {}", img.name));
            r.push(
                "measurements.image",
                format!("one of: {}", names.join(", ")),
                format!("{} ({found})", img.name),
                true,
            )
        }
        None => r.push(
            "measurements.image",
            format!("one of: {}", names.join(", ")),
            found,
            false,
        ),
    }
}

fn event_log_checks(r: &mut VerificationReport, q: &TdQuote, ev: &Evidence, policy: &AttestationPolicy) {
    let Some(text) = &ev.event_log else {
        let expected = "an event log whose replay equals the quote's RTMRs";
        if policy.require_event_log {
            r.push("event_log.present", expected, "none supplied", false);
        } else {
            r.info(
                "event_log.present",
                expected,
                "none supplied (not required by policy)",
                false,
            );
        }
        app_checks(r, policy, None);
        return;
    };
    let log = match EventLog::from_dstack_json(text) {
        Ok(l) => l,
        Err(e) => {
            r.push(
                "event_log.parse",
                "a well-formed event log with matching runtime digests",
                e.to_string(),
                false,
            );
            app_checks(r, policy, None);
            return;
        }
    };
    let checked = log
        .digest_checks
        .iter()
        .filter(|c| **c != DigestCheck::NotCheckable)
        .count();
    r.push(
        "event_log.parse",
        "a well-formed event log with matching runtime digests",
        format!(
            "{} events; {checked} runtime digests recomputed from their payloads",
            log.events.len()
        ),
        true,
    );
    let replayed = log.replay();
    let counts = log.counts();
    for (i, (got, want)) in replayed.iter().zip(q.rtmr.iter()).enumerate() {
        let name = format!("event_log.rtmr{i}");
        if counts.get(i).copied().unwrap_or(0) == 0 && i < 3 {
            r.info(
                &name,
                hex::encode(want),
                "no events for this register in the log",
                false,
            );
        } else {
            r.push(&name, hex::encode(want), hex::encode(got), got == want);
        }
    }
    identity_check(r, &log);
    let app = log.app_info();
    app_checks(r, policy, Some(&app));
    r.app = Some(app);
}

/// RTMR3 events that name what runs: each is measured once, at boot, before the application starts.
pub(crate) const IDENTITY_EVENTS: &[&str] = &[
    "compose-hash",
    "app-id",
    "instance-id",
    "os-image-hash",
    "key-provider",
];

/// `event_log.identity`: every identity event appears at most once in RTMR3.
///
/// Who: the operator of the TD. An application inside it that can reach the guest agent (dstack maps
/// `/var/run/dstack.sock` into containers) may emit runtime events with any name; they extend RTMR3,
/// so the log still replays. Worst case without this check: boot a compose the policy does not allow,
/// then emit `compose-hash` (or `app-id`) with an allowed value; the last event used to win and the
/// allow-list passed. A repeated identity event is refused outright: which one is genuine cannot be
/// told from the log.
fn identity_check(r: &mut VerificationReport, log: &EventLog) {
    let repeated: Vec<String> = IDENTITY_EVENTS
        .iter()
        .filter_map(|name| {
            let n = log
                .events
                .iter()
                .filter(|e| e.imr == 3 && e.event == *name)
                .count();
            (n > 1).then(|| format!("{name} {n} times"))
        })
        .collect();
    r.push(
        "event_log.identity",
        "each identity event (compose-hash, app-id, instance-id, os-image-hash, key-provider) at most once",
        if repeated.is_empty() {
            "each at most once".to_owned()
        } else {
            format!("repeated: {} (an application emitted one)", repeated.join(", "))
        },
        repeated.is_empty(),
    );
}

fn app_checks(r: &mut VerificationReport, policy: &AttestationPolicy, app: Option<&crate::AppInfo>) {
    for (name, allowed, found) in [
        (
            "app.compose_hash",
            &policy.allowed_compose_hashes,
            app.and_then(|a| a.compose_hash.clone()),
        ),
        (
            "app.app_id",
            &policy.allowed_app_ids,
            app.and_then(|a| a.app_id.clone()),
        ),
    ] {
        if allowed.is_empty() {
            continue;
        }
        let ok = found.as_ref().is_some_and(|f| {
            allowed
                .iter()
                .any(|a| a.trim_start_matches("0x").eq_ignore_ascii_case(f))
        });
        if ok && let Some(f) = &found {
            let what = if name == "app.compose_hash" {
                "compose hash"
            } else {
                "app id"
            };
            r.allowlist_matches.push(format!("{what} {f}"));
        }
        r.push(
            name,
            format!("one of: {}", allowed.join(", ")),
            found.unwrap_or_else(|| "not in the event log".into()),
            ok,
        );
    }
}

fn binding_checks(
    r: &mut VerificationReport,
    q: &TdQuote,
    ev: &Evidence,
    policy: &AttestationPolicy,
    now: Timestamp,
    window: &mut (Timestamp, Timestamp),
) {
    let layout = policy.report_data_layout;
    let parsed = match ReportData::parse(layout, &q.report_data) {
        Ok(p) => {
            r.push("report_data.layout", format!("{layout} layout"), "parsed", true);
            p
        }
        Err(e) => {
            r.push(
                "report_data.layout",
                format!("{layout} layout"),
                e.to_string(),
                false,
            );
            return;
        }
    };
    let mut signer = parsed.address();
    if let ReportData::Native { commitment, .. } = &parsed {
        match &ev.binding {
            Some(b) => {
                let ok = b.commitment().as_slice() == commitment.as_slice();
                r.push(
                    "binding.commitment",
                    hex::encode(commitment),
                    hex::encode(b.commitment()),
                    ok,
                );
                let key_ok = b.response_verifying_key();
                r.push(
                    "binding.response_key",
                    "a valid ed25519 public key",
                    hex::encode(b.response_key),
                    key_ok.is_ok(),
                );
                if ok {
                    signer = Some(b.signer_address);
                    r.binding = Some(b.clone());
                }
            }
            None => r.push(
                "binding.commitment",
                hex::encode(commitment),
                "no binding document supplied",
                false,
            ),
        }
    }
    r.signer_address = signer.map(|a| a.to_checksum(None));
    let signer_found = signer
        .map(|a| a.to_checksum(None))
        .unwrap_or_else(|| "none bound".into());
    match policy.expected_signer {
        Some(want) => r.push(
            "binding.signer",
            want.to_checksum(None),
            signer_found,
            signer == Some(want),
        ),
        None => r.info(
            "binding.signer",
            "any (policy sets no expected_signer)",
            signer_found,
            signer.is_some(),
        ),
    }
    if let Some(want) = policy.expected_provider {
        let found = match (&parsed, r.binding.as_ref()) {
            (ReportData::Native { .. }, Some(b)) => b.provider,
            _ => None,
        };
        r.push(
            "binding.provider",
            want.to_checksum(None),
            match found {
                Some(p) => p.to_checksum(None),
                None if matches!(parsed, ReportData::Native { .. }) => {
                    "the binding names no provider".to_owned()
                }
                None => format!("the {layout} layout binds no provider"),
            },
            found == Some(want),
        );
    }
    match (policy.nonce, parsed.nonce()) {
        (Some(want), Some(got)) => r.push("binding.nonce", hex::encode(want), hex::encode(got), want == got),
        (Some(want), None) => r.push(
            "binding.nonce",
            hex::encode(want),
            format!("the {layout} layout carries no nonce"),
            false,
        ),
        (None, got) => r.info(
            "binding.nonce",
            "none requested",
            got.map(hex::encode).unwrap_or_else(|| "none".into()),
            true,
        ),
    }
    if let Some(max) = policy.max_quote_age_secs {
        let expected = format!("issued at most {max} s before {now}");
        match r.binding.as_ref().map(|b| b.issued_at) {
            Some(at) => {
                let ok = at <= now.plus(CLOCK_SKEW_SECS) && now.as_secs().saturating_sub(at.as_secs()) <= max;
                r.push("binding.freshness", expected, format!("issued at {at}"), ok);
                window.0 = window
                    .0
                    .max(Timestamp(at.as_secs().saturating_sub(CLOCK_SKEW_SECS)));
                window.1 = window.1.min(at.plus(max));
            }
            None => r.push(
                "binding.freshness",
                expected,
                "no bound issue time (native binding needed)",
                false,
            ),
        }
    }
}

/// One-shot verification with a fresh production [`Verifier`] (no cache across calls).
pub fn verify(
    evidence: &Evidence,
    policy: &AttestationPolicy,
    collateral: Option<&Collateral>,
    now: Timestamp,
) -> VerificationReport {
    let v = Verifier::new_prod();
    let (report, _) = v.evaluate(evidence, policy, collateral, None, now);
    report
}

/// The report's layout name for humans.
impl std::fmt::Display for ReportDataLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReportDataLayout::Native => "native",
            ReportDataLayout::ZeroG => "0g",
            ReportDataLayout::Dstack => "dstack",
            ReportDataLayout::Raw => "raw",
        })
    }
}
