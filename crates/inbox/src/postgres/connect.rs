//! Connecting: the URL, TLS off loopback, the pool, migrations at start; and the
//! errors that mean a connection is gone.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use thulium::error::root_cause;
use tokio::sync::{Notify, mpsc};
use tokio_postgres::config::{Host, SslMode};

use super::batch::{backlog_refresher, write_batches};
use super::options::PostgresOptions;
use super::schema::{Names, check_version, migrate};
use super::{Inner, MAX_BATCH, PostgresStore};
use crate::store::StoreError;

pub(super) fn db_error(
    what: &str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::storage(format!("{what}: {}", root_cause(&error)), error)
}

/// Whether `error` means the connection is gone (the server restarted, an
/// administrator terminated it, the network broke), so a new one may succeed.
pub(super) fn is_connection_lost(error: &StoreError) -> bool {
    let StoreError::Storage {
        source: Some(source),
        ..
    } = error
    else {
        return false;
    };
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&**source);
    while let Some(error) = current {
        if let Some(pg) = error.downcast_ref::<tokio_postgres::Error>() {
            use tokio_postgres::error::SqlState;
            if pg.is_closed()
                || pg.code().is_some_and(|c| {
                    [
                        SqlState::ADMIN_SHUTDOWN,
                        SqlState::CRASH_SHUTDOWN,
                        SqlState::CANNOT_CONNECT_NOW,
                    ]
                    .contains(c)
                })
            {
                return true;
            }
        }
        if error.is::<std::io::Error>() {
            return true;
        }
        current = error.source();
    }
    false
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host/db?sslmode=require`), applies missing
    /// migrations (unless disabled) and starts the group-commit writer.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let names = Names::new(&options)?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| StoreError::Open {
            path: "postgres".into(),
            reason: format!("not a PostgreSQL URL: {e}"),
        })?;
        if let (None, Some(password)) = (config.get_password(), &options.password) {
            config.password(password.expose());
        }
        // The put statements are prepared once per connection (a round trip and a
        // parse less per statement); planned for each execution's arrays, since a
        // generic plan of `= ANY($1)` over a growing table is a sequential scan.
        let server_options = match config.get_options() {
            Some(given) => format!("{given} -c plan_cache_mode=force_custom_plan"),
            None => "-c plan_cache_mode=force_custom_plan".to_string(),
        };
        config.options(&server_options);
        let host = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            })
            .collect::<Vec<_>>()
            .join(",");
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let label = format!(
            "postgres://{host}:{port}/{}",
            config.get_dbname().unwrap_or("")
        );
        let local = config.get_hosts().iter().all(|host| match host {
            Host::Tcp(name) => thulium::config::is_loopback_host(name),
            #[cfg(unix)]
            Host::Unix(_) => true,
        });
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if config.get_ssl_mode() == SslMode::Require {
            // The SDK's configuration: ring, and the platform's trust store.
            let tls = thulium::tls::client_config().map_err(|e| StoreError::Open {
                path: label.clone().into(),
                reason: format!("cannot set up TLS: {e}"),
            })?;
            Manager::from_config(
                config,
                tokio_postgres_rustls::MakeRustlsConnect::new(tls),
                manager_config,
            )
        } else if local {
            Manager::from_config(config, tokio_postgres::NoTls, manager_config)
        } else {
            return Err(StoreError::Open {
                path: label.into(),
                reason: "refusing to send the database password in clear to a non-loopback host; add ?sslmode=require".into(),
            });
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Open {
                path: label.clone().into(),
                reason: e.to_string(),
            })?;
        {
            let mut client = pool.get().await.map_err(|e| StoreError::Open {
                path: label.clone().into(),
                reason: format!("cannot connect: {}", root_cause(&e)),
            })?;
            if options.migrate {
                migrate(&mut client, &names).await?;
            } else {
                check_version(&client, &names).await?;
            }
            if options.search_index {
                super::schema::create_search_index(&client, &names).await?;
            }
        }
        let (puts, queue) = mpsc::channel(MAX_BATCH * 8);
        let (changes, change_queue) = mpsc::channel(MAX_BATCH * 8);
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                names,
                puts,
                changes,
                backlog: AtomicU64::new(0),
                work: Arc::new(Notify::new()),
                label,
            }),
        };
        tokio::spawn(write_batches(Arc::downgrade(&store.inner), queue));
        tokio::spawn(write_batches(Arc::downgrade(&store.inner), change_queue));
        tokio::spawn(backlog_refresher(Arc::downgrade(&store.inner)));
        Ok(store)
    }

    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        let client = self
            .inner
            .pool
            .get()
            .await
            .map_err(|e| db_error("no database connection", e))?;
        if client.is_closed() {
            // The server closed it while idle: start over with fresh connections.
            drop(client);
            self.inner.pool.retain(|_, _| false);
            return self
                .inner
                .pool
                .get()
                .await
                .map_err(|e| db_error("no database connection", e));
        }
        Ok(client)
    }
}
