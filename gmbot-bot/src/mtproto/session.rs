//! grammers' `Session` on GMBot's own store: no second database file next to ours.
//!
//! The home DC, the DC options (with their permanent auth keys) and the update state are
//! small: they live in memory, where grammers reads them on every request, and every change
//! is written through to `mtproto_sessions`. Peers (access hashes) live in `mtproto_peers`
//! and are read from the store when grammers asks; only the signed-in account is kept in
//! memory too. The audit lists members with raw `channels.getParticipants` calls and caches
//! none of them, so the peer table holds a handful of rows, not a group's members.
//!
//! grammers' methods cannot handle storage errors well ("currently infallible", its
//! `Session` docs): a failed write is returned to the call that caused it, and logged.

use std::collections::HashMap;
use std::net::{SocketAddrV4, SocketAddrV6};
use std::sync::{Arc, Mutex, MutexGuard};

use gmbot_core::domain::UnixTime;
use gmbot_core::store::{
    MtprotoDcOption, MtprotoPeer, MtprotoSession, MtprotoUpdates, Store, StoreError,
};
use grammers_client::session::types::{
    ChannelKind, ChannelState, DcOption, PeerAuth, PeerId, PeerInfo, PeerKind, UpdateState,
    UpdatesState,
};
use grammers_client::session::{BoxFuture, Session, SessionData};

/// A session storage failure.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The store failed.
    #[error("MTProto session storage: {0}")]
    Store(#[from] StoreError),
    /// A stored value is not what grammers can use.
    #[error("MTProto session `{name}` is corrupt: {detail}")]
    Corrupt {
        /// The session.
        name: String,
        /// What is wrong.
        detail: String,
    },
}

struct State {
    home_dc: i32,
    dc_options: HashMap<i32, DcOption>,
    updates: UpdatesState,
    me: Option<PeerInfo>,
}

/// [`Session`] backed by a [`Store`]. Build it with [`StoreSession::load`].
pub struct StoreSession {
    store: Arc<dyn Store>,
    name: String,
    state: Mutex<State>,
}

impl std::fmt::Debug for StoreSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSession")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl StoreSession {
    /// Loads the session `name` (an unknown one starts from grammers' defaults: DC 2, the
    /// five primary DCs' addresses, no keys).
    pub async fn load(store: Arc<dyn Store>, name: &str) -> Result<Self, SessionError> {
        let defaults = SessionData::default();
        let mut state = State {
            home_dc: defaults.home_dc,
            dc_options: defaults.dc_options,
            updates: UpdatesState::default(),
            me: None,
        };
        if let Some(stored) = store.mtproto_session(name).await? {
            if stored.home_dc > 0 {
                state.home_dc = stored.home_dc;
            }
            for dc in &stored.dc_options {
                let option = dc_from_row(dc).map_err(|detail| SessionError::Corrupt {
                    name: name.to_owned(),
                    detail,
                })?;
                state.dc_options.insert(option.id, option);
            }
            state.updates = updates_from_row(&stored.updates);
        }
        state.me = store
            .mtproto_self(name)
            .await?
            .and_then(|p| peer_from_row(&p));
        Ok(Self {
            store,
            name: name.to_owned(),
            state: Mutex::new(state),
        })
    }

    /// The session's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn snapshot(&self) -> MtprotoSession {
        let s = self.lock();
        let mut dc_options: Vec<MtprotoDcOption> = s.dc_options.values().map(dc_to_row).collect();
        dc_options.sort_by_key(|d| d.id);
        MtprotoSession {
            name: self.name.clone(),
            home_dc: s.home_dc,
            dc_options,
            updates: MtprotoUpdates {
                pts: s.updates.pts,
                qts: s.updates.qts,
                date: s.updates.date,
                seq: s.updates.seq,
                channels: s.updates.channels.iter().map(|c| (c.id, c.pts)).collect(),
            },
        }
    }

    async fn persist(&self) -> Result<(), SessionError> {
        let snapshot = self.snapshot();
        self.store
            .save_mtproto_session(&snapshot, UnixTime::now())
            .await
            .inspect_err(|e| log::warn!(session = self.name.as_str(), error:display = e; "cannot save the MTProto session"))?;
        Ok(())
    }
}

fn dc_to_row(dc: &DcOption) -> MtprotoDcOption {
    MtprotoDcOption {
        id: dc.id,
        ipv4: dc.ipv4.to_string(),
        ipv6: dc.ipv6.to_string(),
        auth_key_hex: dc.auth_key.map(|k| hex(&k)),
    }
}

fn dc_from_row(row: &MtprotoDcOption) -> Result<DcOption, String> {
    let ipv4: SocketAddrV4 = row.ipv4.parse().map_err(|_| {
        format!(
            "DC {}: `{}` is not an IPv4 address and port",
            row.id, row.ipv4
        )
    })?;
    let ipv6: SocketAddrV6 = row.ipv6.parse().map_err(|_| {
        format!(
            "DC {}: `{}` is not an IPv6 address and port",
            row.id, row.ipv6
        )
    })?;
    let auth_key = match &row.auth_key_hex {
        None => None,
        Some(h) => Some(
            unhex(h)
                .and_then(|v| <[u8; 256]>::try_from(v).ok())
                .ok_or_else(|| {
                    format!("DC {}: the auth key is not 256 hex-encoded bytes", row.id)
                })?,
        ),
    };
    Ok(DcOption {
        id: row.id,
        ipv4,
        ipv6,
        auth_key,
    })
}

fn updates_from_row(u: &MtprotoUpdates) -> UpdatesState {
    UpdatesState {
        pts: u.pts,
        qts: u.qts,
        date: u.date,
        seq: u.seq,
        channels: u
            .channels
            .iter()
            .map(|&(id, pts)| ChannelState { id, pts })
            .collect(),
    }
}

fn channel_kind_name(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Broadcast => "broadcast",
        ChannelKind::Megagroup => "megagroup",
        ChannelKind::Gigagroup => "gigagroup",
        ChannelKind::Community => "community",
    }
}

/// A grammers peer as a stored row.
pub(crate) fn peer_to_row(info: &PeerInfo) -> MtprotoPeer {
    let peer_id = info.id().bot_api_dialog_id().unwrap_or(0);
    match info {
        PeerInfo::User {
            auth, bot, is_self, ..
        } => MtprotoPeer {
            peer_id,
            access_hash: auth.map(PeerAuth::hash),
            is_bot: *bot,
            is_self: *is_self,
            channel_kind: None,
        },
        PeerInfo::Chat { .. } => MtprotoPeer {
            peer_id,
            access_hash: None,
            is_bot: None,
            is_self: None,
            channel_kind: None,
        },
        PeerInfo::Channel { auth, kind, .. } => MtprotoPeer {
            peer_id,
            access_hash: auth.map(PeerAuth::hash),
            is_bot: None,
            is_self: None,
            channel_kind: kind.map(|k| channel_kind_name(k).to_owned()),
        },
    }
}

/// A stored row as a grammers peer (`None` for an id outside Telegram's ranges).
pub(crate) fn peer_from_row(row: &MtprotoPeer) -> Option<PeerInfo> {
    let id = PeerId::from_bot_api_dialog_id(row.peer_id)?;
    let bare = id.bare_id()?;
    Some(match id.kind() {
        PeerKind::User => PeerInfo::User {
            id: bare,
            auth: row.access_hash.map(PeerAuth::from_hash),
            bot: row.is_bot,
            is_self: row.is_self,
        },
        PeerKind::Chat => PeerInfo::Chat { id: bare },
        PeerKind::Channel => PeerInfo::Channel {
            id: bare,
            auth: row.access_hash.map(PeerAuth::from_hash),
            kind: match row.channel_kind.as_deref() {
                Some("broadcast") => Some(ChannelKind::Broadcast),
                Some("megagroup") => Some(ChannelKind::Megagroup),
                Some("gigagroup") => Some(ChannelKind::Gigagroup),
                Some("community") => Some(ChannelKind::Community),
                _ => None,
            },
        },
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}

impl Session for StoreSession {
    type Error = SessionError;

    fn home_dc_id(&self) -> Result<i32, SessionError> {
        Ok(self.lock().home_dc)
    }

    fn set_home_dc_id(&self, dc_id: i32) -> BoxFuture<'_, Result<(), SessionError>> {
        Box::pin(async move {
            self.lock().home_dc = dc_id;
            self.persist().await
        })
    }

    fn dc_option(&self, dc_id: i32) -> Result<Option<DcOption>, SessionError> {
        Ok(self.lock().dc_options.get(&dc_id).cloned())
    }

    fn set_dc_option(&self, dc_option: &DcOption) -> BoxFuture<'_, Result<(), SessionError>> {
        let dc_option = dc_option.clone();
        Box::pin(async move {
            self.lock().dc_options.insert(dc_option.id, dc_option);
            self.persist().await
        })
    }

    fn peer(&self, peer: PeerId) -> BoxFuture<'_, Result<Option<PeerInfo>, SessionError>> {
        Box::pin(async move {
            let me = self.lock().me.clone();
            if peer == PeerId::self_user() || me.as_ref().is_some_and(|m| m.id() == peer) {
                return Ok(me);
            }
            let Some(id) = peer.bot_api_dialog_id() else {
                return Ok(None);
            };
            Ok(self
                .store
                .mtproto_peer(&self.name, id)
                .await?
                .as_ref()
                .and_then(peer_from_row))
        })
    }

    fn cache_peer(&self, peer: PeerInfo) -> BoxFuture<'_, Result<(), SessionError>> {
        self.cache_peers(vec![peer])
    }

    fn cache_peers(&self, peers: Vec<PeerInfo>) -> BoxFuture<'_, Result<(), SessionError>> {
        Box::pin(async move {
            let mut rows = Vec::with_capacity(peers.len());
            for peer in &peers {
                if let PeerInfo::User {
                    is_self: Some(true),
                    ..
                } = peer
                {
                    let mut state = self.lock();
                    match state.me.as_mut() {
                        Some(me) if me.id() == peer.id() => {
                            me.extend_info(peer);
                        }
                        _ => state.me = Some(peer.clone()),
                    }
                }
                rows.push(peer_to_row(peer));
            }
            self.store.save_mtproto_peers(&self.name, &rows).await?;
            Ok(())
        })
    }

    fn updates_state(&self) -> BoxFuture<'_, Result<UpdatesState, SessionError>> {
        Box::pin(async move { Ok(self.lock().updates.clone()) })
    }

    fn set_update_state(&self, update: UpdateState) -> BoxFuture<'_, Result<(), SessionError>> {
        Box::pin(async move {
            {
                let mut s = self.lock();
                match update {
                    UpdateState::All(all) => s.updates = all,
                    UpdateState::Primary { pts, date, seq } => {
                        s.updates.pts = pts;
                        s.updates.date = date;
                        s.updates.seq = seq;
                    }
                    UpdateState::Secondary { qts } => s.updates.qts = qts,
                    UpdateState::Channel { id, pts } => {
                        s.updates.channels.retain(|c| c.id != id);
                        s.updates.channels.push(ChannelState { id, pts });
                    }
                }
            }
            self.persist().await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let key = [7u8; 256];
        assert_eq!(unhex(&hex(&key)).as_deref(), Some(&key[..]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn peers_round_trip_through_rows() {
        for info in [
            PeerInfo::User {
                id: 42,
                auth: Some(PeerAuth::from_hash(-9)),
                bot: Some(true),
                is_self: Some(false),
            },
            PeerInfo::Chat { id: 12 },
            PeerInfo::Channel {
                id: 2_000_000_001,
                auth: Some(PeerAuth::from_hash(77)),
                kind: Some(ChannelKind::Megagroup),
            },
        ] {
            let row = peer_to_row(&info);
            assert_eq!(peer_from_row(&row), Some(info));
        }
        assert_eq!(
            peer_to_row(&PeerInfo::Channel {
                id: 2_000_000_001,
                auth: None,
                kind: None
            })
            .peer_id,
            -1_002_000_000_001
        );
    }

    #[test]
    fn dc_options_round_trip_and_bad_rows_are_named() {
        let dc = DcOption {
            id: 2,
            ipv4: "149.154.167.41:443".parse().expect("v4"),
            ipv6: "[2001:67c:4e8:f002::a]:443".parse().expect("v6"),
            auth_key: Some([1u8; 256]),
        };
        assert_eq!(dc_from_row(&dc_to_row(&dc)), Ok(dc));
        let bad = MtprotoDcOption {
            id: 3,
            ipv4: "nowhere".into(),
            ipv6: "[::1]:443".into(),
            auth_key_hex: None,
        };
        assert!(dc_from_row(&bad).expect_err("bad").contains("DC 3"));
    }
}
