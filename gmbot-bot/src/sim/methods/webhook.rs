//! `setWebhook`, `deleteWebhook`, `getWebhookInfo`.
//!
//! The simulator only delivers to loopback addresses and accepts plain `http`: real Telegram
//! requires HTTPS on ports 443, 80, 88 or 8443, which a test on 127.0.0.1 cannot offer.

use frankenstein::updates::WebhookInfo;
use serde_json::Value;

use super::super::api_error::ApiError;
use super::super::params::Params;
use super::super::world::{Webhook, World};
use super::Effects;

/// Tells the server to start delivery workers for a new webhook generation.
#[derive(Debug, Clone)]
pub(crate) struct WebhookChange {
    pub(crate) generation: u64,
    pub(crate) workers: u32,
}

fn valid_secret(s: &str) -> bool {
    (1..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(super) fn set_webhook(
    world: &mut World,
    p: &Params,
    effects: &mut Effects,
) -> Result<Value, ApiError> {
    let Some(url) = p.string("url") else {
        return delete_webhook(world, p, effects);
    };
    let parsed =
        url::Url::parse(&url).map_err(|_| ApiError::bad_request("bad webhook: invalid URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ApiError::bad_request(
            "bad webhook: An HTTPS URL must be provided for webhook",
        ));
    }
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if !loopback {
        return Err(ApiError::bad_request(
            "bad webhook: the simulator delivers only to loopback addresses",
        ));
    }
    let secret_token = p.string("secret_token");
    if let Some(s) = &secret_token {
        if !valid_secret(s) {
            return Err(ApiError::bad_request(
                "secret token contains unallowed characters",
            ));
        }
    }
    let max_connections = p.int("max_connections")?.unwrap_or(40);
    if !(1..=100).contains(&max_connections) {
        return Err(ApiError::bad_request(
            "bad webhook: max_connections must be between 1 and 100",
        ));
    }
    if let Some(list) = p.typed::<Vec<String>>("allowed_updates")? {
        world.allowed_updates = Some(list);
    }
    if p.flag("drop_pending_updates")?.unwrap_or(false) {
        world.updates.pending.clear();
    }
    let workers = u32::try_from(max_connections).unwrap_or(40);
    world.webhook = Some(Webhook {
        url,
        secret_token,
        max_connections: workers,
        last_error: None,
    });
    world.webhook_generation += 1;
    effects.webhook = Some(WebhookChange {
        generation: world.webhook_generation,
        workers,
    });
    Ok(Value::Bool(true))
}

pub(super) fn delete_webhook(
    world: &mut World,
    p: &Params,
    _effects: &mut Effects,
) -> Result<Value, ApiError> {
    if p.flag("drop_pending_updates")?.unwrap_or(false) {
        world.updates.pending.clear();
    }
    if world.webhook.take().is_some() {
        world.webhook_generation += 1;
        for u in &mut world.updates.pending {
            u.in_flight = false;
        }
    }
    Ok(Value::Bool(true))
}

pub(super) fn get_webhook_info(world: &World) -> Result<Value, ApiError> {
    let pending = u32::try_from(world.updates.pending.len()).unwrap_or(u32::MAX);
    let info = match &world.webhook {
        None => WebhookInfo::builder()
            .url("")
            .has_custom_certificate(false)
            .pending_update_count(pending)
            .build(),
        Some(w) => {
            let allowed = world
                .allowed_updates
                .as_ref()
                .and_then(|l| serde_json::from_value(Value::from(l.clone())).ok());
            WebhookInfo::builder()
                .url(w.url.as_str())
                .has_custom_certificate(false)
                .pending_update_count(pending)
                .max_connections(u16::try_from(w.max_connections).unwrap_or(40))
                .maybe_allowed_updates(allowed)
                .maybe_last_error_date(
                    w.last_error
                        .as_ref()
                        .map(|(t, _)| u64::try_from(*t).unwrap_or(0)),
                )
                .maybe_last_error_message(w.last_error.as_ref().map(|(_, m)| m.clone()))
                .build()
        }
    };
    super::to_json(&info)
}
