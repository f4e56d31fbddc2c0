//! Helpers shared by the CLI's integration tests.

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
