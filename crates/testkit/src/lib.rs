//! Test support shared by the workspace's integration tests, so that each helper is
//! written once: child processes that cannot outlive their test ([`process`]), the
//! application a relay forwards to ([`sink`]), event bodies ([`events`]), damaged
//! files ([`damage`]), the
//! PostgreSQL the tests use ([`postgres`]), private brokers ([`brokers`]) and free
//! ports ([`free_port`]).
//!
//! Not published: only `dev-dependencies` name it.

pub mod brokers;
pub mod damage;
pub mod events;
pub mod postgres;
pub mod process;
pub mod sink;

/// A free loopback port for a child process to bind, below the kernel's ephemeral
/// range (32768 and up on Linux).
///
/// A port merely probed and freed inside that range can be handed meanwhile to any
/// other test's `bind(0)` or outgoing connection (even a TCP self-connect to a
/// restarting listener's port), and the child then cannot bind it. Below the range
/// only another probe like this one can take it.
pub fn free_port() -> u16 {
    loop {
        let port = fastrand::u16(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
