//! `/help`: what the bot does, how to set it up, and a button to add it to a group.

use gmbot_core::telegram::InlineButton;

use super::reply::{escape, reply};
use crate::app::App;
use crate::handlers::HandleError;
use crate::update::Message;

/// The help text and its "Add me to a group" button, for a bot called `username`.
pub(crate) fn help_message(username: &str) -> (String, Vec<Vec<InlineButton>>) {
    let name = escape(username.trim_start_matches('@'));
    let html = format!(
        "<b>I keep a group for the subscribers of your channel.</b>\n\
         In a protected group, a member who writes must have joined the channel(s) linked to it. \
         If not, I delete the message, mute them and show a <b>Join</b> button; \
         they can write again as soon as they join. Edited messages are checked too, \
         and posts on behalf of other channels are deleted (the channel is banned here). \
         When many non-members write at once (a raid), I delete in bulk and show one warning \
         for all of them, and tell the owner.\n\
         With the <b>join gate</b> on (/settings), I answer the group's join requests: \
         subscribers get in at once; anyone else gets a private message with the Join buttons \
         and a few minutes to join (10 by default), then the request is declined. \
         With <b>private warnings</b> on, a warning is shown to its member only.\n\n\
         <b>Setup</b>\n\
         1. Add me to your group as an administrator with <i>Delete messages</i> and <i>Ban users</i>.\n\
         2. Make me an administrator of your channel (no extra rights needed; \
         for a private channel, <i>Invite users via link</i>). \
         For the join gate I also need <i>Invite users via link</i> in the group.\n\
         3. In the group, send <code>/protect @yourchannel</code>.\n\n\
         <b>Commands for group admins</b>\n\
         /protect @channel … — require joining the channel(s)\n\
         /unprotect — stop, and unmute everyone I muted\n\
         /status — linked channels, my rights, who is muted, join requests waiting, verifications and cache hits, a raid going on\n\
         /settings — what happens to non-members, the join gate and its wait, private warnings\n\
         (/unprotect and /settings: the group's creator, or an admin with <i>Ban users</i>)\n\n\
         Address me as /help@{name} in groups with several bots."
    );
    let buttons = vec![vec![InlineButton::Url {
        text: "Add me to a group".into(),
        url: format!(
            "https://t.me/{}?startgroup=true",
            username.trim_start_matches('@')
        ),
    }]];
    (html, buttons)
}

/// Answers `/help`, in private or in a group, to anybody.
pub(crate) async fn run(app: &App, msg: &Message) -> Result<(), HandleError> {
    let (html, buttons) = help_message(&app.me().username);
    reply(app, msg, html, buttons).await
}
