//! **H0**: one native hyper GET — the floor for the `http-request` overhead rows, to
//! compare with a Fluxo run of the `fetch` guest making the same request.

use std::hint::black_box;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{BoxFuture, Contender, Raw};

/// A pooled hyper client and the URL it fetches.
pub struct NativeHttp {
    client: Client<HttpConnector, Empty<Bytes>>,
    url: hyper::Uri,
}

impl NativeHttp {
    /// GETs `url` (plain HTTP).
    ///
    /// # Errors
    /// When `url` is not a URI.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            url: url.parse().context("not a URI")?,
        })
    }

    async fn get(&self) -> anyhow::Result<(u16, Bytes)> {
        let response = self.client.get(self.url.clone()).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

impl Contender for NativeHttp {
    fn label(&self) -> &str {
        "H0"
    }

    fn isolation(&self) -> &'static str {
        "none (a hyper call)"
    }

    fn once(&self) -> BoxFuture<'_, anyhow::Result<Raw>> {
        Box::pin(async move {
            let (status, body) = self.get().await?;
            let output = serde_json::json!({
                "status": status,
                "body": String::from_utf8_lossy(&body),
            });
            Ok((output.to_string(), Vec::new()))
        })
    }

    // Timed: the bare request, without building the observation.
    fn run(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            black_box(self.get().await?);
            Ok(())
        })
    }
}

impl std::fmt::Debug for NativeHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeHttp")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}
