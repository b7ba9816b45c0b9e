//! The broker with the `lora` executor end to end on anvil (one task): a real LoRA run on SmolLM2, the fee counted
//! with the model's own tokenizer, a PEFT adapter delivered sealed, the key revealed at settlement, and the
//! decrypted adapter loading onto the base. Out-of-bounds LoRA parameters are refused at creation, by name.

use alloy_primitives::U256;
use serde_json::Value;
use zg_finetune::{Dataset, DatasetLimits, ModelTokenizer, unpack};
use zg_sealing::{EncryptedSecret, Unsealer};

use crate::common::*;

const LORA_MODEL: &str = "smollm2-135m-instruct";

#[tokio::test]
async fn lora_task_trains_delivers_a_peft_adapter_and_settles_the_exact_fee_e2e() {
    let gguf = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(gguf.is_file(), "{} is missing: run `just setup`", gguf.display());
    let net = Net::start().await;
    let cfg = net.dir.path().join("broker.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[models]]\nname = \"{LORA_MODEL}\"\nexecutor = \"lora\"\nmodel_path = {:?}\n",
            gguf.display().to_string()
        ),
    )
    .unwrap();
    let b = net.broker(&[], &["-c", cfg.to_str().unwrap()]).await;
    net.owner_ack().await;
    let alice = net.customer(1, 5).await;
    let data = baking(6);
    let root = net.upload(&data);
    let m: Value = reqwest::get(format!("{}/v1/model/{LORA_MODEL}", b.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["executor"], "lora", "{m}");
    let hash = m["hash"].as_str().unwrap().to_owned();

    // Out of the CPU trainer's bounds: refused by name before anything is stored or charged.
    let (st, t) = alice
        .create(&b, &alice.create_body(&root, &hash, r#"{"lora_r": 512}"#))
        .await;
    assert_eq!(st, 400, "{t}");
    assert!(t.to_string().contains("lora_r"), "{t}");

    let params = r#"{"max_steps": 2, "per_device_train_batch_size": 2, "max_seq_length": 64, "validation_split": 0.34, "learning_rate": 0.002}"#;
    let before = alice.balance(net.provider()).await;
    let (st, t) = alice.create(&b, &alice.create_body(&root, &hash, params)).await;
    assert_eq!(st, 200, "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    let t = alice
        .wait(&b, &id, 150, |s| s == "Delivered" || terminal(s))
        .await;
    assert_eq!(t["progress"], "Delivered", "{t}\n{}", alice.log(&b, &id).await);

    // The fee counts the model's own tokens.
    let model = zg_model::Model::load(&gguf, zg_model::LoadOptions::default()).unwrap();
    let tokens = Dataset::from_jsonl(&data, &DatasetLimits::default())
        .unwrap()
        .token_count(&ModelTokenizer::new(model.clone()));
    let fee = U256::from(tokens) * U256::from(PRICE);
    assert_eq!(
        (t["tokens"].as_u64(), t["fee"].as_str()),
        (Some(tokens), Some(fee.to_string().as_str()))
    );

    let log = alice.log(&b, &id).await;
    for needle in [
        "step 0/2: base held-out loss",
        "step 1/2 ",
        "step 2/2 ",
        "tokens/s",
        "held-out loss",
    ] {
        assert!(log.contains(needle), "{needle} missing:\n{log}");
    }

    let (st, sealed) = alice.download(&b, &id).await;
    assert_eq!(st, 200);
    alice.acknowledge(net.provider(), &id).await;
    let t = alice.wait(&b, &id, 60, terminal).await;
    assert_eq!(t["progress"], "Finished", "{t}");
    assert_eq!(before - alice.balance(net.provider()).await, fee);
    let d = alice
        .chain
        .fine_tuning()
        .get_deliverable(alice.addr, net.provider(), &id)
        .await
        .unwrap();
    let secret = zg_sealing::k256::SecretKey::from_slice(alice.key.to_bytes().as_slice()).unwrap();
    let key = EncryptedSecret::from_bytes(d.encrypted_secret.to_vec())
        .unwrap_with(&secret)
        .unwrap();
    let signer = alice
        .chain
        .fine_tuning()
        .tee_signer(net.provider())
        .await
        .unwrap()
        .unwrap();
    let plain = Unsealer::new(&key, signer).unseal_bytes(&sealed).unwrap();
    let out = net.dir.path().join("model");
    unpack(&mut plain.as_slice(), &out, 1 << 30).unwrap();
    let adapter = zg_model::LoraAdapter::load(&out).unwrap();
    model.add_adapter("ft-baking", &adapter).unwrap();
    assert_eq!(adapter.config().r, 8);
}
