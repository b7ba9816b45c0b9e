//! `zg serve`'s router over loopback, with a Rust HTTP client: the OpenAI routes plain and streamed with
//! receipts in headers, and the guard refusing what a web page, a DNS-rebinding page or a keyless local
//! process sends (issue 9, item 6) before anything is signed or paid.

use std::net::SocketAddr;

use alloy_primitives::U256;
use base64::Engine as _;
use zg_client::{ApiKey, Client, LocalGuard, ReceiptJson};

use crate::common::{chat_body, env};

pub struct Gateway {
    pub url: String,
    pub addr: SocketAddr,
    pub key: String,
}

/// `zg serve`'s router on 127.0.0.1:0 with a fresh key, as the binary wires it.
pub async fn serve(client: Client, provider: alloy_primitives::Address) -> Gateway {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let key = ApiKey::generate();
    let shown = key.expose().to_owned();
    let app = zg_client::gateway_router(client, provider, LocalGuard::new(addr).with_api_key(key));
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    Gateway {
        url: format!("http://{addr}"),
        addr,
        key: shown,
    }
}

fn error_type(v: &serde_json::Value) -> &str {
    v["error"]["type"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn gateway_serves_plain_and_streamed_answers_with_receipts_in_headers() {
    let e = env(10).await;
    let client = e.client().await;
    let v = client.verify_provider(e.provider).await.unwrap();
    let key_bytes: [u8; 32] = hex::decode(v.response_key.trim_start_matches("0x"))
        .unwrap()
        .try_into()
        .unwrap();
    let gw = serve(client.clone(), e.provider).await;
    let http = reqwest::Client::new();
    let prices = (v.service.input_price, v.service.output_price);

    // /v1/models names the on-chain model.
    let models: serde_json::Value = http
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], zg_provider::DEMO_MODEL_ID);

    // Plain: the body is the provider's, the receipt in ZG-Receipt covers exactly these bytes.
    let body = chat_body("how are fees settled", 12, false);
    let resp = http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&gw.key)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(h["zg-verified"], "true");
    let r: ReceiptJson = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h["zg-receipt"].to_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    zg_client::verify_receipt(&r, &key_bytes, body.as_bytes(), &bytes).unwrap();
    assert_eq!(h["zg-res-key"].to_str().unwrap(), r.key);
    let fee = U256::from(r.usage.prompt_tokens) * prices.0 + U256::from(r.usage.completion_tokens) * prices.1;
    assert_eq!(h["zg-fee"].to_str().unwrap(), fee.to_string());
    assert_eq!(h["zg-owed"].to_str().unwrap(), fee.to_string());
    let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert!(
        !answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty()
    );

    // Streamed: SSE events, [DONE] only after the receipt verified, then the receipt as an SSE comment;
    // GET /zg/v1/receipts/{ZG-Res-Key} returns the same verified receipt.
    let resp = http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&gw.key)
        .header("content-type", "application/json")
        .body(chat_body("what does a voucher prove", 16, true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let res_key = resp.headers()["zg-res-key"].to_str().unwrap().to_owned();
    let text = resp.text().await.unwrap();
    let done = text.find("data: [DONE]").expect("a [DONE] event");
    let comment = text.find(": zg-receipt ").expect("the receipt comment");
    assert!(done < comment, "{text}");
    assert!(text[..done].matches("data: {").count() > 2, "{text}");
    let streamed: serde_json::Value =
        serde_json::from_str(text[comment + 13..].lines().next().unwrap()).unwrap();
    assert_eq!(streamed["receipt"]["key"], res_key.as_str());
    let kept: serde_json::Value = http
        .get(format!("{}/zg/v1/receipts/{res_key}", gw.url))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(kept, streamed);
    let owed = fee + U256::from_str_radix(kept["fee"].as_str().unwrap(), 10).unwrap();
    assert_eq!(kept["owed_after"].as_str().unwrap(), owed.to_string());

    // /zg/v1/status: the books, from the same client.
    let st: serde_json::Value = http
        .get(format!("{}/zg/v1/status", gw.url))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["balance"]["owed"].as_str().unwrap(), owed.to_string());
    assert_eq!(st["balance"]["receipts"], 2);
}

#[tokio::test]
async fn gateway_refuses_web_pages_rebinding_and_keyless_callers_before_paying() {
    let e = env(10).await;
    let client = e.client().await;
    client.verify_provider(e.provider).await.unwrap();
    let gw = serve(client.clone(), e.provider).await;
    let http = reqwest::Client::new();
    let chat = format!("{}/v1/chat/completions", gw.url);
    let body = chat_body("spend their money", 8, false);
    let port = gw.addr.port();

    // (name, request, expected status, expected error type)
    let attacks: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "cross-origin JSON POST from a web page",
            http.post(&chat)
                .bearer_auth(&gw.key)
                .header("origin", "https://evil.example")
                .header("content-type", "application/json")
                .body(body.clone()),
            403,
            "forbidden_origin",
        ),
        (
            "no-cors form POST (text/plain, no key) from a web page",
            http.post(&chat)
                .header("origin", "https://evil.example")
                .header("sec-fetch-site", "cross-site")
                .header("sec-fetch-mode", "no-cors")
                .header("content-type", "text/plain;charset=UTF-8")
                .body(body.clone()),
            403,
            "forbidden_origin",
        ),
        (
            "a sandboxed page (Origin: null)",
            http.post(&chat)
                .bearer_auth(&gw.key)
                .header("origin", "null")
                .header("content-type", "application/json")
                .body(body.clone()),
            403,
            "forbidden_origin",
        ),
        (
            "another site without Origin (Sec-Fetch-Site: cross-site)",
            http.post(&chat)
                .bearer_auth(&gw.key)
                .header("sec-fetch-site", "cross-site")
                .header("content-type", "application/json")
                .body(body.clone()),
            403,
            "forbidden_cross_site",
        ),
        (
            "text/plain POST even with the key",
            http.post(&chat)
                .bearer_auth(&gw.key)
                .header("content-type", "text/plain")
                .body(body.clone()),
            415,
            "unsupported_media_type",
        ),
        (
            "form-urlencoded POST",
            http.post(&chat)
                .bearer_auth(&gw.key)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone()),
            415,
            "unsupported_media_type",
        ),
        (
            "POST without Content-Type",
            http.post(&chat).bearer_auth(&gw.key).body(body.clone()),
            415,
            "unsupported_media_type",
        ),
        (
            "DNS rebinding: the attacker's name in Host (POST)",
            http.post(&chat)
                .bearer_auth(&gw.key)
                .header("host", format!("rebind.evil.example:{port}"))
                .header("content-type", "application/json")
                .body(body.clone()),
            403,
            "forbidden_host",
        ),
        (
            "DNS rebinding: reading the balance (GET /zg/v1/status)",
            http.get(format!("{}/zg/v1/status", gw.url))
                .bearer_auth(&gw.key)
                .header("host", format!("rebind.evil.example:{port}")),
            403,
            "forbidden_host",
        ),
        (
            "right host, wrong port",
            http.get(format!("{}/v1/models", gw.url))
                .bearer_auth(&gw.key)
                .header("host", format!("127.0.0.1:{}", port.wrapping_add(1))),
            403,
            "forbidden_host",
        ),
        (
            "a local process without the key",
            http.post(&chat)
                .header("content-type", "application/json")
                .body(body.clone()),
            401,
            "missing_api_key",
        ),
        (
            "a local process with a wrong key",
            http.post(&chat)
                .bearer_auth("sk-zg-not-the-right-key-at-all")
                .header("content-type", "application/json")
                .body(body.clone()),
            401,
            "invalid_api_key",
        ),
        (
            "the key in the wrong scheme",
            http.post(&chat)
                .basic_auth("user", Some(&gw.key))
                .header("content-type", "application/json")
                .body(body.clone()),
            401,
            "missing_api_key",
        ),
        (
            "reading receipts without the key",
            http.get(format!("{}/zg/v1/receipts/anything", gw.url)),
            401,
            "missing_api_key",
        ),
    ];
    for (name, req, status, kind) in attacks {
        let resp = req.send().await.unwrap();
        let got = resp.status().as_u16();
        let v: serde_json::Value = resp.json().await.unwrap_or_default();
        assert_eq!((got, error_type(&v)), (status, kind), "{name}: {v}");
    }
    // Nothing was signed, sent or paid for: no nonce used, no receipt, no sub-account yet.
    let st = client.state(e.provider).await.unwrap();
    assert_eq!((st.receipts, st.last_nonce), (0, U256::ZERO));
    assert_eq!(e.sub_balance().await, U256::ZERO);

    // The legitimate callers still work: same origin, localhost by name, the key, JSON with a charset.
    let ok = http
        .post(&chat)
        .bearer_auth(&gw.key)
        .header("origin", gw.url.clone())
        .header("sec-fetch-site", "same-origin")
        .header("host", format!("localhost:{port}"))
        .header("content-type", "application/json; charset=utf-8")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200, "{:?}", ok.text().await);
    // /healthz is public (it says "ok" and nothing else), but still only on our Host.
    let h = http.get(format!("{}/healthz", gw.url)).send().await.unwrap();
    assert_eq!(h.status().as_u16(), 200);
    let h = http
        .get(format!("{}/healthz", gw.url))
        .header("host", format!("rebind.evil.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status().as_u16(), 403);
}
