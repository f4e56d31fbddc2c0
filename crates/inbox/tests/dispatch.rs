//! The dispatcher and the durable receiver over a real embedded store: retries, dead
//! letters and replay, timeouts, panics, two dispatchers on one store, shutdown, and
//! what a delivery is answered.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thulium::event::Event;
use thulium::receiver::Receiver;
use thulium_inbox::conformance::ticket;
use thulium_inbox::dispatcher::{DispatchConfig, Dispatcher, RetrySchedule};
use thulium_inbox::handover::Handover;
use thulium_inbox::receiver::DurableReceiver;
use thulium_inbox::{EmbeddedStore, Replay, State, Store};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(20);

fn fresh() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("inbox.redb")).unwrap();
    (dir, store)
}

fn quick(max_attempts: u32) -> DispatchConfig {
    DispatchConfig::default()
        .concurrency(8)
        .schedule(RetrySchedule::new(
            max_attempts,
            Duration::from_millis(10),
            Duration::from_millis(40),
        ))
        .poll_interval(Duration::from_millis(20))
}

/// Runs a dispatcher in the background; dropping the returned sender stops it.
fn spawn<H: thulium_inbox::dispatcher::Handler>(
    store: &EmbeddedStore,
    config: DispatchConfig,
    handler: H,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let dispatcher = Dispatcher::new(store.clone(), config);
    let task = tokio::spawn(dispatcher.run(handler, async {
        let _ = stopped.await;
    }));
    (stop, task)
}

/// Waits until `check` holds for the store's stats.
async fn until(store: &EmbeddedStore, what: &str, check: impl Fn(&thulium_inbox::Stats) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = store.stats().await.unwrap();
        if check(&stats) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {what}: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_fails_twice_gets_three_attempts_and_one_ack() {
    let (_dir, store) = fresh();
    let id = store.put(ticket(1, 0)).await.unwrap().id();
    let calls = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&calls);
    let (stop, task) = spawn(
        &store,
        quick(15),
        move |_event: Event, delivery: thulium_inbox::dispatcher::Delivery| {
            let seen = Arc::clone(&seen);
            async move {
                let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                assert_eq!(delivery.attempt, n);
                if n < 3 { Err("not yet") } else { Ok(()) }
            }
        },
    );
    until(&store, "done", |s| s.done == 1).await;
    drop(stop);
    task.await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let event = store.get(id).await.unwrap().unwrap();
    assert_eq!(
        (event.state, event.attempts, event.history.len()),
        (State::Done, 3, 3)
    );
    assert!(event.history[0].outcome != thulium_inbox::Outcome::Delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_always_failing_handler_dead_letters_and_replay_brings_it_back() {
    let (_dir, store) = fresh();
    let id = store.put(ticket(1, 0)).await.unwrap().id();
    let healthy = Arc::new(AtomicU32::new(0));
    let switch = Arc::clone(&healthy);
    let (stop, task) = spawn(
        &store,
        quick(4),
        move |_: Event, _: thulium_inbox::dispatcher::Delivery| {
            let switch = Arc::clone(&switch);
            async move {
                if switch.load(Ordering::SeqCst) == 0 {
                    Err("database is down")
                } else {
                    Ok(())
                }
            }
        },
    );
    until(&store, "dead", |s| s.dead == 1).await;
    let dead = store.get(id).await.unwrap().unwrap();
    assert_eq!((dead.state, dead.attempts), (State::Dead, 4));
    assert!(
        dead.last_error
            .as_deref()
            .unwrap()
            .contains("database is down")
    );
    healthy.store(1, Ordering::SeqCst);
    assert_eq!(store.replay(Replay::AllDead).await.unwrap(), 1);
    until(&store, "done after the replay", |s| s.done == 1).await;
    drop(stop);
    task.await.unwrap();
    assert_eq!(store.get(id).await.unwrap().unwrap().history.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_panicking_handler_is_cut_off_and_retried() {
    let (_dir, store) = fresh();
    let hang = store.put(ticket(1, 0)).await.unwrap().id();
    let panic = store.put(ticket(2, 0)).await.unwrap().id();
    // A lease far longer than the timeout: on a loaded machine a 600 ms lease (three
    // timeouts) ran out before the failed attempt was written, and the event was
    // claimed again without it in its history.
    let config = quick(5)
        .handler_timeout(Duration::from_millis(200))
        .lease(Duration::from_secs(10));
    let (stop, task) = spawn(
        &store,
        config,
        move |_: Event, delivery: thulium_inbox::dispatcher::Delivery| async move {
            if delivery.attempt == 1 {
                if delivery.id == hang {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                } else {
                    panic!("a bug in the handler");
                }
            }
            Ok::<_, std::convert::Infallible>(())
        },
    );
    until(&store, "both done", |s| s.done == 2).await;
    drop(stop);
    task.await.unwrap();
    let hung = store.get(hang).await.unwrap().unwrap();
    assert!(
        matches!(&hung.history[0].outcome, thulium_inbox::Outcome::Failed(r) if r.contains("did not finish")),
        "{hung:?}"
    );
    let panicked = store.get(panic).await.unwrap().unwrap();
    assert!(
        matches!(&panicked.history[0].outcome, thulium_inbox::Outcome::Failed(r) if r.contains("panicked")),
        "{panicked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_on_one_store_never_run_one_event_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.redb");
    // Two handles on one file, as two processes would have.
    let first = EmbeddedStore::open(&path).unwrap();
    let second = EmbeddedStore::open(&path).unwrap();
    for ticket_id in 0..150 {
        first.put(ticket(ticket_id, 0)).await.unwrap();
    }
    let running: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let runs: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let overlaps = Arc::new(AtomicU32::new(0));
    let handler = |running: Arc<Mutex<HashSet<u64>>>,
                   runs: Arc<Mutex<HashMap<u64, u32>>>,
                   overlaps: Arc<AtomicU32>| {
        move |_: Event, delivery: thulium_inbox::dispatcher::Delivery| {
            let (running, runs, overlaps) = (
                Arc::clone(&running),
                Arc::clone(&runs),
                Arc::clone(&overlaps),
            );
            async move {
                if !running.lock().unwrap().insert(delivery.id.0) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                *runs.lock().unwrap().entry(delivery.id.0).or_default() += 1;
                // Often longer than the lease: only the heartbeat keeps the claim.
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..600))).await;
                running.lock().unwrap().remove(&delivery.id.0);
                Ok::<_, std::convert::Infallible>(())
            }
        }
    };
    // A heartbeat every third of the lease: 400 ms leaves a heartbeat 260 ms of
    // slack on a loaded machine (150 ms was lost by a debug build beside the other
    // test binaries, and a stalled worker's lease runs out, as it must).
    let config = quick(5).lease(Duration::from_millis(400));
    let (stop_a, task_a) = spawn(
        &first,
        config.clone(),
        handler(
            Arc::clone(&running),
            Arc::clone(&runs),
            Arc::clone(&overlaps),
        ),
    );
    let (stop_b, task_b) = spawn(
        &second,
        config,
        handler(
            Arc::clone(&running),
            Arc::clone(&runs),
            Arc::clone(&overlaps),
        ),
    );
    until(&first, "all done", |s| s.done == 150).await;
    drop((stop_a, stop_b));
    task_a.await.unwrap();
    task_b.await.unwrap();
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "an event ran twice at once"
    );
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len(), 150);
    assert!(
        runs.values().all(|n| *n == 1),
        "an event ran more than once: {runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_handlers_finish_and_leaves_the_rest_pending() {
    let (_dir, store) = fresh();
    for ticket_id in 0..20 {
        store.put(ticket(ticket_id, 0)).await.unwrap();
    }
    let started = Arc::new(tokio::sync::Notify::new());
    let signal = Arc::clone(&started);
    let config = quick(5)
        .concurrency(2)
        .shutdown_grace(Duration::from_secs(10));
    let (stop, task) = spawn(
        &store,
        config,
        move |_: Event, _: thulium_inbox::dispatcher::Delivery| {
            let signal = Arc::clone(&signal);
            async move {
                signal.notify_one();
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<_, std::convert::Infallible>(())
            }
        },
    );
    started.notified().await;
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("shutdown hung")
        .unwrap();
    let stats = store.stats().await.unwrap();
    // Every event was claimed ahead (the default prefetch); those not started were
    // given back as if never claimed.
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    assert!(stats.done >= 1 && stats.done <= 4, "{stats:?}");
    assert_eq!(stats.pending + stats.done, 20);
    let waiting = store
        .list(thulium_inbox::Filter {
            state: Some(State::Pending),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        waiting
            .iter()
            .all(|e| e.attempts == 0 && e.history.is_empty())
    );
}

async fn post(url: &str, body: &[u8], auth: bool) -> (u16, Option<String>) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_vec());
    if auth {
        request = request.basic_auth("thulium", Some("s3cret"));
    }
    let response = request.send().await.unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (response.status().as_u16(), retry_after)
}

async fn serve(receiver: DurableReceiver<EmbeddedStore>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/thulium", listener.local_addr().unwrap());
    tokio::spawn(thulium::server::serve(
        listener,
        receiver.router("/thulium"),
        thulium::server::ServerLimits::default(),
        std::future::pending(),
    ));
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_events_are_handed_over_as_the_receiver_parsed_them() {
    thulium::tls::install_default_provider();
    let parse = |new: &thulium_inbox::NewEvent| {
        Event::parse(&new.body, new.content_type.as_deref()).unwrap()
    };
    let (_dir, store) = fresh();
    let handover = Handover::default();
    let receiver = Receiver::with_basic_auth("thulium", "s3cret").unwrap();
    let url = serve(DurableReceiver::new(receiver, store.clone()).handover(handover.clone())).await;
    for id in [1, 2, 1] {
        assert_eq!(post(&url, &ticket(id, 0).body, true).await.0, 200);
    }
    // The redelivery of 1 stored nothing new, and took back what it kept.
    assert_eq!(handover.len(), 2);

    // An event kept by hand with another event's parse: a dispatcher that hands
    // over the kept value, not a parse of the stored JSON, shows it.
    let marked = ticket(3, 0);
    let _ = handover.keep(&marked, parse(&ticket(99, 0)));
    store.put(marked).await.unwrap();
    // One the handover does not have: parsed from the store.
    store.put(ticket(4, 0)).await.unwrap();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let (stop, task) = spawn(
        &store,
        quick(3).handover(handover.clone()),
        move |event: Event, delivery: thulium_inbox::dispatcher::Delivery| {
            record.lock().unwrap().push((delivery.dedup_key, event));
            async { Ok::<_, std::convert::Infallible>(()) }
        },
    );
    until(&store, "done", |s| s.done == 4).await;
    drop(stop);
    task.await.unwrap();
    assert!(handover.is_empty(), "every kept event was taken");
    let seen: HashMap<String, Event> = seen.lock().unwrap().drain(..).collect();
    for id in [1, 2, 4] {
        let new = ticket(id, 0);
        assert_eq!(seen[&new.dedup_key], parse(&new), "ticket {id}");
    }
    assert_eq!(
        seen[&ticket(3, 0).dedup_key],
        parse(&ticket(99, 0)),
        "the kept value, not a parse of the stored JSON"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_answers_200_once_stored_and_503_when_it_cannot_store() {
    thulium::tls::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(support::Faults::default());
    let store = {
        let (path, faults) = (dir.path().join("inbox.redb"), Arc::clone(&faults));
        EmbeddedStore::open_on(
            move || support::FaultyBackend::open(&path, Arc::clone(&faults)),
            "inbox.redb",
        )
        .unwrap()
    };
    let receiver = Receiver::with_basic_auth("thulium", "s3cret").unwrap();
    let url = serve(DurableReceiver::new(receiver, store.clone()).max_backlog(3)).await;
    let body = |id: u64| ticket(id, 0).body;

    assert_eq!(post(&url, &body(1), true).await, (200, None));
    assert_eq!(
        post(&url, &body(1), true).await,
        (200, None),
        "a redelivery"
    );
    assert_eq!(post(&url, &body(2), false).await.0, 401);
    assert_eq!(post(&url, b"action=TICKET_CREATED", true).await.0, 400);
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.pending, stats.duplicates), (1, 1));

    // The fsync fails: nothing is answered 200, nothing is stored.
    faults.fail_sync.store(true, Ordering::SeqCst);
    let (status, retry_after) = post(&url, &body(3), true).await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("30")));
    faults.fail_sync.store(false, Ordering::SeqCst);
    let mut recovered = false;
    for _ in 0..100 {
        if post(&url, &body(3), true).await.0 == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        recovered,
        "the receiver did not recover once syncs worked again"
    );

    // Full: the backlog bound refuses, with Retry-After.
    assert_eq!(post(&url, &body(4), true).await.0, 200);
    assert_eq!(post(&url, &body(5), true).await, (503, Some("30".into())));
    assert_eq!(store.stats().await.unwrap().pending, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_is_sent_only_after_the_fsync_that_made_the_event_durable() {
    thulium::tls::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(support::Faults::default());
    let store = {
        let (path, faults) = (dir.path().join("inbox.redb"), Arc::clone(&faults));
        EmbeddedStore::open_on(
            move || support::FaultyBackend::open(&path, Arc::clone(&faults)),
            "inbox.redb",
        )
        .unwrap()
    };
    // Every sync takes 200 ms: a 200 that came before the sync would come quickly.
    faults.sync_delay_ms.store(200, Ordering::SeqCst);
    let receiver = Receiver::with_basic_auth("thulium", "s3cret").unwrap();
    let url = serve(DurableReceiver::new(receiver, store.clone())).await;
    for ticket_id in 0..3 {
        let syncs_before = faults.syncs.load(Ordering::SeqCst);
        let sent_ns = faults.now_ns();
        let (status, _) = post(&url, &ticket(ticket_id, 0).body, true).await;
        let answered_ns = faults.now_ns();
        assert_eq!(status, 200);
        let last_sync = faults.last_sync_done_ns.load(Ordering::SeqCst);
        assert!(
            faults.syncs.load(Ordering::SeqCst) > syncs_before,
            "answered 200 without a sync"
        );
        assert!(
            last_sync > sent_ns && last_sync <= answered_ns,
            "the 200 came before the sync finished"
        );
    }
}

/// The library's runner as an application embeds it: one call serves, dispatches
/// and purges; a permanent failure is dead at once with its reason; `drained()`
/// says when everything stored was handed over; done events go once past the
/// window, dead ones stay; a second relay on the same file is refused while the
/// first runs; the shutdown returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_runs_dispatches_purges_and_stops_in_one_call() {
    use thulium_inbox::dispatcher::{Delivery, HandlerError, Permanent};
    use thulium_inbox::relay::{Relay, RelayError};

    thulium::tls::install_default_provider();
    let (dir, store) = fresh();
    let receiver = Receiver::with_basic_auth("thulium", "s3cret").unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    let handler = move |event: Event, _: Delivery| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            if event.dedup_key().contains("ticket_id=13") {
                return Err(HandlerError::from(Permanent::new("ticket 13 is cursed")));
            }
            Ok(())
        }
    };
    let relay = Relay::new(store.clone(), receiver.clone())
        .dispatch(quick(5))
        .keep(Duration::from_millis(400))
        .purge_every(Duration::from_millis(50))
        .start(
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            handler,
        )
        .await
        .unwrap();
    let url = format!("http://{}/thulium", relay.local_addr());
    for ticket_id in [11, 12, 13, 14] {
        let body = ticket(ticket_id, 0).body;
        assert_eq!(post(&url, &body, true).await.0, 200);
    }
    tokio::time::timeout(WAIT, relay.drained())
        .await
        .expect("drained in time")
        .unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.done + stats.dead, stats.dead), (4, 1), "{stats:?}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "the permanent failure was not retried"
    );
    let dead = store
        .list(thulium_inbox::Filter {
            state: Some(State::Dead),
            ..Default::default()
        })
        .await
        .unwrap();
    let reason = dead[0].last_error.as_deref().unwrap_or_default();
    assert!(reason.contains("ticket 13 is cursed"), "{reason}");
    assert_eq!(dead[0].attempts, 1);

    // The file is this relay's to dispatch from.
    let second = Relay::new(
        EmbeddedStore::open(dir.path().join("inbox.redb")).unwrap(),
        receiver,
    )
    .start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        |_: Event, _: Delivery| async { Ok::<_, HandlerError>(()) },
    )
    .await;
    assert!(
        matches!(second, Err(RelayError::Store(_))),
        "{:?}",
        second.map(|_| ())
    );

    // Past the window, the purge removes the done events and keeps the dead one.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let stats = store.stats().await.unwrap();
        if stats.done == 0 {
            assert_eq!(stats.dead, 1, "{stats:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never purged: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::timeout(WAIT, relay.shutdown())
        .await
        .expect("stopped in time")
        .unwrap();
    assert!(
        reqwest::Client::new().post(&url).send().await.is_err(),
        "nothing listens after the shutdown"
    );
}

/// `max_backlog` holds under a burst: deliveries being stored count against it, so
/// 300 at once into a backlog of 50 store at most 50 (each put waits for its
/// commit, and before they were counted every one of a burst passed the check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_limit_holds_under_a_burst() {
    thulium::tls::install_default_provider();
    let (_dir, store) = fresh();
    let receiver = Receiver::with_basic_auth("thulium", "s3cret").unwrap();
    let url = serve(DurableReceiver::new(receiver, store.clone()).max_backlog(50)).await;
    let burst: Vec<_> = (0..300)
        .map(|ticket_id| {
            let url = url.clone();
            tokio::spawn(async move { post(&url, &ticket(ticket_id, 0).body, true).await.0 })
        })
        .collect();
    let mut answers = HashMap::new();
    for answer in burst {
        *answers.entry(answer.await.unwrap()).or_insert(0) += 1;
    }
    let open = store.stats().await.unwrap().open();
    assert!(open <= 50, "{open} open with a limit of 50: {answers:?}");
    assert_eq!(answers.get(&200).copied().unwrap_or(0), open, "{answers:?}");
    // Then one by one up to the limit exactly.
    let mut next = 1000;
    while post(&url, &ticket(next, 0).body, true).await.0 == 200 {
        next += 1;
    }
    assert_eq!(store.stats().await.unwrap().open(), 50);
}

/// A handler's `RetryAfter` sets the next attempt's time (within the schedule's
/// longest wait) instead of the schedule's own delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_sets_the_next_attempt() {
    use thulium_inbox::dispatcher::{Delivery, HandlerError, RetryAfter};
    let (_dir, store) = fresh();
    store.put(ticket(1, 0)).await.unwrap();
    let config = DispatchConfig::default()
        .schedule(RetrySchedule::new(
            5,
            Duration::from_millis(10),
            Duration::from_secs(3600),
        ))
        .poll_interval(Duration::from_millis(20));
    let before = thulium_inbox::model::now_ms();
    let stop = spawn(&store, config, |_: Event, _: Delivery| async {
        Err::<(), HandlerError>(RetryAfter::new("HTTP 429", Duration::from_secs(90)).into())
    });
    let deadline = std::time::Instant::now() + WAIT;
    let event = loop {
        let event = store.get(thulium_inbox::EventId(1)).await.unwrap().unwrap();
        if event.attempts == 1 && event.state == State::Pending {
            break event;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never retried: {event:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(stop);
    assert!(
        event.due_at >= before + 89_000 && event.due_at <= before + 95_000,
        "due {} ms after the start",
        event.due_at - before
    );
}

/// A route paused by hand hands nothing over until it is resumed, whatever is due;
/// a route whose destination fails `failures` times in a row pauses itself (stored,
/// so every host sees it), spends no attempt while paused, probes one event after
/// the wait, stays paused while probes fail, and resumes when one is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_route_waits_and_a_failing_one_opens_its_breaker_then_recovers() {
    use thulium_inbox::breaker::BreakerConfig;
    use thulium_inbox::{Pause, RouteName};
    let (_dir, store) = fresh();
    let crm = RouteName::new("crm").unwrap();
    let on_crm = |config: DispatchConfig| config.route(crm.clone());

    // By hand: nothing is claimed while paused.
    store
        .set_pause(crm.clone(), Some(Pause::by_hand("maintenance")))
        .await
        .unwrap();
    for id in 0..5 {
        store
            .put(ticket(id, 0).for_routes(vec![crm.clone()]))
            .await
            .unwrap();
    }
    let calls = Arc::new(AtomicU32::new(0));
    let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let handler = {
        let (calls, up) = (Arc::clone(&calls), Arc::clone(&up));
        move |_: Event, _: thulium_inbox::dispatcher::Delivery| {
            let (calls, up) = (Arc::clone(&calls), Arc::clone(&up));
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if up.load(Ordering::SeqCst) {
                    Ok::<_, thulium_inbox::dispatcher::HandlerError>(())
                } else {
                    Err("the destination is down".into())
                }
            }
        }
    };
    let breaker = BreakerConfig::new(3, Duration::from_millis(300), Duration::from_millis(600));
    let (stop, task) = spawn(&store, on_crm(quick(1000)).breaker(Some(breaker)), handler);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "a paused route ran a handler"
    );
    store.set_pause(crm.clone(), None).await.unwrap();
    until(&store, "handed over after the resume", |s| s.done == 5).await;

    // The destination goes down: three failures in a row pause the route.
    up.store(false, Ordering::SeqCst);
    for id in 10..30 {
        store
            .put(ticket(id, 0).for_routes(vec![crm.clone()]))
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let pause = loop {
        if let Some(pause) = store.pause_of(crm.clone()).await.unwrap() {
            break pause;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the breaker never opened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(pause.reason.contains("circuit breaker"), "{}", pause.reason);
    assert!(pause.probe_at.is_some());
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.routes[0].route, crm);
    assert!(stats.routes[0].paused.is_some());
    // While it is open, only probes run: one every 300 to 600 ms.
    let at_open = calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let probes = calls.load(Ordering::SeqCst) - at_open;
    assert!(
        (1..=8).contains(&probes),
        "{probes} attempts in 2 s while the breaker was open"
    );
    assert!(store.pause_of(crm.clone()).await.unwrap().is_some());
    assert_eq!(
        store.stats().await.unwrap().dead,
        0,
        "nothing dies while paused"
    );

    // Back up: the next probe is taken, the route resumes and catches up.
    up.store(true, Ordering::SeqCst);
    until(&store, "caught up after the probe was taken", |s| {
        s.done == 25
    })
    .await;
    assert_eq!(store.pause_of(crm.clone()).await.unwrap(), None);
    drop(stop);
    task.await.unwrap();
}

/// A route's rate limit spaces its attempts: the last of `n` events cannot start
/// before `n - 1` spacings have passed since the dispatcher began (a bound a slow
/// machine only widens), and every event is handed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_spaces_the_attempts() {
    let (_dir, store) = fresh();
    for id in 0..10 {
        store.put(ticket(id, 0)).await.unwrap();
    }
    let starts = Arc::new(Mutex::new(Vec::new()));
    let began = std::time::Instant::now();
    let seen = Arc::clone(&starts);
    let (stop, task) = spawn(
        &store,
        quick(3).rate_limit(Some(50.0)),
        move |_: Event, _: thulium_inbox::dispatcher::Delivery| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(std::time::Instant::now());
                Ok::<_, thulium_inbox::dispatcher::HandlerError>(())
            }
        },
    );
    until(&store, "every event handed over", |s| s.done == 10).await;
    let last = *starts.lock().unwrap().iter().max().unwrap();
    assert!(
        last.duration_since(began) >= Duration::from_millis(9 * 20),
        "ten attempts at 50/s within {:?}",
        last.duration_since(began)
    );
    drop(stop);
    task.await.unwrap();
}
