//! Private brokers for the tests of routes into message buses: a server of the
//! machine's own binary (from Debian's packages) on a free port and a directory of
//! the test's, so that a test may kill and restart it without touching anything
//! else. Without the binary a test says so and does not run, unless `CI` or
//! `THULIUM_REQUIRE_BROKERS` is set: then it fails.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::Guarded;

/// The machine's RabbitMQ (`THULIUM_TEST_RABBITMQ`, default guest/guest on
/// loopback), if it answers; else `None` (said on stderr), or a failure where the
/// brokers are required. A private RabbitMQ would take an Erlang node of its own.
pub fn rabbitmq() -> Option<String> {
    let uri = std::env::var("THULIUM_TEST_RABBITMQ")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let answers = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], 5672)),
        Duration::from_secs(2),
    )
    .is_ok();
    match (answers || !uri.contains("127.0.0.1:5672"), required()) {
        (true, _) => Some(uri),
        (false, true) => panic!("RabbitMQ is required (CI) but does not answer at 127.0.0.1:5672"),
        (false, false) => {
            eprintln!("NOT RUN: RabbitMQ does not answer at 127.0.0.1:5672");
            None
        }
    }
}

/// Whether a test that cannot start a broker must fail rather than say it did not run.
pub fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("THULIUM_REQUIRE_BROKERS").is_some()
}

/// A broker process of the test's own, restartable on the same port and data.
#[derive(Debug)]
pub struct Broker {
    program: PathBuf,
    args: Vec<String>,
    /// Where it listens.
    pub addr: SocketAddr,
    process: Option<Guarded>,
}

impl Broker {
    /// NATS with JetStream on a free port, its store under `dir`; `None` (said on
    /// stderr) where `nats-server` is missing and the brokers are not required.
    pub fn nats(dir: &Path) -> Option<Self> {
        let port = crate::free_port();
        let store = dir.join("jetstream");
        Self::start(
            "nats-server",
            &["/usr/sbin/nats-server", "/usr/bin/nats-server"],
            vec![
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
                "-js".into(),
                "-sd".into(),
                store.display().to_string(),
            ],
            port,
        )
    }

    /// Redis on a free port, its data under `dir`, each write synced before it is
    /// answered (`appendonly yes`, `appendfsync always`), so that a restart keeps
    /// every entry it acknowledged.
    pub fn redis(dir: &Path) -> Option<Self> {
        std::fs::create_dir_all(dir).expect("the broker's directory");
        let port = crate::free_port();
        Self::start(
            "redis-server",
            &["/usr/bin/redis-server", "/usr/sbin/redis-server"],
            vec![
                "--port".into(),
                port.to_string(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--dir".into(),
                dir.display().to_string(),
                "--save".into(),
                String::new(),
                "--appendonly".into(),
                "yes".into(),
                "--appendfsync".into(),
                "always".into(),
            ],
            port,
        )
    }

    /// Mosquitto on a free port, keeping its sessions and queued messages under
    /// `dir` (written when it stops: restart it with [`Self::stop`], not a kill, to
    /// keep them).
    pub fn mosquitto(dir: &Path) -> Option<Self> {
        std::fs::create_dir_all(dir).expect("the broker's directory");
        let port = crate::free_port();
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n# Run by root (CI), it would switch to the user mosquitto, who cannot write\n# the test's directory.\nuser root\n",
                dir.display()
            ),
        )
        .expect("the broker's configuration");
        Self::start(
            "mosquitto",
            &["/usr/sbin/mosquitto", "/usr/bin/mosquitto"],
            vec!["-c".into(), config.display().to_string()],
            port,
        )
    }

    /// Stops it as a service manager would (SIGTERM) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.signal("TERM");
            let _ = process.wait();
        }
    }

    fn start(name: &str, places: &[&str], args: Vec<String>, port: u16) -> Option<Self> {
        let Some(program) = places.iter().map(PathBuf::from).find(|p| p.exists()) else {
            if required() {
                panic!("{name} is required (CI) but missing; apt-get install {name}");
            }
            eprintln!("NOT RUN: {name} is missing (apt-get install {name})");
            return None;
        };
        let mut broker = Self {
            program,
            args,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            process: None,
        };
        broker.restart();
        Some(broker)
    }

    /// Kills it with SIGKILL (what it held in memory and did not write is lost).
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts it (again, on the same port and data) and waits until it accepts
    /// connections.
    pub fn restart(&mut self) {
        self.kill();
        let process = Guarded::spawn(
            Command::new(&self.program)
                .args(&self.args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("the broker starts");
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "the broker never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
