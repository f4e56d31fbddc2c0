//! Section 11: routes. Ingest into the embedded store when each event is kept for
//! three routes against one (the same load, alternating rounds, the median), and
//! the time from a delivery's POST to its healthy route's handler at a steady rate:
//! alone, beside a second route whose destination fails every attempt at the
//! relay's defaults (retries from 1 s, the breaker after 10 failures), and beside
//! one retried every 10 to 100 ms with no breaker (the worst case for its
//! neighbour).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thulium::event::Event;
use thulium_bench::{Stats, serve};
use thulium_inbox::breaker::BreakerConfig;
use thulium_inbox::dispatcher::{
    Delivery, DispatchConfig, Dispatcher, HandlerError, RetrySchedule,
};
use thulium_inbox::receiver::DurableReceiver;
use thulium_inbox::{EmbeddedStore, RouteName, Routing};

use super::{SentAt, load, post_steadily, receiver};

/// Deliveries per second in the latency runs.
const RATE: u64 = 500;

/// `names` as routes that each take every action.
fn routing(names: &[&str]) -> Routing {
    Routing::new(
        names
            .iter()
            .map(|name| (RouteName::new(name).expect("a route name"), Vec::new()))
            .collect(),
    )
    .expect("routes")
}

pub(super) async fn routes_section(out: &mut String, dir: &Path, quick: bool) {
    let (count, rounds, seconds) = if quick {
        (2_000, 1, 3)
    } else {
        (20_000, 3, 10)
    };
    let numbers = Arc::new(AtomicU64::new(70_000_000));

    // Ingest: one route against three.
    let mut urls = Vec::new();
    for (file, names) in [
        ("one.redb", &["a"][..]),
        ("three.redb", &["a", "b", "c"][..]),
    ] {
        let store = EmbeddedStore::open(dir.join(file)).expect("an inbox");
        let app = DurableReceiver::new(receiver(), store)
            .routing(routing(names))
            .max_backlog(u64::MAX)
            .router("/hook");
        urls.push(format!("http://{}/hook", serve(app).await));
    }
    for url in &urls {
        load(url, 256, &numbers).await;
    }
    let mut results: [Vec<(f64, Stats)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            eprintln!("routes ingest round {round}, side {side}");
            results[side].push(load(&urls[side], count, &numbers).await);
        }
    }
    let [one, three] = results.map(|mut runs| {
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        runs[runs.len() / 2]
    });

    // Latency of the healthy route, alone and beside a route that is down.
    let alone = healthy_latency(dir, "alone.redb", Down::None, seconds, &numbers).await;
    let defaults = healthy_latency(dir, "defaults.redb", Down::Defaults, seconds, &numbers).await;
    let hammered = healthy_latency(dir, "hammered.redb", Down::Hammered, seconds, &numbers).await;

    let _ = writeln!(out, "\n## 11. Routes\n");
    let _ = writeln!(
        out,
        "Ingest as in section 5 ({count} events a run, {rounds} runs each in alternating order, median), into a store that keeps each event for one route and one that keeps it for three (three entries, one commit).\n"
    );
    let _ = writeln!(out, "| each event kept for | events/s | p50 | p99 |");
    let _ = writeln!(out, "|---|---|---|---|");
    for (name, (rate, stats)) in [("one route", one), ("three routes", three)] {
        let _ = writeln!(
            out,
            "| {name} | {rate:.0} | {:.2} ms | {:.2} ms |",
            stats.p50.as_secs_f64() * 1e3,
            stats.p99.as_secs_f64() * 1e3
        );
    }
    let _ = writeln!(
        out,
        "\nThree routes against one: {:.2}x the rate.\n",
        three.0 / one.0
    );
    let _ = writeln!(
        out,
        "From a delivery's POST to the start of its healthy route's handler (a no-op), at {RATE} deliveries/s for {seconds} s; beside it, a second route that takes every event and fails every attempt.\n"
    );
    let _ = writeln!(
        out,
        "| healthy route | events | p50 | p99 | failed attempts on the other route |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for (name, (stats, attempts)) in [
        ("alone", &alone),
        (
            "beside a route that is down, at the defaults (retries from 1 s, breaker after 10)",
            &defaults,
        ),
        (
            "beside a route that is down, retried every 10 to 100 ms, no breaker",
            &hammered,
        ),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {} | {:.2} ms | {:.2} ms | {attempts} |",
            stats.count,
            stats.p50.as_secs_f64() * 1e3,
            stats.p99.as_secs_f64() * 1e3,
        );
    }
    let ratio =
        |beside: &(Stats, u64)| beside.0.p99.as_secs_f64() / alone.0.p99.as_secs_f64().max(1e-9);
    let _ = writeln!(
        out,
        "\nThe down route's effect on the healthy route's p99: {:.2}x at the defaults (target: none beyond noise, here within 1.5x: {}); {:.2}x when it is hammered without a breaker.",
        ratio(&defaults),
        if ratio(&defaults) <= 1.5 {
            "met"
        } else {
            "**missed**"
        },
        ratio(&hammered),
    );
}

/// The route beside the healthy one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Down {
    /// None.
    None,
    /// Down, at the relay's defaults: retries from 1 s, the breaker after 10.
    Defaults,
    /// Down, retried every 10 to 100 ms, no breaker.
    Hammered,
}

/// Deliveries at [`RATE`]/s for `seconds` into a store with a `healthy` route (and
/// a route whose handler fails every attempt, as `down` says); the latencies from
/// each POST to its healthy handler, and the down route's attempts.
async fn healthy_latency(
    dir: &Path,
    file: &str,
    down: Down,
    seconds: u64,
    numbers: &Arc<AtomicU64>,
) -> (Stats, u64) {
    let store = EmbeddedStore::open(dir.join(file)).expect("an inbox");
    let names: &[&str] = if down == Down::None {
        &["healthy"]
    } else {
        &["healthy", "down"]
    };
    let app = DurableReceiver::new(receiver(), store.clone())
        .routing(routing(names))
        .router("/hook");
    let url = format!("http://{}/hook", serve(app).await);
    // When each ticket was POSTed, and how long it took to reach the handler.
    let sent: Arc<SentAt> = Arc::default();
    let taken: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let healthy = {
        let (sent, taken) = (Arc::clone(&sent), Arc::clone(&taken));
        move |event: Event, _: Delivery| {
            let (sent, taken) = (Arc::clone(&sent), Arc::clone(&taken));
            async move {
                let ticket = event.to_json_value()["ticket_id"].as_u64().unwrap_or(0);
                if let Some(at) = sent.lock().expect("sent").get(&ticket) {
                    taken.lock().expect("taken").push(at.elapsed());
                }
                Ok::<_, HandlerError>(())
            }
        }
    };
    let config =
        |name: &str| DispatchConfig::default().route(RouteName::new(name).expect("a name"));
    let mut tasks = vec![tokio::spawn(
        Dispatcher::new(store.clone(), config("healthy")).run(healthy, until(stopped.clone())),
    )];
    let attempts = Arc::new(AtomicU64::new(0));
    if down != Down::None {
        let counted = Arc::clone(&attempts);
        let failing = move |_: Event, _: Delivery| {
            let counted = Arc::clone(&counted);
            async move {
                counted.fetch_add(1, Ordering::Relaxed);
                Err::<(), HandlerError>("down".into())
            }
        };
        let down_config = match down {
            Down::Hammered => config("down").schedule(RetrySchedule::new(
                u32::MAX,
                Duration::from_millis(10),
                Duration::from_millis(100),
            )),
            _ => config("down")
                .schedule(RetrySchedule::new(
                    u32::MAX,
                    Duration::from_secs(1),
                    Duration::from_secs(3600),
                ))
                .breaker(Some(BreakerConfig::default())),
        };
        tasks.push(tokio::spawn(
            Dispatcher::new(store.clone(), down_config).run(failing, until(stopped.clone())),
        ));
    }
    post_steadily(&url, RATE, seconds, numbers, &sent).await;
    let expected = (RATE * seconds) as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while taken.lock().expect("taken").len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let mut latencies = std::mem::take(&mut *taken.lock().expect("taken"));
    assert_eq!(
        latencies.len(),
        expected,
        "every event reached the healthy route"
    );
    (
        Stats::of(&mut latencies).expect("samples"),
        attempts.load(Ordering::Relaxed),
    )
}
