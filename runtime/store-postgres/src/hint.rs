//! `LISTEN/NOTIFY` as a batched wake-up hint between nodes.
//!
//! A node that queues work (an enqueue, a released or re-queued run) only marks it here;
//! a background task sends at most one `NOTIFY fluxo_work` per [`BATCH`] — never from
//! the transaction that queued it, so the hot path pays an atomic store, not a round
//! trip. Each node that registered a [`WorkHint`] keeps one connection `LISTEN`ing and
//! calls its hints on every notification. Claimers keep polling: a notification lost
//! (a dropped connection, a node that died between its commit and its batch) costs
//! latency, never correctness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use deadpool_postgres::Pool;
use fluxo_store::WorkHint;
use tokio_postgres::{AsyncMessage, NoTls};

/// The notification channel.
const CHANNEL: &str = "fluxo_work";
/// How often pending work is announced, at most: 50 ms (a fifth of the claim loop's
/// 200 ms poll, so a hint is worth having).
pub(crate) const BATCH: Duration = Duration::from_millis(50);
/// How long the listener waits before reconnecting after its connection failed.
const RECONNECT: Duration = Duration::from_secs(1);

/// One store's hints: what is pending to announce, and who listens.
#[derive(Default)]
pub(crate) struct Hints {
    pending: AtomicBool,
    wakers: Mutex<Vec<WorkHint>>,
    listening: AtomicBool,
}

impl Hints {
    /// Marks work to announce with the next batch.
    pub(crate) fn note_work(&self) {
        self.pending.store(true, Ordering::Relaxed);
    }

    /// Starts the announcer: one `NOTIFY` per batch with pending work, until the store
    /// is dropped.
    pub(crate) fn spawn_announcer(hints: &Arc<Self>, pool: Pool) {
        let hints = Arc::downgrade(hints);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(BATCH).await;
                let Some(live) = hints.upgrade() else { return };
                if !live.pending.swap(false, Ordering::Relaxed) {
                    continue;
                }
                drop(live);
                match pool.get().await {
                    Ok(client) => {
                        if let Err(error) = client.batch_execute(&format!("NOTIFY {CHANNEL}")).await
                        {
                            tracing::debug!(%error, "NOTIFY failed; other nodes see the work at their next poll");
                        }
                    }
                    Err(error) => {
                        tracing::debug!(%error, "no connection for NOTIFY; other nodes see the work at their next poll");
                    }
                }
            }
        });
    }

    /// Registers `wake`; the first registration starts the listener on `url`.
    pub(crate) fn register(hints: &Arc<Self>, url: &str, wake: WorkHint) {
        hints
            .wakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(wake);
        if hints.listening.swap(true, Ordering::Relaxed) {
            return;
        }
        let (hints, url) = (Arc::downgrade(hints), url.to_owned());
        tokio::spawn(async move {
            while hints.upgrade().is_some() {
                if let Err(error) = listen(&hints, &url).await {
                    tracing::debug!(%error, "LISTEN connection lost; reconnecting");
                }
                tokio::time::sleep(RECONNECT).await;
            }
        });
    }
}

/// One `LISTEN` connection: calls the hints on every notification until the
/// connection fails or the store is dropped.
async fn listen(hints: &Weak<Hints>, url: &str) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
    let (sender, mut notified) = tokio::sync::mpsc::unbounded_channel::<()>();
    // The connection is driven here; it ends when the client is dropped or it fails.
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if sender.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    loop {
        // Wakes every few seconds to notice a dropped store.
        match tokio::time::timeout(Duration::from_secs(5), notified.recv()).await {
            Ok(Some(())) => {
                let Some(live) = hints.upgrade() else { break };
                let wakers = live
                    .wakers
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                for wake in wakers {
                    wake();
                }
            }
            Ok(None) => break,
            Err(_) if hints.upgrade().is_none() => break,
            Err(_) => {}
        }
    }
    drop(client);
    driver.abort();
    Ok(())
}
