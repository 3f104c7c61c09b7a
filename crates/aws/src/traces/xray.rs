//! The X-Ray trace header, `X-Amzn-Trace-Id`, both ways.
//!
//! `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1` names the
//! trace (the Root without its version and dashes is the W3C/OpenTelemetry trace ID), the
//! caller's span (`Parent`) and its sampling decision (`Sampled`: `1`, `0`, or `?` for "not
//! decided"). API Gateway and Lambda send it in; Quarry sends it on to Bedrock, naming its
//! own span as the parent.
//!
//! Parsing is total: any header that is not exactly this shape is no header (the request
//! starts a trace of its own); nothing here can panic on what a client sends.

/// What a trace header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XrayHeader {
    pub trace_id: [u8; 16],
    /// The caller's span; absent when the header names only the trace (API Gateway's).
    pub parent: Option<[u8; 8]>,
    /// The caller's sampling decision; `None` when it left the decision to us.
    pub sampled: Option<bool>,
}

/// Longest header taken: X-Ray's own limit is far below; a longer one is not a trace header.
const MAX_LEN: usize = 1024;

/// The header's fields, or `None` when it is not a valid X-Ray trace header.
pub fn parse(header: &str) -> Option<XrayHeader> {
    if header.len() > MAX_LEN {
        return None;
    }
    let (mut root, mut parent, mut sampled) = (None, None, None);
    for part in header.split(';') {
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        let value = value.trim();
        // The first of a repeated key counts, as X-Ray reads it.
        match key.trim() {
            k if k.eq_ignore_ascii_case("root") && root.is_none() => root = Some(value),
            k if k.eq_ignore_ascii_case("parent") && parent.is_none() => parent = Some(value),
            k if k.eq_ignore_ascii_case("sampled") && sampled.is_none() => sampled = Some(value),
            _ => {}
        }
    }
    let trace_id = trace_id(root?)?;
    let parent = match parent {
        Some(p) => Some(span_id(p)?),
        None => None,
    };
    let sampled = match sampled {
        Some("1") => Some(true),
        Some("0") => Some(false),
        _ => None,
    };
    Some(XrayHeader {
        trace_id,
        parent,
        sampled,
    })
}

/// `1-{8 hex}-{24 hex}` as 16 bytes; all zeros is no trace.
fn trace_id(root: &str) -> Option<[u8; 16]> {
    let rest = root.strip_prefix("1-")?;
    let (time, unique) = rest.split_once('-')?;
    if time.len() != 8 || unique.len() != 24 {
        return None;
    }
    let bytes: [u8; 16] = decode(&format!("{time}{unique}"))?;
    (bytes != [0; 16]).then_some(bytes)
}

/// 16 hex digits as 8 bytes; all zeros is no span.
fn span_id(parent: &str) -> Option<[u8; 8]> {
    let bytes: [u8; 8] = decode(parent)?;
    (bytes != [0; 8]).then_some(bytes)
}

/// Hex digits only (no sign, no prefix) of exactly the array's length.
fn decode<const N: usize>(digits: &str) -> Option<[u8; N]> {
    if digits.len() != N * 2 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).ok()?;
    Some(out)
}

/// The header naming `trace_id`, `parent` as the calling span, and the sampling decision.
pub fn format(trace_id: [u8; 16], parent: [u8; 8], sampled: bool) -> String {
    let id = hex::encode(trace_id);
    format!(
        "Root=1-{}-{};Parent={};Sampled={}",
        &id[..8],
        &id[8..],
        hex::encode(parent),
        u8::from(sampled)
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const API_GATEWAY: &str =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

    #[test]
    fn a_full_header() {
        let h = parse(API_GATEWAY).unwrap();
        assert_eq!(hex::encode(h.trace_id), "5759e988bd862e3fe1be46a994272793");
        assert_eq!(hex::encode(h.parent.unwrap()), "53995c3f42cd8ad8");
        assert_eq!(h.sampled, Some(true));
        assert_eq!(format(h.trace_id, h.parent.unwrap(), true), API_GATEWAY);
    }

    #[test]
    fn partial_headers() {
        let root_only = parse("Root=1-5759e988-bd862e3fe1be46a994272793").unwrap();
        assert_eq!(root_only.parent, None);
        assert_eq!(root_only.sampled, None);
        let undecided = parse(
            " Self=1-67891233-abcdef012345678912345678 ; root=1-5759e988-bd862e3fe1be46a994272793;Sampled=?;Parent=53995c3f42cd8ad8",
        )
        .unwrap();
        assert_eq!(undecided.sampled, None);
        assert!(undecided.parent.is_some());
        let unsampled = parse(&API_GATEWAY.replace("Sampled=1", "Sampled=0")).unwrap();
        assert_eq!(unsampled.sampled, Some(false));
    }

    #[test]
    fn garbage_is_no_header() {
        for h in [
            "",
            ";;;",
            "Root=",
            "Root=1-5759e988-bd862e3fe1be46a99427279",
            "Root=2-5759e988-bd862e3fe1be46a994272793",
            "Root=1-+759e988-bd862e3fe1be46a994272793",
            "Root=1-5759e988bd862e3fe1be46a994272793",
            "Root=1-00000000-000000000000000000000000",
            "Root=1-5759e988-bd862e3fe1be46a99427279é",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=0000000000000000",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8a",
            "Parent=53995c3f42cd8ad8;Sampled=1",
        ] {
            assert_eq!(parse(h), None, "{h:?}");
        }
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panic(h in "\\PC{0,200}") {
            let _ = parse(&h);
        }

        #[test]
        fn near_headers_parse_without_panic(
            root in "[0-9a-fA-F+-]{0,40}",
            parent in "[0-9a-fA-F+ -]{0,20}",
            sampled in "[01?x]{0,2}",
        ) {
            let _ = parse(&format!("Root={root};Parent={parent};Sampled={sampled}"));
        }

        #[test]
        fn what_is_formatted_parses_back(t in any::<[u8; 16]>(), p in any::<[u8; 8]>(), s in any::<bool>()) {
            prop_assume!(t != [0; 16] && p != [0; 8]);
            let h = parse(&format(t, p, s)).unwrap();
            prop_assert_eq!(h, XrayHeader { trace_id: t, parent: Some(p), sampled: Some(s) });
        }
    }
}
