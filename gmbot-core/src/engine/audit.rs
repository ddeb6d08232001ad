//! `audit_member`: one member of a batch audit, checked against Telegram rather than the cache.

use std::time::Instant;

use crate::domain::{GroupId, UserId};

use super::context::MessageContext;
use super::decision::Verdict;
use super::error::EngineError;
use super::verify::Lookup;
use super::Engine;

impl Engine {
    /// Verifies a member for an audit: the same checks as [`Engine::verify`] (exemptions,
    /// admins, every linked channel), but each channel is asked of Telegram directly and
    /// the answer refreshes the cache, as [`Engine::recheck`] does; `is_bot` is the
    /// directory's word on the account. The verdict carries no actions: an audit decides
    /// itself what to do about a non-subscriber (only `--apply` mutes).
    pub async fn audit_member(
        &self,
        group: GroupId,
        user: UserId,
        is_bot: bool,
    ) -> Result<Verdict, EngineError> {
        let started = Instant::now();
        let mut ctx = MessageContext::no_message();
        if is_bot {
            ctx = ctx.from_bot();
        }
        let mut result = self.decide(group, user, &ctx, Lookup::Fresh).await;
        if let Ok(verdict) = result.as_mut() {
            verdict.actions.clear();
        }
        self.finish(group, user, result, started)
    }
}
