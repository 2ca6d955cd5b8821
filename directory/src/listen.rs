//! `LISTEN residency_directory` with reconnection: a stream of [`Change`]s for gateway caches.
//!
//! After every (re)connection the first item is [`Change::Resync`]: notifications sent while
//! disconnected are lost, so the consumer reloads everything it holds.

use std::time::Duration;

use futures_util::stream::poll_fn;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use uuid::Uuid;

/// How often the listening connection is checked with a round trip.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// How long a connection attempt or a ping may take before the connection counts as lost.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// A directory change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Reload everything (after a (re)connection).
    Resync,
    /// A tenant row changed.
    Tenant(Uuid),
    /// An API key row changed.
    ApiKey {
        /// The key's public prefix.
        prefix: String,
    },
    /// A custom domain row changed.
    Domain {
        /// The domain's hostname.
        hostname: String,
    },
    /// The listener lost its connection; the consumer may mark its data stale.
    Disconnected,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Payload {
    Tenant { id: Uuid },
    ApiKey { prefix: String },
    Domain { hostname: String },
}

fn parse(payload: &str) -> Option<Change> {
    match serde_json::from_str::<Payload>(payload).ok()? {
        Payload::Tenant { id } => Some(Change::Tenant(id)),
        Payload::ApiKey { prefix } => Some(Change::ApiKey { prefix }),
        Payload::Domain { hostname } => Some(Change::Domain { hostname }),
    }
}

/// Starts a background task that LISTENs on the directory channel and forwards changes.
/// It reconnects with capped exponential backoff and stops when the receiver is dropped.
#[must_use]
pub fn listen(url: String) -> mpsc::Receiver<Change> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        while !tx.is_closed() {
            match session(&url, &tx).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => tracing::warn!(error = %e, "directory listener cannot connect"),
            }
            if tx.send(Change::Disconnected).await.is_err() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
    rx
}

/// One connection's worth of listening: returns when the connection ends.
async fn session(url: &str, tx: &mpsc::Sender<Change>) -> anyhow::Result<()> {
    // Parsed per connection: rotated certificate files are read again on reconnection.
    let target = residency_pg::Target::parse(url)?;
    let Ok(connected) = tokio::time::timeout(PING_TIMEOUT, target.connect()).await else {
        tracing::warn!("directory listener connection timed out");
        return Ok(());
    };
    let (client, mut conn) = connected?;
    let (ntx, mut nrx) = mpsc::unbounded_channel::<String>();
    // The connection must be polled for the LISTEN query and the notifications alike.
    let driver = tokio::spawn(async move {
        let mut messages = poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let AsyncMessage::Notification(n) = m {
                if ntx.send(n.payload().to_owned()).is_err() {
                    break;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {}", crate::CHANNEL))
        .await?;
    if tx.send(Change::Resync).await.is_err() {
        driver.abort();
        return Ok(());
    }
    // A silent network partition never closes the socket; a periodic round trip notices it,
    // so consumers mark their data stale instead of trusting a dead subscription. The round
    // trip repeats the (idempotent) LISTEN, so the backend still shows it as its last query.
    let listen_again = format!("LISTEN {}", crate::CHANNEL);
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            payload = nrx.recv() => {
                let Some(payload) = payload else { break };
                if let Some(c) = parse(&payload) {
                    if tx.send(c).await.is_err() {
                        break;
                    }
                }
            }
            _ = ping.tick() => {
                let ping = client.simple_query(&listen_again);
                let alive = tokio::time::timeout(PING_TIMEOUT, ping).await;
                if !matches!(alive, Ok(Ok(_))) {
                    tracing::warn!("directory listener did not answer a ping");
                    break;
                }
            }
        }
    }
    drop(client);
    driver.abort();
    tracing::warn!("directory listener disconnected; reconnecting");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        let id = Uuid::new_v4();
        assert_eq!(
            parse(&format!(r#"{{"kind":"tenant","id":"{id}"}}"#)),
            Some(Change::Tenant(id))
        );
        assert_eq!(
            parse(r#"{"kind":"api_key","id":"x","prefix":"abcd1234"}"#),
            Some(Change::ApiKey {
                prefix: "abcd1234".into()
            })
        );
        assert_eq!(
            parse(r#"{"kind":"domain","hostname":"api.acme.example"}"#),
            Some(Change::Domain {
                hostname: "api.acme.example".into()
            })
        );
        assert_eq!(parse("garbage"), None);
    }
}
