//! Readiness: whether the database and (if configured) Redis answer, each within a timeout.
//!
//! The database is a dependency: without it `/ready` fails (503) and the load balancer
//! takes the instance out. Redis is an accelerator (shared cache, invalidations,
//! de-duplication): without it the bot verifies from its in-process cache and Telegram, so
//! `/ready` stays 200 and only reports itself degraded — every instance loses Redis at the
//! same moment, and failing them all would stop the bot.
//!
//! The answer names what failed with a short reason (`timeout`, `unreachable`);
//! the full error, which may quote a host, goes to the log at `warn` only.

use std::time::Duration;

use async_trait::async_trait;
use gmbot_core::cache::{CacheError, LayeredCache, RedisCache};
use gmbot_core::store::Store;
use prometheus::{IntGauge, IntGaugeVec};

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
    /// Whether the instance should take traffic: the database answered (Redis is not needed).
    pub fn is_ready(&self) -> bool {
        self.database.is_ok()
    }

    /// Whether Redis is configured and did not answer: ready, but without the shared cache.
    pub fn is_degraded(&self) -> bool {
        matches!(self.redis, Some(Err(_)))
    }

    /// Sets `gmbot_dependency_up{dependency}` and `gmbot_ready_degraded` from this round.
    pub fn record(&self, up: &IntGaugeVec, degraded: &IntGauge) {
        up.with_label_values(&["database"])
            .set(i64::from(self.database.is_ok()));
        if let Some(redis) = self.redis {
            up.with_label_values(&["redis"])
                .set(i64::from(redis.is_ok()));
        }
        degraded.set(i64::from(self.is_degraded()));
    }

    /// The `/ready` answer: 200 `ready` or `degraded` (Redis down, named under `degraded`),
    /// 503 `not_ready` when the database failed (named under `failed`).
    pub fn reply(&self) -> HttpReply {
        let mut deps = serde_json::Map::new();
        let mut failed = serde_json::Map::new();
        let mut degraded = serde_json::Map::new();
        let mut note = |name: &str, result: Result<(), ProbeFailure>, required: bool| {
            let reason = match result {
                Ok(()) => "ok",
                Err(f) => f.as_str(),
            };
            deps.insert(name.to_owned(), reason.into());
            if result.is_err() {
                let into = if required { &mut failed } else { &mut degraded };
                into.insert(name.to_owned(), reason.into());
            }
        };
        note("database", self.database, true);
        if let Some(redis) = self.redis {
            note("redis", redis, false);
        }
        let status = match (self.is_ready(), self.is_degraded()) {
            (false, _) => "not_ready",
            (true, true) => "degraded",
            (true, false) => "ready",
        };
        let mut body = serde_json::Map::new();
        body.insert("status".into(), status.into());
        if !failed.is_empty() {
            body.insert("failed".into(), failed.into());
        }
        if !degraded.is_empty() {
            body.insert("degraded".into(), degraded.into());
        }
        body.insert("dependencies".into(), deps.into());
        let code = if self.is_ready() { 200 } else { 503 };
        HttpReply::json(code, serde_json::Value::Object(body).to_string())
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

    fn body(r: &HttpReply) -> serde_json::Value {
        serde_json::from_str(&r.body).expect("json")
    }

    #[test]
    fn reply_names_what_failed_and_what_is_degraded() {
        let ok = Readiness {
            database: Ok(()),
            redis: None,
        };
        assert!(ok.is_ready() && !ok.is_degraded());
        let r = ok.reply();
        assert_eq!(r.status, 200);
        let v = body(&r);
        assert_eq!(v["status"], "ready");
        assert_eq!(v["dependencies"]["database"], "ok");
        assert!(
            v.get("failed").is_none() && v.get("degraded").is_none(),
            "{v}"
        );

        // Redis down: still ready (200), reported degraded.
        let degraded = Readiness {
            database: Ok(()),
            redis: Some(Err(ProbeFailure::Timeout)),
        };
        assert!(degraded.is_ready() && degraded.is_degraded());
        let r = degraded.reply();
        assert_eq!(r.status, 200);
        let v = body(&r);
        assert_eq!(v["status"], "degraded");
        assert_eq!(v["degraded"]["redis"], "timeout");
        assert_eq!(v["dependencies"]["redis"], "timeout");
        assert_eq!(v["dependencies"]["database"], "ok");
        assert!(v.get("failed").is_none(), "{v}");

        // The database down: 503, whatever Redis does.
        for redis in [None, Some(Ok(())), Some(Err(ProbeFailure::Unreachable))] {
            let down = Readiness {
                database: Err(ProbeFailure::Unreachable),
                redis,
            };
            assert!(!down.is_ready());
            let r = down.reply();
            assert_eq!(r.status, 503);
            let v = body(&r);
            assert_eq!(v["status"], "not_ready");
            assert_eq!(v["failed"]["database"], "unreachable");
            assert!(v["failed"].get("redis").is_none(), "{v}");
            assert_eq!(
                v.get("degraded").is_some(),
                redis.is_some_and(|r| r.is_err()),
                "{v}"
            );
        }
    }

    #[test]
    fn record_sets_the_gauges() {
        let up =
            IntGaugeVec::new(prometheus::Opts::new("t_up", "t"), &["dependency"]).expect("gauge");
        let degraded = IntGauge::new("t_degraded", "t").expect("gauge");
        Readiness {
            database: Err(ProbeFailure::Unreachable),
            redis: Some(Ok(())),
        }
        .record(&up, &degraded);
        assert_eq!(up.with_label_values(&["database"]).get(), 0);
        assert_eq!(up.with_label_values(&["redis"]).get(), 1);
        assert_eq!(degraded.get(), 0);
        Readiness {
            database: Ok(()),
            redis: Some(Err(ProbeFailure::Timeout)),
        }
        .record(&up, &degraded);
        assert_eq!(up.with_label_values(&["redis"]).get(), 0);
        assert_eq!(degraded.get(), 1);
        Readiness {
            database: Ok(()),
            redis: Some(Ok(())),
        }
        .record(&up, &degraded);
        assert_eq!(degraded.get(), 0);
    }
}
