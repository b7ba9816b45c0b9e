//! Token counts and ids equal Hugging Face `tokenizers` and llama.cpp on the same GGUF (tests/reference).

use crate::common::{model, reference};
use zg_model::ChatMessage;

#[test]
fn token_ids_equal_the_reference_tokenizers() {
    let m = model();
    let r = reference();
    assert!(r.tokenizer.len() >= 10);
    for t in &r.tokenizer {
        let ids = m.tokenizer().encode(&t.text);
        assert_eq!(ids, t.ids, "ids differ for {:?}", t.text);
        assert_eq!(
            m.tokenizer().count(&t.text),
            t.count,
            "count differs for {:?}",
            t.text
        );
        // Byte-level BPE is lossless, except for the few bytes the vocabulary lacks (dropped, as the references do).
        if !t.text.contains(['\u{4}', '\u{6}', '\u{40000}']) {
            assert_eq!(m.tokenizer().decode(&ids, false), t.text);
        }
    }
}

#[test]
fn chat_template_renders_like_jinja_and_counts_like_the_reference() {
    let m = model();
    for g in reference().greedy {
        let prompt = m.render_chat(&g.messages, true).unwrap();
        assert_eq!(prompt, g.prompt);
        assert_eq!(m.tokenizer().encode(&prompt), g.prompt_ids);
    }
    // The template's default system prompt appears when the conversation has none.
    let p = m.render_chat(&[ChatMessage::new("user", "hi")], false).unwrap();
    assert!(
        p.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
        "{p}"
    );
    assert!(p.ends_with("<|im_start|>user\nhi<|im_end|>\n"), "{p}");
}
