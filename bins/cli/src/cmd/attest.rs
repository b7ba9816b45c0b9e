//! `zg attest verify` and `zg attest replay`: check TDX and NVIDIA GPU evidence offline against
//! Intel's and NVIDIA's roots, stored collateral and a policy; replay event logs into RTMRs.

use super::GlobalOpts;
use anyhow::Context as _;
use std::path::PathBuf;
use std::process::ExitCode;
use zg_attestation::{
    AttestationPolicy, Collateral, CollateralKey, CollateralSource as _, DirectoryCollateral,
    DirectoryGpuCollateral, EventLog, Evidence, GpuEvidence, ReportDataLayout, TdQuote, Timestamp, Verifier,
};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AttestCommand {
    /// Verify a TDX quote (with its event log and key binding) and/or NVIDIA GPU evidence against a
    /// policy.
    ///
    /// Exit code 0 only when every required check passed. With --json the document has `verdict`
    /// ("pass"/"fail") and `checks` ({name, ok, expected, found, required}).
    ///
    /// Examples (stored collateral has expired, so pin the time inside its window):
    ///   zg attest verify --quote testdata/attestation/dcap-qvl/tdx_quote.bin \
    ///     --collateral testdata/attestation/dcap-qvl/tdx_quote_collateral.json --at 2025-06-20T00:00:00Z \
    ///     --dangerous-any-image
    ///   zg attest verify --gpu-evidence testdata/gpu/hopperAttestationReport.txt \
    ///     --gpu-cert-chain testdata/gpu/hopperCertChain.txt --gpu-rim-dir testdata/gpu \
    ///     --nonce 931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb --at 2025-01-01T00:00:00Z --json
    Verify(VerifyArgs),
    /// Replay an event log (dstack JSON, or a CCEL/TCG2 binary log) and print RTMR0-3.
    Replay(ReplayArgs),
}

/// Flags of `zg attest verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The quote: raw binary, hex or base64 text, or a JSON document with a `quote` field
    /// (dstack GetQuote, 0G `/v1/quote`, or zg evidence JSON, which may also carry
    /// `event_log`, `binding` and `gpu_evidence`).
    #[arg(
        long,
        value_name = "FILE",
        env = "ZG_ATTEST_QUOTE",
        required_unless_present = "gpu_evidence"
    )]
    quote: Option<PathBuf>,
    /// DCAP collateral: a dcap-qvl JSON file, or a directory of `<FMSPC>.json` files.
    /// Not needed for simulated evidence.
    #[arg(long, value_name = "FILE|DIR", env = "ZG_ATTEST_COLLATERAL")]
    collateral: Option<PathBuf>,
    /// Event log (dstack JSON array, or a JSON document with an `event_log` field). Overrides the
    /// one inside the quote document. When given, its replay must equal the quote's RTMRs.
    #[arg(long, value_name = "FILE")]
    event_log: Option<PathBuf>,
    /// Policy file (TOML or JSON; see the zg-attestation README, and deploy/policy.toml). Without it:
    /// strict TCB (UpToDate), an empty allow-list (which fails unless --dangerous-any-image), REPORTDATA
    /// not interpreted unless --layout is given.
    #[arg(long, value_name = "FILE", env = "ZG_ATTEST_POLICY")]
    policy: Option<PathBuf>,
    /// Verify as of this time (RFC 3339, e.g. 2025-06-20T00:00:00Z). Default: now.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// The 32-byte nonce (hex) REPORTDATA and GPU evidence must carry.
    #[arg(long, value_name = "HEX")]
    nonce: Option<String>,
    /// REPORTDATA layout: native, 0g, dstack or raw. Overrides the policy file.
    #[arg(long, value_name = "LAYOUT", value_parser = parse_layout)]
    layout: Option<ReportDataLayout>,
    /// NVIDIA GPU evidence: an attestation report (hex text as NVIDIA's tools write it, or binary)
    /// with --gpu-cert-chain, or a GPU evidence JSON document (`evidence_list` / `evidences`).
    /// Alone, or together with --quote (then both must carry the same nonce).
    #[arg(long, value_name = "FILE")]
    gpu_evidence: Option<PathBuf>,
    /// The GPU's device certificate chain (concatenated PEM, leaf first) for a --gpu-evidence report.
    #[arg(long, value_name = "PEM_FILE", requires = "gpu_evidence")]
    gpu_cert_chain: Option<PathBuf>,
    /// Directory with NVIDIA RIMs (`<RIM id>.xml`, e.g. NV_GPU_DRIVER_GH100_550.90.07.xml, or any
    /// RIM file found by version) and OCSP responses (`*.der`, `*.dat`, also under `ocsp/`).
    #[arg(long, value_name = "DIR", env = "ZG_ATTEST_GPU_RIM_DIR")]
    gpu_rim_dir: Option<PathBuf>,
    /// DANGEROUS: accept any image and application when the policy's allow-list is empty (checks only
    /// that the evidence is genuine, not what runs).
    #[arg(long)]
    dangerous_any_image: bool,
    /// DANGEROUS: accept evidence from the simulated backend (no TEE at all). The report still
    /// says "SIMULATED — NOT A REAL TEE".
    #[arg(long)]
    dangerous_allow_simulated: bool,
}

/// Flags of `zg attest replay`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// The log: dstack JSON (array, or a document with an `event_log` field), or a binary TCG2
    /// crypto-agile log (the CCEL data, `/sys/firmware/acpi/tables/data/CCEL`).
    #[arg(long, value_name = "FILE")]
    event_log: PathBuf,
    /// The ACPI CCEL table (`/sys/firmware/acpi/tables/CCEL`) for a binary log: bounds it by LAML.
    #[arg(long, value_name = "FILE")]
    ccel_table: Option<PathBuf>,
}

fn parse_layout(s: &str) -> Result<ReportDataLayout, String> {
    match s.to_ascii_lowercase().as_str() {
        "native" => Ok(ReportDataLayout::Native),
        "0g" | "zerog" => Ok(ReportDataLayout::ZeroG),
        "dstack" | "near" => Ok(ReportDataLayout::Dstack),
        "raw" | "none" => Ok(ReportDataLayout::Raw),
        other => Err(format!("unknown layout {other:?}: use native, 0g, dstack or raw")),
    }
}

fn read(path: &PathBuf, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

fn event_log_text(bytes: &[u8]) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).context("event log is not JSON")?;
    Ok(match v {
        serde_json::Value::Object(o) => match o.get("event_log") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => anyhow::bail!("JSON object without an `event_log` field"),
        },
        other => other.to_string(),
    })
}

impl AttestCommand {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        match self {
            AttestCommand::Verify(a) => a.run(g).await,
            AttestCommand::Replay(a) => a.run(g),
        }
    }
}

impl VerifyArgs {
    /// The GPU evidence document (JSON) from --gpu-evidence and --gpu-cert-chain.
    fn gpu_document(&self) -> anyhow::Result<Option<GpuEvidence>> {
        let Some(p) = &self.gpu_evidence else {
            return Ok(None);
        };
        let bytes = read(p, "GPU evidence")?;
        let ev = if bytes.trim_ascii_start().first() == Some(&b'{') {
            let text = String::from_utf8(bytes).context("--gpu-evidence is not UTF-8")?;
            GpuEvidence::from_json(&text).with_context(|| format!("--gpu-evidence {}", p.display()))?
        } else {
            let chain = self.gpu_cert_chain.as_ref().ok_or_else(|| {
                anyhow::anyhow!(
                    "--gpu-evidence {} is a bare report: pass its chain with --gpu-cert-chain",
                    p.display()
                )
            })?;
            let pem = String::from_utf8(read(chain, "GPU certificate chain")?)
                .context("--gpu-cert-chain is not PEM text")?;
            GpuEvidence::from_report_and_chain(&bytes, &pem)
                .with_context(|| format!("--gpu-evidence {}", p.display()))?
        };
        Ok(Some(ev))
    }

    async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let gpu = self.gpu_document()?;
        let mut evidence = match &self.quote {
            Some(q) => Some(
                Evidence::from_document(&read(q, "quote")?)
                    .with_context(|| format!("decoding --quote {}", q.display()))?,
            ),
            None => None,
        };
        if let (Some(ev), Some(p)) = (evidence.as_mut(), &self.event_log) {
            ev.event_log = Some(
                event_log_text(&read(p, "event log")?)
                    .with_context(|| format!("--event-log {}", p.display()))?,
            );
        }
        let mut policy = match &self.policy {
            Some(p) => {
                AttestationPolicy::from_file(p).with_context(|| format!("--policy {}", p.display()))?
            }
            None => AttestationPolicy {
                require_event_log: evidence.as_ref().is_some_and(|e| e.event_log.is_some()),
                report_data_layout: ReportDataLayout::Raw,
                ..AttestationPolicy::default()
            },
        };
        if let Some(l) = self.layout {
            policy.report_data_layout = l;
        }
        if let Some(n) = &self.nonce {
            let bytes = hex::decode(n.trim_start_matches("0x")).context("--nonce is not hex")?;
            let nonce: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
                anyhow::anyhow!("--nonce is {} bytes; pass 32 bytes (64 hex digits)", b.len())
            })?;
            policy.nonce = Some(nonce);
        }
        if self.dangerous_allow_simulated {
            tracing::warn!("--dangerous-allow-simulated: simulated evidence proves nothing about a TEE");
            policy.dangerous_allow_simulated = true;
        }
        if self.dangerous_any_image {
            tracing::warn!("--dangerous-any-image: any image and application pass the allow-list");
            policy.dangerous_any_image = true;
        }
        let now = match &self.at {
            Some(s) => Timestamp::from_rfc3339(s).context("--at")?,
            None => Timestamp::now(),
        };
        let gpu_collateral = match (&gpu, &self.gpu_rim_dir) {
            (Some(ev), Some(dir)) => Some(
                DirectoryGpuCollateral::new(dir)
                    .for_evidence_async(ev)
                    .await
                    .with_context(|| format!("--gpu-rim-dir {}", dir.display()))?,
            ),
            (Some(_), None) => {
                tracing::warn!("no --gpu-rim-dir: NVIDIA GPU evidence cannot pass without its RIMs");
                None
            }
            _ => None,
        };
        let verifier = Verifier::new_prod();
        let report = match evidence {
            Some(mut evidence) => {
                if let Some(ev) = &gpu {
                    evidence.gpu_evidence = Some(ev.to_json(policy.nonce.as_ref()));
                }
                let collateral = match &self.collateral {
                    None => None,
                    Some(p) if p.is_dir() => {
                        let quote =
                            TdQuote::parse(&evidence.quote).context("parsing the quote to find its FMSPC")?;
                        let key = CollateralKey::for_quote(&quote)?;
                        Some(DirectoryCollateral::new(p).collateral(&key, now).await?)
                    }
                    Some(p) => Some(std::sync::Arc::new(
                        Collateral::from_file(p).with_context(|| format!("--collateral {}", p.display()))?,
                    )),
                };
                if collateral.is_none() && !policy.dangerous_allow_simulated {
                    tracing::warn!("no --collateral given: a real quote cannot pass without DCAP collateral");
                }
                (*verifier.verify_with_gpu(
                    &evidence,
                    &policy,
                    collateral.as_deref(),
                    gpu_collateral.as_ref(),
                    now,
                ))
                .clone()
            }
            None => {
                let ev = gpu.ok_or_else(|| {
                    anyhow::anyhow!("nothing to verify: pass --quote and/or --gpu-evidence")
                })?;
                verifier.verify_gpu(
                    &ev.to_json(policy.nonce.as_ref()),
                    &policy,
                    gpu_collateral.as_ref(),
                    now,
                )
            }
        };
        if g.json {
            crate::output::json(&report)?;
        } else {
            crate::output::text(&report)?;
        }
        Ok(if report.passed() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

#[derive(serde::Serialize)]
struct ReplayOutput {
    events: usize,
    events_per_register: [usize; 4],
    rtmr0: String,
    rtmr1: String,
    rtmr2: String,
    rtmr3: String,
    app: zg_attestation::AppInfo,
}

impl ReplayArgs {
    fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let bytes = read(&self.event_log, "event log")?;
        let first = bytes.trim_ascii_start().first().copied();
        let log = if matches!(first, Some(b'[' | b'{' | b'"')) {
            EventLog::from_dstack_json(&event_log_text(&bytes)?)?
        } else {
            match &self.ccel_table {
                Some(t) => EventLog::from_ccel(&read(t, "CCEL table")?, &bytes)?,
                None => EventLog::from_tcg2(&bytes)?,
            }
        };
        let [r0, r1, r2, r3] = log.replay().map(hex::encode);
        let out = ReplayOutput {
            events: log.events.len(),
            events_per_register: log.counts(),
            rtmr0: r0,
            rtmr1: r1,
            rtmr2: r2,
            rtmr3: r3,
            app: log.app_info(),
        };
        if g.json {
            crate::output::json(&out)?;
        } else {
            let mut s = format!(
                "events: {} (per RTMR {:?})\n",
                out.events, out.events_per_register
            );
            for (i, r) in [&out.rtmr0, &out.rtmr1, &out.rtmr2, &out.rtmr3]
                .iter()
                .enumerate()
            {
                s.push_str(&format!("rtmr{i}: {r}\n"));
            }
            if let Some(c) = &out.app.compose_hash {
                s.push_str(&format!("compose-hash: {c}\n"));
            }
            crate::output::text(s.trim_end())?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: AttestCommand,
    }

    #[test]
    fn layouts_and_event_log_shapes() {
        assert_eq!(parse_layout("0G"), Ok(ReportDataLayout::ZeroG));
        assert!(
            parse_layout("nope")
                .unwrap_err()
                .contains("native, 0g, dstack or raw")
        );
        assert_eq!(event_log_text(b"[]").unwrap(), "[]");
        assert_eq!(event_log_text(br#"{"event_log":"[1]"}"#).unwrap(), "[1]");
        assert!(event_log_text(br#"{"quote":"00"}"#).is_err());
    }

    #[tokio::test]
    async fn verify_exit_codes_follow_the_verdict() {
        let td = |p: &str| {
            zg_test_utils::testdata::path(&format!("attestation/dcap-qvl/{p}"))
                .display()
                .to_string()
        };
        let g = GlobalOpts {
            json: true,
            verbose: 0,
        };
        let args = |at: &str, any: bool| {
            let mut v = vec![
                "attest".to_owned(),
                "verify".into(),
                "--quote".into(),
                td("tdx_quote.bin"),
                "--collateral".into(),
                td("tdx_quote_collateral.json"),
                "--at".into(),
                at.into(),
            ];
            if any {
                v.push("--dangerous-any-image".into());
            }
            let cli = Cli::try_parse_from(v).unwrap();
            let AttestCommand::Verify(a) = cli.cmd else {
                panic!("not verify")
            };
            a
        };
        assert_eq!(
            args("2025-06-20T00:00:00Z", true).run(&g).await.unwrap(),
            ExitCode::SUCCESS
        );
        assert_eq!(
            args("2025-07-20T00:00:00Z", true).run(&g).await.unwrap(),
            ExitCode::FAILURE
        );
        // Issue 9 item 10: without a policy that pins the image, a genuine quote alone does not pass.
        assert_eq!(
            args("2025-06-20T00:00:00Z", false).run(&g).await.unwrap(),
            ExitCode::FAILURE
        );
    }
}
