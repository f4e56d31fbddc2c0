//! The embedded (redb) store on real files: the shared conformance suite, the model
//! test, and what only a file has: reopening, group commit, versions, corruption,
//! read-only paths and a full disk.

mod support;

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use proptest::prelude::*;
use support::{Faults, FaultyBackend};
use thulium_inbox::conformance::{self, ticket};
use thulium_inbox::{EmbeddedStore, PutOutcome, State, Store, StoreError};

fn fresh() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("inbox.redb")).unwrap();
    (dir, store)
}

/// A store on `path` whose syncs and writes `faults` controls.
fn faulty(path: &std::path::Path, faults: &Arc<Faults>) -> EmbeddedStore {
    let (path, faults) = (path.to_path_buf(), Arc::clone(faults));
    EmbeddedStore::open_on(
        move || FaultyBackend::open(&path, Arc::clone(&faults)),
        "inbox.redb",
    )
    .unwrap()
}

async fn on_disk(_case: &str) -> Option<(EmbeddedStore, tempfile::TempDir)> {
    let (dir, store) = fresh();
    Some((store, dir))
}

async fn remove(_dir: tempfile::TempDir) {}

thulium_inbox::conformance_tests!(on_disk, remove);

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn random_operations_match_the_model(ops in prop::collection::vec(support::model_op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (_dir, store) = fresh();
        runtime.block_on(conformance::check_against_model(&store, &ops));
    }
}

#[tokio::test]
async fn events_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.redb");
    let id = {
        let store = EmbeddedStore::open(&path).unwrap();
        store.put(ticket(7, 0)).await.unwrap().id()
    };
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.backlog(), Some(1));
    assert_eq!(
        store.get(id).await.unwrap().unwrap().dedup_key,
        ticket(7, 0).dedup_key
    );
    assert_eq!(
        store.put(ticket(7, 0)).await.unwrap(),
        PutOutcome::Duplicate(id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_share_fsyncs_and_each_waits_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let path = dir.path().join("inbox.redb");
    let store = {
        let faults = Arc::clone(&faults);
        EmbeddedStore::open_on(
            move || FaultyBackend::open(&path, Arc::clone(&faults)),
            "inbox.redb",
        )
        .unwrap()
    };
    faults.sync_delay_ms.store(20, Ordering::SeqCst);
    let before = faults.syncs.load(Ordering::SeqCst);
    let mut tasks = Vec::new();
    for ticket_id in 0..400 {
        let (store, faults) = (store.clone(), Arc::clone(&faults));
        tasks.push(tokio::spawn(async move {
            store.put(ticket(ticket_id, 0)).await.unwrap();
            // The put returned: a sync must have completed after it was asked for.
            faults.last_sync_done_ns.load(Ordering::SeqCst)
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap() > 0);
    }
    let syncs = faults.syncs.load(Ordering::SeqCst) - before;
    assert!(syncs >= 1);
    assert!(syncs < 100, "400 puts took {syncs} syncs: no group commit");
    assert_eq!(store.stats().await.unwrap().pending, 400);
}

#[tokio::test]
async fn a_failed_fsync_fails_the_put_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.redb");
    let faults = Arc::new(Faults::default());
    {
        let store = faulty(&path, &faults);
        store.put(ticket(1, 0)).await.unwrap();
        faults.fail_sync.store(true, Ordering::SeqCst);
        let error = store.put(ticket(2, 0)).await.unwrap_err();
        assert!(matches!(error, StoreError::Storage { .. }), "{error:?}");
        assert!(error.is_transient());
    }
    // After the failure, the file holds what was committed before it, and only that.
    let store = EmbeddedStore::open(&path).unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.pending, 1, "{stats:?}");
    assert!(matches!(
        store.put(ticket(2, 0)).await.unwrap(),
        PutOutcome::Stored(_)
    ));
}

#[tokio::test]
async fn a_full_disk_is_a_storage_error_and_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.redb");
    let faults = Arc::new(Faults::default());
    let store = faulty(&path, &faults);
    store.put(ticket(1, 0)).await.unwrap();
    faults.disk_full.store(true, Ordering::SeqCst);
    let mut failures = 0;
    for ticket_id in 2..200 {
        match store.put(ticket(ticket_id, 0)).await {
            Ok(_) => {}
            Err(error) => {
                assert!(error.to_string().contains("inbox store failed"), "{error}");
                failures += 1;
            }
        }
    }
    assert!(failures > 0, "no write failed although the disk is full");
    faults.disk_full.store(false, Ordering::SeqCst);
    // The disk has room again: the store reopens the file by itself and works, and
    // every count is consistent.
    let mut recovered = false;
    for _ in 0..100 {
        if store.put(ticket(1000, 0)).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        recovered,
        "the store did not recover once the disk had room"
    );
    let stats = store.stats().await.unwrap();
    let listed = store
        .list(thulium_inbox::Filter {
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stats.pending as usize, listed.len());
}

#[test]
fn bad_files_and_paths_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();

    let garbage = dir.path().join("garbage.redb");
    std::fs::write(
        &garbage,
        b"this is not a redb file, but it is long enough to look like one".repeat(100),
    )
    .unwrap();
    let error = EmbeddedStore::open(&garbage).unwrap_err();
    assert!(matches!(error, StoreError::Open { .. }), "{error:?}");
    assert!(error.to_string().contains("garbage.redb"), "{error}");

    let missing = dir.path().join("no/such/dir/inbox.redb");
    let error = EmbeddedStore::open(&missing).unwrap_err();
    assert!(
        error.to_string().contains("does the directory exist"),
        "{error}"
    );

    // A read-only directory (root ignores permissions, so check that it is honoured).
    let read_only = dir.path().join("ro");
    std::fs::create_dir(&read_only).unwrap();
    let mut permissions = std::fs::metadata(&read_only).unwrap().permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&read_only, permissions).unwrap();
    if std::fs::write(read_only.join("probe"), b"x").is_err() {
        let error = EmbeddedStore::open(read_only.join("inbox.redb")).unwrap_err();
        assert!(
            error.to_string().contains("needs a file it can write"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_new_inbox_appears_whole_and_leftovers_of_killed_creations_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.redb");
    // Left by a creation killed long ago, and by one that may still be running.
    let old = dir.path().join("inbox.redb.new-1-0");
    let recent = dir.path().join("inbox.redb.new-2-0");
    std::fs::write(&old, b"half an inbox").unwrap();
    std::fs::write(&recent, b"half an inbox").unwrap();
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();

    let store = EmbeddedStore::open(&path).unwrap();
    store.put(ticket(1, 0)).await.unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["inbox.redb", "inbox.redb.new-2-0"]);
    drop(store);
    assert_eq!(
        EmbeddedStore::open(&path)
            .unwrap()
            .stats()
            .await
            .unwrap()
            .pending,
        1
    );
}

#[test]
fn an_empty_file_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.redb");
    std::fs::write(&path, b"").unwrap();
    let error = EmbeddedStore::open(&path).unwrap_err().to_string();
    assert!(error.contains("not an inbox"), "{error}");
    assert!(error.contains("name a file that does not exist"), "{error}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[tokio::test]
async fn another_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .unwrap();
            meta.insert("schema_version", 99).unwrap();
        }
        txn.commit().unwrap();
    }
    let error = EmbeddedStore::open(&path).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::SchemaVersion {
                found: 99,
                expected: thulium_inbox::embedded::SCHEMA_VERSION,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn only_one_process_dispatches_and_others_may_still_write() {
    let (dir, store) = fresh();
    let lock = store.lock_for_dispatch().unwrap();
    // A second handle (as `thulium inbox replay` opens one) may write...
    let other = EmbeddedStore::open(dir.path().join("inbox.redb")).unwrap();
    other.put(ticket(1, 0)).await.unwrap();
    assert_eq!(store.stats().await.unwrap().pending, 1);
    // ...but not take the dispatch lock while it is held.
    assert!(other.lock_for_dispatch().is_err());
    // Nor through another name for the same file: the lock is the file's own.
    let elsewhere = tempfile::tempdir().unwrap();
    let alias = elsewhere.path().join("alias.redb");
    std::os::unix::fs::symlink(dir.path().join("inbox.redb"), &alias).unwrap();
    let aliased = EmbeddedStore::open(&alias).unwrap();
    assert!(
        aliased.lock_for_dispatch().is_err(),
        "a symlink bypassed the lock"
    );
    drop(lock);
    assert!(other.lock_for_dispatch().is_ok());
}

/// Copies fixture `name` (`tests/fixtures/README.md`) into `dir`, opens it (which
/// upgrades it in place) and checks that every event reads as the version that
/// wrote it showed it (`name.json`); returns the store and the file's path.
async fn open_fixture(name: &str, dir: &std::path::Path) -> (EmbeddedStore, std::path::PathBuf) {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let path = dir.join(format!("{name}.redb"));
    std::fs::copy(fixtures.join(format!("{name}.redb")), &path).unwrap();
    let expected: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join(format!("{name}.json"))).unwrap(),
    )
    .unwrap();
    let store = EmbeddedStore::open(&path).unwrap();
    for shown in &expected {
        let id = thulium_inbox::EventId(shown["id"].as_u64().unwrap());
        let event = store.get(id).await.unwrap().unwrap();
        assert_eq!(
            event.route,
            thulium_inbox::RouteName::default_route(),
            "{id}"
        );
        assert_eq!(event.action, shown["action"], "{id}");
        assert_eq!(event.dedup_key, shown["dedup_key"], "{id}");
        assert_eq!(event.state.as_str(), shown["state"], "{id}");
        assert_eq!(u64::from(event.attempts), shown["attempts"], "{id}");
        assert_eq!(event.conflict, shown["conflict"], "{id}");
        assert_eq!(
            event.content_type.as_deref(),
            shown["content_type"].as_str(),
            "{id}"
        );
        assert_eq!(
            &event.body[..],
            shown["body"].as_str().unwrap().as_bytes(),
            "{id}"
        );
        assert_eq!(
            event.last_error.as_deref(),
            shown["last_error"].as_str(),
            "{id}"
        );
        let history: Vec<serde_json::Value> = event
            .history
            .iter()
            .map(|a| serde_json::to_value(a).unwrap())
            .collect();
        let shown_history: Vec<serde_json::Value> = shown["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                // The CLI shows the start as a time; the store keeps milliseconds.
                let mut a = a.clone();
                a.as_object_mut().unwrap().remove("started_at");
                a
            })
            .collect();
        let kept: Vec<serde_json::Value> = history
            .into_iter()
            .map(|mut a| {
                a.as_object_mut().unwrap().remove("started_at");
                a
            })
            .collect();
        assert_eq!(kept, shown_history, "{id}");
        assert_eq!(
            serde_json::to_value(event.event().unwrap().to_json_value()).unwrap(),
            shown["event"],
            "{id}"
        );
    }
    (store, path)
}

/// Claims every due event of the default route a day from now (retries and leases
/// have come), acks each, and returns their ids.
async fn claim_and_ack_all(store: &EmbeddedStore) -> Vec<u64> {
    let mut request = thulium_inbox::ClaimRequest::now(10, Duration::from_secs(60));
    request.now += 86_400_000;
    let claimed = store.claim(request).await.unwrap();
    let mut ids: Vec<u64> = claimed.iter().map(|c| c.claim.id.0).collect();
    ids.sort();
    for claimed in claimed {
        let attempt = thulium_inbox::Attempt::ended_now(
            claimed.event.attempts,
            thulium_inbox::model::now_ms(),
            thulium_inbox::Outcome::Delivered,
        );
        store.ack(claimed.claim, attempt).await.unwrap();
    }
    ids
}

/// A file written by thulium 0.1.0 (schema 1, each event one JSON record; see
/// `tests/fixtures/README.md`) is upgraded in place when opened: every event reads
/// as that version showed it, on the default route, the counters and dedup keys
/// still hold, and its events are claimed, finished and purged as any other.
#[tokio::test]
async fn a_schema_1_file_is_upgraded_in_place_and_keeps_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = open_fixture("schema-1", dir.path()).await;
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.in_flight, stats.done, stats.dead),
        (2, 0, 5, 3)
    );
    assert_eq!(
        (stats.received, stats.duplicates, stats.conflicts),
        (11, 1, 1)
    );
    assert_eq!(stats.routes.len(), 1, "{stats:?}");

    // The dedup keys survived: ticket 2 again is a redelivery.
    assert!(matches!(
        store.put(ticket(2, 0)).await.unwrap(),
        PutOutcome::Duplicate(thulium_inbox::EventId(2))
    ));
    // The pending events are claimed and acked; the history goes on from where it was.
    assert_eq!(claim_and_ack_all(&store).await, vec![1, 9]);
    let first = store.get(thulium_inbox::EventId(1)).await.unwrap().unwrap();
    assert_eq!(first.history.len(), 3, "{first:?}");
    assert_eq!(first.state, State::Done);
    drop(store);

    // Opened again, it is a file of today's schema and nothing changes.
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.stats().await.unwrap().done, 7);
}

/// A file written by the code of schema 2 (before routes; `tests/fixtures/README.md`)
/// is upgraded in place: every event reads as that version showed it, on the
/// default route, with its counts, its in-flight event's claim and its dedup keys;
/// new events on other routes join it.
#[tokio::test]
async fn a_schema_2_file_is_upgraded_in_place_and_keeps_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = open_fixture("schema-2", dir.path()).await;
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.in_flight, stats.done, stats.dead),
        (1, 1, 6, 4)
    );
    assert_eq!(
        (stats.received, stats.duplicates, stats.conflicts),
        (13, 1, 1)
    );
    let default = &stats.routes[0];
    assert_eq!(
        (
            default.pending,
            default.in_flight,
            default.done,
            default.dead
        ),
        (1, 1, 6, 4)
    );
    assert!(matches!(
        store.put(ticket(2, 0)).await.unwrap(),
        PutOutcome::Duplicate(thulium_inbox::EventId(2))
    ));
    // Event 1 was replayed; event 11's lease has run out a day later.
    assert_eq!(claim_and_ack_all(&store).await, vec![1, 11]);
    // A new event for another route gets the next ids.
    let crm = thulium_inbox::RouteName::new("crm").unwrap();
    let id = store
        .put(ticket(500, 0).for_routes(vec![crm.clone()]))
        .await
        .unwrap()
        .id();
    assert_eq!(id.0, 13);
    assert_eq!(
        store
            .replay(thulium_inbox::Replay::DeadOn(crm))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.replay(thulium_inbox::Replay::AllDead).await.unwrap(),
        4
    );
    drop(store);
    let store = EmbeddedStore::open(&path).unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.pending, stats.done, stats.routes.len()), (5, 8, 2));
}

/// A damaged file (bytes flipped, pages zeroed, as a bad disk or a stray write would)
/// fails the operations that meet the damage with errors that say so, at open or
/// later; no panic reaches the caller, and the writer survives to take the next
/// operation (it used to die, and every later put was refused as "closed").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_file_fails_clearly_and_never_panics() {
    use thulium_testkit::damage::{Damage, damage};
    for how in [Damage::Flip, Damage::ZeroPage] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.redb");
        four_hundred(&path).await;
        damage(&path, how);
        let store = match EmbeddedStore::open(&path) {
            Ok(store) => store,
            Err(error) => {
                let text = error.to_string();
                assert!(text.contains("inbox.redb"), "{how:?}: {text}");
                continue;
            }
        };
        for id in 1..=400 {
            let _ = store.get(thulium_inbox::EventId(id)).await;
        }
        let _ = store.list(thulium_inbox::Filter::default()).await;
        let _ = store.stats().await;
        let _ = store
            .claim(thulium_inbox::ClaimRequest::now(
                500,
                Duration::from_secs(60),
            ))
            .await;
        let _ = store
            .set_aside(thulium_inbox::EventId(7), "by hand".into())
            .await;
        for ticket_id in 1000..1010 {
            let put = store.put(ticket(ticket_id, 0)).await;
            assert!(
                !matches!(put, Err(StoreError::Closed)),
                "{how:?}: the writer died: {put:?}"
            );
        }
    }
}

/// Writes 400 events (100 of them retried once) to a new file at `path`.
async fn four_hundred(path: &std::path::Path) {
    let store = EmbeddedStore::open(path).unwrap();
    for ticket_id in 0..400 {
        store.put(ticket(ticket_id, 0)).await.unwrap();
    }
    let claimed = store
        .claim(thulium_inbox::ClaimRequest::now(
            100,
            Duration::from_secs(60),
        ))
        .await
        .unwrap();
    for claimed in claimed {
        let attempt = thulium_inbox::Attempt::ended_now(
            1,
            thulium_inbox::model::now_ms(),
            thulium_inbox::Outcome::Failed("boom".into()),
        );
        store.retry_at(claimed.claim, 0, attempt).await.unwrap();
    }
}

/// `salvage` of a whole file copies every event exactly, with indexes and counts
/// that work (the copy claims, takes new events and recognises old ones); of a
/// damaged file it saves what decodes and names each event it lost, with why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salvage_copies_what_decodes_and_names_what_was_lost() {
    use thulium_inbox::embedded::salvage;
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.redb");
    four_hundred(&whole).await;
    let copy = dir.path().join("copy.redb");
    let report = salvage(&whole, &copy).unwrap();
    assert_eq!((report.saved, report.lost.len()), (400, 0));
    let (original, copied) = (
        EmbeddedStore::open(&whole).unwrap(),
        EmbeddedStore::open(&copy).unwrap(),
    );
    assert_eq!(
        original.stats().await.unwrap(),
        copied.stats().await.unwrap()
    );
    for id in 1..=400 {
        let id = thulium_inbox::EventId(id);
        assert_eq!(
            original.get(id).await.unwrap(),
            copied.get(id).await.unwrap()
        );
    }
    assert!(matches!(
        copied.put(ticket(7, 0)).await.unwrap(),
        thulium_inbox::PutOutcome::Duplicate(_)
    ));
    assert!(matches!(
        copied.put(ticket(4000, 0)).await.unwrap(),
        thulium_inbox::PutOutcome::Stored(thulium_inbox::EventId(401))
    ));
    let claimed = copied
        .claim(thulium_inbox::ClaimRequest::now(
            1000,
            Duration::from_secs(60),
        ))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 401);
    assert!(salvage(&whole, &copy).is_err(), "never replaces a file");

    // Damaged: 64 bytes flipped in eight places.
    let damaged = dir.path().join("damaged.redb");
    four_hundred(&damaged).await;
    thulium_testkit::damage::damage(&damaged, thulium_testkit::damage::Damage::Flip);
    let saved = dir.path().join("saved.redb");
    match salvage(&damaged, &saved) {
        Ok(report) => {
            assert!(report.saved + report.lost.len() as u64 <= 400, "{report:?}");
            assert!(report.saved > 0, "{report:?}");
            assert!(report.lost.iter().all(|(_, why)| !why.is_empty()));
            let store = EmbeddedStore::open(&saved).unwrap();
            let stats = store.stats().await.unwrap();
            assert_eq!(
                stats.pending + stats.in_flight + stats.done + stats.dead,
                report.saved
            );
            let listed = store
                .list(thulium_inbox::Filter {
                    limit: Some(1000),
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(listed.len() as u64, report.saved);
        }
        Err(error) => assert!(error.to_string().contains("damaged.redb"), "{error}"),
    }
}
