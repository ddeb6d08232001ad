//! Answers in the shape of an older Bot API server (7.x): the fields later versions added are
//! left out, as a self-hosted `telegram-bot-api` that was not upgraded, or Telegram itself a
//! version behind, sends them (TELEGRAM.md, "Older and newer servers").
//!
//! Rendering goes through the newest `frankenstein` structs, so the older shape is made by
//! removing keys from the rendered JSON, everywhere in an answer or an update.

use serde_json::Value;

/// Keys that Bot API 7.x did not send, with the version that added them.
const NEWER_KEYS: [&str; 8] = [
    // ChatMemberAdministrator, Bot API 10.x.
    "can_send_welcome_messages",
    // ChatMemberAdministrator, Bot API 9.2.
    "can_manage_direct_messages",
    // ChatMemberAdministrator, Bot API 10.x (member tags).
    "can_manage_tags",
    // ChatMemberRestricted / ChatPermissions, Bot API 10.x.
    "can_edit_tag",
    // ChatMemberRestricted / ChatPermissions: not sent by the 7.x servers this mode stands for.
    "can_react_to_messages",
    // ChatMemberMember / ChatMemberRestricted, Bot API 10.x.
    "tag",
    // ChatFullInfo, Bot API 9.0.
    "accepted_gift_types",
    // ChatFullInfo, Bot API 9.x (paid messages).
    "paid_message_star_count",
];

/// Removes every newer key from `value`, at any depth.
pub(crate) fn strip(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for key in NEWER_KEYS {
                map.remove(key);
            }
            map.values_mut().for_each(strip);
        }
        Value::Array(items) => items.iter_mut().for_each(strip),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strips_at_every_depth() {
        let mut v = json!({
            "ok": true,
            "result": [{"status": "administrator", "can_send_welcome_messages": false,
                        "user": {"id": 1, "tag": "x"}, "can_delete_messages": true}]
        });
        strip(&mut v);
        assert_eq!(
            v,
            json!({"ok": true, "result": [{"status": "administrator", "user": {"id": 1},
                   "can_delete_messages": true}]})
        );
    }
}
