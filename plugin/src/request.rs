//! A request to the mount and what it comes to, in OpenBao's terms (JSON in, JSON out), apart
//! from the gRPC messages that carry them.

use std::fmt;

use serde_json::{Map, Value};
use zeroize::Zeroize as _;

use crate::proto::backend::{self as pb, ErrType, ProtoError};

/// What a request asks for. OpenBao maps `bao read` to `Read`, `bao write` to `Update` (or
/// `Create`, after an existence check says the item is new), `bao delete` to `Delete` and
/// `bao list` to `List`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `GET`.
    Read,
    /// A write to something new.
    Create,
    /// `PUT`/`POST`.
    Update,
    /// `DELETE`.
    Delete,
    /// `LIST`.
    List,
    /// Anything else OpenBao sends (`rollback`, `help`, …).
    Other(String),
}

impl Operation {
    fn parse(text: &str) -> Operation {
        match text {
            "read" => Operation::Read,
            "create" => Operation::Create,
            "update" => Operation::Update,
            "delete" => Operation::Delete,
            "list" => Operation::List,
            other => Operation::Other(other.to_owned()),
        }
    }
}

/// One request: its operation, its path below the mount and its JSON data. Its data holds
/// keys and wallets: `Debug` shows only the field names, and dropping it wipes every string.
pub struct Request {
    /// What it asks for.
    pub operation: Operation,
    /// The path below the mount, e.g. `encrypt/wallet-7`.
    pub path: String,
    /// The request's fields (empty for a read).
    pub data: Map<String, Value>,
}

impl Request {
    /// Reads the request out of its gRPC message, wiping the message's JSON text.
    pub fn from_proto(mut request: pb::Request) -> Result<Request, Failure> {
        let data = match request.data.trim() {
            "" | "null" => Ok(Map::new()),
            text => match serde_json::from_str(text) {
                Ok(Value::Object(fields)) => Ok(fields),
                _ => Err(Failure::BadRequest("the request's data is not a JSON object".to_owned())),
            },
        };
        request.data.zeroize();
        Ok(Request { operation: Operation::parse(&request.operation), path: request.path, data: data? })
    }

    /// A string field, if present.
    pub fn text(&self, field: &str) -> Result<Option<&str>, Failure> {
        match self.data.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(Failure::BadRequest(format!("field {field:?} must be a string"))),
        }
    }

    /// A string field that must be present.
    pub fn required_text(&self, field: &str) -> Result<&str, Failure> {
        self.text(field)?.ok_or_else(|| Failure::BadRequest(format!("field {field:?} is required")))
    }

    /// A positive integer field, if present; OpenBao's CLI sends `version=3` as the string "3".
    pub fn number(&self, field: &str) -> Result<Option<u32>, Failure> {
        let bad = || Failure::BadRequest(format!("field {field:?} must be a whole number from 1 up"));
        match self.data.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => {
                n.as_u64().and_then(|n| u32::try_from(n).ok()).filter(|&n| n > 0).map(Some).ok_or_else(bad)
            }
            Some(Value::String(text)) => {
                text.trim().parse::<u32>().ok().filter(|&n| n > 0).map(Some).ok_or_else(bad)
            }
            Some(_) => Err(bad()),
        }
    }

    /// A true-or-false field, `false` when absent; OpenBao's CLI sends `reencrypt=true` as a string.
    pub fn flag(&self, field: &str) -> Result<bool, Failure> {
        match self.data.get(field) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(Value::String(text)) => match text.trim() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(Failure::BadRequest(format!("field {field:?} must be true or false"))),
            },
            Some(_) => Err(Failure::BadRequest(format!("field {field:?} must be true or false"))),
        }
    }

    /// Refuses fields the path does not know, so that a misspelt field is not silently ignored.
    pub fn only_fields(&self, known: &[&str]) -> Result<(), Failure> {
        match self.data.keys().find(|field| !known.contains(&field.as_str())) {
            Some(field) => Err(Failure::BadRequest(format!(
                "unknown field {field:?}; this path takes {}",
                if known.is_empty() { "no fields".to_owned() } else { known.join(", ") }
            ))),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("operation", &self.operation)
            .field("path", &self.path)
            .field("fields", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        fn wipe(value: &mut Value) {
            match value {
                Value::String(text) => text.zeroize(),
                Value::Array(items) => items.iter_mut().for_each(wipe),
                Value::Object(fields) => fields.values_mut().for_each(wipe),
                _ => {}
            }
        }
        self.data.values_mut().for_each(wipe);
    }
}

/// Why a request did not succeed, as the client will see it.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The request is wrong: HTTP 400 with this message.
    #[error("{0}")]
    BadRequest(String),
    /// No such path: HTTP 404.
    #[error("no such path: {0}")]
    NoPath(String),
    /// The path does not take this operation: HTTP 405.
    #[error("{0}")]
    Unsupported(String),
    /// Something failed inside the plugin or its storage: HTTP 500. The message must name what
    /// failed and never carry key material.
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::Internal(error)
    }
}

/// What a request came to: JSON data, or nothing (OpenBao answers 204 to a write, 404 to a read).
pub type Outcome = Result<Option<Value>, Failure>;

/// The gRPC reply for an outcome.
pub fn reply(outcome: Outcome) -> pb::HandleRequestReply {
    match outcome {
        Ok(None) => pb::HandleRequestReply { response: None, err: None },
        Ok(Some(data)) => pb::HandleRequestReply {
            response: Some(pb::Response { data: data.to_string(), warnings: Vec::new() }),
            err: None,
        },
        Err(failure) => {
            let message = failure.to_string();
            let err_type = match failure {
                Failure::BadRequest(_) => ErrType::InvalidRequest,
                Failure::NoPath(_) => ErrType::UnsupportedPath,
                Failure::Unsupported(_) => ErrType::UnsupportedOperation,
                Failure::Internal(error) => {
                    tracing::error!("request failed: {error:#}");
                    ErrType::Plain
                }
            };
            // An error-shaped response makes OpenBao answer with the message in `errors`.
            let response = pb::Response {
                data: serde_json::json!({ "error": message }).to_string(),
                warnings: Vec::new(),
            };
            pb::HandleRequestReply {
                response: Some(response),
                err: Some(ProtoError { err_type: err_type as u32, err_msg: message, err_code: 0 }),
            }
        }
    }
}

#[cfg(test)]
impl Request {
    /// A write of `data` (JSON text) to `path`, as OpenBao sends it: for unit tests.
    pub fn update(path: &str, data: &str) -> Request {
        let request = pb::Request {
            operation: "update".to_owned(),
            path: path.to_owned(),
            data: data.to_owned(),
            ..Default::default()
        };
        Request::from_proto(request).expect("the test's data is a JSON object")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(data: &str) -> Request {
        Request::update("keys/import", data)
    }

    #[test]
    fn fields_are_read_as_the_cli_and_the_api_send_them() {
        let r = request(r#"{"key":"ab","version":"3","n":4,"zero":"0","list":[1]}"#);
        assert_eq!(r.operation, Operation::Update);
        assert_eq!(r.required_text("key").unwrap(), "ab");
        assert_eq!(r.number("version").unwrap(), Some(3));
        assert_eq!(r.number("n").unwrap(), Some(4));
        assert!(r.number("zero").unwrap_err().to_string().contains("\"zero\""));
        assert!(r.text("list").unwrap_err().to_string().contains("must be a string"));
        assert!(r.required_text("missing").unwrap_err().to_string().contains("\"missing\" is required"));
        let unknown = r.only_fields(&["key", "version"]).unwrap_err().to_string();
        assert!(unknown.contains("unknown field") && unknown.contains("key, version"), "{unknown}");
        assert!(request("null").data.is_empty());
        let secret = request(r#"{"key":"00112233","batch_input":[{"plaintext":"c2VjcmV0"}]}"#);
        let shown = format!("{secret:?}");
        assert!(
            shown.contains("batch_input") && !shown.contains("00112233") && !shown.contains("c2VjcmV0"),
            "{shown}"
        );
        assert!(Request::from_proto(pb::Request { data: "[1]".to_owned(), ..Default::default() }).is_err());
    }

    #[test]
    fn a_failure_is_an_error_shaped_response_with_its_type() {
        let bad = reply(Err(Failure::BadRequest("field \"key\" is required".to_owned())));
        assert_eq!(bad.err.as_ref().unwrap().err_type, ErrType::InvalidRequest as u32);
        let data: Value = serde_json::from_str(&bad.response.unwrap().data).unwrap();
        assert_eq!(data["error"], "field \"key\" is required");
        assert_eq!(
            reply(Err(Failure::NoPath("x".into()))).err.unwrap().err_type,
            ErrType::UnsupportedPath as u32
        );
        // No data: no response at all, never an empty JSON text.
        assert!(reply(Ok(None)).response.is_none());
    }
}
