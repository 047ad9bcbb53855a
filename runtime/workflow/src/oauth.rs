//! OAuth 2.0 client credentials (RFC 6749 §4.4) for the HTTP block: the access token is
//! requested through the run's own egress client (so the token endpoint is held to the
//! tenant's allowlist, blocked ranges, timeouts, HTTP quota and records, like any
//! request of the run) and cached per tenant and client until shortly before it
//! expires. The protocol (the form, client authentication, RFC 6749 §5.1 and §5.2
//! answers) is the `oauth2` crate's; Fluxo only carries its requests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fluxo_core::{Blame, LimitHit, TenantId};
use fluxo_egress::{EgressError, EgressRequest, Method};
use fluxo_sandbox::RunContext;
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, ClientId, ClientSecret, HttpRequest, HttpResponse, RequestTokenError, Scope,
    StandardErrorResponse, TokenResponse as _, TokenUrl,
};

/// The most tokens one host keeps: past it, expired ones are dropped, then the cache
/// is emptied (a token is only ever fetched again).
const MAX_CACHED: usize = 10_000;

/// A token is used until this long before its `expires_in` ends (or a tenth of its
/// lifetime, when that is shorter): a request sent with it still arrives in time.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// The longest a token is kept, whatever its `expires_in` says.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Which client a token belongs to. The secret is part of the key: a rotated secret
/// gets a new token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Client {
    pub(crate) tenant: TenantId,
    pub(crate) token_url: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    pub(crate) scope: Option<String>,
    /// Client authentication in the body (`client_secret_post`) rather than HTTP Basic.
    pub(crate) in_body: bool,
}

/// Access tokens by client, with when each stops being used.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<Client, (String, Instant)>>,
}

/// Why no token was had.
#[derive(Debug)]
pub(crate) enum TokenError {
    /// A limit of the run (its HTTP quota, its deadline): ends the run.
    Limit(LimitHit),
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
            .get(client)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(token, _)| token.clone())
    }

    fn keep(&self, client: Client, token: String, lifetime: Duration) {
        let margin = EXPIRY_MARGIN.min(lifetime / 10);
        let until = Instant::now() + lifetime.min(MAX_LIFETIME).saturating_sub(margin);
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tokens.len() >= MAX_CACHED {
            let now = Instant::now();
            tokens.retain(|_, (_, until)| *until > now);
            if tokens.len() >= MAX_CACHED {
                tokens.clear();
            }
        }
        tokens.insert(client, (token, until));
    }

    /// Forgets `client`'s token (the API refused it: 401).
    pub(crate) fn forget(&self, client: &Client) {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(client);
    }

    /// `client`'s access token: the cached one, or a new one requested through `ctx`
    /// (charged to the run's HTTP quota and recorded with its exchanges; the token is
    /// redacted from the run's records like a secret). Returns whether it was fetched.
    pub(crate) async fn token(
        &self,
        client: &Client,
        ctx: &mut RunContext,
    ) -> Result<(String, bool), TokenError> {
        if let Some(token) = self.cached(client) {
            ctx.redact_also(&token);
            return Ok((token, false));
        }
        let (token, lifetime) = fetch(client, ctx).await?;
        ctx.redact_also(&token);
        // Without `expires_in` (RFC 6749 §5.1: RECOMMENDED) a token is not kept.
        if let Some(lifetime) = lifetime {
            self.keep(client.clone(), token.clone(), lifetime);
        }
        Ok((token, true))
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

/// Sends one of the crate's requests through the run's egress client.
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
    let result = loop {
        tokio::select! {
            result = &mut exchange => break result,
            Some((request, reply)) = incoming.recv() => {
                let _ = reply.send(carry(ctx, request).await);
            }
        }
    };
    match result {
        Ok(token) => Ok((token.access_token().secret().clone(), token.expires_in())),
        Err(RequestTokenError::Request(Carried::Limit(hit))) => Err(TokenError::Limit(hit)),
        Err(RequestTokenError::Request(error)) => Err(TokenError::Failed(
            format!("the OAuth 2.0 token request failed: {error}"),
            Blame::Upstream,
        )),
        Err(RequestTokenError::ServerResponse(answer)) => Err(refused(&answer)),
        Err(RequestTokenError::Parse(error, _)) => Err(TokenError::Failed(
            format!("the OAuth 2.0 token endpoint's answer is not a token response: {error}"),
            Blame::Upstream,
        )),
        Err(RequestTokenError::Other(why)) => Err(TokenError::Failed(
            format!("the OAuth 2.0 token endpoint answered: {why}"),
            Blame::Upstream,
        )),
    }
}

/// An RFC 6749 §5.2 refusal: the client's configuration is wrong (its id, secret or
/// scope), not something a retry mends.
fn refused(answer: &StandardErrorResponse<BasicErrorResponseType>) -> TokenError {
    let mut why = format!(
        "the OAuth 2.0 token endpoint refused the client: {}",
        answer.error()
    );
    if let Some(description) = answer.error_description() {
        why.push_str(&format!(" ({description})"));
    }
    TokenError::Failed(why, Blame::Guest)
}
