//! Readiness: whether the database and (if configured) Redis answer, each within a timeout.
//!
//! The answer names what failed with a short reason (`timeout`, `unreachable`);
//! the full error, which may quote a host, goes to the log at `warn` only.

use std::time::Duration;

use async_trait::async_trait;
use gmbot_core::cache::{CacheError, LayeredCache, RedisCache};
use gmbot_core::store::Store;
use prometheus::IntGaugeVec;

use super::webhook::HttpReply;

/// A cache that can tell whether its Redis answers.
#[async_trait]
pub trait RedisPing: Send + Sync + 'static {
    /// `PING`: `Ok` when Redis answers now.
    async fn ping(&self) -> Result<(), CacheError>;
}

#[async_trait]
impl RedisPing for LayeredCache {
    async fn ping(&self) -> Result<(), CacheError> {
        LayeredCache::ping(self).await
    }
}

#[async_trait]
impl RedisPing for RedisCache {
    async fn ping(&self) -> Result<(), CacheError> {
        RedisCache::ping(self).await
    }
}

/// Why a dependency failed its probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeFailure {
    /// No answer within the probe timeout.
    Timeout,
    /// It answered with an error (connection refused, authentication, …).
    Unreachable,
}

impl ProbeFailure {
    /// The reason as served in `/ready`'s body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
        }
    }
}

/// The result of one round of probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// The database's probe.
    pub database: Result<(), ProbeFailure>,
    /// Redis' probe, `None` when Redis is not configured.
    pub redis: Option<Result<(), ProbeFailure>>,
}

impl Readiness {
    /// Whether every configured dependency answered.
    pub fn is_ready(&self) -> bool {
        self.database.is_ok() && self.redis.is_none_or(|r| r.is_ok())
    }

    /// Sets `gmbot_dependency_up{dependency}` from this round.
    pub fn record(&self, gauge: &IntGaugeVec) {
        gauge
            .with_label_values(&["database"])
            .set(i64::from(self.database.is_ok()));
        if let Some(redis) = self.redis {
            gauge
                .with_label_values(&["redis"])
                .set(i64::from(redis.is_ok()));
        }
    }

    /// The `/ready` answer: 200 when ready, else 503 naming what failed.
    pub fn reply(&self) -> HttpReply {
        let mut deps = serde_json::Map::new();
        let mut failed = serde_json::Map::new();
        let mut note = |name: &str, result: Result<(), ProbeFailure>| match result {
            Ok(()) => {
                deps.insert(name.to_owned(), "ok".into());
            }
            Err(f) => {
                deps.insert(name.to_owned(), f.as_str().into());
                failed.insert(name.to_owned(), f.as_str().into());
            }
        };
        note("database", self.database);
        if let Some(redis) = self.redis {
            note("redis", redis);
        }
        let body = if failed.is_empty() {
            serde_json::json!({"status": "ready", "dependencies": deps})
        } else {
            serde_json::json!({"status": "not_ready", "failed": failed, "dependencies": deps})
        };
        HttpReply::json(if failed.is_empty() { 200 } else { 503 }, body.to_string())
    }
}

/// Probes the database and Redis concurrently, each bounded by `timeout`.
pub async fn probe(
    store: &dyn Store,
    redis: Option<&dyn RedisPing>,
    timeout: Duration,
) -> Readiness {
    let database = async {
        match tokio::time::timeout(timeout, store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                log::warn!(dependency = "database", error = e.to_string().as_str(); "readiness probe failed");
                Err(ProbeFailure::Unreachable)
            }
            Err(_) => {
                log::warn!(dependency = "database", timeout_ms = millis(timeout); "readiness probe timed out");
                Err(ProbeFailure::Timeout)
            }
        }
    };
    let redis = async {
        let redis = redis?;
        Some(match tokio::time::timeout(timeout, redis.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                log::warn!(dependency = "redis", error = e.to_string().as_str(); "readiness probe failed");
                Err(ProbeFailure::Unreachable)
            }
            Err(_) => {
                log::warn!(dependency = "redis", timeout_ms = millis(timeout); "readiness probe timed out");
                Err(ProbeFailure::Timeout)
            }
        })
    };
    let (database, redis) = tokio::join!(database, redis);
    Readiness { database, redis }
}

/// The answer when `/ready` cannot run its probes (no tokio runtime was given).
pub(super) fn no_runtime() -> HttpReply {
    HttpReply::json(
        503,
        r#"{"status":"not_ready","failed":{"runtime":"no async runtime to run the probes on"}}"#,
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_names_what_failed() {
        let ok = Readiness {
            database: Ok(()),
            redis: None,
        };
        assert!(ok.is_ready());
        let r = ok.reply();
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
        assert_eq!(v["status"], "ready");
        assert_eq!(v["dependencies"]["database"], "ok");

        let bad = Readiness {
            database: Ok(()),
            redis: Some(Err(ProbeFailure::Timeout)),
        };
        assert!(!bad.is_ready());
        let r = bad.reply();
        assert_eq!(r.status, 503);
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
        assert_eq!(v["status"], "not_ready");
        assert_eq!(v["failed"]["redis"], "timeout");
        assert!(v["failed"].get("database").is_none());
    }

    #[test]
    fn record_sets_the_gauge() {
        let gauge =
            IntGaugeVec::new(prometheus::Opts::new("t_up", "t"), &["dependency"]).expect("gauge");
        Readiness {
            database: Err(ProbeFailure::Unreachable),
            redis: Some(Ok(())),
        }
        .record(&gauge);
        assert_eq!(gauge.with_label_values(&["database"]).get(), 0);
        assert_eq!(gauge.with_label_values(&["redis"]).get(), 1);
    }
}
