//! Attacks on the dashboard, each checked by what reached the chain (nothing) as well as by the answer:
//! a cross-origin POST, a request without the session token, a DNS-rebinding Host header, a form-encoded POST,
//! all over plain HTTP; then the same from a real browser (a page on another origin that posts with fetch and a
//! form, and a host name re-resolved to 127.0.0.1); and a provider that registers HTML as its model name.

use std::time::Duration;

use alloy::primitives::{Address, U256};
use serde_json::{Value, json};
use zg_chain::{Amount, ServiceParams};

use crate::env::Env;
use crate::webdriver::Browser;

const T: Duration = Duration::from_secs(60);

async fn post(env: &Env, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .post(format!("{}/api/tx/send", env.base()))
        .body(body.to_owned());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_tokenless_and_rebinding_requests_are_refused() {
    let env = Env::start().await;
    let deposit = r#"{"action":"deposit","amount":"5"}"#;
    let origin = env.base();
    let host = format!("127.0.0.1:{}", env.port);
    let bearer = format!("Bearer {}", env.token);

    // Cross-origin POST, even one that somehow holds the token: refused.
    let (status, body) = post(
        &env,
        &[
            ("origin", "http://evil.example"),
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        deposit,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("bad_origin")),
        "{body}"
    );

    // Same origin, no session token: refused.
    let (status, body) = post(
        &env,
        &[("origin", &origin), ("content-type", "application/json")],
        deposit,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("bad_token")),
        "{body}"
    );

    // A wrong token of the right length: refused.
    let wrong = format!("Bearer {}", "0".repeat(64));
    let (status, _) = post(
        &env,
        &[
            ("origin", &origin),
            ("authorization", &wrong),
            ("content-type", "application/json"),
        ],
        deposit,
    )
    .await;
    assert_eq!(status, 401);

    // DNS rebinding: the browser sends the attacker's host name. Refused for the API and for the page itself.
    let (status, body) = post(
        &env,
        &[
            ("host", "evil.example:80"),
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        deposit,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (421, Some("bad_host")),
        "{body}"
    );
    let page = reqwest::Client::new()
        .get(format!("{}/", env.base()))
        .header("host", format!("rebind.example:{}", env.port))
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.status().as_u16(),
        421,
        "the app shell is not served to a rebinding page"
    );

    // A form-style POST (what an HTML form on any site can send): refused.
    let (status, body) = post(
        &env,
        &[
            ("origin", &origin),
            ("authorization", &bearer),
            ("content-type", "text/plain"),
        ],
        deposit,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (415, Some("bad_content_type")),
        "{body}"
    );

    // CORS preflight: never granted.
    let pre = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/api/tx/send", env.base()))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status().as_u16(), 403);
    assert!(pre.headers().get("access-control-allow-origin").is_none());

    // Reads need the token too (balances and addresses are private).
    let get = reqwest::Client::new()
        .get(format!("{}/api/account", env.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 401);

    assert_eq!(env.ledger().await, None, "no refused request moved any funds");

    // The control: the same request with Host, Origin, token and JSON goes through (so the refusals above were the
    // guard, not a broken route).
    let (status, body) = post(
        &env,
        &[
            ("host", &host),
            ("origin", &origin),
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        deposit,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let five = U256::from(5_000_000_000_000_000_000u128);
    assert_eq!(env.ledger().await, Some((five, five)));
    env.stop().await;
}

/// A page on another origin (127.0.0.1 on another port) that tries to spend through the dashboard.
async fn evil_site(dashboard: &str) -> String {
    let html = format!(
        r#"<!doctype html><title>evil</title>
<form id="f" method="post" action="{dashboard}/api/tx/send" enctype="text/plain">
<input name='{{"action":"deposit","amount":"5","pad":"' value='"}}'></form>
<script>
fetch('{dashboard}/api/tx/send', {{method: 'POST', mode: 'no-cors', headers: {{'content-type': 'text/plain'}},
  body: '{{"action":"deposit","amount":"5"}}'}})
  .catch(() => {{}})
  .finally(() => {{ document.title = 'fetched'; document.getElementById('f').submit(); }});
</script>"#
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let html = html.clone();
            async move { axum::response::Html(html) }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_cannot_spend_cross_origin_or_by_rebinding_and_provider_html_stays_text() {
    let env = Env::start().await;
    // "rebind.test" resolves to 127.0.0.1 in this browser only: a DNS-rebinding attacker's name for our server.
    let b = Browser::start_with(&["--host-resolver-rules=MAP rebind.test 127.0.0.1"]).await;

    // 1. Cross-origin: fetch (no-cors) and a form POST from another origin.
    let evil = evil_site(&env.base()).await;
    b.goto(&evil).await;
    // The form navigates the tab to the dashboard's refusal.
    let deadline = std::time::Instant::now() + T;
    loop {
        let text = b.body_text().await;
        if text.contains("bad_origin") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal shown; page: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(env.ledger().await, None, "the cross-origin page moved no funds");

    // 2. DNS rebinding: the attacker's name now points at 127.0.0.1; the browser sends Host: rebind.test:PORT.
    b.goto(&format!("http://rebind.test:{}/", env.port)).await;
    let text = b.body_text().await;
    assert!(text.contains("bad_host"), "the rebinding page is refused: {text}");
    let fetched = b
        .exec(
            "return fetch('/api/session', {headers: {'authorization': 'Bearer guess'}}).then(r => r.status)",
            vec![],
        )
        .await;
    assert_eq!(fetched, json!(421));

    // 3. A provider registers HTML and a javascript: URL: the page shows them as text and runs nothing.
    let attacker = env.devnet.keys()[3].clone();
    let c = env.devnet.client(Some(attacker.clone())).await.unwrap();
    let evil_model = r#"<img src=x onerror="window.__pwned=1">"#;
    c.inference()
        .add_or_update_service(
            &ServiceParams {
                service_type: "chatbot".into(),
                url: "javascript:window.__pwned=2".into(),
                model: evil_model.into(),
                verifiability: "TeeML".into(),
                input_price: U256::from(1),
                output_price: U256::from(1),
                additional_info: r#"{"x":"<script>window.__pwned=3</script>"}"#.into(),
                tee_signer: Address::repeat_byte(9),
            },
            Amount::from_zg(1),
        )
        .await
        .unwrap();
    // The session token reaches this tab's sessionStorage through the printed URL.
    b.goto(&env.web).await;
    b.goto(&format!("{}/#/providers", env.base())).await;
    let table = b.wait_text("#providers", evil_model, T).await;
    assert!(
        table.contains("javascript:window.__pwned=2"),
        "the URL is shown as text: {table}"
    );
    let pwned = b.exec("return window.__pwned === undefined", vec![]).await;
    assert_eq!(pwned, json!(true), "no provider-supplied script ran");
    let links = b
        .exec(
            "return [...document.querySelectorAll('a')].filter(a => a.href.startsWith('javascript')).length",
            vec![],
        )
        .await;
    assert_eq!(links, json!(0));
    let imgs = b
        .exec(
            "return document.querySelectorAll('#providers img').length",
            vec![],
        )
        .await;
    assert_eq!(imgs, json!(0), "provider text never becomes markup");

    b.quit().await;
    env.stop().await;
}
