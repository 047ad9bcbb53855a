//! Completion webhooks: POSTed to the tenant's endpoints with Standard Webhooks headers
//! (`webhook-id` stable across retries; `webhook-timestamp` the time of this attempt and
//! the signature made anew for it, so a delivery retried hours later is still inside a
//! receiver's replay tolerance — the event's own time is in the body; `webhook-signature`
//! with every current secret). The URL is a tenant's, so the request goes through an egress
//! client that allows any host but keeps every blocked address range: a webhook can no
//! more reach the host's network than a guest can.

use std::sync::Arc;
use std::time::Duration;

use fluxo_core::{HttpExchange, TenantId};
use fluxo_egress::{
    AllowRule, Allowance, Egress, EgressError, EgressRequest, HttpPolicy, Method, Resolve,
};
use fluxo_store::{SecretKind, Store, WebhookMessage};

use super::SendError;
use crate::signing;
use crate::vault::Vault;

/// Sends signed webhooks.
pub struct WebhookSender {
    egress: Egress,
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSender")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What a delivery attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// The endpoint accepted it (2xx).
    Accepted,
    /// The endpoint is gone (410): disable it.
    Gone,
    /// The endpoint was deleted or disabled before this attempt (why): nothing was sent.
    Unavailable(String),
}

impl WebhookSender {
    /// A sender that may reach any host and port but never a blocked address range —
    /// except `private`, the ranges the operator opened for webhooks (not the ones opened
    /// for guests: a guest's allow rule still names a host and port, a webhook URL is
    /// anything a tenant types). `policy` gives the timeouts and caps; `vault` opens the
    /// endpoints' sealed signing secrets.
    ///
    /// # Errors
    /// When TLS cannot be set up.
    pub fn new(
        policy: &HttpPolicy,
        private: Vec<ipnet::IpNet>,
        resolver: Arc<dyn Resolve>,
        store: Arc<dyn Store>,
        vault: Arc<Vault>,
    ) -> Result<Self, fluxo_egress::EgressSetupError> {
        let open = HttpPolicy {
            allow: vec![AllowRule {
                any_port: true,
                ..AllowRule::host("*")
            }],
            tenant_allow: std::collections::BTreeMap::new(),
            max_redirects: 0,
            allow_private_cidrs: private,
            ..policy.clone()
        };
        Ok(Self {
            egress: Egress::new(&open, resolver)?,
            store,
            vault,
            timeout: Duration::from_secs(15),
        })
    }

    /// Delivers one message to its endpoint.
    ///
    /// # Errors
    /// [`SendError::Transient`] for timeouts, connection failures, 408/425/429 and 5xx;
    /// [`SendError::Permanent`] when the endpoint refuses the message for good (other
    /// 4xx) or its signing secret cannot be used.
    pub async fn send(
        &self,
        tenant: &TenantId,
        message: &WebhookMessage,
    ) -> Result<Delivered, SendError> {
        let Some((endpoint, secrets)) = self
            .store
            .endpoint(tenant, &message.endpoint)
            .await
            .map_err(|error| SendError::Transient(error.to_string()))?
        else {
            return Ok(Delivered::Unavailable(
                "the endpoint was deleted".to_owned(),
            ));
        };
        if !endpoint.enabled {
            return Ok(Delivered::Unavailable(format!(
                "the endpoint is disabled: {}",
                endpoint.disabled_reason.unwrap_or_default()
            )));
        }
        let secrets = secrets
            .iter()
            .map(|sealed| {
                self.vault
                    .open_value(SecretKind::Webhook, tenant, &endpoint.id, sealed)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| SendError::Transient(format!("signing secret: {error}")))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(message.timestamp, |elapsed| {
                i64::try_from(elapsed.as_secs()).unwrap_or(message.timestamp)
            });
        let signature = signing::sign(&secrets, &message.webhook_id, now, message.body.as_bytes())
            .map_err(|error| SendError::Permanent(error.to_string()))?;
        let mut request = EgressRequest::new(Method::Post, endpoint.url.clone());
        request.headers = vec![
            ("content-type".into(), "application/json".into()),
            ("user-agent".into(), "fluxo-webhooks".into()),
            ("webhook-id".into(), message.webhook_id.clone()),
            ("webhook-timestamp".into(), now.to_string()),
            ("webhook-signature".into(), signature),
        ];
        request.body = Some(message.body.clone().into_bytes());
        let mut record = HttpExchange::default();
        let allowance = Allowance {
            bytes: 1 << 20,
            time: self.timeout,
            // Only the status decides a delivery; the body is not kept.
            record_bytes: 0,
        };
        match self
            .egress
            .send(tenant.as_str(), request, allowance, &mut record)
            .await
        {
            Ok(response) => match response.status {
                200..=299 => Ok(Delivered::Accepted),
                410 => Ok(Delivered::Gone),
                408 | 425 | 429 | 500..=599 => Err(SendError::Transient(format!(
                    "the endpoint answered {}",
                    response.status
                ))),
                status => Err(SendError::Permanent(format!(
                    "the endpoint answered {status}"
                ))),
            },
            Err(EgressError::Denied(reason)) => {
                Err(SendError::Permanent(format!("denied: {reason}")))
            }
            Err(error) => Err(SendError::Transient(error.to_string())),
        }
    }
}
