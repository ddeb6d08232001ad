//! GMBot's domain: plain types with no I/O, shared by the engine, the store and the frontends.

mod channel;
mod group;
mod ids;
mod join_request;
mod journal;
mod membership;
mod owner;
mod restriction;
mod seen;
mod settings;
mod time;

pub use channel::{
    ChannelRef, ChannelRefParseError, ChannelUsername, EnforcedChannel, UsernameParseError,
};
pub use group::{GroupState, ProtectRequest, ProtectedGroup};
pub use ids::{ChannelId, ChatId, GroupId, IdParseError, MessageId, UserId};
pub use join_request::{JoinRequest, JoinRequestState, NewJoinRequest};
pub use journal::JournaledUpdate;
pub use membership::{ChatMemberStatus, Membership, UnknownReason};
pub use owner::Owner;
pub use restriction::{
    LiftReason, NewRestriction, Restriction, RestrictionId, RestrictionKind, RestrictionState,
};
pub use seen::SeenMember;
pub use settings::{
    FailurePolicy, GroupSettings, NonMemberAction, SettingChange, SettingsError,
    DEFAULT_JOIN_WAIT_SECONDS, MAX_ALLOWLIST,
};
pub use time::UnixTime;
