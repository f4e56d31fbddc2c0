//! Section 9: the inbox on PostgreSQL beside its ceiling and the embedded store,
//! its dispatch, what the server did, and the cost of the search index.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use thulium::event::Event;
use thulium_bench::{Stats, baselines, serve};
use thulium_inbox::dispatcher::{DispatchConfig, Dispatcher};
use thulium_inbox::postgres::{PostgresOptions, PostgresStore};
use thulium_inbox::receiver::DurableReceiver;
use thulium_inbox::{EmbeddedStore, Store};
use tokio::sync::oneshot;

use super::{CONNECTIONS, load_with, receiver};

// ---- 4. PostgreSQL ----

fn postgres_url() -> String {
    std::env::var("THULIUM_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn postgres_store(schema: &str) -> Result<PostgresStore, thulium_inbox::StoreError> {
    PostgresStore::connect(
        &postgres_url(),
        PostgresOptions::default().schema(schema).pool_size(16),
    )
    .await
}

/// Sends `count` distinct events, spread over `urls` (connection `c` uses
/// `urls[c % urls.len()]`), over `CONNECTIONS` connections.
async fn load_spread(urls: &[String], count: usize, numbers: &Arc<AtomicU64>) -> (f64, Stats) {
    let per_url = count / urls.len();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for url in urls {
        let (url, numbers) = (url.clone(), Arc::clone(numbers));
        tasks.push(tokio::spawn(async move {
            load_with(&url, per_url, &numbers, CONNECTIONS / 2).await
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a load"));
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    (rate, Stats::of(&mut all).expect("samples"))
}

/// Latencies of `count` distinct events over `connections` connections to `url`.
pub(super) async fn postgres_section(out: &mut String, dir: &Path, quick: bool) {
    let _ = writeln!(out, "\n## 9. Inbox on PostgreSQL\n");
    let schema = format!("bench_{:x}", fastrand::u32(..));
    let (first, second) = match (postgres_store(&schema).await, postgres_store(&schema).await) {
        (Ok(first), Ok(second)) => (first, second),
        (Err(error), _) | (_, Err(error)) => {
            let _ = writeln!(
                out,
                "Not run: PostgreSQL at {} is not reachable ({error}).",
                postgres_url()
            );
            return;
        }
    };
    let (count, rounds) = if quick { (2_000, 1) } else { (20_000, 3) };
    let numbers = Arc::new(AtomicU64::new(1 << 40));
    let pg_urls = [
        format!(
            "http://{}/hook",
            serve(
                DurableReceiver::new(receiver(), first.clone())
                    .max_backlog(u64::MAX)
                    .router("/hook")
            )
            .await
        ),
        format!(
            "http://{}/hook",
            serve(
                DurableReceiver::new(receiver(), second.clone())
                    .max_backlog(u64::MAX)
                    .router("/hook")
            )
            .await
        ),
    ];
    let embedded = EmbeddedStore::open(dir.join("beside-postgres.redb")).expect("the inbox");
    let embedded_url = format!(
        "http://{}/hook",
        serve(
            DurableReceiver::new(receiver(), embedded.clone())
                .max_backlog(u64::MAX)
                .router("/hook")
        )
        .await
    );
    // The ceiling: the same rows, bare multi-row INSERTs, two receivers, one
    // connection and one group-commit writer each.
    let table = format!("\"{schema}\".\"ceiling\"");
    let mut ceiling_urls = Vec::new();
    for _ in 0..2 {
        let router = baselines::postgres_ceiling(receiver(), &postgres_url(), &table).await;
        ceiling_urls.push(format!("http://{}/hook", serve(router).await));
    }
    load_spread(&pg_urls, 512, &numbers).await;
    load_spread(&ceiling_urls, 512, &numbers).await;
    load_spread(std::slice::from_ref(&embedded_url), 512, &numbers).await;
    let (mut pg_runs, mut ceiling_runs, mut embedded_runs) = (Vec::new(), Vec::new(), Vec::new());
    let (commits_before, wal_before) = postgres_counters().await;
    for round in 0..rounds {
        eprintln!("postgres ingest round {round}");
        let embedded = std::slice::from_ref(&embedded_url);
        if round % 2 == 0 {
            pg_runs.push(load_spread(&pg_urls, count, &numbers).await);
            ceiling_runs.push(load_spread(&ceiling_urls, count, &numbers).await);
            embedded_runs.push(load_spread(embedded, count, &numbers).await);
        } else {
            embedded_runs.push(load_spread(embedded, count, &numbers).await);
            ceiling_runs.push(load_spread(&ceiling_urls, count, &numbers).await);
            pg_runs.push(load_spread(&pg_urls, count, &numbers).await);
        }
    }
    let median = |runs: &mut Vec<(f64, Stats)>| {
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        runs[runs.len() / 2]
    };
    let (pg_rate, pg) = median(&mut pg_runs);
    let (ceiling_rate, ceiling) = median(&mut ceiling_runs);
    let (embedded_rate, embedded_stats) = median(&mut embedded_runs);
    let _ = writeln!(
        out,
        "{CONNECTIONS} connections POST distinct events: to PostgreSQL through two receivers (32 connections each; each receiver has its own pool of 16 and its own group-commit writer, as two processes would; they run in the bench process beside the load generator); to the ceiling, the same rows written by two receivers as bare multi-row `INSERT ... unnest` per batch into a table with no index but its key, no dedup and no counters (`thulium_bench::baselines::postgres_ceiling`, same group commit, one connection each); and, beside them, to the embedded store through one receiver. {count} events per run, {rounds} runs per side alternating, median run. PostgreSQL 15 on this machine, default settings (`synchronous_commit=on`, `fsync=on`).\n"
    );
    let _ = writeln!(out, "| store | events/s | p50 | p99 |");
    let _ = writeln!(out, "|---|---|---|---|");
    for (name, rate, stats) in [
        ("PostgreSQL inbox, two receivers", pg_rate, pg),
        (
            "PostgreSQL ceiling: bare multi-row INSERT, two receivers",
            ceiling_rate,
            ceiling,
        ),
        ("embedded redb, one receiver", embedded_rate, embedded_stats),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {rate:.0} | {:.2} ms | {:.2} ms |",
            stats.p50.as_secs_f64() * 1e3,
            stats.p99.as_secs_f64() * 1e3
        );
    }
    let ratio = pg_rate / ceiling_rate;
    let met = ratio >= 0.70 && pg.p99 < Duration::from_millis(20);
    let _ = writeln!(
        out,
        "\nTarget at least 0.70x the ceiling with p99 under 20 ms: {} ({ratio:.2}x: {pg_rate:.0}/s against {ceiling_rate:.0}/s; p99 {:.2} ms).",
        if met { "met" } else { "**missed**" },
        pg.p99.as_secs_f64() * 1e3
    );
    let (commits, wal) = postgres_counters().await;
    // The inbox's runs and the ceiling's, which both write to the server.
    let pg_events = (2 * count * rounds) as f64;

    // Claim -> no-op handler -> ack with three dispatchers on the events just stored.
    let pending = first.stats().await.expect("stats").pending;
    let mut dispatchers = Vec::new();
    let mut stops = Vec::new();
    let started = Instant::now();
    for _ in 0..3 {
        let store = postgres_store(&schema).await.expect("a dispatcher's store");
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        let config = DispatchConfig::default()
            .concurrency(64)
            .poll_interval(Duration::from_millis(5));
        dispatchers.push(tokio::spawn(Dispatcher::new(store, config).run(
            |event: Event, _: thulium_inbox::dispatcher::Delivery| async move {
                std::hint::black_box(event);
                Ok::<_, std::convert::Infallible>(())
            },
            async {
                let _ = stopped.await;
            },
        )));
    }
    loop {
        if first.stats().await.expect("stats").pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let claimed_in = started.elapsed();
    loop {
        let stats = first.stats().await.expect("stats");
        if stats.in_flight == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    for stop in stops {
        let _ = stop.send(());
    }
    for dispatcher in dispatchers {
        let _ = dispatcher.await;
    }
    let (commits_after, wal_after) = postgres_counters().await;
    let rate = pending as f64 / elapsed.as_secs_f64();
    let _ = writeln!(
        out,
        "\nDispatch: {pending} pending events, three dispatchers (each its own pool, 64 handlers, a no-op handler): every event claimed with `FOR UPDATE SKIP LOCKED` and acked by id and token (acks batched like puts). All claimed after {:.2} s, all acked after {:.2} s: **{rate:.0} events/s**.\n",
        claimed_in.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "What the server did (from `pg_stat_database` and `pg_stat_wal`): the PostgreSQL ingest runs of the inbox and of the ceiling ({pg_events:.0} events; the embedded runs do not touch the server) committed {} transactions ({:.1} events per commit: the group commit) and wrote {:.1} MB of WAL; the dispatch, {} transactions and {:.1} MB of WAL ({:.3} transactions per event: one per claim batch, one per batch of acks).",
        commits.saturating_sub(commits_before),
        pg_events / commits.saturating_sub(commits_before).max(1) as f64,
        wal.saturating_sub(wal_before) as f64 / 1e6,
        commits_after.saturating_sub(commits),
        wal_after.saturating_sub(wal) as f64 / 1e6,
        commits_after.saturating_sub(commits) as f64 / pending.max(1) as f64
    );
    let indexed = format!("{schema}_trgm");
    with_search_index(out, &indexed, count, rounds, &numbers, pg_rate, pg).await;
    if let Ok((client, connection)) =
        tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls).await
    {
        tokio::spawn(connection);
        for schema in [&schema, &indexed] {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await;
        }
    }
}

/// The same ingest into a schema that keeps the trigram index of text searches
/// (`PostgresOptions::search_index`), against the run without it.
async fn with_search_index(
    out: &mut String,
    schema: &str,
    count: usize,
    rounds: usize,
    numbers: &Arc<AtomicU64>,
    plain_rate: f64,
    plain: Stats,
) {
    let mut urls = Vec::new();
    for _ in 0..2 {
        let store = PostgresStore::connect(
            &postgres_url(),
            PostgresOptions::default()
                .schema(schema)
                .pool_size(16)
                .search_index(true),
        )
        .await
        .expect("a store with the search index");
        let router = DurableReceiver::new(receiver(), store)
            .max_backlog(u64::MAX)
            .router("/hook");
        urls.push(format!("http://{}/hook", serve(router).await));
    }
    load_spread(&urls, 512, numbers).await;
    let mut runs = Vec::new();
    for _ in 0..rounds {
        runs.push(load_spread(&urls, count, numbers).await);
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (rate, stats) = runs[runs.len() / 2];
    let _ = writeln!(
        out,
        "\nWith the trigram index of text searches (`search_index`, `--inbox-search-index`; off by default), measured after the rest: {rate:.0} events/s, p99 {:.2} ms ({:.2}x the rate without it, {plain_rate:.0}/s at p99 {:.2} ms). Every put updates the index; a console search then reads it instead of every event.",
        stats.p99.as_secs_f64() * 1e3,
        rate / plain_rate,
        plain.p99.as_secs_f64() * 1e3
    );
}

/// Transactions committed in this database and WAL bytes written, since the
/// counters were last reset (differences between two calls are what counts).
async fn postgres_counters() -> (u64, u64) {
    // Backends report their statistics at most once a second when idle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let Ok((client, connection)) =
        tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls).await
    else {
        return (0, 0);
    };
    tokio::spawn(connection);
    let commits = client
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .map_or(0, |row| row.get::<_, i64>(0) as u64);
    let wal = client
        .query_one("SELECT wal_bytes::bigint FROM pg_stat_wal", &[])
        .await
        .map_or(0, |row| row.get::<_, i64>(0) as u64);
    (commits, wal)
}
