//! Name resolution for egress: a [`Resolve`] backend (hickory by default) wrapped in the
//! checking resolver the HTTP connector uses, which returns only addresses the policy
//! allows — so the connection is pinned to checked addresses, and a name that resolves
//! to a public address first and to loopback next can never reach loopback.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

use super::policy::{Denied, EgressPolicy};
use crate::BoxFuture;

/// Resolves a host name to addresses.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host`, in the order to try them.
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>>;
}

/// The system's resolver configuration (`/etc/resolv.conf`, `/etc/hosts`) through
/// hickory, with its cache and timeouts.
pub struct SystemResolver {
    resolver: hickory_resolver::TokioResolver,
}

impl std::fmt::Debug for SystemResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemResolver").finish_non_exhaustive()
    }
}

impl SystemResolver {
    /// A resolver from the system configuration.
    ///
    /// # Errors
    /// When the system configuration cannot be read.
    pub fn new() -> Result<Self, crate::EgressSetupError> {
        let resolver = hickory_resolver::TokioResolver::builder_tokio()
            .map_err(|error| crate::EgressSetupError::Dns(error.to_string()))?
            .build()
            .map_err(|error| crate::EgressSetupError::Dns(error.to_string()))?;
        Ok(Self { resolver })
    }
}

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let lookup =
                self.resolver.lookup_ip(host).await.map_err(|error| {
                    std::io::Error::other(format!("dns lookup of {host}: {error}"))
                })?;
            Ok(lookup.iter().collect())
        })
    }
}

/// The connector's resolver: resolves, drops every address the policy refuses, and
/// fails with [`Denied`] when none is left.
#[derive(Clone)]
pub(crate) struct CheckedResolver {
    pub(crate) policy: Arc<EgressPolicy>,
    pub(crate) resolver: Arc<dyn Resolve>,
}

impl tower_service::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, std::io::Result<Self::Response>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        let resolver = self.resolver.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved = resolver.resolve(&host).await?;
            let mut first_denial = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|ip| match policy.check_ip(*ip) {
                    Ok(()) => true,
                    Err(denied) => {
                        first_denial.get_or_insert(denied);
                        false
                    }
                })
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if allowed.is_empty() {
                let Denied(reason) = first_denial
                    .unwrap_or_else(|| Denied("the name resolved to no address".to_owned()));
                return Err(std::io::Error::other(Denied(format!("{host}: {reason}"))));
            }
            Ok(allowed.into_iter())
        })
    }
}
