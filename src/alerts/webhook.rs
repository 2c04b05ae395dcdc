//! Webhook delivery: a bounded queue (a full queue drops the notification with a warning and a
//! recorded failed attempt, never blocking the caller), each delivery on its own task with
//! retries and exponential backoff (at most `MAX_ATTEMPTS`), a few in flight at once. Bodies are
//! generic JSON or Slack's `{"text": ...}`; both carry `X-Agent-Console-Signature:
//! sha256=<hex HMAC-SHA256 of the body>` when a secret is configured. Every attempt is an
//! `alert_deliveries` row (`Store::apply`); the alert's own row never depends on delivery.

use std::sync::Arc;
use std::time::Duration;

use duckdb::params;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use super::Format;
use crate::store::Store;

/// Attempts per notification.
pub const MAX_ATTEMPTS: u32 = 4;
/// The first retry waits this long; each later one twice as long.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-agent-console-signature";
const QUEUE: usize = 1024;
const IN_FLIGHT: usize = 16;

/// One notification to deliver.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub url: String,
    pub format: Format,
    pub alert_id: String,
    pub rule: String,
    /// firing | resolved
    pub event: &'static str,
    /// The generic JSON payload (the Slack text is made from it).
    pub payload: Value,
}

/// HMAC-SHA256 (RFC 2104) of `body` with `key`.
pub fn hmac_sha256(key: &[u8], body: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.iter().map(|b| b ^ 0x36).collect::<Vec<u8>>());
    inner.update(body);
    let mut outer = Sha256::new();
    outer.update(k.iter().map(|b| b ^ 0x5c).collect::<Vec<u8>>());
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The header value for `body`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), body)))
}

/// The body as sent.
pub fn body(d: &Delivery) -> Vec<u8> {
    match d.format {
        Format::Json => d.payload.to_string().into_bytes(),
        Format::Slack => {
            let p = &d.payload;
            let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let icon = if d.event == "firing" { ":rotating_light:" } else { ":white_check_mark:" };
            let text = format!(
                "{icon} *{}* {} — {} ({}): value {} / threshold {}",
                s("rule"),
                d.event,
                s("scope"),
                s("kind"),
                p.get("value").cloned().unwrap_or(Value::Null),
                p.get("threshold").cloned().unwrap_or(Value::Null)
            );
            json!({ "text": text, "alert": p }).to_string().into_bytes()
        }
    }
}

/// The sending side.
#[derive(Clone)]
pub struct Webhooks {
    tx: mpsc::Sender<Delivery>,
}

impl Webhooks {
    /// Start the delivery task.
    pub fn start(store: Store, secret: Option<String>) -> Webhooks {
        let (tx, mut rx) = mpsc::channel::<Delivery>(QUEUE);
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let secret = secret.map(Arc::<str>::from);
        tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else { break };
                let (store, client, secret) = (store.clone(), client.clone(), secret.clone());
                tokio::spawn(async move {
                    deliver(&store, &client, secret.as_deref(), d).await;
                    drop(permit);
                });
            }
        });
        Webhooks { tx }
    }

    /// Queue a notification; never waits.
    pub fn send(&self, d: Delivery, store: &Store) {
        if let Err(e) = self.tx.try_send(d) {
            let d = match e {
                mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d,
            };
            tracing::warn!(url = %d.url, rule = %d.rule, "webhook queue full: notification dropped");
            let store = store.clone();
            tokio::spawn(async move { record(&store, &d, 0, None, Some("queue full: dropped".into()), true).await });
        }
    }
}

async fn record(store: &Store, d: &Delivery, attempt: u32, status: Option<u16>, error: Option<String>, last: bool) {
    let (alert, rule, event, url) = (d.alert_id.clone(), d.rule.clone(), d.event, d.url.clone());
    let now = (store.clock())();
    let ok = error.is_none();
    let res = store
        .apply(move |c| {
            c.execute(
                "INSERT INTO alert_deliveries (time, alert_id, rule, event, url, attempt, status, ok, error, final)
                 VALUES (make_timestamp(?::BIGINT), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params![now, alert, rule, event, url, attempt, status.map(i32::from), ok, error, last],
            )?;
            Ok(())
        })
        .await;
    if let Err(e) = res {
        tracing::warn!(error = %e, "cannot record a webhook attempt");
    }
}

async fn deliver(store: &Store, client: &reqwest::Client, secret: Option<&str>, d: Delivery) {
    let bytes = body(&d);
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=MAX_ATTEMPTS {
        let mut req = client.post(&d.url).header("content-type", "application/json").body(bytes.clone());
        if let Some(s) = secret {
            req = req.header(SIGNATURE_HEADER, signature(s, &bytes));
        }
        let (status, error) = match req.send().await {
            Ok(r) if r.status().is_success() => (Some(r.status().as_u16()), None),
            Ok(r) => (Some(r.status().as_u16()), Some(format!("HTTP {}", r.status()))),
            Err(e) => (None, Some(e.to_string())),
        };
        let done = error.is_none() || attempt == MAX_ATTEMPTS;
        if error.is_some() {
            tracing::warn!(url = %d.url, attempt, error = ?error, "webhook delivery failed");
        }
        record(store, &d, attempt, status, error, done).await;
        if done {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // Test case 6: a key longer than the block.
        let mac = hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex::encode(mac), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }
}
