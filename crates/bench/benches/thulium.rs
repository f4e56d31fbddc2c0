//! `cargo bench -p thulium-bench`: every benchmark, each beside its baseline, written
//! into BENCHMARKS.md between its results markers (the analysis around them is prose).
//!
//! Flags after `--`: `--quick` (small counts, a smoke run), `--no-codegen` (skip the
//! cargo timings), `--only=client|receiver|parsing|codegen`, `--no-write` (print only), `--profile-client=sdk|hand` (8 s of one
//! side's calls from 32 tasks and nothing else, to run under `perf record`; with
//! `BENCH_PROFILE_PAIRS=n` that many create+list pairs instead, sequential or from
//! `BENCH_PROFILE_TASKS` tasks, to count instructions under callgrind),
//! `--profile-receiver=sdk|bare` (the same for the receiver load).

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use thulium::event::Event;
use thulium::receiver::Receiver;
use thulium::{Action, Client, NewWebhook};
use thulium_bench::{
    EVENT_FORM, EVENT_JSON, HandClient, Stats, bare_receiver, fixed_api, median, serve,
};

const START: &str = "<!-- results:start -->";
const END: &str = "<!-- results:end -->";

struct Options {
    quick: bool,
    only: Option<String>,
    codegen: bool,
    write: bool,
}

impl Options {
    fn runs(&self, section: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == section)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let options = Options {
        quick: args.iter().any(|a| a == "--quick"),
        only: args
            .iter()
            .find_map(|a| a.strip_prefix("--only="))
            .map(str::to_string),
        codegen: !args.iter().any(|a| a == "--no-codegen"),
        write: !args.iter().any(|a| a == "--no-write"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");

    if let Some(side) = args
        .iter()
        .find_map(|a| a.strip_prefix("--profile-client="))
    {
        // A steady loop of one side's calls, for `perf record` (see BENCHMARKS.md).
        let side = if side == "sdk" { Side::Sdk } else { Side::Hand };
        runtime.block_on(profile_client(side));
        return;
    }
    if let Some(side) = args
        .iter()
        .find_map(|a| a.strip_prefix("--profile-receiver="))
    {
        runtime.block_on(profile_receiver(side == "sdk"));
        return;
    }

    let started = Instant::now();
    let mut out = String::new();
    header(&mut out, &options);
    if options.runs("client") {
        eprintln!("1/4 client: SDK vs hand-written reqwest");
        runtime.block_on(client_section(&mut out, &options));
    }
    if options.runs("receiver") {
        eprintln!("2/4 receiver: SDK receiver vs bare axum handler");
        runtime.block_on(receiver_section(&mut out, &options));
    }
    if options.runs("parsing") {
        eprintln!("3/4 event parsing");
        parsing_section(&mut out, &options);
    }
    if options.codegen && options.runs("codegen") {
        eprintln!("4/4 codegen (runs cargo)");
        codegen_section(&mut out, &options);
    }
    let _ = writeln!(
        out,
        "\nWhole run: {:.0} s.",
        started.elapsed().as_secs_f64()
    );

    println!("{out}");
    if options.write {
        let path = workspace_root().join("BENCHMARKS.md");
        match write_between_markers(&path, &out) {
            Ok(()) => eprintln!("results written to {}", path.display()),
            Err(error) => eprintln!("could not update {}: {error}", path.display()),
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/bench is two levels down")
        .to_path_buf()
}

fn write_between_markers(path: &Path, results: &str) -> std::io::Result<()> {
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{START}\n{results}\n{END}");
    let updated = match (current.find(START), current.find(END)) {
        (Some(start), Some(end)) if start < end => {
            format!(
                "{}{block}{}",
                &current[..start],
                &current[end + END.len()..]
            )
        }
        _ => format!("# Benchmarks\n\n{block}\n"),
    };
    std::fs::write(path, updated)
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

fn header(out: &mut String, options: &Options) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let _ = writeln!(
        out,
        "Measured {} on {} cores ({cpu}), {}.",
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        command_output("rustc", &["-V"])
    );
    let _ = writeln!(
        out,
        "Command: `cargo bench -p thulium-bench{}`. Release build; load generators run in the same process as the servers.",
        if options.quick { " -- --quick" } else { "" }
    );
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn verdict(met: bool, how: String) -> String {
    if met {
        format!("met ({how})")
    } else {
        format!("**missed** ({how})")
    }
}

// ---- 1. client ----

#[derive(Default)]
struct Series {
    create: Vec<Duration>,
    list: Vec<Duration>,
    wall: Duration,
    cpu: Duration,
    calls: usize,
}

impl Series {
    fn add(&mut self, other: Series) {
        self.create.extend(other.create);
        self.list.extend(other.list);
        self.wall += other.wall;
        self.cpu += other.cpu;
        self.calls += other.calls;
    }
    fn per_second(&self) -> f64 {
        self.calls as f64 / self.wall.as_secs_f64()
    }
    /// CPU time of the whole process (client and server) per call.
    fn cpu_per_call(&self) -> Duration {
        self.cpu / self.calls.max(1) as u32
    }
}

#[derive(Clone, Copy)]
enum Side {
    Sdk,
    Hand,
}

async fn one_pair(
    side: Side,
    sdk: &Client,
    hand: &HandClient,
    webhook: &NewWebhook,
) -> (Duration, Duration) {
    let t = Instant::now();
    match side {
        Side::Sdk => drop(black_box(
            sdk.create_webhook(webhook).await.expect("create"),
        )),
        Side::Hand => drop(black_box(hand.create().await.expect("create"))),
    }
    let create = t.elapsed();
    let t = Instant::now();
    match side {
        Side::Sdk => drop(black_box(sdk.list_webhooks().await.expect("list"))),
        Side::Hand => drop(black_box(hand.list().await.expect("list"))),
    }
    (create, t.elapsed())
}

async fn run_series(
    side: Side,
    sdk: &Client,
    hand: &HandClient,
    tasks: usize,
    pairs_per_task: usize,
) -> Series {
    let webhook = NewWebhook::new("https://example.pl", [Action::ChatConversationCreated]);
    let cpu_before = thulium_bench::process_cpu_time();
    let started = Instant::now();
    let mut series = Series::default();
    if tasks == 1 {
        for _ in 0..pairs_per_task {
            let (c, l) = one_pair(side, sdk, hand, &webhook).await;
            series.create.push(c);
            series.list.push(l);
        }
    } else {
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let (sdk, hand, webhook) = (sdk.clone(), hand.clone(), webhook.clone());
            handles.push(tokio::spawn(async move {
                let mut out = Vec::with_capacity(pairs_per_task);
                for _ in 0..pairs_per_task {
                    out.push(one_pair(side, &sdk, &hand, &webhook).await);
                }
                out
            }));
        }
        for handle in handles {
            for (c, l) in handle.await.expect("a bench task") {
                series.create.push(c);
                series.list.push(l);
            }
        }
    }
    series.wall = started.elapsed();
    series.cpu = match (cpu_before, thulium_bench::process_cpu_time()) {
        (Some(before), Some(after)) => after.saturating_sub(before),
        _ => Duration::ZERO,
    };
    series.calls = series.create.len() + series.list.len();
    series
}

/// Both clients, pointed at one fresh fixed-answer server.
async fn clients() -> (Client, HandClient) {
    let base = format!("http://{}", serve(fixed_api()).await);
    let sdk = Client::builder()
        .base_url(&base)
        .credentials("api_user", "api_pass")
        .build()
        .expect("an SDK client");
    (sdk, HandClient::new(&base))
}

async fn profile_client(side: Side) {
    let (sdk, hand) = clients().await;
    // A fixed number of calls (for instruction counts under valgrind), or 8 s of them.
    if let Some(pairs) = std::env::var("BENCH_PROFILE_PAIRS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        // Spread over this many tasks (1: sequential).
        let tasks = std::env::var("BENCH_PROFILE_TASKS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        // Open a few pooled connections first, so that neither side's count depends
        // on whether its pool happened to hold one connection (checked out and put
        // back around every call, a map entry removed and added each time) or more.
        run_series(side, &sdk, &hand, 4, 5).await;
        run_series(side, &sdk, &hand, tasks, pairs / tasks).await;
        return;
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        run_series(side, &sdk, &hand, 32, 20).await;
    }
}

async fn client_section(out: &mut String, options: &Options) {
    let (sdk, hand) = clients().await;

    let _ = writeln!(out, "\n## 1. Client: SDK vs hand-written reqwest\n");
    let _ = writeln!(
        out,
        "Each side sends the vendor's `POST` then `GET /api/webhooks` to the same in-process axum server (fixed vendor answers), with Basic auth, decoding into typed values. Sides alternate in rounds.\n"
    );
    let _ = writeln!(
        out,
        "| scenario | call | SDK p50 | SDK p99 | baseline p50 | baseline p99 | p50 ratio |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let mut throughput_rows = Vec::new();
    let mut worst_ratio: f64 = 0.0;
    for (name, tasks, pairs, rounds) in [
        (
            "sequential",
            1,
            if options.quick { 100 } else { 1500 },
            if options.quick { 2 } else { 6 },
        ),
        (
            "32 concurrent tasks",
            32,
            if options.quick { 10 } else { 60 },
            if options.quick { 2 } else { 6 },
        ),
    ] {
        // Warm up connections and caches on both sides.
        run_series(Side::Sdk, &sdk, &hand, tasks, 20).await;
        run_series(Side::Hand, &sdk, &hand, tasks, 20).await;
        let (mut sdk_all, mut hand_all) = (Series::default(), Series::default());
        for round in 0..rounds {
            let order = if round % 2 == 0 {
                [Side::Sdk, Side::Hand]
            } else {
                [Side::Hand, Side::Sdk]
            };
            for side in order {
                let series = run_series(side, &sdk, &hand, tasks, pairs).await;
                match side {
                    Side::Sdk => sdk_all.add(series),
                    Side::Hand => hand_all.add(series),
                }
            }
        }
        for (call, s, h) in [
            ("create", &mut sdk_all.create, &mut hand_all.create),
            ("list", &mut sdk_all.list, &mut hand_all.list),
        ] {
            let (s, h) = (
                Stats::of(s).expect("samples"),
                Stats::of(h).expect("samples"),
            );
            let ratio = s.p50.as_secs_f64() / h.p50.as_secs_f64();
            worst_ratio = worst_ratio.max(ratio);
            let _ = writeln!(
                out,
                "| {name} | {call} | {} | {} | {} | {} | {ratio:.3}x |",
                ms(s.p50),
                ms(s.p99),
                ms(h.p50),
                ms(h.p99)
            );
        }
        let (s, h) = (sdk_all.per_second(), hand_all.per_second());
        worst_ratio = worst_ratio.max(h / s);
        let (sc, hc) = (sdk_all.cpu_per_call(), hand_all.cpu_per_call());
        throughput_rows.push(format!(
            "| {name} | {s:.0} | {h:.0} | {:.3}x | {:.1} µs | {:.1} µs | {:.3}x |",
            h / s,
            sc.as_secs_f64() * 1e6,
            hc.as_secs_f64() * 1e6,
            sc.as_secs_f64() / hc.as_secs_f64()
        ));
    }
    let _ = writeln!(
        out,
        "\n| scenario | SDK calls/s | baseline calls/s | throughput ratio (baseline/SDK) | SDK CPU/call | baseline CPU/call | CPU ratio |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for row in throughput_rows {
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(
        out,
        "\nWall-clock, SDK within 1.05x of the hand-written call: {}. (The target is on instructions per call, which this noisy machine cannot disturb: callgrind, under Reading the results.)",
        verdict(
            worst_ratio <= 1.05,
            format!("worst ratio {worst_ratio:.3}x")
        )
    );
}

// ---- 2. receiver ----

async fn blast(url: &str, tasks: usize, per_task: usize) -> f64 {
    thulium::tls::install_default_provider();
    let http = reqwest::Client::new();
    let authorization = format!("Basic {}", base64_encode("thulium:bench-password"));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (http, url, authorization) = (http.clone(), url.to_string(), authorization.clone());
        handles.push(tokio::spawn(async move {
            for _ in 0..per_task {
                let status = http
                    .post(&url)
                    .header("authorization", &authorization)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(EVENT_FORM)
                    .send()
                    .await
                    .expect("a delivery")
                    .status();
                assert_eq!(status, 200, "every delivery is taken");
            }
        }));
    }
    for handle in handles {
        handle.await.expect("a load task");
    }
    (tasks * per_task) as f64 / started.elapsed().as_secs_f64()
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn sdk_receiver(taken: &Arc<AtomicU64>) -> axum::Router {
    let counter = Arc::clone(taken);
    Receiver::with_basic_auth("thulium", "bench-password")
        .expect("a receiver")
        .router("/hook", move |event: Event| {
            let counter = Arc::clone(&counter);
            async move {
                black_box(event);
                counter.fetch_add(1, Ordering::Relaxed);
                Ok::<_, std::convert::Infallible>(())
            }
        })
}

async fn profile_receiver(sdk: bool) {
    let app = if sdk {
        sdk_receiver(&Arc::default())
    } else {
        bare_receiver()
    };
    let url = format!("http://{}/hook", serve(app).await);
    // A fixed number of deliveries (for instruction counts under valgrind), or 8 s of them.
    if let Some(per_task) = std::env::var("BENCH_PROFILE_REQUESTS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        blast(&url, 64, per_task / 64).await;
        return;
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        blast(&url, 64, 100).await;
    }
}

async fn receiver_section(out: &mut String, options: &Options) {
    let taken = Arc::new(AtomicU64::new(0));
    let sdk_url = format!("http://{}/hook", serve(sdk_receiver(&taken)).await);
    let bare_url = format!("http://{}/hook", serve(bare_receiver()).await);

    let (tasks, per_task, rounds) = if options.quick {
        (64, 20, 1)
    } else {
        (64, 250, 5)
    };
    blast(&sdk_url, tasks, 10).await;
    blast(&bare_url, tasks, 10).await;
    let (mut sdk, mut bare) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            sdk.push(blast(&sdk_url, tasks, per_task).await);
            bare.push(blast(&bare_url, tasks, per_task).await);
        } else {
            bare.push(blast(&bare_url, tasks, per_task).await);
            sdk.push(blast(&sdk_url, tasks, per_task).await);
        }
    }
    let expected = (tasks * 10 + rounds * tasks * per_task) as u64;
    assert_eq!(
        taken.load(Ordering::Relaxed),
        expected,
        "the application took every event"
    );
    let (s, b) = (median(&mut sdk), median(&mut bare));
    let ratio = s / b;
    let _ = writeln!(out, "\n## 2. Receiver: SDK receiver vs bare axum handler\n");
    let _ = writeln!(
        out,
        "{tasks} concurrent connections POST the vendor's form-encoded event over loopback ({} per run, {rounds} runs per side, alternating; median of runs). The SDK receiver checks Basic auth, parses the event and hands it to a handler; the bare handler answers 200 without reading.\n",
        tasks * per_task
    );
    let _ = writeln!(out, "| receiver | events/s |");
    let _ = writeln!(out, "|---|---|");
    let _ = writeln!(out, "| SDK receiver | {s:.0} |");
    let _ = writeln!(out, "| bare axum handler | {b:.0} |");
    let _ = writeln!(
        out,
        "\nRatio {ratio:.3}x. Target at least 0.85x: {}.",
        verdict(ratio >= 0.85, format!("{ratio:.3}x"))
    );
}

// ---- 3. parsing ----

fn ns_per_op(batches: usize, per_batch: usize, mut op: impl FnMut()) -> f64 {
    for _ in 0..per_batch {
        op();
    }
    let mut samples: Vec<f64> = (0..batches)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..per_batch {
                op();
            }
            started.elapsed().as_nanos() as f64 / per_batch as f64
        })
        .collect();
    median(&mut samples)
}

fn parsing_section(out: &mut String, options: &Options) {
    let (batches, per_batch) = if options.quick {
        (5, 2_000)
    } else {
        (25, 20_000)
    };
    let form = ns_per_op(batches, per_batch, || {
        black_box(
            Event::parse(
                black_box(EVENT_FORM.as_bytes()),
                Some("application/x-www-form-urlencoded"),
            )
            .expect("parses"),
        );
    });
    let form_base = ns_per_op(batches, per_batch, || {
        black_box(
            form_urlencoded::parse(black_box(EVENT_FORM.as_bytes()))
                .into_owned()
                .collect::<Vec<_>>(),
        );
    });
    let json = ns_per_op(batches, per_batch, || {
        black_box(
            Event::parse(black_box(EVENT_JSON.as_bytes()), Some("application/json"))
                .expect("parses"),
        );
    });
    let json_base = ns_per_op(batches, per_batch, || {
        black_box(
            serde_json::from_slice::<serde_json::Value>(black_box(EVENT_JSON.as_bytes()))
                .expect("parses"),
        );
    });
    let _ = writeln!(out, "\n## 3. Event parsing\n");
    let _ = writeln!(
        out,
        "`Event::parse` on the vendor's `CHAT_CONVERSATION_CREATED` example (median of {batches} batches of {per_batch}). Baselines: the untyped decode alone.\n"
    );
    let _ = writeln!(
        out,
        "| body | Event::parse | baseline | baseline is | ratio |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| form ({} bytes) | {form:.0} ns | {form_base:.0} ns | `form_urlencoded::parse` into pairs | {:.2}x |",
        EVENT_FORM.len(),
        form / form_base
    );
    let _ = writeln!(
        out,
        "| JSON ({} bytes) | {json:.0} ns | {json_base:.0} ns | `serde_json::Value` | {:.2}x |",
        EVENT_JSON.len(),
        json / json_base
    );
    let worst = form.max(json);
    let _ = writeln!(
        out,
        "\nTarget under 2 µs per event: {}.",
        verdict(worst < 2000.0, format!("slowest {worst:.0} ns"))
    );
}

// ---- 4. codegen ----

fn cargo(root: &Path, args: &[&str]) -> Duration {
    cargo_with_spec(root, args, None)
}

/// Runs cargo; with `spec`, the SDK's `build.rs` generates from that copy of the spec
/// (`THULIUM_CODEGEN_SPEC`) instead of `openapi/thulium-webhooks.yaml`.
fn cargo_with_spec(root: &Path, args: &[&str], spec: Option<&Path>) -> Duration {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = Instant::now();
    let mut command = Command::new(cargo);
    command
        .args(args)
        .current_dir(root)
        .env("CARGO_TERM_COLOR", "never")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    match spec {
        Some(spec) => command.env("THULIUM_CODEGEN_SPEC", spec),
        None => command.env_remove("THULIUM_CODEGEN_SPEC"),
    };
    let status = command.status().expect("cargo runs");
    assert!(status.success(), "cargo {args:?} failed");
    started.elapsed()
}

fn codegen_section(out: &mut String, options: &Options) {
    let root = workspace_root();
    let runs = if options.quick { 1 } else { 3 };
    cargo(&root, &["xtask", "codegen", "--check"]);
    let mut check: Vec<f64> = (0..runs)
        .map(|_| cargo(&root, &["xtask", "codegen", "--check"]).as_secs_f64())
        .collect();

    cargo(&root, &["build", "-p", "thulium"]);
    // The rebuilds read an edited copy; the real spec is never written, so a killed
    // benchmark cannot leave it changed.
    let original =
        std::fs::read_to_string(root.join("openapi/thulium-webhooks.yaml")).expect("the spec");
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let copy = scratch.path().join("thulium-webhooks.yaml");
    let mut rebuild = Vec::new();
    for run in 0..runs.min(2) {
        let changed = original.replacen(
            "summary: List webhook subscriptions.",
            &format!("summary: List webhook subscriptions (bench {run})."),
            1,
        );
        assert_ne!(changed, original, "the line to change is in the spec");
        std::fs::write(&copy, changed).expect("the scratch copy is writable");
        rebuild
            .push(cargo_with_spec(&root, &["build", "-p", "thulium"], Some(&copy)).as_secs_f64());
    }
    // Leave the build matching the spec on disk.
    cargo(&root, &["build", "-p", "thulium"]);

    let _ = writeln!(out, "\n## 4. Codegen\n");
    let _ = writeln!(out, "| what | wall time (median of {runs}) |");
    let _ = writeln!(out, "|---|---|");
    let _ = writeln!(
        out,
        "| `cargo xtask codegen --check`, already built | {:.2} s |",
        median(&mut check)
    );
    let _ = writeln!(
        out,
        "| `cargo build -p thulium` after a one-line spec change (dev profile) | {:.2} s |",
        median(&mut rebuild)
    );
}
