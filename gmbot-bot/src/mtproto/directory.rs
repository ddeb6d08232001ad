//! [`MemberDirectory`] over MTProto: `channels.getParticipants`, 200 members a call.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use gmbot_core::audit::{DirectoryCursor, DirectoryQuery, MemberDirectory, MemberPage, PAGE_LIMIT};
use gmbot_core::domain::GroupId;
use gmbot_core::telegram::{TelegramError, TelegramResult};
use grammers_client::session::types::{PeerAuth, PeerId, PeerInfo, PeerKind};
use grammers_client::session::Session as _;
use grammers_client::{tl, Client};

use super::convert;
use super::session::StoreSession;

/// Lists a supergroup's members through a signed-in grammers [`Client`].
///
/// The group's access hash is looked up once (`channels.getChannels` with hash 0, which a
/// bot may use for a chat it is in) and cached in the session. The calls here are raw:
/// budgets, `FLOOD_WAIT` pauses and retries are the dispatcher's (the audit calls through
/// its bulk lane), and the connection's own retry policy is off.
pub struct MtprotoDirectory {
    client: Client,
    session: std::sync::Arc<StoreSession>,
    hashes: Mutex<HashMap<i64, i64>>,
}

impl std::fmt::Debug for MtprotoDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtprotoDirectory").finish_non_exhaustive()
    }
}

impl MtprotoDirectory {
    /// A directory on a signed-in client and the session it uses.
    pub fn new(client: Client, session: std::sync::Arc<StoreSession>) -> Self {
        Self {
            client,
            session,
            hashes: Mutex::new(HashMap::new()),
        }
    }

    async fn input_channel(&self, group: GroupId) -> TelegramResult<tl::enums::InputChannel> {
        let peer = PeerId::from_bot_api_dialog_id(group.get())
            .filter(|p| p.kind() == PeerKind::Channel)
            .ok_or_else(|| {
                TelegramError::BadRequest(format!(
                    "group {group} is not a supergroup: only supergroups (ids -100…) can be listed"
                ))
            })?;
        let bare = peer.bare_id().unwrap_or(0);
        let cached = self
            .hashes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&bare)
            .copied();
        let hash = match cached {
            Some(h) => h,
            None => {
                let stored = self
                    .session
                    .peer(peer)
                    .await
                    .map_err(|e| TelegramError::Network(e.to_string()))?
                    .and_then(|p| p.auth())
                    .map(PeerAuth::hash);
                let hash = match stored {
                    Some(h) => h,
                    None => self.resolve_hash(bare).await?,
                };
                self.hashes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(bare, hash);
                hash
            }
        };
        Ok(tl::enums::InputChannel::Channel(tl::types::InputChannel {
            channel_id: bare,
            access_hash: hash,
        }))
    }

    async fn resolve_hash(&self, bare: i64) -> TelegramResult<i64> {
        let chats = self
            .client
            .invoke(&tl::functions::channels::GetChannels {
                id: vec![tl::enums::InputChannel::Channel(tl::types::InputChannel {
                    channel_id: bare,
                    access_hash: 0,
                })],
            })
            .await
            .map_err(convert::invocation_error)?;
        let hash = convert::channel_access_hash(&chats, bare).ok_or_else(|| {
            TelegramError::ChatNotFound(format!(
                "channels.getChannels did not return channel {bare}"
            ))
        })?;
        let info = PeerInfo::Channel {
            id: bare,
            auth: Some(PeerAuth::from_hash(hash)),
            kind: None,
        };
        if let Err(e) = self.session.cache_peer(info).await {
            log::warn!(error:display = e; "cannot cache the group's access hash");
        }
        Ok(hash)
    }
}

#[async_trait]
impl MemberDirectory for MtprotoDirectory {
    async fn page(&self, group: GroupId, cursor: &DirectoryCursor) -> TelegramResult<MemberPage> {
        let channel = self.input_channel(group).await?;
        let filter = match &cursor.query {
            DirectoryQuery::Recent => {
                tl::enums::ChannelParticipantsFilter::ChannelParticipantsRecent
            }
            DirectoryQuery::Search(q) => {
                tl::enums::ChannelParticipantsFilter::ChannelParticipantsSearch(
                    tl::types::ChannelParticipantsSearch { q: q.clone() },
                )
            }
        };
        let answer = self
            .client
            .invoke(&tl::functions::channels::GetParticipants {
                channel,
                filter,
                offset: i32::try_from(cursor.offset).unwrap_or(i32::MAX),
                limit: i32::try_from(PAGE_LIMIT).unwrap_or(200),
                hash: 0,
            })
            .await
            .map_err(convert::invocation_error)?;
        convert::member_page(answer)
    }
}
