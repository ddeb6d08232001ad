//! End to end in long-polling mode: the real bot against the simulated Telegram, on SQLite and
//! on PostgreSQL + Redis, through the whole protection flow.

mod e2e_support;

use e2e_support::{start, whole_flow, world, Backend, Transport};

fn allowed_updates_always_sent(sim: &gmbot_bot::sim::Simulator) {
    let calls = sim.calls();
    let first_poll = calls
        .iter()
        .position(|c| c.method == "getUpdates")
        .expect("the bot polled");
    let delete = calls
        .iter()
        .position(|c| c.method == "deleteWebhook")
        .expect("the bot removed any webhook first");
    assert!(delete < first_poll, "deleteWebhook comes before getUpdates");
    for c in calls.iter().filter(|c| c.method == "getUpdates") {
        let kinds: Vec<&str> = c
            .params
            .get("allowed_updates")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|k| k.as_str()).collect())
            .unwrap_or_default();
        for k in [
            "message",
            "edited_message",
            "callback_query",
            "chat_member",
            "my_chat_member",
        ] {
            assert!(kinds.contains(&k), "getUpdates without {k}: {:?}", c.params);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_whole_flow_on_sqlite() {
    let w = world();
    let backend = Backend::sqlite();
    let bot = start(&w.sim, &backend, Transport::Polling).await;
    whole_flow(&w, &bot).await;
    let report = bot.stop().await;
    assert_eq!(report.drain.abandoned, 0);
    allowed_updates_always_sent(&w.sim);
    assert!(w.sim.calls_to("setWebhook").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_whole_flow_on_postgres_and_redis() {
    let w = world();
    let backend = Backend::postgres_redis();
    let bot = start(&w.sim, &backend, Transport::Polling).await;
    whole_flow(&w, &bot).await;
    let report = bot.stop().await;
    assert_eq!(report.drain.abandoned, 0);
    allowed_updates_always_sent(&w.sim);
    // One poller per token: no per-update claims in Redis in polling mode.
    let Backend::PostgresRedis(_, redis) = &backend else {
        unreachable!("postgres backend")
    };
    let claims = redis
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(&format!("{}u:", redis.prefix)))
        .count();
    assert_eq!(claims, 0);
}
