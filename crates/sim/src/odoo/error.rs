//! Odoo's exceptions as the simulator raises them, and their two wire shapes: the JSON-RPC
//! envelope (always HTTP 200) and the JSON-2 body (4xx/5xx with the serialized exception).

use serde_json::{Value, json};

/// The Python exception classes a client can observe, named as Odoo's `serialize_exception`
/// names them (`module.Class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    UserError,
    ValidationError,
    AccessError,
    AccessDenied,
    MissingError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    /// A database-level failure, such as an unknown database name.
    OperationalError,
    HttpNotFound,
    HttpUnauthorized,
    HttpUnprocessableEntity,
    HttpBadRequest,
    HttpMethodNotAllowed,
}

impl ErrorKind {
    pub fn qualified_name(self) -> &'static str {
        match self {
            ErrorKind::UserError => "odoo.exceptions.UserError",
            ErrorKind::ValidationError => "odoo.exceptions.ValidationError",
            ErrorKind::AccessError => "odoo.exceptions.AccessError",
            ErrorKind::AccessDenied => "odoo.exceptions.AccessDenied",
            ErrorKind::MissingError => "odoo.exceptions.MissingError",
            ErrorKind::ValueError => "builtins.ValueError",
            ErrorKind::TypeError => "builtins.TypeError",
            ErrorKind::KeyError => "builtins.KeyError",
            ErrorKind::AttributeError => "builtins.AttributeError",
            ErrorKind::OperationalError => "psycopg2.OperationalError",
            ErrorKind::HttpNotFound => "werkzeug.exceptions.NotFound",
            ErrorKind::HttpUnauthorized => "werkzeug.exceptions.Unauthorized",
            ErrorKind::HttpUnprocessableEntity => "werkzeug.exceptions.UnprocessableEntity",
            ErrorKind::HttpBadRequest => "werkzeug.exceptions.BadRequest",
            ErrorKind::HttpMethodNotAllowed => "werkzeug.exceptions.MethodNotAllowed",
        }
    }

    /// The HTTP status of the JSON-2 answer: `UserError.http_status` and its subclasses'
    /// overrides, the werkzeug exception's code, and 500 for every other Python exception.
    pub fn json2_status(self) -> u16 {
        match self {
            ErrorKind::UserError | ErrorKind::ValidationError => 422,
            ErrorKind::AccessError | ErrorKind::AccessDenied => 403,
            ErrorKind::MissingError => 404,
            ErrorKind::ValueError
            | ErrorKind::TypeError
            | ErrorKind::KeyError
            | ErrorKind::AttributeError
            | ErrorKind::OperationalError => 500,
            ErrorKind::HttpNotFound => 404,
            ErrorKind::HttpUnauthorized => 401,
            ErrorKind::HttpUnprocessableEntity => 422,
            ErrorKind::HttpBadRequest => 400,
            ErrorKind::HttpMethodNotAllowed => 405,
        }
    }

    fn is_http(self) -> bool {
        matches!(
            self,
            ErrorKind::HttpNotFound
                | ErrorKind::HttpUnauthorized
                | ErrorKind::HttpUnprocessableEntity
                | ErrorKind::HttpBadRequest
                | ErrorKind::HttpMethodNotAllowed
        )
    }
}

/// One raised exception: its class and its message.
#[derive(Debug, Clone, PartialEq)]
pub struct OdooError {
    pub kind: ErrorKind,
    pub message: String,
}

impl std::fmt::Display for OdooError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {}", self.kind.qualified_name(), self.message)
    }
}

impl std::error::Error for OdooError {}

pub type OdooResult<T> = Result<T, OdooError>;

impl OdooError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        OdooError { kind, message: message.into() }
    }
    pub fn user(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UserError, message)
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ValidationError, message)
    }
    pub fn value(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ValueError, message)
    }
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TypeError, message)
    }
    pub fn access_denied() -> Self {
        Self::new(ErrorKind::AccessDenied, "Access Denied")
    }
    /// The message Odoo gives when a record id does not exist (or was deleted).
    pub fn missing(model: &str, ids: &[i64]) -> Self {
        let ids_text: String = ids.iter().map(|id| format!("{id},")).collect();
        Self::new(
            ErrorKind::MissingError,
            format!("Record does not exist or has been deleted.\n(Record: {model}({ids_text}), User: 2)"),
        )
    }
    pub fn invalid_field(model: &str, field: &str) -> Self {
        Self::value(format!("Invalid field '{field}' on model '{model}'"))
    }

    /// `http.serialize_exception`: werkzeug exceptions carry `(description, code)` as
    /// arguments, Odoo and Python exceptions their `args`, here the message alone.
    pub fn serialize(&self) -> Value {
        let arguments =
            if self.kind.is_http() { json!([self.message, self.kind.json2_status()]) } else { json!([self.message]) };
        json!({
            "name": self.kind.qualified_name(),
            "debug": format!(
                "Traceback (most recent call last):\n  File \"erpsync-sim\", line 1, in <odoo>\n{}: {}\n",
                self.kind.qualified_name(),
                self.message
            ),
            "message": self.message,
            "arguments": arguments,
            "context": {},
        })
    }

    /// The JSON-RPC 2.0 envelope Odoo answers with, over HTTP 200: `code` 200 and
    /// "Odoo Server Error" for everything but werkzeug's NotFound.
    pub fn jsonrpc_envelope(&self, id: &Value) -> Value {
        let (code, message) = match self.kind {
            ErrorKind::HttpNotFound => (404, "404: Not Found"),
            _ => (200, "Odoo Server Error"),
        };
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": { "code": code, "message": message, "data": self.serialize() },
        })
    }
}
