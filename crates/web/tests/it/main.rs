//! zg-web end to end: a devnet, the real provider in process on loopback, the dashboard, and Debian's headless
//! Chromium driven over WebDriver.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failure is a test failure"
)]

// The pages in a real browser: fund through the form, verify, chat with a verified receipt, provider metrics.
mod browser;
// Shared setup: devnet, provider, customer, dashboard.
mod env;
// Cross-origin, token-less and DNS-rebinding requests are refused; provider text cannot inject script.
mod security;
// The WebDriver client.
mod webdriver;
