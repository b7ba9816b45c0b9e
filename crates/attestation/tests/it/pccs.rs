//! The PCCS client against a loopback server that serves the stored collateral in PCS format.
use std::io::{BufRead as _, BufReader, Write as _};
use zg_attestation::{CachedCollateral, Collateral, CollateralKey, CollateralSource, PccsCollateral};

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn fetches_the_same_collateral_and_caches_it() {
    let stored = zg_test_utils::testdata::read_string("attestation/dcap-qvl/tdx_quote_collateral.json");
    let v: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let s = move |k: &str| v[k].as_str().unwrap().to_owned();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tcb, qe) = (s("tcb_info"), s("qe_identity"));
    let routes = move |path: &str| -> (String, Vec<u8>) {
        if path.starts_with("/tdx/certification/v4/tcb?fmspc=B0C06F000000") {
            (
                format!("TCB-Info-Issuer-Chain: {}\r\n", enc(&s("tcb_info_issuer_chain"))),
                format!(
                    "{{\"tcbInfo\":{tcb},\"signature\":\"{}\"}}",
                    s("tcb_info_signature")
                )
                .into_bytes(),
            )
        } else if path.starts_with("/tdx/certification/v4/qe/identity") {
            (
                format!(
                    "SGX-Enclave-Identity-Issuer-Chain: {}\r\n",
                    enc(&s("qe_identity_issuer_chain"))
                ),
                format!(
                    "{{\"enclaveIdentity\":{qe},\"signature\":\"{}\"}}",
                    s("qe_identity_signature")
                )
                .into_bytes(),
            )
        } else if path.starts_with("/sgx/certification/v4/pckcrl?ca=platform") {
            (
                format!(
                    "SGX-PCK-CRL-Issuer-Chain: {}\r\n",
                    enc(&s("pck_crl_issuer_chain"))
                ),
                hex::decode(s("pck_crl")).unwrap(),
            )
        } else if path.starts_with("/sgx/certification/v4/rootcacrl") {
            (String::new(), s("root_ca_crl").into_bytes())
        } else {
            panic!("unexpected {path}")
        }
    };
    let server = std::thread::spawn(move || {
        let mut n = 0;
        for stream in listener.incoming().take(4) {
            let mut stream = stream.unwrap();
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h == "\r\n" || h.is_empty() {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap().to_owned();
            let (headers, body) = routes(&path);
            write!(
                stream,
                "HTTP/1.1 200 OK\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .unwrap();
            stream.write_all(&body).unwrap();
            n += 1;
        }
        n
    });
    let key = CollateralKey {
        fmspc: "B0C06F000000".into(),
        pck_ca: "platform".into(),
    };
    let cache = CachedCollateral::new(PccsCollateral::new(format!("http://{addr}")).unwrap());
    let now = zg_attestation::Timestamp::from_rfc3339("2025-06-20T00:00:00Z").unwrap();
    let fetched = cache.collateral(&key, now).await.unwrap();
    assert_eq!(fetched.digest(), Collateral::from_json(&stored).unwrap().digest());
    // Second request is served from memory: the server only answers four requests in total.
    let again = cache.collateral(&key, now).await.unwrap();
    assert!(std::sync::Arc::ptr_eq(&fetched, &again));
    assert_eq!(server.join().unwrap(), 4);
}
