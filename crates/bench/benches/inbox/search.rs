//! Section 10: console text searches beside ingest. Deliveries arrive at a steady
//! 200/s (as Thulium sends them, not as fast as possible) into an inbox of 10,000
//! events, first alone, then while 10 clients search the console for text no event
//! has (each search reads the whole window). What counts is the deliveries' p99
//! with the searches against without: the console runs at most two searches at
//! once and answers the rest "busy" (#21 item 5).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use thulium_bench::{Stats, serve};
use thulium_inbox::receiver::DurableReceiver;
use thulium_inbox::{EmbeddedStore, Store};

use super::{AUTH, event_body, receiver};

/// Deliveries per second during a phase.
const RATE: u64 = 200;
/// Clients searching at once.
const SEARCHERS: usize = 10;

pub(super) async fn search_section(out: &mut String, dir: &Path, quick: bool) {
    let (events, seconds) = if quick { (2_000, 4) } else { (10_000, 20) };
    let store = EmbeddedStore::open(dir.join("search.redb")).expect("an inbox");
    let numbers = Arc::new(AtomicU64::new(50_000_000));
    for _ in 0..events {
        let body = event_body(numbers.fetch_add(1, Ordering::Relaxed));
        let event = thulium::event::Event::parse(body.as_bytes(), None).expect("an event");
        store
            .put(thulium_inbox::NewEvent::from_event(&event, body, None))
            .await
            .expect("a put");
    }
    let app = DurableReceiver::new(receiver(), store.clone())
        .router("/thulium")
        .merge(thulium_inbox::console::router(store.clone(), None));
    let base = format!("http://{}", serve(app).await);

    let alone = steady(&base, &numbers, seconds).await;
    let searching = Arc::new(AtomicBool::new(true));
    let (answered, busy) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let searchers: Vec<_> = (0..SEARCHERS)
        .map(|_| {
            let (base, searching) = (base.clone(), Arc::clone(&searching));
            let (answered, busy) = (Arc::clone(&answered), Arc::clone(&busy));
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                while searching.load(Ordering::Relaxed) {
                    let status = http
                        .get(format!("{base}/events?q=no-such-text"))
                        .send()
                        .await
                        .map(|r| r.status().as_u16());
                    match status {
                        Ok(200) => answered.fetch_add(1, Ordering::Relaxed),
                        _ => busy.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let beside = steady(&base, &numbers, seconds).await;
    searching.store(false, Ordering::Relaxed);
    for searcher in searchers {
        let _ = searcher.await;
    }
    let ratio = beside.p99.as_secs_f64() / alone.p99.as_secs_f64().max(1e-9);
    let _ = writeln!(out, "\n## 10. Console searches beside ingest\n");
    let _ = writeln!(
        out,
        "Deliveries at {RATE}/s for {seconds} s into an inbox of {events} events, alone and while {SEARCHERS} clients search the console for text no event has (each search reads every event).\n"
    );
    let _ = writeln!(out, "| deliveries | p50 | p99 |");
    let _ = writeln!(out, "|---|---|---|");
    for (name, stats) in [("alone", &alone), ("with searches", &beside)] {
        let _ = writeln!(
            out,
            "| {name} | {:.2} ms | {:.2} ms |",
            stats.p50.as_secs_f64() * 1e3,
            stats.p99.as_secs_f64() * 1e3
        );
    }
    let _ = writeln!(
        out,
        "\nSearches answered: {}; answered busy (503, try again): {}. Target: p99 with searches within 1.5x of p99 alone: {} ({ratio:.2}x).",
        answered.load(Ordering::Relaxed),
        busy.load(Ordering::Relaxed),
        if ratio <= 1.5 { "met" } else { "missed" }
    );
}

/// Deliveries at [`RATE`] per second for `seconds`, each on its own schedule (a
/// late answer does not delay the next send); their latencies.
async fn steady(base: &str, numbers: &Arc<AtomicU64>, seconds: u64) -> Stats {
    let http = reqwest::Client::new();
    let url = format!("{base}/thulium");
    let mut sends = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    for _ in 0..RATE * seconds {
        ticker.tick().await;
        let (http, url) = (http.clone(), url.clone());
        let body = event_body(numbers.fetch_add(1, Ordering::Relaxed));
        sends.push(tokio::spawn(async move {
            let sent = Instant::now();
            let status = http
                .post(&url)
                .header("authorization", AUTH)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("a delivery")
                .status();
            assert_eq!(status, 200, "every delivery is taken");
            sent.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(sends.len());
    for send in sends {
        latencies.push(send.await.expect("a send"));
    }
    Stats::of(&mut latencies).expect("samples")
}
