//! Deterministic embedding vectors in which similar texts lie close together.
//!
//! A text's features are its lowercased words and the character trigrams of each word
//! (`<cat>` gives `<ca`, `cat`, `at>`). Each feature is hashed, with the model's ID as seed,
//! onto a few of the vector's dimensions with a sign, and the sums are L2-normalised: texts
//! that share words or word pieces share dimensions, so their cosine similarity is higher
//! than that of unrelated texts, whose features land on unrelated dimensions. The same
//! model, text and size always give the same vector; another model gives another space.
//!
//! Hashed features leave most dimensions at zero, which no real embedding does (and which
//! would make binary forms mostly zero bits). An orthogonal transform spreads the vector
//! over every dimension: per-model sign flips, then a Walsh-Hadamard transform over blocks
//! of a power-of-two size. Orthogonal transforms keep every dot product, so the similarities
//! above are unchanged.

use crate::generate::Prng;

/// Dimensions each feature lands on: more than one evens out hash collisions.
const SLOTS_PER_FEATURE: usize = 2;
/// A whole word says more about meaning than any one of its trigrams.
const WORD_WEIGHT: f64 = 1.0;
const TRIGRAM_WEIGHT: f64 = 0.5;

/// FNV-1a, written here so vectors never change with a dependency upgrade.
fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn feature_hash(seed: u64, kind: u8, chars: &[char]) -> u64 {
    let mut hash = fnv(seed, &[kind]);
    let mut buf = [0u8; 4];
    for c in chars {
        hash = fnv(hash, c.encode_utf8(&mut buf).as_bytes());
    }
    hash
}

fn add_feature(sums: &mut [f64], hash: u64, weight: f64) {
    let mut rng = Prng::new(hash);
    let len = sums.len() as u64;
    // A per-feature factor in [0.75, 1.25): with weights all alike, the spreading transform
    // would cancel many dimensions to exactly zero.
    let weight = weight * (0.75 + 0.5 * rng.unit());
    for _ in 0..SLOTS_PER_FEATURE {
        let r = rng.next_u64();
        // The low bits pick the dimension, the top bit the sign.
        if let Some(slot) = sums.get_mut((r % len) as usize) {
            if r >> 63 == 0 {
                *slot += weight;
            } else {
                *slot -= weight;
            }
        }
    }
}

/// The L2-normalised vector of `text` in `model`'s space, `dimensions` long.
pub fn unit_vector(model: &str, text: &str, dimensions: usize) -> Vec<f64> {
    let dimensions = dimensions.max(1);
    let seed = fnv(FNV_OFFSET, model.as_bytes());
    let mut sums = vec![0.0; dimensions];
    let lower = text.to_lowercase();
    let mut any = false;
    for token in lower.split_whitespace() {
        let word: Vec<char> = token
            .trim_matches(|c: char| !c.is_alphanumeric())
            .chars()
            .collect();
        if !word.is_empty() {
            add_feature(&mut sums, feature_hash(seed, b'w', &word), WORD_WEIGHT);
        }
        let padded: Vec<char> = std::iter::once('<')
            .chain(token.chars())
            .chain(std::iter::once('>'))
            .collect();
        for trigram in padded.windows(3) {
            add_feature(&mut sums, feature_hash(seed, b't', trigram), TRIGRAM_WEIGHT);
        }
        any = true;
    }
    if !any {
        // Empty or blank text has no features; it still gets a vector of its own.
        let length: Vec<char> = text.chars().count().to_string().chars().collect();
        add_feature(&mut sums, feature_hash(seed, b'e', &length), WORD_WEIGHT);
    }
    spread(&mut sums, seed);
    normalised(sums)
}

/// The orthogonal transform that makes a sparse vector dense (see the module comment).
fn spread(v: &mut [f64], seed: u64) {
    let mut signs = Prng::new(seed);
    for x in v.iter_mut() {
        if signs.next_u64() >> 63 == 1 {
            *x = -*x;
        }
    }
    // The largest power of two dividing the length: 256 for 256, 512 for 1536.
    let block = 1usize << v.len().trailing_zeros();
    let scale = 1.0 / (block as f64).sqrt();
    for chunk in v.chunks_mut(block) {
        let mut half = 1;
        while half < chunk.len() {
            for start in (0..chunk.len()).step_by(half * 2) {
                for i in start..start + half {
                    let (a, b) = (chunk[i], chunk[i + half]);
                    chunk[i] = a + b;
                    chunk[i + half] = a - b;
                }
            }
            half *= 2;
        }
        for x in chunk.iter_mut() {
            *x *= scale;
        }
    }
}

fn normalised(mut v: Vec<f64>) -> Vec<f64> {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}

/// The norm Titan's unnormalised vectors have: it grows with the text's length, so a caller
/// that skips normalisation sees vectors of different lengths, as with the real model.
pub fn raw_norm(text: &str) -> f64 {
    1.0 + (1.0 + text.chars().count() as f64).ln()
}

/// A float as the response carries it: eight decimals are more than any caller compares,
/// and keep the JSON short.
pub fn rounded(x: f64) -> f64 {
    (x * 1e8).round() / 1e8
}

/// One bit a dimension: 1 where the value is positive (Titan's `binary`).
pub fn sign_bits(v: &[f64]) -> Vec<u8> {
    v.iter().map(|x| u8::from(*x > 0.0)).collect()
}

/// Signed bytes scaled so the largest magnitude is 127 (Cohere's `int8`).
pub fn int8(v: &[f64]) -> Vec<i64> {
    let max = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    v.iter()
        .map(|x| {
            if max > 0.0 {
                ((x / max) * 127.0).round().clamp(-128.0, 127.0) as i64
            } else {
                0
            }
        })
        .collect()
}

/// `int8` shifted to 0..=255 (Cohere's `uint8`).
pub fn uint8(v: &[f64]) -> Vec<i64> {
    int8(v).into_iter().map(|x| x + 128).collect()
}

/// Sign bits packed eight a byte, the first dimension in the top bit, as 0..=255 (Cohere's
/// `ubinary`); a vector is an eighth of the dimensions long.
pub fn ubinary(v: &[f64]) -> Vec<i64> {
    v.chunks(8)
        .map(|chunk| {
            chunk.iter().enumerate().fold(0i64, |byte, (i, x)| {
                if *x > 0.0 {
                    byte | (1 << (7 - i))
                } else {
                    byte
                }
            })
        })
        .collect()
}

/// `ubinary` as signed bytes, -128..=127 (Cohere's `binary`).
pub fn binary(v: &[f64]) -> Vec<i64> {
    ubinary(v).into_iter().map(|x| x - 128).collect()
}

/// Cosine similarity; 0 when either vector is zero.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = "amazon.titan-embed-text-v2:0";

    #[test]
    fn same_input_same_vector_and_unit_norm() {
        let a = unit_vector(MODEL, "The cat sat on the mat", 1024);
        let b = unit_vector(MODEL, "The cat sat on the mat", 1024);
        assert_eq!(a, b);
        assert_eq!(a.len(), 1024);
        let norm = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-9);
        // Another model is another space; another size another vector.
        assert_ne!(
            a,
            unit_vector("cohere.embed-english-v3", "The cat sat on the mat", 1024)
        );
        assert_eq!(unit_vector(MODEL, "x", 256).len(), 256);
    }

    #[test]
    fn similar_texts_are_closer_than_unrelated_ones() {
        let pairs = [
            (
                "The cat sat on the mat",
                "A cat was sitting on the mat",
                "Quarterly revenue grew by ten percent",
            ),
            (
                "How do I reset my password?",
                "Steps to reset a forgotten password",
                "The weather in Paris is sunny today",
            ),
            (
                "machine learning models for text classification",
                "a machine-learning model that classifies texts",
                "chocolate cake recipe with fresh strawberries",
            ),
        ];
        for dims in [256, 1024, 1536] {
            for (anchor, similar, unrelated) in pairs {
                let a = unit_vector(MODEL, anchor, dims);
                let s = cosine(&a, &unit_vector(MODEL, similar, dims));
                let u = cosine(&a, &unit_vector(MODEL, unrelated, dims));
                assert!(s > u + 0.2, "{dims}: {anchor:?}: {s} vs {u}");
            }
        }
    }

    #[test]
    fn vectors_are_dense() {
        for dims in [256, 1024, 1536] {
            let v = unit_vector(MODEL, "hello world", dims);
            let zeros = v.iter().filter(|x| x.abs() < 1e-12).count();
            assert!(zeros < dims / 10, "{dims}: {zeros} zeros");
            let positive = sign_bits(&v).iter().filter(|b| **b == 1).count();
            assert!(
                positive > dims / 4 && positive < dims * 3 / 4,
                "{dims}: {positive}"
            );
        }
    }

    #[test]
    fn spreading_keeps_dot_products() {
        let mut a: Vec<f64> = (0..1536).map(|i| f64::from(i % 7) - 3.0).collect();
        let mut b: Vec<f64> = (0..1536).map(|i| f64::from(i % 5) - 2.0).collect();
        let before = cosine(&a, &b);
        let norm = a.iter().map(|x| x * x).sum::<f64>();
        spread(&mut a, 9);
        spread(&mut b, 9);
        assert!((cosine(&a, &b) - before).abs() < 1e-9);
        assert!((a.iter().map(|x| x * x).sum::<f64>() - norm).abs() < 1e-6);
    }

    #[test]
    fn blank_text_still_has_a_vector() {
        let v = unit_vector(MODEL, "   ", 256);
        assert!(v.iter().any(|x| *x != 0.0));
        assert!(raw_norm("a") > 1.0 && raw_norm("a longer text") > raw_norm("a"));
    }

    #[test]
    fn quantised_forms() {
        let v = [0.5, -0.25, 0.0, 1.0, -1.0, 0.1, 0.2, -0.3, 0.9];
        assert_eq!(int8(&v)[..5], [64, -32, 0, 127, -127]);
        assert_eq!(uint8(&v)[3], 255);
        assert_eq!(sign_bits(&v)[..4], [1, 0, 0, 1]);
        // 1,0,0,1,0,1,1,0 -> 0b1001_0110; the ninth value starts a second byte.
        assert_eq!(ubinary(&v), [150, 128]);
        assert_eq!(binary(&v), [22, 0]);
        assert_eq!(rounded(0.123_456_789_9), 0.123_456_79);
    }
}
