//! Amazon Titan Text Embeddings V2: one text a call.
//!
//! Request `{"inputText": str, "dimensions"?: 256|512|1024, "normalize"?: bool (true),
//! "embeddingTypes"?: ["float"|"binary"] (["float"])}`; response `{"embedding": [float],
//! "inputTextTokenCount": n, "embeddingsByType": {"float"?: [float], "binary"?: [0|1]}}`.

use serde_json::{Map, Value, json};

use super::schema::Violations;
use super::vectors::{raw_norm, rounded, sign_bits, unit_vector};
use crate::config::ModelSpec;
use crate::error::BedrockError;
use crate::generate::count_tokens;

const KEYS: &[&str] = &["inputText", "dimensions", "normalize", "embeddingTypes"];
const TYPES: &[&str] = &["float", "binary"];

/// A checked Titan request.
#[derive(Debug, Clone, PartialEq)]
pub struct TitanRequest {
    pub text: String,
    pub dimensions: usize,
    pub normalize: bool,
    /// Requested `embeddingsByType` members, without repeats, in request order.
    pub types: Vec<String>,
    pub tokens: u32,
}

pub fn parse(spec: &ModelSpec, body: &Value) -> Result<TitanRequest, BedrockError> {
    let obj = Violations::object(body)?;
    let mut v = Violations::default();
    v.required(obj, &["inputText"]);
    v.extraneous(obj, KEYS);
    let text = obj.get("inputText").and_then(|t| {
        let s = v.string("#/inputText", t)?;
        let max = (spec.max_input_chars > 0).then_some(spec.max_input_chars as usize);
        v.length("#/inputText", s, 1, max);
        Some(s.to_owned())
    });
    let dimensions = dimensions(&mut v, spec, obj);
    let normalize = obj
        .get("normalize")
        .map_or(Some(true), |n| v.boolean("#/normalize", n));
    let types = embedding_types(&mut v, obj);
    v.finish()?;
    // The schema passed, so every member is present; the fallbacks are never used.
    let text = text.unwrap_or_default();
    let tokens = count_tokens(&text);
    if tokens > spec.max_input_tokens {
        // The model's own limit, checked after the schema, in the model's wording.
        return Err(BedrockError::validation(format!(
            "400 Bad Request: Too many input tokens. Max input tokens: {}, request input token count: {tokens}",
            spec.max_input_tokens
        )));
    }
    Ok(TitanRequest {
        text,
        dimensions: dimensions.unwrap_or(spec.default_dimension as usize),
        normalize: normalize.unwrap_or(true),
        types,
        tokens,
    })
}

fn dimensions(v: &mut Violations, spec: &ModelSpec, obj: &Map<String, Value>) -> Option<usize> {
    let value = obj.get("dimensions")?;
    let n = v.integer("#/dimensions", value)?;
    if spec.dimensions.iter().any(|d| i64::from(*d) == n) {
        Some(n as usize)
    } else {
        v.not_in_enum("#/dimensions", value);
        None
    }
}

fn embedding_types(v: &mut Violations, obj: &Map<String, Value>) -> Vec<String> {
    let Some(value) = obj.get("embeddingTypes") else {
        return vec!["float".into()];
    };
    let Some(items) = v.array("#/embeddingTypes", value) else {
        return Vec::new();
    };
    v.items("#/embeddingTypes", items, 1, usize::MAX);
    let mut types: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(t) = v.one_of(&format!("#/embeddingTypes/{i}"), item, TYPES)
            && !types.iter().any(|known| known == t)
        {
            types.push(t.to_owned());
        }
    }
    types
}

/// The response body and the input tokens it used.
pub fn respond(model: &str, request: &TitanRequest) -> (Value, u32) {
    let unit = unit_vector(model, &request.text, request.dimensions);
    let scale = if request.normalize {
        1.0
    } else {
        raw_norm(&request.text)
    };
    let floats: Vec<f64> = unit.iter().map(|x| rounded(x * scale)).collect();
    let mut by_type = Map::new();
    for t in &request.types {
        let member = if t == "binary" {
            json!(sign_bits(&floats))
        } else {
            json!(floats)
        };
        by_type.insert(t.clone(), member);
    }
    let body = json!({
        "embedding": floats,
        "inputTextTokenCount": request.tokens,
        "embeddingsByType": by_type,
    });
    (body, request.tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EmulatorConfig;

    fn spec() -> ModelSpec {
        EmulatorConfig::builtin().models["amazon.titan-embed-text-v2:0"].clone()
    }

    #[test]
    fn defaults_and_options() {
        let r = parse(&spec(), &json!({"inputText": "hello world"})).unwrap();
        assert_eq!((r.dimensions, r.normalize, r.tokens), (1024, true, 3));
        assert_eq!(r.types, ["float"]);
        let r = parse(
            &spec(),
            &json!({"inputText": "hi", "dimensions": 256, "normalize": false,
                    "embeddingTypes": ["binary", "float", "binary"]}),
        )
        .unwrap();
        assert_eq!((r.dimensions, r.normalize), (256, false));
        assert_eq!(r.types, ["binary", "float"]);
        let (body, tokens) = respond("m", &r);
        assert_eq!(tokens, 1);
        assert_eq!(
            body["embeddingsByType"]["binary"].as_array().unwrap().len(),
            256
        );
        let norm: f64 = body["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap().powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((norm - raw_norm("hi")).abs() < 1e-4, "{norm}");
    }

    #[test]
    fn every_violation_is_reported() {
        let e = parse(
            &spec(),
            &json!({"inputText": "", "dimensions": 300, "normalize": "yes",
                    "embeddingTypes": ["int8"], "texts": ["x"]}),
        )
        .unwrap_err();
        for part in [
            "#: extraneous key [texts] is not permitted",
            "#/inputText: expected minLength: 1, actual: 0",
            "#/dimensions: 300 is not a valid enum value",
            "#/normalize: expected type: Boolean, found: String",
            "#/embeddingTypes/0: int8 is not a valid enum value",
        ] {
            assert!(e.message.contains(part), "{part}: {}", e.message);
        }
    }

    #[test]
    fn limits_in_characters_then_tokens() {
        let e = parse(&spec(), &json!({"inputText": "a".repeat(50_001)})).unwrap_err();
        assert!(
            e.message
                .contains("#/inputText: expected maxLength: 50000, actual: 50001")
        );
        let e = parse(&spec(), &json!({"inputText": "a".repeat(40_000)})).unwrap_err();
        assert_eq!(
            e.message,
            "400 Bad Request: Too many input tokens. Max input tokens: 8192, request input token count: 10000"
        );
    }
}
