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

/// Bodies are JSON: a `Content-Type` that says otherwise (a form, plain text, XML) is refused
/// rather than guessed at. None at all is taken as JSON, as most clients mean it.
pub(crate) fn json_content_type(headers: &http::HeaderMap) -> Result<(), Error> {
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(Error::UnsupportedMediaType(format!(
            "the body must be JSON: send 'Content-Type: application/json' (got {:?})",
            value.to_str().unwrap_or("non-ASCII")
        )))
    }
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

    #[test]
    fn json_by_content_type_or_none() {
        let with = |ct: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
            json_content_type(&h)
        };
        assert!(json_content_type(&http::HeaderMap::new()).is_ok());
        assert!(with("application/json; charset=utf-8").is_ok());
        assert!(with("application/merge-patch+json").is_ok());
        assert_eq!(with("text/plain").unwrap_err().status_code(), 415);
    }
}
