//! `thulium::server::serve` under hostile connections, over real loopback TCP:
//! half-sent headers, idle sockets, stalled bodies and more connections than allowed
//! are all closed or answered within the configured limits, and a valid delivery
//! still gets through.

use std::time::Duration;

use thulium::event::Event;
use thulium::receiver::Receiver;
use thulium::server::{ServerLimits, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The vendor's example ticket event, form-encoded.
fn vendor_form() -> String {
    thulium::event::examples::event("TICKET_CREATED", &[])
        .unwrap()
        .to_form()
}
/// base64("thulium:s3cret")
const AUTH: &str = "Basic dGh1bGl1bTpzM2NyZXQ=";
/// The longest any step here may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(20);

/// A receiver on loopback served with `limits`; returns its address and a handle
/// that stops it (the future resolves when the server has shut down).
async fn start(
    limits: ServerLimits,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let app = Receiver::with_basic_auth("thulium", "s3cret")
        .unwrap()
        .router("/hook", |event: Event| async move {
            if event.action().as_str() == "SLOW" {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok::<_, std::convert::Infallible>(())
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        serve(listener, app, limits, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, stop, server)
}

fn delivery(body: &str) -> String {
    format!(
        "POST /hook HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads until the peer closes; what it sent. Errors (a reset) count as closed.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(HANG, stream.read_to_end(&mut answer))
        .await
        .expect("the server never closed the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

/// One complete delivery on a fresh connection; the status line.
async fn deliver(addr: std::net::SocketAddr, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(delivery(body).as_bytes()).await.unwrap();
    let mut buffer = vec![0u8; 1024];
    let read = tokio::time::timeout(HANG, stream.read(&mut buffer))
        .await
        .expect("no answer")
        .unwrap_or(0);
    String::from_utf8_lossy(&buffer[..read])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn half_sent_headers_are_closed_after_the_header_timeout() {
    let limits = ServerLimits::default().header_read_timeout(Duration::from_millis(300));
    let (addr, _stop, _server) = start(limits).await;
    let mut streams = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"POST /hook HTTP/1.1\r\nHost: x\r\nAuthoriz")
            .await
            .unwrap();
        streams.push(stream);
    }
    for stream in &mut streams {
        let answer = read_to_close(stream).await;
        // hyper answers 408 or just closes; either way the socket is freed.
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
    assert_eq!(deliver(addr, &vendor_form()).await, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let limits = ServerLimits::default().header_read_timeout(Duration::from_millis(300));
    let (addr, _stop, _server) = start(limits).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(delivery(&vendor_form()).as_bytes())
        .await
        .unwrap();
    // The answer, then nothing more from us: the server must close the connection.
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    // A connection that never sends a byte is closed too.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_to_close(&mut silent).await, "");
}

#[tokio::test]
async fn a_stalled_body_is_answered_408() {
    let limits = ServerLimits::default().body_read_timeout(Duration::from_millis(300));
    let (addr, _stop, _server) = start(limits).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let full = delivery(&vendor_form());
    // Headers and the first bytes of the body, then silence.
    stream
        .write_all(&full.as_bytes()[..full.len() - 20])
        .await
        .unwrap();
    let mut buffer = vec![0u8; 1024];
    let read = tokio::time::timeout(HANG, stream.read(&mut buffer))
        .await
        .expect("a stalled body was never answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&buffer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn connections_past_the_limit_are_closed_and_valid_deliveries_get_through() {
    let limits = ServerLimits::default()
        .max_connections(8)
        .header_read_timeout(Duration::from_millis(500));
    let (addr, _stop, _server) = start(limits).await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // At most 8 are served; every other one is closed at once, without an answer.
    let mut closed_at_once = 0;
    for stream in &mut idle {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(50), stream.read(&mut byte)).await
        {
            closed_at_once += 1;
        }
    }
    assert!(
        closed_at_once >= 200 - 8,
        "only {closed_at_once} of 200 closed"
    );
    // Once the idle ones time out, a real delivery is served.
    let mut status = String::new();
    for _ in 0..100 {
        status = deliver(addr, &vendor_form()).await;
        if status == "HTTP/1.1 200 OK" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn shutdown_lets_a_running_delivery_finish() {
    let (addr, stop, server) = start(ServerLimits::default()).await;
    let slow = tokio::spawn(deliver(addr, "action=SLOW"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    assert_eq!(slow.await.unwrap(), "HTTP/1.1 200 OK");
    tokio::time::timeout(HANG, server)
        .await
        .expect("the server did not stop")
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}
