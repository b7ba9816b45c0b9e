//! Provider overhead against a fast fake upstream on loopback (issue 6 targets):
//! added latency p50/p99 (non-streaming), time-to-first-token overhead, throughput at 64 connections
//! vs direct, and RSS with 1,000 open streams. Percentiles, throughput and RSS are printed as a summary;
//! criterion measures the per-request means.
//!
//! `cargo bench -p zg-provider --bench proxy -- --warm-up-time 1 --measurement-time 3`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs,
    unreachable_pub,
    dead_code
)]

#[path = "../tests/it/common.rs"]
mod common;
use zg_test_utils::fake_upstream;

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

const PLAIN: &str = r#"{"model":"ok","messages":[{"role":"user","content":"hi"}]}"#;
const STREAM: &str = r#"{"model":"ok","messages":[{"role":"user","content":"hi"}],"stream":true}"#;

struct Env {
    rt: tokio::runtime::Runtime,
    direct: String,
    /// A pass-through proxy (axum in, reqwest out, no auth, no billing, no signatures, no disk):
    /// the ceiling any proxy reaches on this machine, since it shares the cores with the client and
    /// the upstream and does their HTTP work once more.
    noop: String,
    via: String,
    token: String,
    http: reqwest::Client,
    _o: common::Offline,
}

fn env() -> Env {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (fake, o) = rt.block_on(async {
        let fake = fake_upstream::start().await;
        let o = common::offline(common::Opts {
            upstream: Some(fake.base.clone()),
            max_concurrency: 4096,
            ..common::Opts::default()
        })
        .await;
        (fake, o)
    });
    let (_, token) = common::customer(&o, 10u128.pow(30));
    let noop = rt.block_on(noop_proxy(format!("{}/chat/completions", fake.base)));
    Env {
        noop,
        direct: format!("{}/chat/completions", fake.base),
        via: format!("{}/v1/proxy/chat/completions", o.url),
        token,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .unwrap(),
        rt,
        _o: o,
    }
}

async fn noop_proxy(upstream: String) -> String {
    use axum::body::Bytes;
    let client = reqwest::Client::new();
    let app = axum::Router::new().route(
        "/chat/completions",
        axum::routing::post(move |body: Bytes| {
            let (client, upstream) = (client.clone(), upstream.clone());
            async move {
                let r = client.post(&upstream).body(body).send().await.unwrap();
                let status = r.status().as_u16();
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    r.bytes().await.unwrap(),
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/chat/completions", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

impl Env {
    async fn plain(&self, via: bool) -> Duration {
        let t = Instant::now();
        let r = if via {
            self.http
                .post(&self.via)
                .header("authorization", &self.token)
                .body(PLAIN)
        } else {
            self.http.post(&self.direct).body(PLAIN)
        };
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        t.elapsed()
    }

    async fn ttft(&self, via: bool) -> Duration {
        let t = Instant::now();
        let r = if via {
            self.http
                .post(&self.via)
                .header("authorization", &self.token)
                .body(STREAM)
        } else {
            self.http.post(&self.direct).body(STREAM)
        };
        let mut r = r.send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.chunk().await.unwrap();
        let d = t.elapsed();
        while r.chunk().await.unwrap().is_some() {}
        d
    }
}

fn pct(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e3
}

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn summary(e: &Env) {
    e.rt.block_on(async {
        for _ in 0..200 {
            e.plain(false).await;
            e.plain(true).await;
        }
        let n = 1000;
        let (mut d, mut v) = (Vec::new(), Vec::new());
        for _ in 0..n {
            d.push(e.plain(false).await);
            v.push(e.plain(true).await);
        }
        let (d50, d99, v50, v99) = (pct(d.clone(), 0.5), pct(d, 0.99), pct(v.clone(), 0.5), pct(v, 0.99));
        eprintln!("plain  direct p50 {d50:.3} ms p99 {d99:.3} ms | provider p50 {v50:.3} ms p99 {v99:.3} ms | added p50 {:.3} ms p99 {:.3} ms", v50 - d50, v99 - d99);
        let (mut d, mut v) = (Vec::new(), Vec::new());
        for _ in 0..500 {
            d.push(e.ttft(false).await);
            v.push(e.ttft(true).await);
        }
        eprintln!("TTFT   direct p50 {:.3} ms | provider p50 {:.3} ms | added p50 {:.3} ms", pct(d.clone(), 0.5), pct(v.clone(), 0.5), pct(v, 0.5) - pct(d, 0.5));
        for (label, target) in [("direct", &e.direct), ("no-op proxy", &e.noop), ("provider", &e.via)] {
            let stop = Instant::now() + Duration::from_secs(3);
            let tasks: Vec<_> = (0..64)
                .map(|_| {
                    let (http, url, token) = (e.http.clone(), target.clone(), e.token.clone());
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        while Instant::now() < stop {
                            let r = http.post(&url).header("authorization", &token).body(PLAIN).send().await.unwrap();
                            assert_eq!(r.status(), 200);
                            r.bytes().await.unwrap();
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            eprintln!("throughput at 64 connections, {label}: {:.0} req/s", total as f64 / 3.0);
        }
        let base = rss_mib();
        let slow = r#"{"model":"slow","messages":[],"stream":true}"#;
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let (http, url, token) = (e.http.clone(), e.via.clone(), e.token.clone());
                tokio::spawn(async move {
                    let mut r = http.post(&url).header("authorization", &token).body(slow).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    while r.chunk().await.unwrap().is_some() {}
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let open = e._o.provider.metrics().render(0, 0, 0);
        let inflight = open.lines().find(|l| l.starts_with("zg_provider_inflight ")).unwrap_or_default().to_owned();
        let peak = rss_mib();
        for t in tasks {
            t.await.unwrap();
        }
        eprintln!("RSS with 1000 open streams ({inflight}): {peak:.1} MiB total process (provider + fake upstream + 1000 clients), {:.1} MiB above idle", peak - base);
    });
}

fn bench(c: &mut Criterion) {
    let e = env();
    summary(&e);
    let mut g = c.benchmark_group("proxy");
    for (name, via) in [("plain/direct", false), ("plain/provider", true)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                e.rt.block_on(async {
                    let mut t = Duration::ZERO;
                    for _ in 0..iters {
                        t += e.plain(via).await;
                    }
                    t
                })
            })
        });
    }
    for (name, via) in [("ttft/direct", false), ("ttft/provider", true)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                e.rt.block_on(async {
                    let mut t = Duration::ZERO;
                    for _ in 0..iters {
                        t += e.ttft(via).await;
                    }
                    t
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
