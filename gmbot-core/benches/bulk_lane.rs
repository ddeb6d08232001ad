//! The dispatcher's bulk lane at a high read budget: grants per second against the budget
//! (`gmbot audit` and the warm-up read at this pace; a read bucket holds 20 ms of its rate so
//! that the timer's millisecond granularity does not eat into it).
//!
//! Run: `cargo test -p gmbot-core --bench bulk_lane` (`BULK_BENCH_RATE`, default 1,000 reads/s;
//! `BULK_BENCH_CALLS`, default 3,000). Telegram is the in-process `MemoryTelegram`, so only
//! the admission path is measured.

use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use gmbot_core::dispatch::{DispatchConfig, Dispatcher, Lane};
use gmbot_core::domain::{ChatId, UserId};
use gmbot_core::telegram::{MemoryTelegram, TelegramApi};
use prometheus::Registry;

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(rate: u32, calls: u32) -> f64 {
    let api: Arc<dyn TelegramApi> = Arc::new(MemoryTelegram::new());
    let config = DispatchConfig {
        bulk_reads_per_second: Some(rate),
        ..DispatchConfig::default()
    };
    let dispatcher = Dispatcher::new(api, config, &Registry::new()).expect("dispatcher");
    let lane = dispatcher.lane(Lane::Bulk);
    let started = Instant::now();
    stream::iter(0..calls)
        .map(|i| {
            let lane = lane.clone();
            async move {
                let _ = lane
                    .get_chat_member(ChatId(-1_000_000_000_100), UserId(i64::from(i) + 1))
                    .await;
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    f64::from(calls) / started.elapsed().as_secs_f64()
}

fn main() {
    let rate = env_or("BULK_BENCH_RATE", 1_000);
    let calls = env_or("BULK_BENCH_CALLS", 3_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let granted = runtime.block_on(run(rate, calls));
    println!(
        "bulk lane at {rate} reads/s, {calls} reads, 32 at once: {granted:.0} grants/s ({:.3} of the budget)",
        granted / f64::from(rate)
    );
}
