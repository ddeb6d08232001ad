//! Chat membership as Telegram models it: statuses, administrator rights and member permissions.

use frankenstein::types::ChatPermissions;

/// Rights of an administrator (Bot API `ChatMemberAdministrator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdminRights {
    /// `can_manage_chat`.
    pub can_manage_chat: bool,
    /// `can_delete_messages`.
    pub can_delete_messages: bool,
    /// `can_restrict_members`.
    pub can_restrict_members: bool,
    /// `can_promote_members`.
    pub can_promote_members: bool,
    /// `can_change_info`.
    pub can_change_info: bool,
    /// `can_invite_users`.
    pub can_invite_users: bool,
    /// `can_post_messages` (channels).
    pub can_post_messages: bool,
    /// `can_edit_messages` (channels).
    pub can_edit_messages: bool,
    /// `can_pin_messages`.
    pub can_pin_messages: bool,
    /// `is_anonymous`.
    pub is_anonymous: bool,
}

impl AdminRights {
    /// Every right.
    pub fn full() -> Self {
        Self {
            can_manage_chat: true,
            can_delete_messages: true,
            can_restrict_members: true,
            can_promote_members: true,
            can_change_info: true,
            can_invite_users: true,
            can_post_messages: true,
            can_edit_messages: true,
            can_pin_messages: true,
            is_anonymous: false,
        }
    }

    /// What a guard bot needs in a group: delete, restrict, invite.
    pub fn moderator() -> Self {
        Self {
            can_manage_chat: true,
            can_delete_messages: true,
            can_restrict_members: true,
            can_invite_users: true,
            ..Self::default()
        }
    }

    /// An administrator with no right beyond `can_manage_chat` (what is left after a demotion
    /// that keeps the admin title).
    pub fn bare() -> Self {
        Self {
            can_manage_chat: true,
            ..Self::default()
        }
    }
}

/// What a member may do (Bot API `ChatPermissions`); also a group's default permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions {
    /// `can_send_messages` (text, contacts, locations, …).
    pub can_send_messages: bool,
    /// `can_send_audios`.
    pub can_send_audios: bool,
    /// `can_send_documents`.
    pub can_send_documents: bool,
    /// `can_send_photos`.
    pub can_send_photos: bool,
    /// `can_send_videos`.
    pub can_send_videos: bool,
    /// `can_send_video_notes`.
    pub can_send_video_notes: bool,
    /// `can_send_voice_notes`.
    pub can_send_voice_notes: bool,
    /// `can_send_polls`.
    pub can_send_polls: bool,
    /// `can_send_other_messages` (stickers, GIFs, games, inline bots).
    pub can_send_other_messages: bool,
    /// `can_add_web_page_previews`.
    pub can_add_web_page_previews: bool,
    /// `can_react_to_messages`.
    pub can_react_to_messages: bool,
    /// `can_change_info`.
    pub can_change_info: bool,
    /// `can_invite_users`.
    pub can_invite_users: bool,
    /// `can_pin_messages`.
    pub can_pin_messages: bool,
    /// `can_manage_topics`.
    pub can_manage_topics: bool,
}

impl Permissions {
    /// Nothing allowed (a full mute).
    pub fn none() -> Self {
        Self::default()
    }

    /// Every permission on.
    pub fn all() -> Self {
        Self {
            can_send_messages: true,
            can_send_audios: true,
            can_send_documents: true,
            can_send_photos: true,
            can_send_videos: true,
            can_send_video_notes: true,
            can_send_voice_notes: true,
            can_send_polls: true,
            can_send_other_messages: true,
            can_add_web_page_previews: true,
            can_react_to_messages: true,
            can_change_info: true,
            can_invite_users: true,
            can_pin_messages: true,
            can_manage_topics: true,
        }
    }

    /// A typical group's defaults: members may send anything and invite, but not change
    /// the group's info, pin or manage topics.
    pub fn group_default() -> Self {
        Self {
            can_change_info: false,
            can_pin_messages: false,
            can_manage_topics: false,
            ..Self::all()
        }
    }

    /// Reads Telegram's `ChatPermissions`. Absent fields are `false`. Without
    /// `use_independent_chat_permissions`, Telegram lets some permissions imply others
    /// (Bot API `restrictChatMember`: polls, other messages and link previews imply text
    /// messages; other messages and previews imply every media kind).
    pub fn from_api(p: &ChatPermissions, independent: bool) -> Self {
        let f = |v: Option<bool>| v.unwrap_or(false);
        let mut out = Self {
            can_send_messages: f(p.can_send_messages),
            can_send_audios: f(p.can_send_audios),
            can_send_documents: f(p.can_send_documents),
            can_send_photos: f(p.can_send_photos),
            can_send_videos: f(p.can_send_videos),
            can_send_video_notes: f(p.can_send_video_notes),
            can_send_voice_notes: f(p.can_send_voice_notes),
            can_send_polls: f(p.can_send_polls),
            can_send_other_messages: f(p.can_send_other_messages),
            can_add_web_page_previews: f(p.can_add_web_page_previews),
            can_react_to_messages: f(p.can_react_to_messages),
            can_change_info: f(p.can_change_info),
            can_invite_users: f(p.can_invite_users),
            can_pin_messages: f(p.can_pin_messages),
            can_manage_topics: f(p.can_manage_topics),
        };
        if !independent {
            if out.can_send_other_messages || out.can_add_web_page_previews {
                out.can_send_audios = true;
                out.can_send_documents = true;
                out.can_send_photos = true;
                out.can_send_videos = true;
                out.can_send_video_notes = true;
                out.can_send_voice_notes = true;
            }
            let any_media = out.can_send_audios
                || out.can_send_documents
                || out.can_send_photos
                || out.can_send_videos
                || out.can_send_video_notes
                || out.can_send_voice_notes
                || out.can_send_polls;
            if any_media || out.can_send_other_messages || out.can_add_web_page_previews {
                out.can_send_messages = true;
            }
        }
        out
    }

    /// Writes Telegram's `ChatPermissions` with every field present.
    pub fn to_api(self) -> ChatPermissions {
        ChatPermissions {
            can_send_messages: Some(self.can_send_messages),
            can_send_audios: Some(self.can_send_audios),
            can_send_documents: Some(self.can_send_documents),
            can_send_photos: Some(self.can_send_photos),
            can_send_videos: Some(self.can_send_videos),
            can_send_video_notes: Some(self.can_send_video_notes),
            can_send_voice_notes: Some(self.can_send_voice_notes),
            can_send_polls: Some(self.can_send_polls),
            can_send_other_messages: Some(self.can_send_other_messages),
            can_add_web_page_previews: Some(self.can_add_web_page_previews),
            can_react_to_messages: Some(self.can_react_to_messages),
            can_edit_tag: Some(false),
            can_change_info: Some(self.can_change_info),
            can_invite_users: Some(self.can_invite_users),
            can_pin_messages: Some(self.can_pin_messages),
            can_manage_topics: Some(self.can_manage_topics),
        }
    }

    /// Both sets allow the action (a restricted member is bounded by the group's defaults too).
    pub fn intersect(self, other: Self) -> Self {
        Self {
            can_send_messages: self.can_send_messages && other.can_send_messages,
            can_send_audios: self.can_send_audios && other.can_send_audios,
            can_send_documents: self.can_send_documents && other.can_send_documents,
            can_send_photos: self.can_send_photos && other.can_send_photos,
            can_send_videos: self.can_send_videos && other.can_send_videos,
            can_send_video_notes: self.can_send_video_notes && other.can_send_video_notes,
            can_send_voice_notes: self.can_send_voice_notes && other.can_send_voice_notes,
            can_send_polls: self.can_send_polls && other.can_send_polls,
            can_send_other_messages: self.can_send_other_messages && other.can_send_other_messages,
            can_add_web_page_previews: self.can_add_web_page_previews
                && other.can_add_web_page_previews,
            can_react_to_messages: self.can_react_to_messages && other.can_react_to_messages,
            can_change_info: self.can_change_info && other.can_change_info,
            can_invite_users: self.can_invite_users && other.can_invite_users,
            can_pin_messages: self.can_pin_messages && other.can_pin_messages,
            can_manage_topics: self.can_manage_topics && other.can_manage_topics,
        }
    }
}

/// A user's status in one chat (Bot API `ChatMember.status` and its payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// The chat's owner.
    Creator {
        /// Posts anonymously (as the group).
        is_anonymous: bool,
    },
    /// An administrator with these rights.
    Administrator(AdminRights),
    /// An ordinary member.
    Member,
    /// Restricted by an admin.
    Restricted {
        /// Still in the chat (`false`: restricted while outside, e.g. after leaving).
        is_member: bool,
        /// What the member may do.
        permissions: Permissions,
        /// Unix time the restriction ends; 0 = forever.
        until: i64,
    },
    /// Not in the chat.
    Left,
    /// Banned.
    Kicked {
        /// Unix time the ban ends; 0 = forever.
        until: i64,
    },
}

impl MemberState {
    /// Owner or administrator.
    pub fn is_admin(&self) -> bool {
        matches!(self, Self::Creator { .. } | Self::Administrator(_))
    }

    /// In the chat (Telegram's notion of subscribed for channels).
    pub fn is_present(&self) -> bool {
        match self {
            Self::Creator { .. } | Self::Administrator(_) | Self::Member => true,
            Self::Restricted { is_member, .. } => *is_member,
            Self::Left | Self::Kicked { .. } => false,
        }
    }

    /// The administrator rights this status carries (an owner has them all).
    pub fn rights(&self) -> Option<AdminRights> {
        match self {
            Self::Creator { .. } => Some(AdminRights::full()),
            Self::Administrator(r) => Some(*r),
            _ => None,
        }
    }

    /// Telegram's status name.
    pub fn status_name(&self) -> &'static str {
        match self {
            Self::Creator { .. } => "creator",
            Self::Administrator(_) => "administrator",
            Self::Member => "member",
            Self::Restricted { .. } => "restricted",
            Self::Left => "left",
            Self::Kicked { .. } => "kicked",
        }
    }

    /// Applies time: a restriction or ban whose end has passed is lifted.
    pub fn settle(self, now: i64) -> Self {
        match self {
            Self::Restricted {
                is_member, until, ..
            } if until > 0 && now >= until => {
                if is_member {
                    Self::Member
                } else {
                    Self::Left
                }
            }
            Self::Kicked { until } if until > 0 && now >= until => Self::Left,
            other => other,
        }
    }
}
