//! Section 12: routes into message buses. For each destination (an HTTP endpoint
//! on loopback that answers 200, NATS JetStream, Redis Streams, MQTT, RabbitMQ; the
//! brokers but RabbitMQ are private servers of the machine's binaries, JetStream on
//! a file stream, Redis syncing every append, Mosquitto with QoS 1; RabbitMQ is the
//! machine's server, a durable queue), the events a dispatcher at the default concurrency hands
//! over and gets confirmed per second from a store of pending events, and the time
//! from a delivery's POST to its confirm at a steady 1,000 deliveries a second.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thulium::event::Event;
use thulium_bench::{Stats, serve};
use thulium_inbox::bus::Template;
use thulium_inbox::bus::mqtt::MqttPublisher;
use thulium_inbox::bus::nats::NatsPublisher;
use thulium_inbox::bus::rabbitmq::RabbitPublisher;
use thulium_inbox::bus::redis::RedisStreams;
use thulium_inbox::dispatcher::{Delivery, DispatchConfig, Dispatcher, Handler, HandlerError};
use thulium_inbox::forward::{ForwardFormat, Forwarder};
use thulium_inbox::receiver::DurableReceiver;
use thulium_inbox::{EmbeddedStore, RouteName, Routing, Store};
use thulium_testkit::brokers::Broker;

use super::{SentAt, event_body, post_steadily, receiver};

/// Deliveries per second in the latency runs.
const RATE: u64 = 1_000;

/// A destination's handler that records, for each event it got confirmed, the
/// time since its delivery was POSTed.
#[derive(Clone)]
struct Timed<H> {
    inner: H,
    sent: Arc<SentAt>,
    confirmed: Arc<Mutex<Vec<Duration>>>,
}

impl<H: Handler + Clone> Handler for Timed<H> {
    async fn handle(&self, event: Event, delivery: Delivery) -> Result<(), HandlerError> {
        let ticket = event.to_json_value()["ticket_id"].as_u64().unwrap_or(0);
        self.inner.handle(event, delivery).await?;
        if let Some(at) = self.sent.lock().expect("sent").get(&ticket) {
            self.confirmed.lock().expect("confirmed").push(at.elapsed());
        }
        Ok(())
    }
}

pub(super) async fn buses_section(out: &mut String, dir: &Path, quick: bool) {
    let (count, seconds) = if quick { (2_000, 2) } else { (20_000, 10) };
    let (Some(nats), Some(redis), Some(mosquitto)) = (
        Broker::nats(&dir.join("nats")),
        Broker::redis(&dir.join("redis")),
        Broker::mosquitto(&dir.join("mosquitto")),
    ) else {
        let _ = writeln!(
            out,
            "\n## 12. Routes into message buses\n\nNot run: nats-server, redis-server or mosquitto is missing."
        );
        return;
    };
    let nats_url = format!("nats://{}", nats.addr);
    let client = async_nats::connect(nats_url.as_str()).await.expect("nats");
    async_nats::jetstream::new(client)
        .create_stream(async_nats::jetstream::stream::Config {
            name: "BENCH".into(),
            subjects: vec!["bench.>".into()],
            ..Default::default()
        })
        .await
        .expect("a stream");
    let sink = format!(
        "http://{}/app",
        serve(axum::Router::new().route("/app", axum::routing::post(|| async { "ok" }))).await
    );
    let timeout = Duration::from_secs(5);
    let http =
        Forwarder::new(&sink, None, ForwardFormat::AsReceived, timeout).expect("a forwarder");
    let nats = NatsPublisher::connect(
        &nats_url,
        None,
        Template::parse("bench.{action}").expect("a subject"),
        ForwardFormat::AsReceived,
        timeout,
    )
    .await
    .expect("nats");
    let redis = RedisStreams::connect(
        &format!("redis://{}/0", redis.addr),
        None,
        Template::parse("bench:{route}").expect("a stream"),
        None,
        ForwardFormat::AsReceived,
        timeout,
    )
    .await
    .expect("redis");
    let mqtt = MqttPublisher::connect(
        &format!("mqtt://{}", mosquitto.addr),
        None,
        Template::parse("bench/{action}").expect("a topic"),
        ForwardFormat::AsReceived,
        timeout,
    )
    .expect("mqtt");
    // RabbitMQ is the machine's server: a durable queue bound to an exchange of
    // the bench's own, deleted at the end.
    let rabbit_uri = thulium_testkit::brokers::rabbitmq();
    let rabbit_queue = format!("bench-{:08x}", fastrand::u32(..));
    let rabbit_admin = match &rabbit_uri {
        Some(uri) => Some(declare_rabbit(uri, &rabbit_queue).await),
        None => None,
    };
    let numbers = Arc::new(AtomicU64::new(90_000_000));
    let mut rows = Vec::new();
    rows.push((
        "HTTP endpoint on loopback (answers 200)",
        measure(dir, "http", http, count, seconds, &numbers).await,
    ));
    rows.push((
        "NATS JetStream (file stream, publish ack)",
        measure(dir, "nats", nats, count, seconds, &numbers).await,
    ));
    rows.push((
        "Redis Streams (XADD, appendfsync always)",
        measure(dir, "redis", redis, count, seconds, &numbers).await,
    ));
    rows.push((
        "MQTT, Mosquitto (QoS 1, PUBACK)",
        measure(dir, "mqtt", mqtt, count, seconds, &numbers).await,
    ));
    if let Some((_, channel)) = &rabbit_admin {
        let rabbit = RabbitPublisher::connect(
            "amqp://127.0.0.1:5672/%2f",
            Some(("guest".into(), thulium::Password::from("guest"))),
            &rabbit_queue,
            Template::parse("bench.{action}").expect("a routing key"),
            ForwardFormat::AsReceived,
            timeout,
        )
        .expect("rabbitmq");
        rows.push((
            "RabbitMQ (publisher confirms, persistent, durable queue)",
            measure(dir, "rabbit", rabbit, count, seconds, &numbers).await,
        ));
        let _ = channel
            .queue_delete(rabbit_queue.as_str().into(), Default::default())
            .await;
    }

    let _ = writeln!(out, "\n## 12. Routes into message buses\n");
    let _ = writeln!(
        out,
        "Each destination alone: a dispatcher at the default settings (16 at once) hands over {count} stored events and waits for each confirm (a 2xx, the stream's ack, the entry's id, the PUBACK, the basic.ack); then deliveries POSTed at {RATE}/s for {seconds} s, timed from the POST to the confirm. Private brokers of the machine's binaries on loopback (RabbitMQ: the machine's server).\n"
    );
    let _ = writeln!(
        out,
        "| destination | confirmed/s | p50 at {RATE}/s | p99 at {RATE}/s |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for (name, (rate, stats)) in &rows {
        let _ = writeln!(
            out,
            "| {name} | {rate:.0} | {:.2} ms | {:.2} ms |",
            stats.p50.as_secs_f64() * 1e3,
            stats.p99.as_secs_f64() * 1e3
        );
    }
    let http_rate = rows[0].1.0;
    let _ = writeln!(
        out,
        "\nAgainst the HTTP route, the confirmed rate: {}.",
        rows[1..]
            .iter()
            .map(|(name, (rate, _))| format!(
                "{} {:.2}x",
                name.split(" (").next().unwrap_or(name),
                rate / http_rate
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// A durable queue named `name` bound (`#`) to a topic exchange of the same name.
async fn declare_rabbit(uri: &str, name: &str) -> (lapin::Connection, lapin::Channel) {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let connection = lapin::Connection::connect(uri, lapin::ConnectionProperties::default())
        .await
        .expect("rabbitmq");
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .exchange_declare(
            name.into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("an exchange");
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name.into(), durable, FieldTable::default())
        .await
        .expect("a queue");
    channel
        .queue_bind(
            name.into(),
            name.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("a binding");
    (connection, channel)
}

/// A destination's confirmed events per second from a full store, and its latency
/// from POST to confirm at [`RATE`].
async fn measure<H: Handler + Clone>(
    dir: &Path,
    name: &str,
    handler: H,
    count: u64,
    seconds: u64,
    numbers: &Arc<AtomicU64>,
) -> (f64, Stats) {
    let route = RouteName::new(name).expect("a route name");
    // Throughput: from a store of pending events.
    let store = EmbeddedStore::open(dir.join(format!("{name}-rate.redb"))).expect("an inbox");
    for _ in 0..count {
        let body = event_body(numbers.fetch_add(1, Ordering::Relaxed));
        let event = Event::parse(body.as_bytes(), None).expect("an event");
        let new =
            thulium_inbox::NewEvent::from_event(&event, body, None).for_routes(vec![route.clone()]);
        store.put(new).await.expect("a put");
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let started = Instant::now();
    let task = tokio::spawn(
        Dispatcher::new(
            store.clone(),
            DispatchConfig::default().route(route.clone()),
        )
        .run(handler.clone(), until(stopped.clone())),
    );
    while store.stats().await.expect("stats").done < count {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let _ = task.await;

    // Latency: POSTs at a steady rate, timed to the confirm.
    let store = EmbeddedStore::open(dir.join(format!("{name}-latency.redb"))).expect("an inbox");
    let routing = Routing::new(vec![(route.clone(), Vec::new())]).expect("a route");
    let url = format!(
        "http://{}/hook",
        serve(
            DurableReceiver::new(receiver(), store.clone())
                .routing(routing)
                .router("/hook")
        )
        .await
    );
    let timed = Timed {
        inner: handler,
        sent: Arc::default(),
        confirmed: Arc::default(),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(
        Dispatcher::new(store.clone(), DispatchConfig::default().route(route))
            .run(timed.clone(), until(stopped)),
    );
    post_steadily(&url, RATE, seconds, numbers, &timed.sent).await;
    let expected = (RATE * seconds) as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while timed.confirmed.lock().expect("confirmed").len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    let _ = task.await;
    let mut latencies = std::mem::take(&mut *timed.confirmed.lock().expect("confirmed"));
    assert_eq!(latencies.len(), expected, "every event confirmed");
    (rate, Stats::of(&mut latencies).expect("samples"))
}
