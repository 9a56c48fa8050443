//! A metered API in one file: each `POST /v1/search` charges the caller's account and does
//! the work in one transaction, so the work commits only if the charge does.
//!
//! Environment: PGHOST, PGPORT, PGUSER, PGDATABASE (the quick start's cluster by default),
//! LISTEN (default 127.0.0.1:8402).

mod errors;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use deadpool_postgres::{Manager, Pool};
use serde_json::{json, Value};
use std::time::Duration;

const COST_PER_SEARCH: &str = "1";
const MAX_ATTEMPTS: u32 = 10;

#[tokio::main]
async fn main() {
    let mut config = tokio_postgres::Config::new();
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
    config
        .host(env("PGHOST", "127.0.0.1"))
        .port(env("PGPORT", "28815").parse().expect("PGPORT is a port"))
        .user(env("PGUSER", "postgres"))
        .dbname(env("PGDATABASE", "credits_demo"));
    let manager = Manager::new(config, tokio_postgres::NoTls);
    let pool = Pool::builder(manager).max_size(16).build().expect("a pool");

    let app = Router::new()
        .route("/v1/search", post(search))
        .route("/v1/accounts/{account}/recharge", post(recharge))
        .route("/v1/accounts/{account}/balance", get(balance))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(env("LISTEN", "127.0.0.1:8402")).await.expect("bind");
    println!("listening on {}", listener.local_addr().expect("bound"));
    axum::serve(listener, app).await.expect("serve");
}

/// The metered endpoint: charge, work, commit; retried on serialization failures.
async fn search(State(pool): State<Pool>, headers: HeaderMap) -> Response {
    let Some(account) = headers.get("x-account").and_then(|v| v.to_str().ok()).map(str::to_owned) else {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error_code": 401, "message": "X-Account header required"})))
            .into_response();
    };
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Ok(mut client) = pool.get().await else { return errors::unavailable() };
    let mut attempt = 1;
    loop {
        match metered_search(&mut client, &account, key.as_deref()).await {
            Ok((balance, hits)) => {
                return ([("x-credits-balance", balance.clone())], Json(json!({"hits": hits, "balance": balance})))
                    .into_response()
            }
            Err(e) if errors::is_retryable(&e) && attempt < MAX_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) if errors::is_retryable(&e) => return errors::busy(),
            Err(e) => return errors::to_response(&e),
        }
    }
}

/// Grows with each attempt, with jitter so that retrying conflicts do not meet again.
fn backoff(attempt: u32) -> Duration {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos() % 5_000_000)
        .unwrap_or(0);
    Duration::from_millis(2 * attempt as u64) + Duration::from_nanos(jitter as u64)
}

async fn metered_search(
    client: &mut deadpool_postgres::Client,
    account: &str,
    key: Option<&str>,
) -> Result<(String, i64), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let balance: String = tx
        .query_one(
            "SELECT credits.charge($1, $2::text::numeric, 'POST /v1/search', $3)::text",
            &[&account, &COST_PER_SEARCH, &key],
        )
        .await?
        .get(0);
    // The costly work, in the same transaction as its charge.
    let hits: i64 = tx.query_one("SELECT count(*) FROM generate_series(1, 1000)", &[]).await?.get(0);
    tx.commit().await?;
    Ok((balance, hits))
}

async fn recharge(State(pool): State<Pool>, Path(account): Path<String>, Json(body): Json<Value>) -> Response {
    let amount = match &body["amount"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return (StatusCode::BAD_REQUEST, Json(json!({"error_code": 400, "message": "amount required"}))).into_response(),
    };
    let Ok(client) = pool.get().await else { return errors::unavailable() };
    match client
        .query_one("SELECT credits.recharge($1, $2::text::numeric, 'POST recharge')::text", &[&account, &amount])
        .await
    {
        Ok(row) => {
            let balance: String = row.get(0);
            ([("x-credits-balance", balance.clone())], Json(json!({"account": account, "balance": balance}))).into_response()
        }
        Err(e) => errors::to_response(&e),
    }
}

async fn balance(State(pool): State<Pool>, Path(account): Path<String>) -> Response {
    let Ok(client) = pool.get().await else { return errors::unavailable() };
    match client.query_one("SELECT credits.balance($1)::text", &[&account]).await {
        Ok(row) => {
            let balance: String = row.get(0);
            ([("x-credits-balance", balance.clone())], Json(json!({"account": account, "balance": balance}))).into_response()
        }
        Err(e) => errors::to_response(&e),
    }
}
