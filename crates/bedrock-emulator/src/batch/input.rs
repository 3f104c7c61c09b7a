//! A job's input: the `.jsonl` files its `s3Uri` names (one object, or every one under a
//! prefix), each line a record `{"recordId"?, "modelInput"}`. An input that cannot be read
//! fails the whole job, as on Bedrock; a record the model refuses does not.

use serde_json::Value;

use super::s3::{S3, S3Location};
use crate::error::BedrockError;

#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub model_input: Value,
}

#[derive(Debug, Clone)]
pub struct InputFile {
    /// The name the output file is made from (`NAME.out`): the key below the input
    /// prefix, or the object's own name.
    pub name: String,
    pub records: Vec<Record>,
}

fn unreadable(message: String) -> BedrockError {
    BedrockError::validation(message)
}

/// The record ID Bedrock gives a record without one: eleven letters or digits.
pub fn generated_record_id(index: usize) -> String {
    format!("RECORD{:05}", index + 1)
}

pub async fn read(s3: &S3<'_>, uri: &str) -> Result<Vec<InputFile>, BedrockError> {
    let location = S3Location::parse(uri)
        .ok_or_else(|| unreadable(format!("The input S3 URI {uri} is not valid.")))?;
    let (prefix, keys) = if location.key.ends_with(".jsonl") {
        let parent = location
            .key
            .rfind('/')
            .map_or(String::new(), |i| location.key[..=i].to_owned());
        (parent, vec![location.key.clone()])
    } else {
        let mut prefix = location.key.clone();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        let mut keys: Vec<String> = s3
            .list(&location.bucket, &prefix)
            .await?
            .into_iter()
            .filter(|k| k.ends_with(".jsonl"))
            .collect();
        keys.sort();
        (prefix, keys)
    };
    if keys.is_empty() {
        return Err(unreadable(format!(
            "No .jsonl input files were found at {uri}."
        )));
    }
    let mut files = Vec::with_capacity(keys.len());
    let mut index = 0;
    for key in keys {
        let shown = format!("s3://{}/{key}", location.bucket);
        let bytes = s3
            .get(&location.bucket, &key)
            .await?
            .ok_or_else(|| unreadable(format!("The input file {shown} does not exist.")))?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| unreadable(format!("The input file {shown} is not UTF-8 text.")))?;
        let mut records = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let at = || format!("line {} of {shown}", n + 1);
            let value: Value = serde_json::from_str(line)
                .map_err(|_| unreadable(format!("Invalid JSON on {}.", at())))?;
            let model_input = value
                .get("modelInput")
                .filter(|m| m.is_object())
                .cloned()
                .ok_or_else(|| {
                    unreadable(format!(
                        "The record on {} has no modelInput JSON object.",
                        at()
                    ))
                })?;
            let id = match value.get("recordId") {
                None | Some(Value::Null) => generated_record_id(index),
                Some(Value::String(id)) => id.clone(),
                Some(_) => {
                    return Err(unreadable(format!(
                        "The recordId on {} is not a string.",
                        at()
                    )));
                }
            };
            records.push(Record { id, model_input });
            index += 1;
        }
        let name = key.strip_prefix(&prefix).unwrap_or(&key).to_owned();
        files.push(InputFile { name, records });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_eleven_characters() {
        assert_eq!(generated_record_id(0), "RECORD00001");
        assert_eq!(generated_record_id(41).len(), 11);
    }
}
