//! [`PostgresOptions`]: where the inbox lives in PostgreSQL, and how to connect.

/// Where the inbox lives in PostgreSQL.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// The schema (created if missing; default `thulium_inbox`).
    pub schema: String,
    /// Prefixed to every table name (default empty).
    pub table_prefix: String,
    /// Pooled connections per process (default 8).
    pub pool_size: usize,
    /// Apply missing migrations at connect (default true); else check the version.
    pub migrate: bool,
    /// The database password, if the URL has none (so that it need not be on a
    /// command line).
    pub password: Option<thulium::Password>,
    /// Keep a trigram index (`pg_trgm`) for text searches, created at connect if
    /// missing (default false). Searches then read the index instead of every
    /// event, and every put updates it: on this project's benchmark machine ingest
    /// went from 11,100 to 7,300 events/s and its p99 from 10 to 41 ms. Without it,
    /// the console's one-at-a-time searches scan. Turning it off does not drop an
    /// index already there.
    pub search_index: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: "thulium_inbox".into(),
            table_prefix: String::new(),
            pool_size: 8,
            migrate: true,
            password: None,
            search_index: false,
        }
    }
}

impl PostgresOptions {
    /// Sets [`Self::search_index`].
    pub fn search_index(mut self, keep: bool) -> Self {
        self.search_index = keep;
        self
    }

    /// Sets [`Self::schema`].
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Sets [`Self::table_prefix`].
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.table_prefix = prefix.into();
        self
    }

    /// Sets [`Self::pool_size`].
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(2);
        self
    }

    /// Sets [`Self::migrate`].
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Sets [`Self::password`].
    pub fn password(mut self, password: impl Into<thulium::Password>) -> Self {
        self.password = Some(password.into());
        self
    }
}
