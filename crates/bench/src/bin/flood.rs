//! A long flood against a running relay whose application is down: what its memory
//! does once the backlog limit is reached (#21 item 14). Not part of `cargo bench`
//! (it runs for minutes); run it by hand on a release build:
//!
//! ```text
//! cargo build --release -p thulium-cli
//! cargo run --release -p thulium-bench --bin flood -- target/release/thulium 600 5000
//! ```
//!
//! Arguments: the `thulium` binary, the seconds to flood (default 600), the
//! `--max-backlog` (default 5000), then any flags for `thulium listen` (such as
//! `--inbox-cache-mb 16`). It starts `thulium listen --inbox` (a fresh file
//! in a temporary directory) forwarding to a closed port, floods it with 32
//! concurrent senders of distinct events, and prints every 10 s the listener's
//! resident memory (`VmRSS`), the deliveries answered 200 and 503, and the open
//! events the inbox reports. Memory must be flat once the backlog is full, and the
//! open events never above the limit.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .expect("the thulium binary (target/release/thulium)");
    let seconds: u64 = args.next().map_or(600, |s| s.parse().expect("seconds"));
    let max_backlog: u64 = args
        .next()
        .map_or(5000, |s| s.parse().expect("max backlog"));
    // Anything after them goes to `thulium listen` as is (`--inbox-cache-mb 16`).
    let extra: Vec<String> = args.collect();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port nobody listens on")
        .port();
    let mut listener = Command::new(&binary)
        .args([
            "listen",
            "--no-auth",
            "--addr",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--inbox")
        .arg(dir.path().join("events.redb"))
        .args(["--forward-to", &format!("http://127.0.0.1:{closed}/app")])
        .args(["--max-backlog", &max_backlog.to_string()])
        .args(&extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the listener starts");
    let pid = listener.id();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async move {
        thulium::tls::install_default_provider();
        let url = format!("http://127.0.0.1:{port}/thulium");
        let http = reqwest::Client::new();
        let started = Instant::now();
        while http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the listener never answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (ok, refused, next) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(1)),
        );
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let senders: Vec<_> = (0..32)
            .map(|_| {
                let (http, url) = (http.clone(), url.clone());
                let (ok, refused, next) =
                    (Arc::clone(&ok), Arc::clone(&refused), Arc::clone(&next));
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let ticket = next.fetch_add(1, Ordering::Relaxed);
                        let body = thulium_inbox::conformance::ticket(ticket, 0).body;
                        let answer = http
                            .post(&url)
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body(body)
                            .send()
                            .await;
                        match answer.map(|a| a.status().as_u16()) {
                            Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                            Ok(_) => refused.fetch_add(1, Ordering::Relaxed),
                            Err(_) => refused.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        println!("| after | RSS (MB) | answered 200 | answered 503 | open in the inbox |");
        println!("|---|---|---|---|---|");
        let mut peak_open = 0;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|status| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                })
                .unwrap_or(0);
            let open = http
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
                .ok();
            let open = match open {
                Some(answer) => answer.text().await.unwrap_or_default(),
                None => String::new(),
            };
            let open = open
                .lines()
                .find_map(|l| l.strip_prefix("thulium_inbox_queue_depth "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0) as u64;
            peak_open = peak_open.max(open);
            println!(
                "| {} s | {:.1} | {} | {} | {} |",
                started.elapsed().as_secs(),
                rss as f64 / 1024.0,
                ok.load(Ordering::Relaxed),
                refused.load(Ordering::Relaxed),
                open
            );
        }
        for sender in senders {
            let _ = sender.await;
        }
        println!("\nmost open events seen: {peak_open} (limit {max_backlog})");
    });
    let _ = listener.kill();
    let _ = listener.wait();
}
