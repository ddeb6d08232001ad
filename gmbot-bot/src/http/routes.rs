//! What one listener serves ([`HttpRoutes`]) and the routing table: paths to endpoints, 404, 405.

use std::sync::Arc;
use std::time::Duration;

use prometheus::TextEncoder;
use tiny_http::{Method, Request};

use super::ready::{self, Readiness, RedisPing};
use super::webhook::{self, HttpReply, WebhookEndpoint, DEFAULT_MAX_BODY};
use crate::app::App;

/// How long each readiness probe may take before it counts as failed.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// An endpoint a request was routed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Health,
    Ready,
    Metrics,
    Webhook,
}

/// The outcome of routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Routed {
    Found(Route),
    NotFound,
    /// The path exists for other methods; the value is the `Allow` header.
    MethodNotAllowed(&'static str),
}

const READ_ONLY: &str = "GET, HEAD";
const POST_ONLY: &str = "POST";

struct WebhookRoute {
    path: String,
    endpoint: Arc<dyn WebhookEndpoint>,
    max_body: usize,
}

/// What one listener serves.
///
/// With only `HTTP_LISTEN`, one listener serves everything. With
/// `METRICS_LISTEN` too, the public listener serves the webhook (and
/// `/health`) and the second one `/health`, `/ready` and `/metrics`, so the
/// metrics need not be reachable from where Telegram's requests come in.
pub struct HttpRoutes {
    app: App,
    observability: bool,
    webhook: Option<WebhookRoute>,
    redis: Option<Arc<dyn RedisPing>>,
    probe_timeout: Duration,
    runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for HttpRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRoutes")
            .field("observability", &self.observability)
            .field("webhook", &self.webhook.as_ref().map(|w| &w.path))
            .field("redis", &self.redis.is_some())
            .field("probe_timeout", &self.probe_timeout)
            .finish_non_exhaustive()
    }
}

impl HttpRoutes {
    /// `/health`, `/ready` and `/metrics` for `app`, no webhook. Captures the
    /// current tokio runtime (if any) to run the readiness probes on.
    pub fn new(app: App) -> Self {
        Self {
            app,
            observability: true,
            webhook: None,
            redis: None,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Serves the webhook at `path` (the path of `WEBHOOK_URL`), reading at most
    /// [`DEFAULT_MAX_BODY`] bytes of each request.
    pub fn with_webhook(self, path: &str, endpoint: Arc<dyn WebhookEndpoint>) -> Self {
        self.with_webhook_limit(path, endpoint, DEFAULT_MAX_BODY)
    }

    /// Serves the webhook at `path` with a chosen body cap (larger bodies get 413).
    pub fn with_webhook_limit(
        mut self,
        path: &str,
        endpoint: Arc<dyn WebhookEndpoint>,
        max_body: usize,
    ) -> Self {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        self.webhook = Some(WebhookRoute {
            path,
            endpoint,
            max_body,
        });
        self
    }

    /// Makes `/ready` also probe Redis: when it does not answer, `/ready` stays 200 and
    /// reports itself `degraded` (Redis is an accelerator, not a dependency).
    pub fn with_redis(mut self, redis: Arc<dyn RedisPing>) -> Self {
        self.redis = Some(redis);
        self
    }

    /// Serves only `/health` and the webhook (the public listener when `METRICS_LISTEN` is set).
    pub fn without_observability(mut self) -> Self {
        self.observability = false;
        self
    }

    /// The same routes without the webhook: what the `METRICS_LISTEN` listener serves.
    pub fn observability_only(&self) -> Self {
        Self {
            app: self.app.clone(),
            observability: true,
            webhook: None,
            redis: self.redis.clone(),
            probe_timeout: self.probe_timeout,
            runtime: self.runtime.clone(),
        }
    }

    /// How long each readiness probe may take (default [`DEFAULT_PROBE_TIMEOUT`]).
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// The runtime the readiness probes run on (default: the one current at [`HttpRoutes::new`]).
    pub fn runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    pub(super) fn runtime_handle(&self) -> Option<&tokio::runtime::Handle> {
        self.runtime.as_ref()
    }

    /// Maps a method and request target to an endpoint.
    pub(super) fn route(&self, method: &Method, url: &str) -> Routed {
        route(
            method,
            url,
            self.observability,
            self.webhook.as_ref().map(|w| w.path.as_str()),
        )
    }

    /// `/metrics`: the registry in Prometheus' text format.
    pub(super) fn metrics(&self) -> HttpReply {
        let encoder = TextEncoder::new();
        match encoder.encode_to_string(&self.app.registry().gather()) {
            Ok(text) => HttpReply {
                status: 200,
                content_type: prometheus::TEXT_FORMAT,
                body: text,
            },
            Err(e) => {
                log::error!(error = e.to_string().as_str(); "cannot encode the metrics");
                HttpReply::json(500, r#"{"error":"cannot encode the metrics"}"#)
            }
        }
    }

    /// Probes the database and Redis and records `gmbot_dependency_up` and `gmbot_ready_degraded`.
    pub(super) async fn probe(&self) -> Readiness {
        let readiness = ready::probe(
            self.app.store().as_ref(),
            self.redis.as_deref(),
            self.probe_timeout,
        )
        .await;
        let metrics = self.app.metrics();
        readiness.record(&metrics.dependency_up, &metrics.ready_degraded);
        readiness
    }

    /// `POST <webhook path>`: reads the body with the cap and hands it to the ingress.
    pub(super) fn webhook(&self, request: &mut Request) -> HttpReply {
        let Some(route) = &self.webhook else {
            return HttpReply::json(404, r#"{"error":"not found"}"#);
        };
        let reply = webhook::accept(request, route.endpoint.as_ref(), route.max_body);
        if reply.status == 413 {
            self.app
                .metrics()
                .webhook_rejections
                .with_label_values(&["too_large"])
                .inc();
        }
        reply
    }
}

/// The routing table: `/health` always; `/ready` and `/metrics` when
/// `observability`; the webhook at its path. The query string never selects an endpoint.
pub(super) fn route(
    method: &Method,
    url: &str,
    observability: bool,
    webhook: Option<&str>,
) -> Routed {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let read_only = matches!(method, Method::Get | Method::Head);
    let found = match path {
        "/health" => Some((Route::Health, READ_ONLY, read_only)),
        "/ready" if observability => Some((Route::Ready, READ_ONLY, read_only)),
        "/metrics" if observability => Some((Route::Metrics, READ_ONLY, read_only)),
        p if webhook == Some(p) => Some((Route::Webhook, POST_ONLY, *method == Method::Post)),
        _ => None,
    };
    match found {
        Some((route, _, true)) => Routed::Found(route),
        Some((_, allow, false)) => Routed::MethodNotAllowed(allow),
        None => Routed::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_table() {
        let hook = Some("/tg/hook");
        let r = |m: Method, url: &str| route(&m, url, true, hook);
        assert_eq!(r(Method::Get, "/health"), Routed::Found(Route::Health));
        assert_eq!(r(Method::Head, "/health"), Routed::Found(Route::Health));
        assert_eq!(r(Method::Get, "/ready?x=1"), Routed::Found(Route::Ready));
        assert_eq!(r(Method::Get, "/metrics"), Routed::Found(Route::Metrics));
        assert_eq!(r(Method::Post, "/tg/hook"), Routed::Found(Route::Webhook));
        assert_eq!(
            r(Method::Post, "/metrics"),
            Routed::MethodNotAllowed("GET, HEAD")
        );
        assert_eq!(r(Method::Get, "/tg/hook"), Routed::MethodNotAllowed("POST"));
        assert_eq!(r(Method::Get, "/tg/hook/x"), Routed::NotFound);
        assert_eq!(r(Method::Get, "/"), Routed::NotFound);
        assert_eq!(r(Method::Get, "/healthz"), Routed::NotFound);
        // The public listener when METRICS_LISTEN is set: no /ready, no /metrics.
        assert_eq!(
            route(&Method::Get, "/metrics", false, hook),
            Routed::NotFound
        );
        assert_eq!(
            route(&Method::Get, "/health", false, hook),
            Routed::Found(Route::Health)
        );
        // Without a webhook, its path is unknown.
        assert_eq!(
            route(&Method::Post, "/tg/hook", true, None),
            Routed::NotFound
        );
    }
}
