//! Membership changes and the updates Telegram emits for them: `chat_member` for others
//! (only in chats where the bot is an administrator, and only if `chat_member` is in
//! `allowed_updates`) and `my_chat_member` for the bot itself.

use frankenstein::types::ChatMemberUpdated;
use frankenstein::updates::UpdateContent;

use super::member::MemberState;
use super::render;
use super::world::{now, World};

impl World {
    /// Sets `user`'s status in `chat` and emits the update Telegram would send.
    /// Returns whether anything changed. Unknown chats are ignored.
    pub(crate) fn set_member(
        &mut self,
        chat: i64,
        user: i64,
        new: MemberState,
        actor: i64,
    ) -> bool {
        let at = now();
        let bot = self.bot_id();
        let Some(c) = self.chats.get_mut(&chat) else {
            return false;
        };
        let old = c.member(user, at);
        let bot_was_admin = c.member(bot, at).is_admin();
        c.members.insert(user, new);
        c.members_version += 1;
        if old == new {
            return false;
        }
        let Some(c) = self.chats.get(&chat) else {
            return false;
        };
        let bot_is_admin = c.member(bot, at).is_admin();
        let target = self.user_or_placeholder(user);
        let update = ChatMemberUpdated::builder()
            .chat(render::chat(c))
            .from(render::user(&self.user_or_placeholder(actor)))
            .date(u64::try_from(at).unwrap_or(0))
            .old_chat_member(render::member(&target, old))
            .new_chat_member(render::member(&target, new))
            .build();
        if user == bot {
            self.emit(UpdateContent::MyChatMember(update));
        } else if bot_is_admin || bot_was_admin {
            self.emit(UpdateContent::ChatMember(update));
        }
        true
    }
}
