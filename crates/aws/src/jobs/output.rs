//! How an item's output fits a DynamoDB item (400 KB): as text, gzipped, or cut at a
//! character boundary (and flagged) when neither fits.

use std::collections::HashMap;
use std::io::{Read, Write};

use aws_sdk_dynamodb::types::AttributeValue;

/// Outputs up to this size are stored as text.
const PLAIN_LIMIT: usize = 300 * 1024;
/// Compressed outputs up to this size are stored; beyond, the text is truncated.
const COMPRESSED_LIMIT: usize = 350 * 1024;

/// How an output is stored: text, gzip, or text cut to fit.
pub(super) enum Stored {
    Text(String),
    Gzip(Vec<u8>),
    Truncated(String),
}

pub(super) fn pack(output: &str) -> Stored {
    if output.len() <= PLAIN_LIMIT {
        return Stored::Text(output.to_owned());
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    if encoder.write_all(output.as_bytes()).is_ok()
        && let Ok(bytes) = encoder.finish()
        && bytes.len() <= COMPRESSED_LIMIT
    {
        return Stored::Gzip(bytes);
    }
    let mut cut = PLAIN_LIMIT;
    while !output.is_char_boundary(cut) {
        cut -= 1;
    }
    Stored::Truncated(output[..cut].to_owned())
}

pub(super) fn unpack(item: &HashMap<String, AttributeValue>) -> Option<String> {
    if let Some(t) = item.get("output").and_then(|v| v.as_s().ok()).cloned() {
        return Some(t);
    }
    let blob = item.get("output_gz").and_then(|v| v.as_b().ok())?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(blob.as_ref())
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::primitives::Blob;

    #[test]
    fn outputs_are_packed_to_fit() {
        assert!(matches!(pack("short"), Stored::Text(_)));
        // Repetitive text compresses far below the limit.
        let long = "the same sentence again. ".repeat(20_000);
        match pack(&long) {
            Stored::Gzip(b) => {
                let mut item = HashMap::new();
                item.insert("output_gz".to_owned(), AttributeValue::B(Blob::new(b)));
                assert_eq!(unpack(&item).unwrap(), long);
            }
            _ => panic!("expected gzip"),
        }
        // Incompressible text past the limit is truncated at a character boundary.
        let noisy: String = (0..400_000u32)
            .map(|i| char::from_u32(0x4E00 + (i * 7919) % 20000).unwrap_or('x'))
            .collect();
        match pack(&noisy) {
            Stored::Truncated(t) => assert!(t.len() <= PLAIN_LIMIT && noisy.starts_with(&t)),
            _ => panic!("expected truncation"),
        }
    }
}
