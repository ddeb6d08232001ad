//! Webhook delivery: up to `max_connections` workers POST queued updates to the webhook URL
//! with the `X-Telegram-Bot-Api-Secret-Token` header and retry, with backoff, until the bot
//! answers 2xx (a non-2xx answer makes Telegram retry the same update).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::methods::WebhookChange;
use super::world::{now, Shared};

/// How long one webhook POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the delivery workers of one webhook generation. They retire when the webhook is
/// changed or deleted or the simulator stops.
pub(crate) fn start(shared: Arc<Shared>, change: WebhookChange) {
    let spawned = std::thread::Builder::new()
        .name("sim-webhook".into())
        .spawn(move || {
            // The blocking client runs its own runtime: create and drop it on this plain
            // thread, never inside the caller's async runtime.
            let client = match reqwest::blocking::Client::builder()
                .timeout(POST_TIMEOUT)
                .no_proxy()
                .build()
            {
                Ok(c) => c,
                Err(e) => {
                    let mut w = shared.lock();
                    if let Some(hook) = w.webhook.as_mut() {
                        hook.last_error = Some((now(), format!("client error: {e}")));
                    }
                    return;
                }
            };
            std::thread::scope(|s| {
                for _ in 0..change.workers {
                    s.spawn(|| deliver(&shared, &client, change.generation));
                }
            });
        });
    if spawned.is_err() {
        log::warn!("simulated Telegram: could not start webhook delivery");
    }
}

struct Job {
    id: u32,
    body: Value,
    url: String,
    secret: Option<String>,
    attempts: u32,
}

fn next_job(shared: &Shared, generation: u64) -> Option<Job> {
    let mut w = shared.lock();
    loop {
        if w.stopped || w.webhook_generation != generation || w.balanced {
            return None;
        }
        let hook = w.webhook.clone()?;
        if let Some(u) = w.updates.pending.iter_mut().find(|u| !u.in_flight) {
            u.in_flight = true;
            return Some(Job {
                id: u.id,
                body: u.body.clone(),
                url: hook.url,
                secret: hook.secret_token,
                attempts: u.attempts,
            });
        }
        w = match shared.changed.wait(w) {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
    }
}

fn deliver(shared: &Shared, client: &reqwest::blocking::Client, generation: u64) {
    while let Some(job) = next_job(shared, generation) {
        if job.attempts > 0 {
            let exp = job.attempts.min(7) - 1;
            std::thread::sleep(Duration::from_millis(50 << exp));
        }
        let mut request = client
            .post(&job.url)
            .header("Content-Type", "application/json")
            .body(job.body.to_string());
        if let Some(secret) = &job.secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        let error = match request.send() {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("Wrong response from the webhook: {}", r.status())),
            Err(e) if e.is_timeout() => Some("Read timeout expired".to_owned()),
            Err(_) => Some("Connection refused".to_owned()),
        };
        let mut w = shared.lock();
        let current = w.webhook_generation == generation;
        match error {
            None => w.updates.pending.retain(|u| u.id != job.id),
            Some(message) => {
                if let Some(u) = w.updates.pending.iter_mut().find(|u| u.id == job.id) {
                    u.in_flight = false;
                    u.attempts += 1;
                }
                if let (true, Some(hook)) = (current, w.webhook.as_mut()) {
                    hook.last_error = Some((now(), message));
                }
            }
        }
        drop(w);
        shared.changed.notify_all();
    }
}
