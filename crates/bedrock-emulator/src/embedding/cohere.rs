//! Cohere Embed v3 and v4: up to 96 texts a call.
//!
//! Request `{"texts": [str], "input_type": "search_document"|"search_query"|
//! "classification"|"clustering", "truncate"?: "NONE"|"START"|"END",
//! "embedding_types"?: ["float"|"int8"|"uint8"|"binary"|"ubinary"]}`; v4 adds
//! `"output_dimension"?: 256|512|1024|1536`, `"max_tokens"?: n` and the truncate values
//! `"LEFT"`/`"RIGHT"`. Response `{"id", "texts", "embeddings", "response_type"}`:
//! `embeddings` is `[[float]]` with `response_type: "embeddings_floats"` when v3 is asked for
//! no types, else `{"float": [[...]], "int8": [[...]], ...}` with `"embeddings_by_type"`
//! (v4 always answers by type, floats when no type is named).
//!
//! Images (`images`, v4's `inputs`, v3's `input_type: image`) are refused: the emulator
//! embeds text only.

use serde_json::{Map, Value, json};

use super::schema::Violations;
use super::vectors::{binary, int8, rounded, ubinary, uint8, unit_vector};
use crate::config::ModelSpec;
use crate::error::BedrockError;
use crate::generate::count_tokens;

const V3_KEYS: &[&str] = &[
    "texts",
    "images",
    "input_type",
    "truncate",
    "embedding_types",
];
const V4_KEYS: &[&str] = &[
    "texts",
    "images",
    "inputs",
    "input_type",
    "truncate",
    "embedding_types",
    "output_dimension",
    "max_tokens",
];
const TEXT_INPUT_TYPES: &[&str] = &[
    "search_document",
    "search_query",
    "classification",
    "clustering",
];
const V3_INPUT_TYPES: &[&str] = &[
    "search_document",
    "search_query",
    "classification",
    "clustering",
    "image",
];
const V3_TRUNCATE: &[&str] = &["NONE", "START", "END"];
// Bedrock's v4 page names LEFT and RIGHT; Cohere's own API START and END. Both are taken.
const V4_TRUNCATE: &[&str] = &["NONE", "LEFT", "RIGHT", "START", "END"];
const TYPES: &[&str] = &["float", "int8", "uint8", "binary", "ubinary"];

/// A checked Cohere request.
#[derive(Debug, Clone, PartialEq)]
pub struct CohereRequest {
    /// The texts as sent, which the response echoes.
    pub texts: Vec<String>,
    /// The texts as embedded: truncated to the token limit where `truncate` allows.
    pub embedded: Vec<String>,
    pub input_type: String,
    /// Requested types without repeats; `None` when v3 was asked for none.
    pub types: Option<Vec<String>>,
    pub dimensions: usize,
}

pub fn parse(spec: &ModelSpec, body: &Value, v4: bool) -> Result<CohereRequest, BedrockError> {
    let obj = Violations::object(body)?;
    let mut v = Violations::default();
    let has_images = obj.contains_key("images") || obj.contains_key("inputs");
    if !has_images {
        v.required(obj, &["texts"]);
    }
    v.required(obj, &["input_type"]);
    v.extraneous(obj, if v4 { V4_KEYS } else { V3_KEYS });
    let input_types = if v4 { TEXT_INPUT_TYPES } else { V3_INPUT_TYPES };
    let input_type = obj
        .get("input_type")
        .and_then(|t| v.one_of("#/input_type", t, input_types))
        .map(str::to_owned);
    let texts = texts(&mut v, spec, obj);
    let truncate = obj.get("truncate").map_or(Some("NONE"), |t| {
        v.one_of("#/truncate", t, if v4 { V4_TRUNCATE } else { V3_TRUNCATE })
    });
    let types = embedding_types(&mut v, obj);
    let dimensions = obj
        .get("output_dimension")
        .and_then(|d| output_dimension(&mut v, spec, d));
    let max_tokens = obj.get("max_tokens").and_then(|m| {
        let n = v.integer("#/max_tokens", m)?;
        v.range("#/max_tokens", n, 1, i64::from(spec.max_input_tokens));
        u32::try_from(n).ok()
    });
    v.finish()?;
    let input_type = input_type.unwrap_or_default();
    if has_images || input_type == "image" {
        return Err(BedrockError::validation(
            "The emulator embeds texts only: images and inputs are not supported. Send texts instead.",
        ));
    }
    let limit = max_tokens.unwrap_or(spec.max_input_tokens);
    let embedded = texts
        .iter()
        .map(|t| truncated(t, limit, truncate.unwrap_or("NONE")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CohereRequest {
        texts,
        embedded,
        input_type,
        types: types.or_else(|| v4.then(|| vec!["float".to_owned()])),
        dimensions: dimensions.unwrap_or(spec.default_dimension as usize),
    })
}

fn texts(v: &mut Violations, spec: &ModelSpec, obj: &Map<String, Value>) -> Vec<String> {
    let Some(items) = obj.get("texts").and_then(|t| v.array("#/texts", t)) else {
        return Vec::new();
    };
    v.items("#/texts", items, 1, spec.max_texts as usize);
    let max_chars = (spec.max_input_chars > 0).then_some(spec.max_input_chars as usize);
    let mut texts = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("#/texts/{i}");
        if let Some(s) = v.string(&path, item) {
            v.length(&path, s, 0, max_chars);
            texts.push(s.to_owned());
        }
    }
    texts
}

fn embedding_types(v: &mut Violations, obj: &Map<String, Value>) -> Option<Vec<String>> {
    let items = v.array("#/embedding_types", obj.get("embedding_types")?)?;
    v.items("#/embedding_types", items, 1, usize::MAX);
    let mut types: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(t) = v.one_of(&format!("#/embedding_types/{i}"), item, TYPES)
            && !types.iter().any(|known| known == t)
        {
            types.push(t.to_owned());
        }
    }
    Some(types)
}

fn output_dimension(v: &mut Violations, spec: &ModelSpec, value: &Value) -> Option<usize> {
    let n = v.integer("#/output_dimension", value)?;
    if spec.dimensions.iter().any(|d| i64::from(*d) == n) {
        Some(n as usize)
    } else {
        v.not_in_enum("#/output_dimension", value);
        None
    }
}

/// `text` cut to `limit` tokens from the side `truncate` names, or the model's error when
/// it may not be cut. A token is four characters (the crate's count), so cutting keeps
/// `limit * 4` characters.
fn truncated(text: &str, limit: u32, truncate: &str) -> Result<String, BedrockError> {
    if count_tokens(text) <= limit {
        return Ok(text.to_owned());
    }
    let keep = limit as usize * 4;
    let chars: Vec<char> = text.chars().collect();
    match truncate {
        "START" | "LEFT" => Ok(chars[chars.len().saturating_sub(keep)..].iter().collect()),
        "END" | "RIGHT" => Ok(chars.iter().take(keep).collect()),
        _ => Err(BedrockError::validation(
            "Input is too long for requested model.",
        )),
    }
}

/// The response body and the input tokens it used (those of the embedded texts).
pub fn respond(model: &str, request: &CohereRequest, id: &str) -> (Value, u32) {
    // Every form derives from the floats as sent, so a caller's own quantisation of them
    // agrees with the model's.
    let units: Vec<Vec<f64>> = request
        .embedded
        .iter()
        .map(|t| {
            unit_vector(model, t, request.dimensions)
                .into_iter()
                .map(rounded)
                .collect()
        })
        .collect();
    let floats = || json!(units);
    let (embeddings, response_type) = match &request.types {
        None => (floats(), "embeddings_floats"),
        Some(types) => {
            let mut by_type = Map::new();
            for t in types {
                let member = match t.as_str() {
                    "int8" => json!(units.iter().map(|u| int8(u)).collect::<Vec<_>>()),
                    "uint8" => json!(units.iter().map(|u| uint8(u)).collect::<Vec<_>>()),
                    "binary" => json!(units.iter().map(|u| binary(u)).collect::<Vec<_>>()),
                    "ubinary" => json!(units.iter().map(|u| ubinary(u)).collect::<Vec<_>>()),
                    _ => floats(),
                };
                by_type.insert(t.clone(), member);
            }
            (Value::Object(by_type), "embeddings_by_type")
        }
    };
    let tokens = request.embedded.iter().map(|t| count_tokens(t)).sum();
    let body = json!({
        "id": id,
        "texts": request.texts,
        "embeddings": embeddings,
        "response_type": response_type,
    });
    (body, tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EmulatorConfig;

    fn spec(id: &str) -> ModelSpec {
        EmulatorConfig::builtin().models[id].clone()
    }

    fn v3() -> ModelSpec {
        spec("cohere.embed-english-v3")
    }

    #[test]
    fn v3_floats_and_by_type() {
        let r = parse(
            &v3(),
            &json!({"texts": ["a b", "c"], "input_type": "search_query"}),
            false,
        )
        .unwrap();
        assert_eq!(r.types, None);
        let (body, tokens) = respond("m", &r, "id-1");
        assert_eq!(tokens, 2);
        assert_eq!(body["response_type"], "embeddings_floats");
        assert_eq!(body["embeddings"].as_array().unwrap().len(), 2);
        assert_eq!(body["embeddings"][0].as_array().unwrap().len(), 1024);
        let r = parse(
            &v3(),
            &json!({"texts": ["a"], "input_type": "clustering",
                    "embedding_types": ["int8", "ubinary", "float"]}),
            false,
        )
        .unwrap();
        let (body, _) = respond("m", &r, "id-2");
        assert_eq!(body["response_type"], "embeddings_by_type");
        assert_eq!(
            body["embeddings"]["ubinary"][0].as_array().unwrap().len(),
            128
        );
        assert_eq!(
            body["embeddings"]["int8"][0].as_array().unwrap().len(),
            1024
        );
        assert!(body["embeddings"]["uint8"].is_null());
    }

    #[test]
    fn v4_answers_by_type_at_the_asked_dimension() {
        let v4 = spec("cohere.embed-v4:0");
        let r = parse(
            &v4,
            &json!({"texts": ["a"], "input_type": "search_document"}),
            true,
        )
        .unwrap();
        assert_eq!(
            (r.dimensions, r.types.clone()),
            (1536, Some(vec!["float".into()]))
        );
        let r = parse(
            &v4,
            &json!({"texts": ["a"], "input_type": "search_document", "output_dimension": 256}),
            true,
        )
        .unwrap();
        let (body, _) = respond("m", &r, "id");
        assert_eq!(
            body["embeddings"]["float"][0].as_array().unwrap().len(),
            256
        );
        // v3 has no output_dimension.
        let e = parse(
            &v3(),
            &json!({"texts": ["a"], "input_type": "search_document", "output_dimension": 256}),
            false,
        )
        .unwrap_err();
        assert!(e.message.contains("extraneous key [output_dimension]"));
    }

    #[test]
    fn truncation_follows_truncate() {
        let text = "abcd".repeat(10);
        assert_eq!(truncated(&text, 2, "END").unwrap(), "abcdabcd");
        assert_eq!(
            truncated(&format!("{text}xyz!"), 1, "START").unwrap(),
            "xyz!"
        );
        let e = truncated(&text, 2, "NONE").unwrap_err();
        assert_eq!(e.message, "Input is too long for requested model.");
        assert_eq!(truncated("short", 2, "NONE").unwrap(), "short");
    }

    #[test]
    fn schema_violations() {
        let e = parse(&v3(), &json!({"inputText": "x"}), false).unwrap_err();
        assert_eq!(
            e.message,
            "Malformed input request: #: required key [texts] not found#: required key [input_type] not found#: extraneous key [inputText] is not permitted, please reformat your input and try again."
        );
        let texts: Vec<String> = (0..97).map(|i| i.to_string()).collect();
        let e = parse(
            &v3(),
            &json!({"texts": texts, "input_type": "search", "truncate": "LEFT",
                    "embedding_types": ["bits"]}),
            false,
        )
        .unwrap_err();
        for part in [
            "#/texts: expected maximum item count: 96, found: 97",
            "#/input_type: search is not a valid enum value",
            "#/truncate: LEFT is not a valid enum value",
            "#/embedding_types/0: bits is not a valid enum value",
        ] {
            assert!(e.message.contains(part), "{part}: {}", e.message);
        }
        let e = parse(
            &v3(),
            &json!({"texts": ["x".repeat(2049)], "input_type": "search_query", "truncate": "END"}),
            false,
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("#/texts/0: expected maxLength: 2048, actual: 2049")
        );
        let e = parse(
            &v3(),
            &json!({"images": ["data:image/png;base64,AAAA"], "input_type": "image"}),
            false,
        )
        .unwrap_err();
        assert!(e.message.contains("texts only"));
    }
}
