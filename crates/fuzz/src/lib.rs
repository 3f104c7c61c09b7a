//! Shared by the fuzz targets: a reader that builds structured inputs from the fuzzer's bytes.
//!
//! The byte format is deliberately simple so that `seeds.py` can write realistic seeds for the
//! structured targets (see it for the encoder):
//! - a byte is one byte (0 once the input is exhausted);
//! - a string is a little-endian `u16` length, clamped to what is left, then that many bytes,
//!   read as UTF-8 (invalid sequences become U+FFFD);
//! - a JSON value is a tag byte (`tag % 8`: null, bool, small int, u64, f64, string, array,
//!   object) and its contents; arrays and objects have a count byte (`% 5`) and nest at most
//!   four deep.

use libfuzzer_sys::arbitrary::Unstructured;
use serde_json::{Map, Number, Value};

/// Variable names the structured targets prefer, so that declared and given variables meet.
pub const NAMES: &[&str] = &[
    "text",
    "max_words",
    "language",
    "subject",
    "body",
    "items",
    "user",
    "flag",
    "n",
    "range",
];

pub struct Reader<'a> {
    u: Unstructured<'a>,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            u: Unstructured::new(data),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.u.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        let mut b = [0u8; 1];
        // `fill_buffer` pads with zeros once the data runs out; it never fails.
        let _ = self.u.fill_buffer(&mut b);
        b[0]
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let _ = self.u.fill_buffer(&mut b);
        b
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    pub fn bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16()).min(self.u.len());
        self.u.bytes(n).unwrap_or_default()
    }

    pub fn string(&mut self) -> String {
        String::from_utf8_lossy(self.bytes()).into_owned()
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let n = self.u.len();
        self.u.bytes(n).unwrap_or_default()
    }

    /// A variable name: mostly one of [`NAMES`], sometimes any string.
    pub fn name(&mut self) -> String {
        let b = self.byte();
        if b < 0xf0 {
            NAMES[usize::from(b) % NAMES.len()].to_owned()
        } else {
            self.string()
        }
    }

    pub fn json(&mut self) -> Value {
        self.json_at(0)
    }

    fn json_at(&mut self, depth: u32) -> Value {
        match self.byte() % 8 {
            0 => Value::Null,
            1 => Value::Bool(self.byte() & 1 == 1),
            2 => Value::from(i64::from(self.byte() as i8)),
            3 => Value::from(u64::from_le_bytes(self.array())),
            4 => {
                let f = f64::from_le_bytes(self.array());
                Number::from_f64(f).map_or(Value::Null, Value::Number)
            }
            5 => Value::String(self.string()),
            6 if depth < 4 => {
                let n = self.byte() % 5;
                Value::Array((0..n).map(|_| self.json_at(depth + 1)).collect())
            }
            7 if depth < 4 => {
                let n = self.byte() % 5;
                let mut map = Map::new();
                for _ in 0..n {
                    let k = self.name();
                    let v = self.json_at(depth + 1);
                    map.insert(k, v);
                }
                Value::Object(map)
            }
            _ => Value::Null,
        }
    }
}

/// True when `v` holds a number that is not an integer: such values may not survive a
/// print-and-parse round trip bit for bit with serde_json's default float parser.
pub fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(o) => o.values().any(has_float),
        _ => false,
    }
}
