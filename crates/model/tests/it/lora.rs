//! PEFT adapters: save/load round trip, several adapters per base, and refusal of foreign adapters.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use zg_model::{Error, LoraAdapter, LoraConfig, SMOLLM2_135M_INSTRUCT, Target};

use crate::common::model;

/// A random adapter in Hugging Face layout on `targets` of layers 0, 7 and 29.
fn random_adapter(seed: u64, targets: &[Target], base: &str) -> LoraAdapter {
    let cfg = model().config().clone();
    let r = 4;
    let dev = Device::Cpu;
    let mut w = BTreeMap::new();
    let mut s = seed;
    let mut rnd = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
            })
            .collect()
    };
    for layer in [0, 7, 29] {
        for t in targets {
            let (out, inp) = cfg.target_shape(*t);
            let a = Tensor::from_vec(rnd(r * inp), (r, inp), &dev).unwrap();
            let b = Tensor::from_vec(rnd(out * r), (out, r), &dev).unwrap();
            w.insert((layer, *t), (a, b));
        }
    }
    LoraAdapter::new(LoraConfig::new(r, 8.0, targets, base), w)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn peft_adapter_round_trips_and_several_serve_on_one_base() {
    let m = model();
    let ids = m
        .tokenizer()
        .encode("<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n");
    let base = m.logits(&ids, None).unwrap();
    let adapter = random_adapter(1, &Target::ALL, SMOLLM2_135M_INSTRUCT);
    let dir = tempfile::tempdir().unwrap();
    adapter.save(dir.path()).unwrap();
    // The files are what PEFT writes.
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["base_model_name_or_path"], SMOLLM2_135M_INSTRUCT);
    let st =
        candle_core::safetensors::load(dir.path().join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    assert!(st.contains_key("base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight"));
    assert_eq!(
        st["base_model.model.model.layers.29.mlp.down_proj.lora_B.weight"].dims(),
        &[576, 4]
    );

    let loaded = LoraAdapter::load(dir.path()).unwrap();
    assert_eq!(loaded.config(), adapter.config());
    m.add_adapter("ft-a", &adapter).unwrap();
    m.add_adapter("ft-a-loaded", &loaded).unwrap();
    m.add_adapter(
        "ft-b",
        &random_adapter(2, &[Target::Q, Target::V], SMOLLM2_135M_INSTRUCT),
    )
    .unwrap();
    let a = m.logits(&ids, Some("ft-a")).unwrap();
    let a2 = m.logits(&ids, Some("ft-a-loaded")).unwrap();
    let b = m.logits(&ids, Some("ft-b")).unwrap();
    assert_eq!(a, a2, "save → load must give the same logits");
    assert!(max_diff(&a, &base) > 1e-2, "the adapter changes the logits");
    assert!(max_diff(&b, &a) > 1e-2, "adapters are chosen per request");
    // The base is unaffected by the attached adapters.
    assert_eq!(m.logits(&ids, None).unwrap(), base);
    let served = m.served_models();
    assert!(
        served.contains(&"ft-b".to_string()) && served[0] == "SmolLM2-135M-Instruct",
        "{served:?}"
    );
    assert!(m.remove_adapter("ft-b"));
    assert!(matches!(
        m.logits(&ids, Some("ft-b")),
        Err(Error::UnknownModel { .. })
    ));
}

#[test]
fn adapter_for_another_base_or_shape_is_refused_by_name() {
    let m = model();
    // Another base by name (same shapes: SmolLM2-135M base vs instruct).
    let other = random_adapter(3, &[Target::Q], "HuggingFaceTB/SmolLM2-135M");
    let e = m.add_adapter("x", &other).unwrap_err();
    assert!(
        matches!(&e, Error::AdapterBaseMismatch { adapter_base, .. } if adapter_base == "HuggingFaceTB/SmolLM2-135M"),
        "{e}"
    );
    // Shapes of a bigger model (hidden 960, SmolLM2-360M) under the right name.
    let dev = Device::Cpu;
    let mut w = BTreeMap::new();
    w.insert(
        (0, Target::Q),
        (
            Tensor::zeros((4, 960), candle_core::DType::F32, &dev).unwrap(),
            Tensor::zeros((960, 4), candle_core::DType::F32, &dev).unwrap(),
        ),
    );
    let big = LoraAdapter::new(LoraConfig::new(4, 8.0, &[Target::Q], SMOLLM2_135M_INSTRUCT), w);
    let e = m.add_adapter("x", &big).unwrap_err();
    match &e {
        Error::AdapterShapeMismatch { tensor, got, want } => {
            assert_eq!(
                tensor,
                "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
            );
            assert_eq!((got.as_slice(), want.as_slice()), (&[4, 960][..], &[4, 576][..]));
        }
        other => panic!("{other}"),
    }
    assert!(e.is_client_fault());
    // A layer the base does not have.
    let mut w = BTreeMap::new();
    w.insert(
        (30, Target::V),
        (
            Tensor::zeros((4, 576), candle_core::DType::F32, &dev).unwrap(),
            Tensor::zeros((192, 4), candle_core::DType::F32, &dev).unwrap(),
        ),
    );
    let deep = LoraAdapter::new(LoraConfig::new(4, 8.0, &[Target::V], SMOLLM2_135M_INSTRUCT), w);
    assert!(matches!(
        m.add_adapter("x", &deep),
        Err(Error::AdapterShapeMismatch { .. })
    ));
    // A rank that disagrees with the config.
    let mut w = BTreeMap::new();
    w.insert(
        (0, Target::V),
        (
            Tensor::zeros((8, 576), candle_core::DType::F32, &dev).unwrap(),
            Tensor::zeros((192, 8), candle_core::DType::F32, &dev).unwrap(),
        ),
    );
    let rank = LoraAdapter::new(LoraConfig::new(4, 8.0, &[Target::V], SMOLLM2_135M_INSTRUCT), w);
    assert!(matches!(
        m.add_adapter("x", &rank),
        Err(Error::AdapterShapeMismatch { .. })
    ));
    assert_eq!(m.served_models(), vec!["SmolLM2-135M-Instruct".to_string()]);
}

#[test]
fn malformed_adapter_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = random_adapter(4, &[Target::Q], SMOLLM2_135M_INSTRUCT);
    good.save(dir.path()).unwrap();
    let cfg_path = dir.path().join("adapter_config.json");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, cfg.replace("\"LORA\"", "\"PREFIX_TUNING\"")).unwrap();
    let e = LoraAdapter::load(dir.path()).unwrap_err();
    assert!(
        matches!(&e, Error::BadAdapter { reason, .. } if reason.contains("PREFIX_TUNING")),
        "{e}"
    );
    std::fs::write(&cfg_path, &cfg).unwrap();
    // Truncated weights.
    let wp = dir.path().join("adapter_model.safetensors");
    let bytes = std::fs::read(&wp).unwrap();
    std::fs::write(&wp, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        LoraAdapter::load(dir.path()),
        Err(Error::BadAdapter { .. })
    ));
    // A tensor that is not a LoRA A/B of a projection (e.g. a saved lm_head).
    let mut map = std::collections::HashMap::new();
    map.insert(
        "base_model.model.lm_head.weight".to_string(),
        Tensor::zeros((2, 2), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&map, &wp).unwrap();
    let e = LoraAdapter::load(dir.path()).unwrap_err();
    assert!(e.to_string().contains("lm_head"), "{e}");
    // Missing files name the path.
    let e = LoraAdapter::load(dir.path().join("nope")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}
