//! The soak with faults, 10 minutes, then the throughput of one instance against three.
//!
//! ```text
//! cargo bench -p gmbot-bot --bench soak
//! GMBOT_SOAK_SECONDS=120 cargo bench -p gmbot-bot --bench soak     # shorter
//! GMBOT_SOAK_THROUGHPUT=0 cargo bench -p gmbot-bot --bench soak    # the soak only
//! GMBOT_SOAK_ONLY_THROUGHPUT=1 cargo bench -p gmbot-bot --bench soak
//! ```
//!
//! The soak (see `gmbot-bot/tests/soak_support`): three `gmbot-bot` processes in webhook mode
//! on a private PostgreSQL cluster and a private Redis (free ports, never the shared
//! servers), the simulated Telegram delivering through its load balancer over 1,002
//! keep-alive connections (334 per instance), a mixed workload at 50 events/s over 40 groups,
//! and the faults at their times: Redis killed (12 % of the run) and restarted, a 429 storm,
//! PostgreSQL stopped and started, 5xx answers, calls hanging past the bot's timeout, the last
//! instance killed with SIGKILL and restarted. The invariants are checked at the end from the
//! simulated Telegram's state and call log and printed with the recovery time of each fault.
//! The same code runs for 60 s in CI (`cargo test -p gmbot-bot --test soak`).
//!
//! Throughput: the same workload mix offered at once (`GMBOT_SOAK_FLOOD_EVENTS`, default
//! 20,000 events), budgets raised out of the way, no faults, on 1 instance and then on 3
//! (1,002 connections either way); the handled updates per second and the factor.

#[path = "../tests/soak_support/mod.rs"]
mod soak_support;

use std::path::PathBuf;

use soak_support::workload::Soak;
use soak_support::SoakConfig;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_gmbot-bot"));
    let only_throughput = std::env::var("GMBOT_SOAK_ONLY_THROUGHPUT").is_ok_and(|v| v == "1");
    let mut broken = Vec::new();
    if !only_throughput {
        let cfg = SoakConfig::from_env(bin.clone(), 600, 50, 40);
        let verdict = rt.block_on(async {
            let mut soak = Soak::start(cfg).await;
            soak.run().await;
            soak_support::verdict::evaluate(&soak)
        });
        println!("\n{}", verdict.report);
        broken = verdict.failures();
    }
    if std::env::var("GMBOT_SOAK_THROUGHPUT").map_or(true, |v| v != "0") {
        let events = std::env::var("GMBOT_SOAK_FLOOD_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        let mut results = Vec::new();
        for instances in [1, 3] {
            let mut cfg = SoakConfig::from_env(bin.clone(), 60, 50, 40);
            cfg.instances = instances;
            cfg.faults = false;
            // The largest the configuration accepts: Telegram's budgets out of the way.
            cfg.messages_per_second = 10_000;
            cfg.group_messages_per_minute = 10_000;
            cfg.actions_per_second = 10_000;
            let t = rt.block_on(async {
                let mut soak = Soak::start(cfg).await;
                soak.flood(events).await
            });
            println!(
                "throughput, {} instance(s): {} events offered at once, {:.0} updates handled in {:.2} s = {:.0} updates/s; CPU meanwhile: instances {:.1} s, this process (simulated Telegram, balancer, load) {:.1} s, machine {:.0} % busy of {} cores (includes PostgreSQL, Redis and anything else running)",
                t.instances,
                t.events,
                t.handled,
                t.elapsed.as_secs_f64(),
                t.per_second,
                t.instances_cpu,
                t.harness_cpu,
                t.machine_busy * 100.0,
                t.cores
            );
            results.push(t);
        }
        if let [one, three] = &results[..] {
            println!(
                "throughput factor, 3 instances / 1: {:.2} (2 cores shared by the instances, PostgreSQL, Redis, the simulated Telegram and the load generator)",
                three.per_second / one.per_second.max(1e-9)
            );
        }
    }
    if !broken.is_empty() {
        println!("\nsoak invariants broken:\n  {}", broken.join("\n  "));
    }
}
