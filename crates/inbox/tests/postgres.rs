//! The PostgreSQL store against a real server: the shared conformance suite, the model
//! test, migrations, lost connections, read-only databases and refused plain-text
//! credentials. Each test works in a schema of its own and drops it at the end.
//!
//! The server is `THULIUM_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`). If it cannot be reached the tests say
//! so and are not run, unless `CI` or `THULIUM_REQUIRE_POSTGRES` is set: then they
//! fail, so that CI never skips them silently.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use thulium_inbox::conformance::{self, ticket};
use thulium_inbox::postgres::{PostgresOptions, PostgresStore};
use thulium_inbox::{PutOutcome, Store, StoreError};

use thulium_testkit::postgres::{fresh_schema, required, url};

/// A store in a fresh schema, or `None` (with the reason printed) when PostgreSQL is
/// not reachable and not required.
async fn fresh(test: &str) -> Option<(PostgresStore, String)> {
    let schema = fresh_schema(test);
    match PostgresStore::connect(&url(), PostgresOptions::default().schema(&schema)).await {
        Ok(store) => Some((store, schema)),
        Err(error) if !required() => {
            // Written to stderr directly, not with eprintln!, which the test harness
            // captures: the developer must see that these tests did not run.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "\nNOT RUN: {test}: PostgreSQL at {} is not reachable ({error}). Start it (see README), or set THULIUM_TEST_POSTGRES; CI requires it.",
                url()
            );
            None
        }
        Err(error) => panic!(
            "PostgreSQL at {} is required (CI) but not reachable: {error}",
            url()
        ),
    }
}

/// A plain client for what the tests do to the server behind the store's back.
async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .expect("an admin connection");
    tokio::spawn(connection);
    client
}

async fn drop_schema(schema: &str) {
    let _ = admin()
        .await
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await;
}

thulium_inbox::conformance_tests!(fresh, drop_schema_of);

async fn drop_schema_of(schema: String) {
    drop_schema(&schema).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    #[test]
    fn random_operations_match_the_model_on_postgres(ops in prop::collection::vec(support::model_op(), 1..50)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let Some((store, schema)) = fresh("model").await else { return };
            conformance::check_against_model(&store, &ops).await;
            drop_schema(&schema).await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_of_one_event_from_several_stores_store_it_once() {
    let Some((first, schema)) = fresh("concurrent").await else {
        return;
    };
    let second = PostgresStore::connect(&url(), PostgresOptions::default().schema(&schema))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for round in 0..200u64 {
        for store in [first.clone(), second.clone()] {
            tasks.push(tokio::spawn(async move {
                store.put(ticket(round % 50, 0)).await.unwrap()
            }));
        }
    }
    let mut stored = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), PutOutcome::Stored(_)) {
            stored += 1;
        }
    }
    assert_eq!(stored, 50);
    let stats = first.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.received, stats.duplicates),
        (50, 400, 350)
    );
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_and_a_newer_schema_is_refused() {
    let Some((store, schema)) = fresh("migrate").await else {
        return;
    };
    // Several hosts starting at once on an existing schema: nothing to apply, no error.
    let mut starts = Vec::new();
    for _ in 0..4 {
        let schema = schema.clone();
        starts.push(tokio::spawn(async move {
            PostgresStore::connect(&url(), PostgresOptions::default().schema(schema)).await
        }));
    }
    for start in starts {
        start.await.unwrap().unwrap();
    }
    drop(store);
    let admin = admin().await;
    admin
        .batch_execute(&format!(
            "INSERT INTO \"{schema}\".\"migrations\" (version) VALUES (99)"
        ))
        .await
        .unwrap();
    let error = PostgresStore::connect(&url(), PostgresOptions::default().schema(&schema))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::SchemaVersion { found: 99, .. }),
        "{error:?}"
    );
    let missing = PostgresStore::connect(
        &url(),
        PostgresOptions::default()
            .schema("t_never_created")
            .migrate(false),
    )
    .await
    .unwrap_err();
    assert!(
        missing.to_string().contains("thulium inbox migrate"),
        "{missing}"
    );
    drop_schema(&schema).await;
}

/// A schema left by thulium 0.1.0 (`tests/fixtures/postgres-schema-1.sql`, body as
/// text) is migrated at connect through every migration: the body becomes bytes,
/// every byte kept, every row is the default route's, and the store takes bodies
/// text could not hold and claims by route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_1_database_is_migrated_and_keeps_its_events() {
    let schema = fresh_schema("schema_1");
    let admin = match tokio_postgres::connect(&url(), tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
        }
        Err(error) if !required() => {
            eprintln!("NOT RUN: PostgreSQL is not reachable ({error})");
            return;
        }
        Err(error) => panic!("PostgreSQL is required (CI) but not reachable: {error}"),
    };
    let fixture = include_str!("fixtures/postgres-schema-1.sql").replace("{schema}", &schema);
    admin.batch_execute(&fixture).await.unwrap();

    let store = PostgresStore::connect(&url(), PostgresOptions::default().schema(&schema))
        .await
        .unwrap();
    let event = store.get(thulium_inbox::EventId(1)).await.unwrap().unwrap();
    assert_eq!(
        &event.body[..],
        "action=TICKET_CREATED&ticket_id=1&agent_login=%C5%BC%C3%B3%C5%82w&direction=in_behalf_of&date=2014-11-17+12%3A59%3A32&customer_id=154".as_bytes()
    );
    assert_eq!(event.state, thulium_inbox::State::Done);
    assert_eq!(event.route, thulium_inbox::RouteName::default_route());
    assert_eq!(event.history.len(), 1);
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.routes.len(), 1);
    assert_eq!(
        stats.routes[0].route,
        thulium_inbox::RouteName::default_route()
    );
    assert_eq!(
        event.event().unwrap().to_json_value()["agent_login"],
        "żółw"
    );
    let column: String = admin
        .query_one(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'events' AND column_name = 'body'",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(column, "bytea");
    // A body with a NUL, which the text column refused with every put of its batch.
    let mut raw = ticket(2, 0);
    raw.body = bytes::Bytes::from_static(b"action=TICKET_CREATED&ticket_id=2&note=a\x00b");
    let id = store.put(raw.clone()).await.unwrap().id();
    assert_eq!(id.0, 2, "the id sequence goes on");
    assert_eq!(store.get(id).await.unwrap().unwrap().body, raw.body);
    // Claims read the migrated indexes per route.
    let claimed = store
        .claim(thulium_inbox::ClaimRequest::now(
            10,
            std::time::Duration::from_secs(60),
        ))
        .await
        .unwrap();
    assert_eq!(claimed.iter().map(|c| c.claim.id).collect::<Vec<_>>(), [id]);
    drop(store);
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_fail_one_operation_at_most_then_recover() {
    let Some((_, schema)) = fresh("terminate").await else {
        return;
    };
    // Its own application name, so that only its connections are terminated.
    let name = format!("terminate_{:x}", fastrand::u32(..));
    let tagged = format!(
        "{}{}application_name={name}",
        url(),
        if url().contains('?') { "&" } else { "?" }
    );
    let store = PostgresStore::connect(&tagged, PostgresOptions::default().schema(&schema))
        .await
        .unwrap();
    store.put(ticket(1, 0)).await.unwrap();
    let admin = admin().await;
    let terminated = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .await
        .unwrap();
    assert!(!terminated.is_empty(), "no connection was terminated");
    let mut ok = 0;
    for ticket_id in 2..20 {
        match store.put(ticket(ticket_id, 0)).await {
            Ok(_) => ok += 1,
            Err(error) => assert!(error.is_transient(), "{error:?}"),
        }
    }
    assert!(ok >= 16, "the store did not recover: {ok} of 18 puts");
    assert!(store.stats().await.unwrap().pending >= 17);
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_is_not_ready_and_plain_text_to_a_remote_host_is_refused() {
    let Some((_store, schema)) = fresh("readonly").await else {
        return;
    };
    let read_only_url = format!(
        "{}{}options=-c%20default_transaction_read_only%3Don",
        url(),
        if url().contains('?') { "&" } else { "?" }
    );
    let read_only = PostgresStore::connect(
        &read_only_url,
        PostgresOptions::default().schema(&schema).migrate(false),
    )
    .await
    .unwrap();
    let error = read_only.check_writable().await.unwrap_err();
    assert!(error.to_string().contains("read-only"), "{error}");
    assert!(read_only.put(ticket(1, 0)).await.is_err());

    let remote = PostgresStore::connect(
        "postgres://inbox:secret@db.example.invalid/inbox",
        PostgresOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(remote.to_string().contains("sslmode=require"), "{remote}");
    assert!(!remote.to_string().contains("secret"), "{remote}");
    drop_schema(&schema).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// With `search_index`, a text search over many events reads the trigram index,
/// not every row: after a search the index's scan count has grown, and it finds
/// the one event whose body (and only its body, in its raw form) holds the text.
/// Without the option no index is made (every put would pay for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_search_uses_the_trigram_index_when_asked_to() {
    let Some((plain, schema)) = fresh("trigram").await else {
        return;
    };
    drop(plain);
    let admin = admin().await;
    let indexes = admin
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname LIKE '%trgm'",
            &[&schema],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(indexes, 0, "no trigram index unless asked for");
    let store = PostgresStore::connect(
        &url(),
        PostgresOptions::default()
            .schema(&schema)
            .search_index(true),
    )
    .await
    .unwrap();
    admin
        .batch_execute(&format!(
            "INSERT INTO \"{schema}\".events (dedup_key, action, canonical, body, received_at, state, due_at)
             SELECT 'k' || g, 'TICKET_CREATED', '{{\"ticket_id\":' || g || '}}',
                    convert_to('action=TICKET_CREATED&ticket_id=' || g, 'UTF8'), 0, 2, 0
               FROM generate_series(1, 100000) g;
             ANALYZE \"{schema}\".events;"
        ))
        .await
        .unwrap();
    let body = "action=TICKET_CREATED&ticket_id=777777&agent_login=a&direction=in&date=2026-11-30+10%3A00%3A00&customer_id=5&client_note=zqxjvw+plover";
    let event = thulium::event::Event::parse(body.as_bytes(), None).unwrap();
    store
        .put(thulium_inbox::NewEvent::from_event(&event, body, None))
        .await
        .unwrap();
    let scans = || async {
        admin
            .query_one(
                "SELECT coalesce(sum(idx_scan), 0)::bigint FROM pg_stat_user_indexes
                  WHERE schemaname = $1 AND indexrelname LIKE '%trgm'",
                &[&schema],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let before = scans().await;
    let found = store
        .list(thulium_inbox::Filter {
            // In the raw form body only: the canonical JSON has `"zqxjvw plover"`.
            text: Some("zqxjvw+plover".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    let started = std::time::Instant::now();
    while scans().await <= before {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the search did not use the trigram index"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop_schema(&schema).await;
}
