//! Real backends exercised on recorded files (no TDX hardware here).
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use zg_attestation::{DstackProducer, EventLog, EvidenceProducer, TdQuote, TdxPaths, TdxProducer};

#[test]
fn tdx_configfs_and_ccel_from_recorded_files() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let entry = report.join("e1");
    std::fs::create_dir_all(&entry).unwrap();
    let quote = zg_test_utils::testdata::read("attestation/go-tdx-guest/ccel/cos-113-tdx-quote.dat");
    std::fs::write(entry.join("outblob"), &quote).unwrap();
    std::fs::write(entry.join("generation"), "1\n").unwrap();
    let rtmr3 = dir.path().join("rtmr3");
    let paths = TdxPaths {
        tsm_report: report.clone(),
        ccel_table: zg_test_utils::testdata::path("attestation/go-tdx-guest/ccel/ccel_table.dat"),
        ccel_data: zg_test_utils::testdata::path("attestation/go-tdx-guest/ccel/ccel_data.dat"),
        rtmr3: rtmr3.clone(),
    };
    let tdx = TdxProducer::with_paths(paths).with_entry_name("e1");
    tdx.extend_runtime("compose-hash", &[1u8; 32]).unwrap();
    assert_eq!(
        std::fs::read(&rtmr3).unwrap(),
        zg_attestation::runtime_event_digest(0x0800_0001, "compose-hash", &[1u8; 32])
    );
    let ev = tdx.quote(&[0u8; 64]).unwrap();
    assert_eq!(std::fs::read(entry.join("inblob")).unwrap(), vec![0u8; 64]);
    assert_eq!(ev.quote, quote);
    let log = EventLog::from_dstack_json(ev.event_log.as_deref().unwrap()).unwrap();
    assert_eq!(log.counts(), [16, 7, 20, 1]);
    let q = TdQuote::parse(&ev.quote).unwrap();
    assert_eq!(log.replay()[..3], q.rtmr[..3]);
    // A missing device is a typed backend error naming the path.
    let broken = TdxProducer::with_paths(TdxPaths {
        tsm_report: dir.path().join("nope/report"),
        ..TdxPaths::default()
    });
    let e = broken.quote(&[0u8; 64]).unwrap_err();
    assert!(e.is_retryable() && e.to_string().contains("nope/report"), "{e}");
}

fn serve(
    listener: std::os::unix::net::UnixListener,
    responses: Vec<String>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for body in responses {
            let (mut s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut req = vec![0u8; len];
            r.read_exact(&mut req).unwrap();
            seen.push(format!("{} {}", line.trim(), String::from_utf8(req).unwrap()));
            // Chunked, as a real HTTP server may send it.
            let (a, b) = body.split_at(body.len() / 2);
            write!(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len()).unwrap();
        }
        seen
    })
}

#[test]
fn dstack_agent_over_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dstack.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let recorded = zg_test_utils::testdata::read_string("attestation/dstack/tdx-lite-getquote.json");
    let server = serve(
        listener,
        vec![
            recorded,
            "{}".into(),
            r#"{"key":"abcd","signature_chain":["01"]}"#.into(),
        ],
    );
    let agent = DstackProducer::with_socket(&sock);
    let rd: [u8; 64] = *b"dip1::secp256k1c-pk:A55pWmteJIJOj8_pI7-pzeDxy1G2q18GDv88HNRdBXkQ";
    let ev = agent.quote(&rd).unwrap();
    let log = EventLog::from_dstack_json(ev.event_log.as_deref().unwrap()).unwrap();
    assert_eq!(log.replay(), TdQuote::parse(&ev.quote).unwrap().rtmr);
    agent.extend_runtime("model-hash", b"\x01\x02").unwrap();
    let key = agent.derive_key("/zg/response", "ed25519").unwrap();
    assert_eq!(key.signature_chain, ["01"]);
    let seen = server.join().unwrap();
    assert!(
        seen[0].starts_with("POST /GetQuote HTTP/1.1 {\"report_data\":\"646970313a3a"),
        "{}",
        seen[0]
    );
    assert_eq!(
        seen[1],
        "POST /EmitEvent HTTP/1.1 {\"event\":\"model-hash\",\"payload\":\"0102\"}"
    );
    assert!(seen[2].contains("\"purpose\":\"ed25519\""));
    // No agent: typed error naming the socket.
    let e = DstackProducer::with_socket(dir.path().join("missing.sock"))
        .quote(&rd)
        .unwrap_err();
    assert!(e.to_string().contains("missing.sock"), "{e}");
}
