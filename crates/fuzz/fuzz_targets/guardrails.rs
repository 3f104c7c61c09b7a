//! The guardrails on any text: the whole-text checks and the stream guard, with the text cut
//! into deltas wherever the input says.
//!
//! Properties: never a panic; for any split, the stream guard releases exactly the redaction
//! of the whole text; under `block`, text with a denied phrase or PII is refused and nothing
//! released contains either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quarry_core::guardrails::{
    GuardrailConfig, InjectionAction, PiiAction, StreamGuard, check, scan_pii, scan_policy,
};

fuzz_target!(|data: &[u8]| {
    // The first bytes say where to cut; the rest is the text.
    let (cuts, text) = data.split_at(data.len().min(4));
    let text = String::from_utf8_lossy(text);
    let deltas = split(&text, cuts);

    let redact = GuardrailConfig {
        pii: PiiAction::Redact,
        ..Default::default()
    };
    let (whole, _) = scan_pii(&redact, &text);
    let Some(mut g) = StreamGuard::new(&redact) else {
        panic!("redaction needs a stream guard");
    };
    let mut out = String::new();
    for d in &deltas {
        out.push_str(
            &g.push(d)
                .unwrap_or_else(|f| panic!("redact refused: {f:?}")),
        );
    }
    out.push_str(
        &g.finish()
            .unwrap_or_else(|f| panic!("redact refused: {f:?}")),
    );
    assert_eq!(out, whole);

    let block = GuardrailConfig {
        pii: PiiAction::Block,
        denied_words: vec!["project falcon".into(), "a b".into()],
        injection: InjectionAction::Block,
        ..Default::default()
    };
    let _ = check(&block, &text, true);
    let refused_whole = !check(&block, &text, false).1.blocked.is_empty();
    let Some(mut g) = StreamGuard::new(&block) else {
        panic!("block needs a stream guard");
    };
    let mut sent = String::new();
    let mut refused = false;
    for d in &deltas {
        match g.push(d) {
            Ok(t) => sent.push_str(&t),
            Err(_) => {
                refused = true;
                break;
            }
        }
    }
    if !refused {
        refused = g.finish().map(|t| sent.push_str(&t)).is_err();
    }
    assert_eq!(refused, refused_whole, "text {text:?}");
    assert!(
        scan_policy(&block, &sent, false).is_empty(),
        "sent {sent:?}"
    );
    assert!(scan_pii(&block, &sent).1.is_empty(), "sent {sent:?}");
});

fn split(text: &str, cuts: &[u8]) -> Vec<String> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| {
            let mut at = usize::from(*c) * text.len() / 255;
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            at
        })
        .collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut from = 0;
    for p in points.into_iter().chain([text.len()]) {
        out.push(text[from..p].to_owned());
        from = p;
    }
    out
}
