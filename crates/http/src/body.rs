//! JSON request bodies with errors that name the field at fault.

use quarry_core::Error;
use serde::de::DeserializeOwned;

/// Parses `bytes` as `T`; a type error names its path (`messages[2].content`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::bad_request(
            "body",
            "the request body is empty: send a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Error::bad_request("body", format!("the body is not valid JSON: {inner}"))
        } else if path == "." {
            Error::bad_request("body", format!("invalid request: {inner}"))
        } else {
            Error::bad_request(path.clone(), format!("invalid field '{path}': {inner}"))
        }
    })?;
    // Only whitespace may follow the value.
    de.end()
        .map_err(|e| Error::bad_request("body", format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Req {
        items: Vec<Item>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Item {
        n: u32,
    }

    #[test]
    fn names_the_field() {
        let e = parse_json::<Req>(br#"{"items": [{"n": 1}, {"n": "x"}]}"#).unwrap_err();
        assert_eq!(e.field(), Some("items[1].n"));
        assert_eq!(e.status_code(), 400);
        let e = parse_json::<Req>(b"{not json").unwrap_err();
        assert_eq!(e.field(), Some("body"));
        let e = parse_json::<Req>(b"  ").unwrap_err();
        assert!(e.to_string().contains("empty"));
        let e = parse_json::<Req>(br#"{"items": [], "extra": 1}"#).unwrap_err();
        assert!(e.to_string().contains("extra"), "{e}");
        let e = parse_json::<Req>(br#"{"items": []} {"items": []}"#).unwrap_err();
        assert_eq!(e.field(), Some("body"));
        assert!(e.to_string().contains("trailing characters"), "{e}");
        assert!(parse_json::<Req>(b"{\"items\": []} \n").is_ok());
    }
}
