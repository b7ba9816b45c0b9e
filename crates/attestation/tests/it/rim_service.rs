//! The NVIDIA RIM service client against a loopback server that answers like the service, behind the
//! in-memory cache: fetched once, verified like any RIM; hostile ids never reach the network.
use base64::Engine as _;
use std::io::{BufRead as _, BufReader, Write as _};
use zg_attestation::{CachedGpuCollateral, GpuCollateralSource, NvidiaRimService, Timestamp};

#[tokio::test]
async fn fetches_once_and_caches() {
    let xml = zg_test_utils::testdata::read("gpu/NV_GPU_DRIVER_GH100_550.90.07.xml");
    let body = serde_json::json!({
        "id": "NV_GPU_DRIVER_GH100_550.90.07",
        "rim": base64::engine::general_purpose::STANDARD.encode(&xml),
        "rim_format": "SWID",
    })
    .to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut paths = Vec::new();
        for stream in listener.incoming().take(2) {
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
            let (status, b) = if path.ends_with("NV_GPU_DRIVER_GH100_550.90.07") {
                ("200 OK", body.clone())
            } else {
                ("404 Not Found", "{\"error\":\"not found\"}".to_owned())
            };
            write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                b.len()
            )
            .unwrap();
            paths.push(path);
        }
        paths
    });
    let svc = NvidiaRimService::with_base_url(format!("http://{addr}/v1/rim/")).unwrap();
    let cache = CachedGpuCollateral::new(svc);
    let now = Timestamp::from_rfc3339("2025-01-01T00:00:00Z").unwrap();
    let a = cache.rim("NV_GPU_DRIVER_GH100_550.90.07", now).await.unwrap();
    assert_eq!(a.version, "550.90.07");
    let b = cache.rim("NV_GPU_DRIVER_GH100_550.90.07", now).await.unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&a, &b),
        "second lookup must come from the cache"
    );
    let e = cache.rim("NV_GPU_DRIVER_GH100_999.99.99", now).await.unwrap_err();
    assert!(e.to_string().contains("HTTP 404"), "{e}");
    // An id that would change the URL path is refused before any request.
    let e = cache.rim("../admin?x=1", now).await.unwrap_err();
    assert!(e.to_string().contains("not a RIM identifier"), "{e}");
    assert_eq!(
        server.join().unwrap(),
        [
            "/v1/rim/NV_GPU_DRIVER_GH100_550.90.07",
            "/v1/rim/NV_GPU_DRIVER_GH100_999.99.99"
        ]
    );
}
