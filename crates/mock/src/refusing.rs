//! [`RefusingAddress`]: a subscriber that is down, for tests.

use std::net::SocketAddr;

/// A loopback address where connections are refused for as long as this value lives:
/// subscribe its [`url`](Self::url) to see what happens to deliveries to a
/// subscriber that is down (retries, then [`GaveUp`](crate::DeliveryState::GaveUp)).
///
/// It holds a socket bound to the port but never listening, so no other server can
/// take the port meanwhile. A port that was merely freed can be taken by the next
/// server that asks for any port (another test's, say), and then it answers.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let down = thulium_mock::RefusingAddress::bind()?;
/// let refused = tokio::net::TcpStream::connect(down.addr()).await.unwrap_err();
/// assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
/// assert!(down.url("/hook").ends_with("/hook"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RefusingAddress {
    _socket: tokio::net::TcpSocket,
    addr: SocketAddr,
}

impl RefusingAddress {
    /// Reserves a free loopback port that refuses connections.
    pub fn bind() -> std::io::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        // No SO_REUSEADDR: with it, Linux would let another socket bind the port.
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = socket.local_addr()?;
        Ok(Self {
            _socket: socket,
            addr,
        })
    }

    /// The address, such as `127.0.0.1:40123`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}{path}`: a subscription URL nobody answers.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}
