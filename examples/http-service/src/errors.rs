//! The one mapping rule, from a PostgreSQL error to an HTTP response:
//! SQLSTATE `PTxyz` → status `xyz`, body from the JSON in DETAIL; class 22 → 400;
//! anything else → 500 without internals. Serialization failures and deadlocks are
//! retried by the handler; when its attempts run out the client gets 503 and Retry-After.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use tokio_postgres::error::DbError;

pub fn is_retryable(error: &tokio_postgres::Error) -> bool {
    matches!(error.code().map(|c| c.code()), Some("40001") | Some("40P01"))
}

pub fn to_response(error: &tokio_postgres::Error) -> Response {
    match error.as_db_error() {
        Some(db) if db.code().code().starts_with("PT") || db.code().code().starts_with("22") => {
            contract_error(db)
        }
        _ => internal_error(),
    }
}

fn contract_error(db: &DbError) -> Response {
    let payload: Map<String, Value> = db
        .detail()
        .and_then(|detail| serde_json::from_str(detail).ok())
        .unwrap_or_default();
    let status = match db.code().code() {
        code if code.starts_with("PT") => code[2..].parse().ok().and_then(|s| StatusCode::from_u16(s).ok()),
        _ => Some(StatusCode::BAD_REQUEST),
    }
    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);

    // The payload's `code`/`name` become `error_code`/`error_name`; every other field as is.
    let mut body = Map::new();
    body.insert("error_code".into(), payload.get("code").cloned().unwrap_or(json!(status.as_u16())));
    body.insert("error_name".into(), payload.get("name").cloned().unwrap_or(json!("InvalidInputError")));
    body.insert("message".into(), json!(db.message()));
    for (key, value) in payload.iter().filter(|(k, _)| !matches!(k.as_str(), "code" | "name" | "message")) {
        body.insert(key.clone(), value.clone());
    }

    let mut headers = HeaderMap::new();
    if status == StatusCode::PAYMENT_REQUIRED {
        let field = |name: &str| payload.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
        let account = field("account");
        for (header, value) in [
            ("x-credits-balance", field("balance")),
            ("x-credits-required", field("cost")),
            ("link", format!("</v1/accounts/{account}/recharge>; rel=\"payment\"")),
        ] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(header, value);
            }
        }
    }
    (status, headers, Json(Value::Object(body))).into_response()
}

pub fn busy() -> Response {
    let body = json!({"error_code": 503, "error_name": "ConflictRetryExhaustedError",
                      "message": "too many concurrent updates of this account, retry shortly"});
    (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")], Json(body)).into_response()
}

/// No connection to the database could be had (it is down, restarting, or unreachable):
/// the request did nothing and may be retried.
pub fn unavailable() -> Response {
    let body = json!({"error_code": 503, "error_name": "DatabaseUnavailableError",
                      "message": "the database cannot be reached, retry shortly"});
    (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")], Json(body)).into_response()
}

fn internal_error() -> Response {
    let body = json!({"error_code": 500, "error_name": "InternalError", "message": "internal error"});
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}
