//! The update journal, the runtime's side: how an accepted update is written to the store
//! before it is handled (at a stop, for what was not drained; by long polling, for a backlog
//! it confirms to Telegram), and read back at the next start.
//!
//! The payload is the transport-neutral [`Update`] as JSON inside a versioned envelope
//! (`{"v":1,"update":…}`), so a later version can tell what it reads. A row this version cannot
//! read is logged with its `update_id` and the reason, counted, and dropped: keeping it would
//! replay a failure at every start.

use serde::{Deserialize, Serialize};

use gmbot_core::domain::{JournaledUpdate, UnixTime};

use crate::update::Update;

/// The envelope version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// How long a start holds the updates it took back (another instance starting meanwhile does
/// not take them; if this one stops before handling them, its stop gives them back).
pub const HOLD_SECONDS: i64 = 600;

/// Rows taken back per store call at start.
pub const TAKE_BATCH: usize = 500;

#[derive(Serialize)]
struct EnvelopeRef<'a> {
    v: u32,
    update: &'a Update,
}

#[derive(Deserialize)]
struct Envelope {
    v: u32,
    update: serde_json::Value,
}

/// The row that keeps `update`.
pub fn encode(update: &Update, received_at: UnixTime) -> JournaledUpdate {
    let payload = serde_json::to_string(&EnvelopeRef {
        v: FORMAT_VERSION,
        update,
    })
    // Plain data (strings, integers, booleans, enums) always serialises.
    .unwrap_or_else(|e| format!("{{\"v\":0,\"error\":\"{e}\"}}"));
    JournaledUpdate {
        update_id: update.id,
        payload,
        received_at,
    }
}

/// Reads a kept update back; the error names what is wrong with the row.
pub fn decode(row: &JournaledUpdate) -> Result<Update, String> {
    let envelope: Envelope =
        serde_json::from_str(&row.payload).map_err(|e| format!("not a journal entry: {e}"))?;
    if envelope.v != FORMAT_VERSION {
        return Err(format!(
            "written in format {} (this version reads {FORMAT_VERSION})",
            envelope.v
        ));
    }
    let update: Update = serde_json::from_value(envelope.update)
        .map_err(|e| format!("the update does not decode: {e}"))?;
    if update.id != row.update_id {
        return Err(format!(
            "the row is for update {} but holds update {}",
            row.update_id, update.id
        ));
    }
    Ok(update)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::{Chat, ChatKind, Message, UpdateKind, User};
    use gmbot_core::domain::{ChatId, MessageId, UserId};

    fn message(id: i64) -> Update {
        Update {
            id,
            kind: UpdateKind::Message(Message {
                chat: Chat {
                    id: ChatId(-100_123),
                    kind: ChatKind::Supergroup,
                    title: Some("Group <&>".into()),
                    username: None,
                },
                id: MessageId(77),
                date: UnixTime(1_700_000_000),
                from: Some(User {
                    id: UserId(42),
                    is_bot: false,
                    first_name: "Ünï \"quoted\"".into(),
                    last_name: None,
                    username: Some("someone".into()),
                }),
                sender_chat: None,
                is_automatic_forward: false,
                text: Some("hello\nworld".into()),
                new_chat_members: vec![],
                left_chat_member: None,
                migrate_to_chat_id: None,
                migrate_from_chat_id: None,
            }),
        }
    }

    #[test]
    fn an_update_reads_back_as_it_was_written() {
        let u = message(9);
        let row = encode(&u, UnixTime(5));
        assert_eq!(row.update_id, 9);
        assert_eq!(decode(&row), Ok(u));
        let other = Update {
            id: 10,
            kind: UpdateKind::Other("poll"),
        };
        assert_eq!(decode(&encode(&other, UnixTime(5))), Ok(other));
        let newer = JournaledUpdate {
            update_id: 11,
            payload: r#"{"v":1,"update":{"id":11,"kind":{"Other":"a_kind_from_the_future"}}}"#
                .into(),
            received_at: UnixTime(5),
        };
        assert_eq!(
            decode(&newer).map(|u| u.kind),
            Ok(UpdateKind::Other("other"))
        );
    }

    /// Found by the fuzz corpus (`fuzz/corpus/update_decode/`, from the recorded newer
    /// server's updates): a member update with a status newer than this version is
    /// `Other("chat_member")`, which the journal read back as `Other("other")`.
    #[test]
    fn a_member_update_of_a_newer_status_reads_back_unchanged() {
        for name in ["chat_member", "my_chat_member"] {
            let kept = Update {
                id: 12,
                kind: UpdateKind::Other(name),
            };
            assert_eq!(decode(&encode(&kept, UnixTime(5))), Ok(kept));
        }
    }

    #[test]
    fn unreadable_rows_say_why() {
        let row = |payload: &str| JournaledUpdate {
            update_id: 9,
            payload: payload.into(),
            received_at: UnixTime(0),
        };
        assert!(decode(&row("garbage"))
            .unwrap_err()
            .contains("not a journal entry"));
        assert!(decode(&row(r#"{"v":2,"update":{}}"#))
            .unwrap_err()
            .contains("format 2"));
        assert!(decode(&row(r#"{"v":1,"update":{"id":9}}"#))
            .unwrap_err()
            .contains("does not decode"));
        let mut wrong = encode(&message(8), UnixTime(0));
        wrong.update_id = 9;
        assert!(decode(&wrong).unwrap_err().contains("holds update 8"));
    }
}
