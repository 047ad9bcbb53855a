//! OAuth 2.0 client credentials (RFC 6749 §4.4) for the HTTP block: the access token is
//! requested through the run's own egress client (so the token endpoint is held to the
//! tenant's allowlist, blocked ranges, timeouts, HTTP quota and records, like any
//! request of the run) and cached per tenant and client until shortly before it
//! expires. The protocol (the form, client authentication, RFC 6749 §5.1 and §5.2
//! answers) is the `oauth2` crate's; Fluxo only carries its requests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fluxo_core::{Blame, ErrorKind, LimitHit, RunError, TenantId};
use fluxo_egress::{EgressError, EgressRequest, Method};
use fluxo_sandbox::RunContext;
use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenType};
use oauth2::{
    AuthType, ClientId, ClientSecret, HttpRequest, HttpResponse, RequestTokenError, Scope,
    StandardErrorResponse, TokenResponse as _, TokenUrl,
};
use sha2::{Digest as _, Sha256};

/// The most tokens one host keeps for all tenants; past it, expired ones are dropped,
/// and a new token is used without being kept while none has expired.
const MAX_CACHED: usize = 10_000;

/// The most tokens one tenant keeps: its own older ones make room, never another
/// tenant's.
const MAX_CACHED_PER_TENANT: usize = 32;

/// The longest token kept (a JWT with many claims is a few KiB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A token is used until this long before its `expires_in` ends (or a tenth of its
/// lifetime, when that is shorter): a request sent with it still arrives in time.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// The longest a token is kept, whatever its `expires_in` says.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The members of a token response that carry credentials (RFC 6749 §5.1; OpenID
/// Connect's `id_token`): redacted from the run's records whatever else happens.
const CREDENTIAL_MEMBERS: &[&str] = &["access_token", "refresh_token", "id_token"];

/// A client of one tenant's HTTP block.
#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) tenant: TenantId,
    pub(crate) token_url: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    pub(crate) scope: Option<String>,
    /// Client authentication in the body (`client_secret_post`) rather than HTTP Basic.
    pub(crate) in_body: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("tenant", &self.tenant)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The cache's key: the tenant and a digest of everything that makes the token (the
    /// secret included, so a rotated secret gets a new token; never the secret itself).
    fn key(&self) -> TokenKey {
        let mut digest = Sha256::new();
        for part in [
            self.token_url.as_str(),
            self.client_id.as_str(),
            self.client_secret.as_str(),
            self.scope.as_deref().unwrap_or(""),
            if self.in_body { "body" } else { "basic" },
        ] {
            digest.update(part.len().to_le_bytes());
            digest.update(part.as_bytes());
        }
        (self.tenant.clone(), digest.finalize().into())
    }
}

/// A cached token's key: its tenant and [`Client::key`]'s digest.
type TokenKey = (TenantId, [u8; 32]);

/// Access tokens by client, with when each stops being used.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, (String, Instant)>>,
}

/// Why no token was had.
#[derive(Debug)]
pub(crate) enum TokenError {
    /// A limit of the run (its HTTP quota, its deadline): ends the run.
    Limit(LimitHit),
    /// Ends the run as is (the run's HTTP byte quota is spent).
    Run(RunError),
    /// The token endpoint refused or failed: the step fails with this reason.
    Failed(String, Blame),
}

impl TokenCache {
    fn cached(&self, client: &Client) -> Option<String> {
        let tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens
            .get(&client.key())
            .filter(|(_, until)| *until > Instant::now())
            .map(|(token, _)| token.clone())
    }

    fn keep(&self, client: &Client, token: String, lifetime: Duration) {
        if token.len() > MAX_TOKEN_BYTES {
            return;
        }
        let margin = EXPIRY_MARGIN.min(lifetime / 10);
        let now = Instant::now();
        let until = now + lifetime.min(MAX_LIFETIME).saturating_sub(margin);
        let key = client.key();
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Two runs that fetched the same client's token at once: the later replaces it.
        if let Some(held) = tokens.get_mut(&key) {
            *held = (token, until);
            return;
        }
        let tenant = &key.0;
        let held = tokens.keys().filter(|(owner, _)| owner == tenant).count();
        if held >= MAX_CACHED_PER_TENANT {
            tokens.retain(|(owner, _), (_, until)| owner != tenant || *until > now);
            // Still full: the tenant's token that expires first makes room.
            let first = tokens
                .iter()
                .filter(|((owner, _), _)| owner == tenant)
                .min_by_key(|(_, (_, until))| *until)
                .map(|(key, _)| key.clone());
            if tokens.keys().filter(|(owner, _)| owner == tenant).count() >= MAX_CACHED_PER_TENANT
                && let Some(first) = first
            {
                tokens.remove(&first);
            }
        }
        if tokens.len() >= MAX_CACHED {
            tokens.retain(|_, (_, until)| *until > now);
            if tokens.len() >= MAX_CACHED {
                return;
            }
        }
        tokens.insert(key, (token, until));
    }

    /// Forgets `client`'s token (the API refused it: 401).
    pub(crate) fn forget(&self, client: &Client) {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&client.key());
    }

    /// `client`'s access token: the cached one, or a new one requested through `ctx`
    /// (charged to the run's HTTP quota and recorded with its exchanges; every
    /// credential in the answer is redacted from the run's records like a secret).
    pub(crate) async fn token(
        &self,
        client: &Client,
        ctx: &mut RunContext,
    ) -> Result<String, TokenError> {
        if let Some(token) = self.cached(client) {
            ctx.redact_also(&token);
            return Ok(token);
        }
        let (token, lifetime) = fetch(client, ctx).await?;
        ctx.redact_also(&token);
        // Without `expires_in` (RFC 6749 §5.1: RECOMMENDED) a token is not kept.
        if let Some(lifetime) = lifetime {
            self.keep(client, token.clone(), lifetime);
        }
        Ok(token)
    }
}

/// What the egress answered, or why not (a limit, or a request error).
#[derive(Debug, thiserror::Error)]
enum Carried {
    #[error("{0}")]
    Limit(LimitHit),
    #[error("{0}")]
    Egress(EgressError),
    #[error("{0}")]
    Malformed(String),
}

type Reply = tokio::sync::oneshot::Sender<Result<HttpResponse, Carried>>;

/// Hands the `oauth2` crate's requests to [`fetch`], which sends them through the run's
/// egress client (the crate's client must not borrow the run's context).
struct Carrier {
    requests: tokio::sync::mpsc::Sender<(HttpRequest, Reply)>,
}

impl<'c> oauth2::AsyncHttpClient<'c> for Carrier {
    type Error = Carried;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, Carried>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let gone = || Carried::Malformed("the run stopped".to_owned());
            self.requests
                .send((request, reply))
                .await
                .map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        })
    }
}

/// Sends one of the crate's requests through the run's egress client. The credentials
/// in a JSON answer are redacted from the run's records before anything reads it (also
/// when the crate then finds the answer malformed).
async fn carry(ctx: &mut RunContext, request: HttpRequest) -> Result<HttpResponse, Carried> {
    let (parts, body) = request.into_parts();
    let mut egress = EgressRequest::new(Method::Post, parts.uri.to_string());
    for (name, value) in &parts.headers {
        let value = value
            .to_str()
            .map_err(|error| Carried::Malformed(error.to_string()))?;
        egress
            .headers
            .push((name.as_str().to_owned(), value.to_owned()));
    }
    egress.body = Some(body);
    let response = match ctx.http(egress).await {
        Err(hit) => return Err(Carried::Limit(hit)),
        Ok(Err(error)) => return Err(Carried::Egress(error)),
        Ok(Ok(response)) => response,
    };
    // RFC 6749 §5.1 asks for JSON; some servers answer form-encoded: both are read.
    if let Ok(serde_json::Value::Object(answer)) =
        serde_json::from_slice::<serde_json::Value>(&response.body)
    {
        for member in CREDENTIAL_MEMBERS {
            if let Some(serde_json::Value::String(credential)) = answer.get(*member) {
                ctx.redact_also(credential);
            }
        }
    } else {
        for (name, value) in url::form_urlencoded::parse(&response.body) {
            if CREDENTIAL_MEMBERS.contains(&name.as_ref()) {
                ctx.redact_also(&value);
            }
        }
    }
    let mut built = http::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        built = built.header(name, value);
    }
    built
        .body(response.body)
        .map_err(|error| Carried::Malformed(error.to_string()))
}

async fn fetch(
    client: &Client,
    ctx: &mut RunContext,
) -> Result<(String, Option<Duration>), TokenError> {
    let failed = |why: String| TokenError::Failed(why, Blame::Guest);
    let token_url = TokenUrl::new(client.token_url.clone())
        .map_err(|error| failed(format!("the token URL: {error}")))?;
    let oauth = BasicClient::new(ClientId::new(client.client_id.clone()))
        .set_client_secret(ClientSecret::new(client.client_secret.clone()))
        .set_token_uri(token_url)
        .set_auth_type(if client.in_body {
            AuthType::RequestBody
        } else {
            AuthType::BasicAuth
        });
    let mut request = oauth.exchange_client_credentials();
    if let Some(scope) = &client.scope {
        for scope in scope.split_whitespace() {
            request = request.add_scope(Scope::new(scope.to_owned()));
        }
    }
    let (requests, mut incoming) = tokio::sync::mpsc::channel(1);
    let carrier = Carrier { requests };
    let exchange = request.request_async(&carrier);
    tokio::pin!(exchange);
    let mut status = None;
    let result = loop {
        tokio::select! {
            result = &mut exchange => break result,
            Some((request, reply)) = incoming.recv() => {
                let answer = carry(ctx, request).await;
                status = answer.as_ref().ok().map(|response| response.status().as_u16());
                let _ = reply.send(answer);
            }
        }
    };
    // Whatever the body: a 5xx, 408 or 429 is the server's trouble (worth a retry);
    // another 4xx is the definition's (a wrong URL, id or secret).
    let by_status = |otherwise: Blame| match status {
        Some(status) if status >= 500 || status == 408 || status == 429 => Blame::Upstream,
        Some(status) if status >= 400 => Blame::Guest,
        _ => otherwise,
    };
    match result {
        Ok(token) => {
            if *token.token_type() != BasicTokenType::Bearer {
                return Err(failed(format!(
                    "the OAuth 2.0 token endpoint gave a `{}` token; only `Bearer` (RFC 6750) is sent",
                    token.token_type().as_ref()
                )));
            }
            Ok((token.access_token().secret().clone(), token.expires_in()))
        }
        Err(RequestTokenError::Request(Carried::Limit(hit))) => Err(TokenError::Limit(hit)),
        Err(RequestTokenError::Request(Carried::Egress(EgressError::LimitExceeded))) => {
            Err(TokenError::Run(
                RunError::new(
                    ErrorKind::QuotaExceeded,
                    "the run's HTTP byte quota is spent (limit-exceeded)",
                )
                .blamed_on(Blame::Guest),
            ))
        }
        Err(RequestTokenError::Request(Carried::Egress(error))) => Err(TokenError::Failed(
            format!("the OAuth 2.0 token request was refused or failed: {error}"),
            crate::interpret::blame_of(&error),
        )),
        Err(RequestTokenError::Request(error)) => Err(TokenError::Failed(
            format!("the OAuth 2.0 token request failed: {error}"),
            Blame::Upstream,
        )),
        Err(RequestTokenError::ServerResponse(answer)) => {
            Err(refused(&answer, by_status(Blame::Guest)))
        }
        Err(RequestTokenError::Parse(error, _)) => Err(TokenError::Failed(
            format!("the OAuth 2.0 token endpoint's answer is not a token response: {error}"),
            by_status(Blame::Upstream),
        )),
        Err(RequestTokenError::Other(why)) => Err(TokenError::Failed(
            format!("the OAuth 2.0 token endpoint answered: {why}"),
            by_status(Blame::Upstream),
        )),
    }
}

/// An RFC 6749 §5.2 error answer, blamed by its status: with a 4xx, the client's
/// configuration is wrong (its id, secret or scope), which no retry mends; with a 5xx or
/// 429, the server's trouble.
fn refused(answer: &StandardErrorResponse<BasicErrorResponseType>, blame: Blame) -> TokenError {
    let mut why = format!(
        "the OAuth 2.0 token endpoint refused the client: {}",
        answer.error()
    );
    if let Some(description) = answer.error_description() {
        why.push_str(&format!(" ({description})"));
    }
    TokenError::Failed(why, blame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(tenant: &str, scope: &str) -> Client {
        Client {
            tenant: TenantId::parse(tenant).unwrap(),
            token_url: "https://auth.example/token".to_owned(),
            client_id: "id".to_owned(),
            client_secret: "secret-value-1".to_owned(),
            scope: Some(scope.to_owned()),
            in_body: false,
        }
    }

    #[test]
    fn a_tenant_filling_its_share_never_evicts_another_tenant_s_token() {
        let cache = TokenCache::default();
        cache.keep(&client("globex", "read"), "theirs".to_owned(), MAX_LIFETIME);
        for n in 0..(MAX_CACHED_PER_TENANT * 3) {
            cache.keep(
                &client("acme", &format!("s{n}")),
                format!("t{n}"),
                MAX_LIFETIME,
            );
        }
        assert_eq!(
            cache.cached(&client("globex", "read")).as_deref(),
            Some("theirs")
        );
        let held = cache.tokens.lock().unwrap().len();
        assert_eq!(held, MAX_CACHED_PER_TENANT + 1);
        // The newest of acme's is kept; a token past the size cap is not.
        let last = MAX_CACHED_PER_TENANT * 3 - 1;
        assert!(cache.cached(&client("acme", &format!("s{last}"))).is_some());
        cache.keep(
            &client("acme", "big"),
            "x".repeat(MAX_TOKEN_BYTES + 1),
            MAX_LIFETIME,
        );
        assert!(cache.cached(&client("acme", "big")).is_none());
    }

    #[test]
    fn the_key_holds_no_secret_and_changes_with_it() {
        let one = client("acme", "read");
        let mut other = one.clone();
        other.client_secret = "secret-value-2".to_owned();
        assert_ne!(one.key(), other.key());
        assert!(!format!("{one:?}").contains("secret-value-1"));
    }
}
