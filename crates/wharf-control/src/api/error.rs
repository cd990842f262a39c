//! `ApiError`: every failure the API reports, as a status and a stable JSON body
//! `{error, message}`. Internal causes are logged, not sent.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use wharf_client::dto::ErrorBody;
use wharf_store::StoreError;

#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid",
            message: message.into(),
        }
    }

    /// The request itself is malformed (e.g. a query parameter out of range).
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
        }
    }

    pub(crate) fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "send a valid token as `Authorization: Bearer <token>` (the first one is in <data>/admin.token)"
                .into(),
        }
    }

    /// The caller's roles do not allow this; `message` names the role needed.
    pub(crate) fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: message.into(),
        }
    }

    /// The request contradicts the current state (e.g. removing what is still in use).
    pub(crate) fn conflict(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: message.into(),
        }
    }

    /// A part of the platform the request needs is not there (e.g. no Docker engine).
    pub(crate) fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: message.into(),
        }
    }

    pub(crate) fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "the server failed; its log says why".into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound { .. } => ApiError::not_found(e.to_string()),
            StoreError::LastAdmin => ApiError::conflict(e.to_string()),
            StoreError::Exists { .. } => ApiError {
                status: StatusCode::CONFLICT,
                code: "conflict",
                message: e.to_string(),
            },
            StoreError::NoFreeUid { .. } | StoreError::NodeInUse { .. } => {
                ApiError::conflict(e.to_string())
            }
            other => match other.storage_trouble() {
                Some(message) => {
                    tracing::error!(error = %other, "the database could not be written");
                    ApiError {
                        status: StatusCode::SERVICE_UNAVAILABLE,
                        code: "storage",
                        message: message.into(),
                    }
                }
                None => ApiError::internal(other),
            },
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        let (status, code) = match &r {
            JsonRejection::JsonSyntaxError(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            JsonRejection::MissingJsonContentType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "content_type")
            }
            JsonRejection::JsonDataError(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
            }
            _ => (r.status(), "bad_request"),
        };
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than 1 MiB".to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                "send JSON with `Content-Type: application/json`".to_string()
            }
            _ => without_values(&r.body_text()),
        };
        ApiError {
            status,
            code,
            message,
        }
    }
}

/// serde's "invalid type: integer `123`, expected a string" quotes the value sent, which may be
/// a secret (an env value sent as a number): keep what kind of value it was, drop the value.
fn without_values(message: &str) -> String {
    for marker in ["invalid type: ", "invalid value: "] {
        if let Some(at) = message.find(marker) {
            let (head, value) = message.split_at(at + marker.len());
            // The expected part comes from the code; the value may itself contain the words.
            let end = value.rfind(", expected").unwrap_or(value.len());
            let kind = value[..end].split(['`', '"']).next().unwrap_or("").trim();
            let kind = if kind.is_empty() { "a value" } else { kind };
            return format!("{head}{kind}{}", &value[end..]);
        }
    }
    message.to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_string(),
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::without_values;

    #[test]
    fn values_are_left_out_of_messages() {
        let check = |input: &str, expected: &str| assert_eq!(without_values(input), expected);
        check(
            "env.KEY: invalid type: integer `123`, expected a string at line 1 column 20",
            "env.KEY: invalid type: integer, expected a string at line 1 column 20",
        );
        check(
            "replicas: invalid type: string \"s3cret, expected x\", expected u32 at line 1",
            "replicas: invalid type: string, expected u32 at line 1",
        );
        check(
            "cpu: invalid value: floating point `1.5`, expected a number",
            "cpu: invalid value: floating point, expected a number",
        );
        check(
            "env.KEY: invalid type: map, expected a string",
            "env.KEY: invalid type: map, expected a string",
        );
        check(
            "unknown field `x`, expected `name`",
            "unknown field `x`, expected `name`",
        );
    }
}
