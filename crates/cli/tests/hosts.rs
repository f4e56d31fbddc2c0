//! Several hosts on one PostgreSQL inbox: three `thulium listen --inbox postgres://...`
//! processes receive 12,000 distinct events, each sent to a random one and some sent
//! twice to different ones; one listener is killed with SIGKILL mid-stream and the
//! database's connections are terminated mid-stream. At the end every event answered
//! 200 reached the application at least once, no event is stored twice, and no two
//! workers ever held one event at once.
//!
//! Needs PostgreSQL (`THULIUM_TEST_POSTGRES`, default the local server); without it
//! the test says so and is not run, unless `CI` or `THULIUM_REQUIRE_POSTGRES` is set.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use thulium_testkit::events::ticket_body as body;
use thulium_testkit::postgres::url;
use thulium_testkit::process::Guarded;
use thulium_testkit::sink::{self, Sink};

const EVENTS: usize = 12_000;
const CONNECTIONS: usize = 32;

struct Listener {
    child: Guarded,
    addr: SocketAddr,
    alive: AtomicBool,
}

fn start(inbox: &str, schema: &str, sink: SocketAddr) -> Listener {
    let addr = SocketAddr::from(([127, 0, 0, 1], thulium_testkit::free_port()));
    let child = Guarded::spawn(
        Command::new(env!("CARGO_BIN_EXE_thulium"))
            .args([
                "listen",
                "--no-auth",
                "--addr",
                &addr.to_string(),
                "--inbox",
                inbox,
                "--inbox-schema",
                schema,
                "--forward-to",
                &format!("http://{sink}/app"),
                "--handler-timeout",
                "2s",
                "--concurrency",
                "16",
            ])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    Listener {
        child,
        addr,
        alive: AtomicBool::new(true),
    }
}

/// Posts event `i` to random live listeners until one answers 200; `avoid` is a
/// listener not to use (for the second copy). Returns the listener that took it.
async fn deliver(
    http: &reqwest::Client,
    listeners: &[Listener],
    i: usize,
    avoid: Option<usize>,
) -> Option<usize> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let choice = fastrand::usize(..listeners.len());
        if Some(choice) == avoid || !listeners[choice].alive.load(Ordering::SeqCst) {
            continue;
        }
        let sent = http
            .post(format!("http://{}/thulium", listeners[choice].addr))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body(i))
            .send()
            .await;
        if matches!(&sent, Ok(r) if r.status().as_u16() == 200) {
            return Some(choice);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[test]
fn three_listeners_one_database_a_kill_and_terminated_connections_lose_nothing() {
    let schema = format!("hosts_{:x}", fastrand::u32(..));
    let app_name = format!("thulium_{schema}");
    let inbox = format!(
        "{}{}application_name={app_name}",
        url(),
        if url().contains('?') { "&" } else { "?" }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let admin = runtime.block_on(async {
        match tokio_postgres::connect(&url(), tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                Some(client)
            }
            Err(error) => {
                if thulium_testkit::postgres::required() {
                    panic!("PostgreSQL at {} is required (CI) but not reachable: {error}", url());
                }
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "\nNOT RUN: several hosts: PostgreSQL at {} is not reachable ({error}); CI requires it.", url());
                None
            }
        }
    });
    let Some(admin) = admin else { return };
    thulium::tls::install_default_provider();

    let sink = Arc::new(Sink::default());
    // Up to 3 ms per forward, so that forwards overlap as a real application's do.
    let sink_addr = runtime.block_on(sink::start(Arc::clone(&sink), Duration::from_millis(3)));
    // Migrate once, then start the three hosts.
    let (code, _, stderr) = {
        let out = Command::new(env!("CARGO_BIN_EXE_thulium"))
            .args([
                "inbox",
                "migrate",
                "--inbox",
                &inbox,
                "--inbox-schema",
                &schema,
            ])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(0), "{stderr}");
    let listeners: Arc<Vec<Listener>> =
        Arc::new((0..3).map(|_| start(&inbox, &schema, sink_addr)).collect());
    let accepted: Arc<Vec<AtomicBool>> =
        Arc::new((0..EVENTS).map(|_| AtomicBool::new(false)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let twice = Arc::new(AtomicUsize::new(0));

    runtime.block_on(async {
        // Wait until all three listen.
        for listener in listeners.iter() {
            let started = Instant::now();
            while tokio::net::TcpStream::connect(listener.addr).await.is_err() {
                assert!(started.elapsed() < Duration::from_secs(30), "a listener never started");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let mut tasks = Vec::new();
        for _ in 0..CONNECTIONS {
            let (http, listeners, accepted, next, twice) =
                (http.clone(), Arc::clone(&listeners), Arc::clone(&accepted), Arc::clone(&next), Arc::clone(&twice));
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= EVENTS {
                        return;
                    }
                    let Some(first) = deliver(&http, &listeners, i, None).await else { continue };
                    accepted[i].store(true, Ordering::SeqCst);
                    if i % 10 == 0 && deliver(&http, &listeners, i, Some(first)).await.is_some() {
                        twice.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
        // Mid-stream: kill one listener, then terminate every inbox connection.
        while next.load(Ordering::SeqCst) < EVENTS / 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let victim = &listeners[0];
        victim.alive.store(false, Ordering::SeqCst);
        victim.child.signal("KILL");
        while next.load(Ordering::SeqCst) < EVENTS * 2 / 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let terminated = admin
            .query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", &[&app_name])
            .await
            .unwrap();
        assert!(!terminated.is_empty(), "no inbox connection to terminate");
        for task in tasks {
            task.await.unwrap();
        }
    });

    let accepted: Vec<usize> = (0..EVENTS)
        .filter(|i| accepted[*i].load(Ordering::SeqCst))
        .collect();
    assert_eq!(
        accepted.len(),
        EVENTS,
        "some events were never answered 200 by any listener"
    );
    // Everything answered 200 reaches the application (the killed host's claims come
    // back after their lease).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let seen = sink.seen();
        let missing = accepted.iter().filter(|i| !seen.contains(i)).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} events answered 200 never reached the application"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (rows, distinct): (i64, i64) = runtime.block_on(async {
        let row = admin
            .query_one(
                &format!("SELECT count(*), count(DISTINCT dedup_key) FROM \"{schema}\".\"events\""),
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    });
    assert_eq!(
        (rows, distinct),
        (EVENTS as i64, EVENTS as i64),
        "an event was stored twice"
    );
    assert_eq!(sink.overlaps(), 0, "two workers held one event at once");
    eprintln!(
        "{} events, {} sent twice, {} deliveries to the application",
        EVENTS,
        twice.load(Ordering::SeqCst),
        sink.deliveries()
    );
    for listener in listeners.iter().skip(1) {
        listener.child.signal("INT");
    }
    let listeners = Arc::try_unwrap(listeners)
        .ok()
        .expect("no task holds the listeners");
    for mut listener in listeners {
        let _ = listener.child.wait();
    }
    runtime.block_on(async {
        let _ = admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await;
    });
}
