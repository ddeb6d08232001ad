//! Rows of an MTProto session kept in the store: home data centre, DC addresses with their
//! authorization keys, the update state, cached peers, and the lease that keeps one session in
//! one connection pool at a time.
//!
//! The frontend (grammers) owns the meaning of these values; the store keeps them as plain
//! data, so no second database file is needed next to GMBot's own. An authorization key lets
//! whoever holds it act as the bot: the database must be protected like the bot token.

use serde::{Deserialize, Serialize};

use crate::domain::UnixTime;

/// One data centre: its addresses and, once a connection was made, the permanent auth key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MtprotoDcOption {
    /// Data centre id (1–5 for the primary ones).
    pub id: i32,
    /// `a.b.c.d:port`.
    pub ipv4: String,
    /// `[addr]:port`.
    pub ipv6: String,
    /// The 256-byte permanent authorization key, hex-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_key_hex: Option<String>,
}

impl std::fmt::Debug for MtprotoDcOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtprotoDcOption")
            .field("id", &self.id)
            .field("ipv4", &self.ipv4)
            .field("ipv6", &self.ipv6)
            .field("auth_key", &self.auth_key_hex.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

/// The account's update state (`pts`, `qts`, `date`, `seq`, and each channel's `pts`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MtprotoUpdates {
    /// Primary persistent timestamp.
    pub pts: i32,
    /// Secondary persistent timestamp.
    pub qts: i32,
    /// Auxiliary date.
    pub date: i32,
    /// Auxiliary sequence.
    pub seq: i32,
    /// (channel bare id, pts) pairs.
    pub channels: Vec<(i64, i32)>,
}

/// A session's small, whole-row data (peers are stored apart: there may be many).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MtprotoSession {
    /// The session's name (one per bot, or per instance).
    pub name: String,
    /// The home data centre; 0 when not known yet.
    pub home_dc: i32,
    /// Known data centres; an empty list means the frontend's built-in defaults.
    pub dc_options: Vec<MtprotoDcOption>,
    /// The update state.
    pub updates: MtprotoUpdates,
}

/// A cached peer: what is needed to address it again (its access hash) and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtprotoPeer {
    /// The Bot API dialog id (users positive, chats negative, channels `-100…`).
    pub peer_id: i64,
    /// The access hash; `None` when not known.
    pub access_hash: Option<i64>,
    /// A bot account; `None` when not known (users only).
    pub is_bot: Option<bool>,
    /// The signed-in account itself; `None` when not known (users only).
    pub is_self: Option<bool>,
    /// `broadcast`, `megagroup`, `gigagroup`, `community` (channels only).
    pub channel_kind: Option<String>,
}

/// Whether a lease was granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionLease {
    /// This holder has the session until the time asked for.
    Granted,
    /// Another holder has it.
    HeldBy {
        /// Who has it (`host:pid` by convention).
        holder: String,
        /// Until when, unless renewed.
        until: UnixTime,
    },
}
