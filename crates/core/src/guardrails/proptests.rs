//! Properties for any text: nothing panics, look-alike digits and separators do not hide
//! PII, and for any split of a text into deltas the stream guard releases the redaction of
//! the whole text.

use proptest::prelude::*;

use super::fold::DIGIT_ZEROS;
use super::*;

fn redact_all() -> GuardrailConfig {
    GuardrailConfig {
        pii: PiiAction::Redact,
        patterns: custom(),
        ..Default::default()
    }
}

/// A tenant's patterns: a 10-digit customer number and an order reference.
fn custom() -> Patterns {
    Patterns::try_from(
        [
            ("CUSTOMER_ID".to_owned(), r"\b[0-9]{10}\b".to_owned()),
            ("ORDER".to_owned(), r"ORD-[0-9]+".to_owned()),
        ]
        .into_iter()
        .collect::<BTreeMap<_, _>>(),
    )
    .unwrap_or_default()
}

fn everything() -> GuardrailConfig {
    GuardrailConfig {
        pii: PiiAction::Block,
        denied_words: vec![
            "project falcon".into(),
            "x".into(),
            "ｐｒｏ ｊｅｃｔ".into(),
        ],
        denied_topics: [("t".to_owned(), vec!["a b c".to_owned()])].into(),
        injection: InjectionAction::Block,
        ..Default::default()
    }
}

/// A digit written in one of the scripts.
fn digit(script: usize, d: u32) -> char {
    char::from_u32(DIGIT_ZEROS[script % DIGIT_ZEROS.len()] + d).unwrap_or('0')
}

/// A separator between groups of a number.
fn separator() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        " ", "-", ".", "\u{00A0}", "\u{2009}", "\u{3000}", "\u{2011}", "\u{2212}", "\t", "\n",
    ])
}

/// Texts that mix prose, numbers that are PII (in any script, with any separator), numbers
/// that are not, and arbitrary characters.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "the ",
            "report ",
            "415 555 0132 ",
            "ID 000-12-3456 ",
            "a@b.io ",
            "GB82 WEST 1234 5698 7654 32 ",
            "(415) 555-0132 ",
            "+1 415 555 0132 ",
            "4111 1111 1111 1111 ",
            "123-45-6789 ",
            "AKIAIOSFODNN7EXAMPLE ",
            "  ",
            "\n",
            "A B ",
            "12 34 ",
            "1 2 3 4 5 6 7 8 9 ",
            "1234567890 ",
            "12345678901 ",
            "ORD-42 ",
            "[CUSTOMER_ID_1] ",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,6}",
        (any::<usize>(), separator()).prop_map(|(script, sep)| {
            let d = |x: &str| {
                x.chars()
                    .map(|c| digit(script, c.to_digit(10).unwrap_or(0)))
                    .collect::<String>()
            };
            format!("{}{sep}{}{sep}{} ", d("123"), d("45"), d("6789"))
        }),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

/// Texts of a few words and any whitespace between them, where denied phrases are frequent.
fn words() -> impl Strategy<Value = String> {
    let word = prop::sample::select(vec!["the", "report", "415", "555", "x", "Report", "ｔｈｅ"]);
    let gap = prop::sample::select(vec![" ", "  ", "\n", "\u{00A0}", "\t "]);
    prop::collection::vec((word, gap), 0..24)
        .prop_map(|p| p.into_iter().map(|(w, g)| format!("{w}{g}")).collect())
}

/// `text` split at the given points (snapped to character boundaries).
fn split(text: &str, points: &[usize]) -> Vec<String> {
    let mut cuts: Vec<usize> = points
        .iter()
        .map(|p| {
            let mut at = p % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            at
        })
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut from = 0;
    for c in cuts.into_iter().chain([text.len()]) {
        out.push(text[from..c].to_owned());
        from = c;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn nothing_panics_on_any_text(text in any::<String>(), points in prop::collection::vec(any::<usize>(), 0..8)) {
        let c = everything();
        let _ = check(&c, &text, true);
        let _ = check(&c, &text, false);
        let _ = scan_pii(&redact_all(), &text);
        if let Some(mut g) = StreamGuard::new(&c) {
            for d in split(&text, &points) {
                if g.push(&d).is_err() {
                    break;
                }
            }
            let _ = g.finish();
        }
    }

    #[test]
    fn the_stream_releases_the_redaction_of_the_whole(text in text(), points in prop::collection::vec(any::<usize>(), 0..16)) {
        let config = redact_all();
        let (whole, findings) = scan_pii(&config, &text);
        let mut g = StreamGuard::new(&config).unwrap();
        let mut out = String::new();
        for d in split(&text, &points) {
            out.push_str(&g.push(&d).unwrap());
        }
        out.push_str(&g.finish().unwrap());
        prop_assert_eq!(out, whole);
        prop_assert_eq!(&g.findings, &findings);
    }

    #[test]
    fn masking_is_undone_exactly_on_any_split(text in text(), points in prop::collection::vec(any::<usize>(), 0..16)) {
        let config = GuardrailConfig { pii: PiiAction::Mask, ..redact_all() };
        let mut masks = Masks::default();
        let (masked, findings) = mask_input(&config, &text, &mut masks);
        // Nothing the guardrails find is left for the model, and every value comes back.
        prop_assert!(scan_pii(&redact_all(), &masked).1.is_empty(), "{:?}", masked);
        prop_assert_eq!(findings.masked.values().sum::<u32>() > 0, !masks.is_empty());
        let whole = masks.restore(&masked);
        if !text.contains("[CUSTOMER_ID_1]") {
            prop_assert_eq!(&whole, &text);
        }
        let mut restorer = Restorer::new(masks);
        let mut out = String::new();
        for d in split(&masked, &points) {
            out.push_str(&restorer.push(d));
        }
        out.push_str(&restorer.finish());
        prop_assert_eq!(out, whole);
    }

    #[test]
    fn denied_phrases_are_never_released(text in prop_oneof![text(), words()], points in prop::collection::vec(any::<usize>(), 0..16)) {
        let config = GuardrailConfig {
            denied_words: vec!["415 555".into(), "the report".into(), "report  the the".into()],
            ..Default::default()
        };
        let blocked = !scan_policy(&config, &text, false).is_empty();
        let mut g = StreamGuard::new(&config).unwrap();
        let mut sent = String::new();
        let mut refused = false;
        for d in split(&text, &points) {
            match g.push(&d) {
                Ok(t) => sent.push_str(&t),
                Err(_) => { refused = true; break; }
            }
        }
        if !refused {
            match g.finish() {
                Ok(t) => sent.push_str(&t),
                Err(_) => refused = true,
            }
        }
        prop_assert_eq!(refused, blocked);
        prop_assert!(scan_policy(&config, &sent, false).is_empty(), "released {:?}", sent);
    }

    #[test]
    fn an_ssn_in_any_script_with_any_separator_is_found(script in any::<usize>(), sep in separator(), area in 1u32..666, group in 1u32..100, serial in 1u32..10000) {
        let d = |n: u32, width: usize| format!("{n:0width$}").chars().map(|c| digit(script, c.to_digit(10).unwrap_or(0))).collect::<String>();
        let text = format!("my ssn is {}{sep}{}{sep}{} thanks", d(area, 3), d(group, 2), d(serial, 4));
        let (out, f) = scan_pii(&redact_all(), &text);
        prop_assert_eq!(f.redacted.get(&PiiKind::UsSsn), Some(&1), "{}", out);
        prop_assert_eq!(out, "my ssn is [US_SSN] thanks");
    }
}
