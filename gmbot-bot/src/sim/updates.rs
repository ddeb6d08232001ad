//! The bot's update queue: what Telegram would deliver by `getUpdates` or by webhook.
//!
//! Updates are filtered when they are created, by the last `allowed_updates` the bot sent
//! (Bot API: the list "doesn't affect updates created before the call"; an omitted list
//! keeps the previous one; the default excludes `chat_member`, `message_reaction` and
//! `message_reaction_count`).

use std::collections::VecDeque;

use frankenstein::updates::{Update, UpdateContent};
use serde_json::Value;

use super::api_error::ApiError;
use super::params::Params;
use super::world::World;

#[derive(Debug, Clone)]
pub(crate) struct QueuedUpdate {
    pub(crate) id: u32,
    pub(crate) body: Value,
    /// Being POSTed to the webhook right now.
    pub(crate) in_flight: bool,
    pub(crate) attempts: u32,
    /// Through a load balancer: the target whose delivery failed last (tried elsewhere first).
    pub(crate) avoid: Option<usize>,
    /// Through a load balancer: not delivered again before this instant (backoff).
    pub(crate) not_before: Option<std::time::Instant>,
}

#[derive(Debug)]
pub(crate) struct UpdateQueue {
    next_id: u32,
    pub(crate) pending: VecDeque<QueuedUpdate>,
}

impl Default for UpdateQueue {
    fn default() -> Self {
        Self {
            next_id: 1,
            pending: VecDeque::new(),
        }
    }
}

/// The `allowed_updates` name of an update's content.
fn kind(content: &UpdateContent) -> &'static str {
    match content {
        UpdateContent::Message(_) => "message",
        UpdateContent::EditedMessage(_) => "edited_message",
        UpdateContent::ChannelPost(_) => "channel_post",
        UpdateContent::EditedChannelPost(_) => "edited_channel_post",
        UpdateContent::CallbackQuery(_) => "callback_query",
        UpdateContent::MyChatMember(_) => "my_chat_member",
        UpdateContent::ChatMember(_) => "chat_member",
        UpdateContent::ChatJoinRequest(_) => "chat_join_request",
        UpdateContent::MessageReaction(_) => "message_reaction",
        UpdateContent::MessageReactionCount(_) => "message_reaction_count",
        _ => "other",
    }
}

const OFF_BY_DEFAULT: [&str; 3] = ["chat_member", "message_reaction", "message_reaction_count"];

impl World {
    /// Whether an update of this kind would be created for the bot now.
    pub(crate) fn wants(&self, kind: &str) -> bool {
        match &self.allowed_updates {
            Some(list) if !list.is_empty() => list.iter().any(|k| k == kind),
            _ => !OFF_BY_DEFAULT.contains(&kind),
        }
    }

    /// Queues an update for the bot if its `allowed_updates` lets it through.
    /// The caller notifies `Shared::changed`.
    pub(crate) fn emit(&mut self, content: UpdateContent) -> bool {
        if !self.wants(kind(&content)) {
            return false;
        }
        let id = self.updates.next_id;
        self.updates.next_id = self.updates.next_id.wrapping_add(1);
        let update = Update {
            update_id: id,
            content,
        };
        let Ok(mut body) = serde_json::to_value(&update) else {
            return false;
        };
        if self.legacy_shape {
            super::legacy::strip(&mut body);
        }
        self.updates.pending.push_back(QueuedUpdate {
            id,
            body,
            in_flight: false,
            attempts: 0,
            avoid: None,
            not_before: None,
        });
        true
    }

    /// Queues a raw update body (a recorded one) under the next `update_id`; returns the id
    /// given. Not filtered by `allowed_updates`: the test chose to deliver it, and a newer
    /// server's new kinds are exactly what the client has never asked for by name.
    /// The caller notifies `Shared::changed`.
    pub(crate) fn emit_raw(&mut self, mut body: Value) -> Option<u32> {
        let map = body.as_object_mut()?;
        let id = self.updates.next_id;
        self.updates.next_id = self.updates.next_id.wrapping_add(1);
        map.insert("update_id".into(), Value::from(id));
        self.updates.pending.push_back(QueuedUpdate {
            id,
            body,
            in_flight: false,
            attempts: 0,
            avoid: None,
            not_before: None,
        });
        Some(id)
    }

    /// One pass of `getUpdates`: `Ok(Some(list))` to answer now, `Ok(None)` to keep waiting.
    pub(crate) fn poll(&mut self, p: &Params, may_wait: bool) -> Result<Option<Value>, ApiError> {
        if self.webhook.is_some() {
            return Err(ApiError::conflict(
                "can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
            ));
        }
        if let Some(list) = p.typed::<Vec<String>>("allowed_updates")? {
            self.allowed_updates = Some(list);
        }
        // An update is confirmed by asking for a higher offset; a negative offset keeps
        // only the last |offset| updates.
        match p.int("offset")? {
            Some(o) if o > 0 => self.updates.pending.retain(|u| i64::from(u.id) >= o),
            Some(o) if o < 0 => {
                let keep = usize::try_from(o.unsigned_abs()).unwrap_or(usize::MAX);
                let len = self.updates.pending.len();
                if len > keep {
                    self.updates.pending.drain(..len - keep);
                }
            }
            _ => {}
        }
        let limit = p.int("limit")?.unwrap_or(100).clamp(1, 100);
        let limit = usize::try_from(limit).unwrap_or(100);
        let batch: Vec<Value> = self
            .updates
            .pending
            .iter()
            .take(limit)
            .map(|u| u.body.clone())
            .collect();
        if batch.is_empty() && may_wait {
            Ok(None)
        } else {
            Ok(Some(Value::Array(batch)))
        }
    }
}
