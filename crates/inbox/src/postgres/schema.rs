//! The schema: table names (configurable schema and prefix), the versioned
//! migrations, and applying them under an advisory lock so that several hosts
//! starting at once apply each version once.

use thulium::error::root_cause;

use super::options::PostgresOptions;
use super::{SCHEMA_VERSION, db_error};
use crate::store::StoreError;

/// Fully qualified table names.
#[derive(Debug)]
pub(super) struct Names {
    pub schema: String,
    prefix: String,
    pub events: String,
    pub dedup: String,
    pub counters: String,
    pub pauses: String,
    pub migrations: String,
}

impl Names {
    pub fn new(options: &PostgresOptions) -> Result<Self, StoreError> {
        let valid = |name: &str, empty_ok: bool| {
            (empty_ok || !name.is_empty())
                && name.len() <= 40
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        };
        if !valid(&options.schema, false) || !valid(&options.table_prefix, true) {
            return Err(StoreError::Open {
                path: options.schema.clone().into(),
                reason: "schema and table prefix must be lower-case letters, digits and _, up to 40 characters".into(),
            });
        }
        let table =
            |name: &str| format!("\"{}\".\"{}{name}\"", options.schema, options.table_prefix);
        Ok(Self {
            schema: format!("\"{}\"", options.schema),
            prefix: options.table_prefix.clone(),
            events: table("events"),
            dedup: table("dedup"),
            counters: table("counters"),
            pauses: table("route_pauses"),
            migrations: table("migrations"),
        })
    }

    /// The versioned migrations, in order. A migration is history: its text stays as
    /// it was applied (its state codes are those of [`super::rows::StateCode`]).
    fn migrations(&self) -> Vec<(i32, String)> {
        let Names {
            events,
            dedup,
            counters,
            pauses,
            prefix,
            ..
        } = self;
        vec![
            (
                1,
                format!(
                    "CREATE TABLE {events} (
                   id BIGSERIAL PRIMARY KEY,
                   dedup_key TEXT NOT NULL,
                   action TEXT NOT NULL,
                   canonical TEXT NOT NULL,
                   body TEXT NOT NULL,
                   content_type TEXT,
                   received_at BIGINT NOT NULL,
                   state SMALLINT NOT NULL,
                   attempts INTEGER NOT NULL DEFAULT 0,
                   due_at BIGINT NOT NULL,
                   finished_at BIGINT,
                   last_error TEXT,
                   conflict BOOLEAN NOT NULL DEFAULT FALSE,
                   history JSONB NOT NULL DEFAULT '[]',
                   claim_token BIGINT
                 );
                 CREATE INDEX \"{prefix}events_due\" ON {events} (due_at, id) WHERE state IN (0, 1);
                 CREATE INDEX \"{prefix}events_open\" ON {events} (id) WHERE state IN (0, 1);
                 CREATE INDEX \"{prefix}events_dead\" ON {events} (id) WHERE state = 3;
                 CREATE INDEX \"{prefix}events_done\" ON {events} (finished_at) WHERE state = 2;
                 CREATE INDEX \"{prefix}events_action\" ON {events} (action, id);
                 CREATE TABLE {dedup} (
                   dedup_key TEXT NOT NULL,
                   digest TEXT NOT NULL,
                   event_id BIGINT NOT NULL,
                   received_at BIGINT NOT NULL,
                   PRIMARY KEY (dedup_key, digest)
                 );
                 CREATE INDEX \"{prefix}dedup_received\" ON {dedup} (received_at);
                 CREATE TABLE {counters} (
                   name TEXT NOT NULL,
                   shard SMALLINT NOT NULL,
                   value BIGINT NOT NULL,
                   PRIMARY KEY (name, shard)
                 );",
                ),
            ),
            // The body exactly as received: bytes, which may hold what text cannot
            // (a NUL made every put of its batch fail under schema 1).
            (
                2,
                format!(
                    "ALTER TABLE {events} ALTER COLUMN body TYPE BYTEA USING convert_to(body, 'UTF8');"
                ),
            ),
            // Routes: each row is one route's entry of an event; every row before is
            // the default route's, of no named account (the dedup table keys an
            // account's events by `account \x1f key`, `model::dedup_scope`). A constant default adds the column without a
            // rewrite; claims, dead letters and counts read per route. Paused routes
            // (`Pause`: since, reason, and a breaker's probe time) have a row each.
            (
                3,
                format!(
                    "ALTER TABLE {events} ADD COLUMN route TEXT NOT NULL DEFAULT 'default';
                     ALTER TABLE {events} ADD COLUMN account TEXT;
                     DROP INDEX {schema}.\"{prefix}events_due\";
                     DROP INDEX {schema}.\"{prefix}events_open\";
                     DROP INDEX {schema}.\"{prefix}events_dead\";
                     CREATE INDEX \"{prefix}events_due\" ON {events} (route, due_at, id) WHERE state IN (0, 1);
                     CREATE INDEX \"{prefix}events_open\" ON {events} (route, id) WHERE state IN (0, 1);
                     CREATE INDEX \"{prefix}events_dead\" ON {events} (route, id) WHERE state = 3;
                     CREATE TABLE {pauses} (
                       route TEXT PRIMARY KEY,
                       since BIGINT NOT NULL,
                       reason TEXT NOT NULL,
                       probe_at BIGINT
                     );",
                    schema = self.schema,
                ),
            ),
        ]
    }
}

/// What a text search reads in SQL: the canonical JSON and the body's `escape`
/// encoding (text that holds any bytes), one text the optional trigram index
/// covers. Each row found is re-checked against the bytes.
pub(super) const SEARCHED: &str = "((canonical || E'\\n' || encode(body, 'escape')))";

/// Creates the trigram index of text searches ([`super::PostgresOptions::search_index`])
/// if it is missing, with `pg_trgm` if the extension is missing and the role may
/// add it. Every put then updates it: measured in BENCHMARKS.md.
pub(super) async fn create_search_index(
    client: &deadpool_postgres::Object,
    names: &Names,
) -> Result<(), StoreError> {
    let transaction_free = format!(
        "DO $$ DECLARE ops TEXT;
         BEGIN
           -- One database, several inbox schemas starting at once.
           PERFORM pg_advisory_xact_lock(hashtext('thulium-inbox pg_trgm'));
           CREATE EXTENSION IF NOT EXISTS pg_trgm;
           SELECT quote_ident(n.nspname) || '.gin_trgm_ops' INTO ops
             FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
            WHERE e.extname = 'pg_trgm';
           EXECUTE format('CREATE INDEX IF NOT EXISTS \"{prefix}events_text_trgm\" ON {events} USING gin ({searched} %s)', ops);
         END $$;",
        prefix = names.prefix,
        events = names.events,
        searched = SEARCHED.replace('\'', "''"),
    );
    client
        .batch_execute(&transaction_free)
        .await
        .map_err(|e| db_error("cannot create the text search index (pg_trgm)", e))
}

pub(super) async fn migrate(
    client: &mut deadpool_postgres::Object,
    names: &Names,
) -> Result<(), StoreError> {
    let transaction = client
        .transaction()
        .await
        .map_err(|e| db_error("cannot start the migration", e))?;
    let lock_key = format!("thulium-inbox {}", names.migrations);
    transaction
        .execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&lock_key])
        .await
        .map_err(|e| db_error("cannot take the migration lock", e))?;
    transaction
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {migrations} (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());",
            schema = names.schema,
            migrations = names.migrations
        ))
        .await
        .map_err(|e| migration_failed(0, e))?;
    let current: i32 = transaction
        .query_one(
            &format!("SELECT COALESCE(max(version), 0) FROM {}", names.migrations),
            &[],
        )
        .await
        .map_err(|e| db_error("cannot read the schema version", e))?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::SchemaVersion {
            path: names.schema.clone().into(),
            found: current as u64,
            expected: SCHEMA_VERSION as u64,
        });
    }
    for (version, sql) in names.migrations() {
        if version <= current {
            continue;
        }
        transaction
            .batch_execute(&sql)
            .await
            .map_err(|e| migration_failed(version, e))?;
        transaction
            .execute(
                &format!("INSERT INTO {} (version) VALUES ($1)", names.migrations),
                &[&version],
            )
            .await
            .map_err(|e| migration_failed(version, e))?;
        tracing::info!(version, schema = %names.schema, "inbox migration applied");
    }
    transaction
        .commit()
        .await
        .map_err(|e| db_error("cannot commit the migration", e))
}

fn migration_failed(version: i32, error: tokio_postgres::Error) -> StoreError {
    StoreError::Open {
        path: "postgres".into(),
        reason: format!(
            "migration {version} failed and was rolled back: {}; nothing was changed",
            root_cause(&error)
        ),
    }
}

pub(super) async fn check_version(
    client: &deadpool_postgres::Object,
    names: &Names,
) -> Result<(), StoreError> {
    let row = client
        .query_one(
            &format!("SELECT COALESCE(max(version), 0) FROM {}", names.migrations),
            &[],
        )
        .await
        .map_err(|e| StoreError::Open {
            path: names.schema.clone().into(),
            reason: format!(
                "the inbox schema is missing ({}); connect once with migrations on (PostgresOptions::migrate; the command line: `thulium inbox migrate`)",
                root_cause(&e)
            ),
        })?;
    let found: i32 = row.get(0);
    if found != SCHEMA_VERSION {
        return Err(StoreError::SchemaVersion {
            path: names.schema.clone().into(),
            found: found as u64,
            expected: SCHEMA_VERSION as u64,
        });
    }
    Ok(())
}
