//! Loopback networking for tests: free ports, waiting for a server to listen.

use std::time::Duration;

/// A TCP port on 127.0.0.1 that was free a moment ago (for child processes that must be told their port).
#[allow(
    clippy::expect_used,
    reason = "tests only: no loopback port is a broken machine"
)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`; `false` after `timeout`.
pub async fn wait_listening(port: u16, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
