//! Bearer tokens: one admin token (configured), and per-tenant tokens stored as SHA-256
//! hashes. The admin token's hash is compared in constant time; a tenant token is found
//! by its hash, so the secret itself is never compared or stored. Found tokens are kept
//! in memory for a short while ([`TokenCache`]) so requests do not read the store.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

/// A request authenticated with the admin token.
#[derive(Debug)]
pub struct Admin;

/// A request authenticated with a tenant's token; holds the tenant.
#[derive(Debug)]
pub struct Tenant(pub fluxo_core::TenantId);

/// Token hashes found recently, and their tenant (30 s; tokens are never revoked yet, so
/// this only bounds staleness of a future revocation).
pub struct TokenCache {
    known: moka::sync::Cache<String, fluxo_core::TenantId>,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self {
            known: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(30))
                .build(),
        }
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").finish_non_exhaustive()
    }
}

/// SHA-256 of a token, hex.
#[must_use]
pub fn hash_token(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

/// A new random token (256 bits, hex), prefixed with its kind.
///
/// # Errors
/// When the operating system has no randomness to give.
pub fn new_token(prefix: &str) -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("randomness: {e}"),
        )
    })?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{prefix}_{hex}"))
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing bearer token",
            )
        })
}

fn is_admin(state: &AppState, token: &str) -> bool {
    let hash = hash_token(token);
    state
        .admin_token_hash
        .as_bytes()
        .ct_eq(hash.as_bytes())
        .into()
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if is_admin(state, bearer(parts)?) {
            Ok(Self)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this needs the admin token",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let hash = hash_token(token);
        if let Some(tenant) = state.tokens.known.get(&hash) {
            return Ok(Self(tenant));
        }
        match state.store.token_tenant(&hash).await? {
            Some(tenant) => {
                state.tokens.known.insert(hash, tenant.clone());
                Ok(Self(tenant))
            }
            None if is_admin(state, token) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this needs a tenant token, not the admin token",
            )),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown token",
            )),
        }
    }
}
