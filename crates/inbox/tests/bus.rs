//! Routes into message buses against real brokers of the test's own (the
//! machine's `nats-server`, on a free port, killed and restarted by the test).

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt as _;
use thulium_inbox::bus::Template;
use thulium_inbox::bus::nats::NatsPublisher;
use thulium_inbox::conformance::ticket;
use thulium_inbox::dispatcher::{DispatchConfig, Dispatcher, RetrySchedule};
use thulium_inbox::forward::ForwardFormat;
use thulium_inbox::{EmbeddedStore, Replay, RouteName, Store};
use thulium_testkit::brokers::Broker;

const EVENTS: u64 = 60;

/// A Redis stream entry as `XRANGE` answers it: its id and its fields.
#[cfg(feature = "redis")]
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

/// A store under `dir` holding [`EVENTS`] tickets for `route`; their ids.
async fn filled(
    dir: &std::path::Path,
    route: &RouteName,
) -> (EmbeddedStore, Vec<thulium_inbox::EventId>) {
    let store = EmbeddedStore::open(dir.join("inbox.redb")).unwrap();
    let mut ids = Vec::new();
    for number in 0..EVENTS {
        let put = store.put(ticket(number, 0).for_routes(vec![route.clone()]));
        ids.push(put.await.unwrap().id());
    }
    (store, ids)
}

/// Dispatches `route` with `handler` (4 at once, 60 a second, retried every 50 to
/// 300 ms) until the returned sender is dropped.
fn dispatch<H: thulium_inbox::dispatcher::Handler>(
    store: &EmbeddedStore,
    route: &RouteName,
    handler: H,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let config = DispatchConfig::default()
        .route(route.clone())
        .concurrency(4)
        .rate_limit(Some(60.0))
        .schedule(RetrySchedule::new(
            1_000,
            Duration::from_millis(50),
            Duration::from_millis(300),
        ))
        .poll_interval(Duration::from_millis(20));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(Dispatcher::new(store.clone(), config).run(handler, async {
        let _ = stopped.await;
    }));
    (stop, task)
}

/// Waits until `count` events are done, up to `limit`.
async fn until_done(store: &EmbeddedStore, count: u64, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let stats = store.stats().await.unwrap();
        if stats.done >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {count} done: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Once a third of the events are handed over, kills `broker`, waits `down`, and
/// starts it again on the same port and data.
async fn restart_midway(store: &EmbeddedStore, broker: &mut Broker, down: Duration) {
    until_done(store, EVENTS / 3, Duration::from_secs(30)).await;
    broker.kill();
    tokio::time::sleep(down).await;
    broker.restart();
}

/// Every message of `stream`, as (Nats-Msg-Id, body).
async fn messages(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> HashMap<String, bytes::Bytes> {
    let consumer = js
        .get_stream(stream)
        .await
        .unwrap()
        .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(10_000)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut seen = HashMap::new();
    while let Some(message) = batch.next().await {
        let message = message.unwrap();
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.to_string())
            .expect("every message has its id");
        assert!(
            seen.insert(id.clone(), message.payload.clone()).is_none(),
            "{id} twice in the stream"
        );
    }
    seen
}

/// Every stored event reaches JetStream exactly as stored, though the server is
/// killed and restarted in the middle of the stream (attempts meanwhile fail and are
/// retried); a replay of everything publishes each again with the same
/// `Nats-Msg-Id`, which the duplicate window drops: each event once in the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_jetstream_once_through_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut nats) = Broker::nats(dir.path()) else {
        return;
    };
    let url = format!("nats://{}", nats.addr);
    let client = async_nats::connect(url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "THULIUM".into(),
        subjects: vec!["thulium.>".into()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();

    let bus = RouteName::new("bus").unwrap();
    let (store, ids) = filled(dir.path(), &bus).await;
    let publisher = NatsPublisher::connect(
        &url,
        None,
        Template::parse("thulium.{account}.{action}").unwrap(),
        ForwardFormat::AsReceived,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let (stop, dispatching) = dispatch(&store, &bus, publisher);
    // Down for longer than a publish waits for its ack (2 s): attempts fail meanwhile.
    restart_midway(&store, &mut nats, Duration::from_secs(3)).await;
    until_done(&store, EVENTS, Duration::from_secs(60)).await;
    let retried: usize = {
        let mut count = 0;
        for id in &ids {
            count += store.get(*id).await.unwrap().unwrap().history.len() - 1;
        }
        count
    };
    assert!(retried > 0, "no attempt failed while the server was down");

    let client = async_nats::connect(url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let seen = messages(&js, "THULIUM").await;
    assert_eq!(seen.len() as u64, EVENTS, "each event once in the stream");
    for id in &ids {
        let stored = store.get(*id).await.unwrap().unwrap();
        let event = stored.event().unwrap();
        let delivery_body = seen
            .values()
            .find(|body| **body == stored.body)
            .unwrap_or_else(|| panic!("event {id} is not in the stream as stored"));
        assert_eq!(delivery_body, &stored.body);
        let _ = event;
    }

    // Everything again: published again, dropped by the duplicate window.
    let replayed = store
        .replay(Replay::ReceivedBetween {
            from: 0,
            to: u64::MAX,
        })
        .await
        .unwrap();
    assert_eq!(replayed, EVENTS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while store.stats().await.unwrap().done < EVENTS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replay never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let info = js
        .get_stream("THULIUM")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.state.messages, EVENTS, "a redelivery was stored twice");
    drop(stop);
    dispatching.await.unwrap();
}

/// A subject no stream takes is a failed attempt that says so, never a success;
/// credentials in the URL are refused without being repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_no_stream_takes_is_a_failed_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = Broker::nats(dir.path()) else {
        return;
    };
    let store = EmbeddedStore::open(dir.path().join("inbox.redb")).unwrap();
    let id = store.put(ticket(1, 0)).await.unwrap().id();
    let publisher = NatsPublisher::connect(
        &format!("nats://{}", nats.addr),
        None,
        Template::parse("nowhere.{action}").unwrap(),
        ForwardFormat::AsReceived,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let config = DispatchConfig::default()
        .schedule(RetrySchedule::new(
            1,
            Duration::from_millis(10),
            Duration::from_millis(10),
        ))
        .poll_interval(Duration::from_millis(20));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let dispatching = tokio::spawn(
        Dispatcher::new(store.clone(), config).run(publisher, async {
            let _ = stopped.await;
        }),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store.stats().await.unwrap().dead == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the attempt never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let error = store.get(id).await.unwrap().unwrap().last_error.unwrap();
    assert!(
        error.contains("did not store the message on nowhere.TICKET_CREATED"),
        "{error}"
    );
    drop(stop);
    dispatching.await.unwrap();
    for bad in ["http://127.0.0.1:4222", "nats://user:secret@127.0.0.1:4222"] {
        let refused = NatsPublisher::connect(
            bad,
            None,
            Template::parse("x").unwrap(),
            ForwardFormat::AsReceived,
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(!refused.to_string().contains("secret"), "{refused}");
    }
}

/// Every stored event reaches a Redis stream as stored, though the server is killed
/// and restarted in the middle (it syncs each append, so it keeps what it
/// answered); each at least once (Redis has no duplicate window), and more than once
/// only with the same `id` field.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_a_redis_stream_through_a_server_restart() {
    use thulium_inbox::bus::redis::RedisStreams;
    let dir = tempfile::tempdir().unwrap();
    let Some(mut server) = Broker::redis(dir.path()) else {
        return;
    };
    let url = format!("redis://{}/0", server.addr);
    let cache = RouteName::new("cache").unwrap();
    let (store, _) = filled(dir.path(), &cache).await;
    let streams = RedisStreams::connect(
        &url,
        None,
        Template::parse("thulium:{route}").unwrap(),
        Some(100_000),
        ForwardFormat::AsReceived,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let (stop, dispatching) = dispatch(&store, &cache, streams);
    restart_midway(&store, &mut server, Duration::from_secs(1)).await;
    until_done(&store, EVENTS, Duration::from_secs(60)).await;
    drop(stop);
    dispatching.await.unwrap();

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let entries: Vec<StreamEntry> = redis::cmd("XRANGE")
        .arg("thulium:cache")
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    let mut bodies: HashMap<String, Vec<u8>> = HashMap::new();
    for (_, fields) in &entries {
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let id = String::from_utf8(field("id").unwrap()).unwrap();
        let body = field("body").unwrap();
        if let Some(earlier) = bodies.insert(id, body.clone()) {
            assert_eq!(earlier, body, "one id, two bodies");
        }
        assert_eq!(field("x-thulium-route").as_deref(), Some(&b"cache"[..]));
    }
    assert_eq!(bodies.len() as u64, EVENTS, "every event in the stream");
    for id in 1..=EVENTS {
        let stored = store
            .get(thulium_inbox::EventId(id))
            .await
            .unwrap()
            .unwrap();
        assert!(
            bodies.values().any(|body| body[..] == stored.body[..]),
            "event {id} is not in the stream as stored"
        );
    }
}

/// Every stored event reaches an MQTT subscriber (QoS 1, a persistent session),
/// though the broker is stopped and started again in the middle: attempts while it
/// is away fail and are retried, and each succeeds only on its `PUBACK`.
#[cfg(feature = "mqtt")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_an_mqtt_subscriber_through_a_broker_restart() {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    use thulium_inbox::bus::mqtt::MqttPublisher;
    let dir = tempfile::tempdir().unwrap();
    let Some(mut broker) = Broker::mosquitto(&dir.path().join("mosquitto")) else {
        return;
    };
    // The subscriber: a persistent session, so that what comes while it is away
    // waits for it.
    let seen: Arc<Mutex<HashSet<Vec<u8>>>> = Arc::default();
    let mut options =
        rumqttc::MqttOptions::new("bus-test-subscriber", "127.0.0.1", broker.addr.port());
    options.set_clean_session(false);
    let (subscriber, mut events) = rumqttc::AsyncClient::new(options, 100);
    subscriber
        .subscribe("thulium/#", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let received = Arc::clone(&seen);
    let listening = tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish))) => {
                    received.lock().unwrap().insert(publish.payload.to_vec());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !subscribed(&broker).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the subscriber never connected"
        );
    }

    let iot = RouteName::new("iot").unwrap();
    let (store, ids) = filled(dir.path(), &iot).await;
    let publisher = MqttPublisher::connect(
        &format!("mqtt://{}", broker.addr),
        None,
        Template::parse("thulium/{account}/{action}").unwrap(),
        ForwardFormat::AsReceived,
        Duration::from_secs(2),
    )
    .unwrap();
    let (stop, dispatching) = dispatch(&store, &iot, publisher);
    until_done(&store, EVENTS / 3, Duration::from_secs(30)).await;
    broker.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.restart();
    until_done(&store, EVENTS, Duration::from_secs(60)).await;
    drop(stop);
    dispatching.await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut missing = Vec::new();
        for id in &ids {
            let stored = store.get(*id).await.unwrap().unwrap();
            if !seen.lock().unwrap().contains(&stored.body[..]) {
                missing.push(id.0);
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "events {missing:?} never reached the subscriber"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    listening.abort();
}

/// Whether the broker accepts connections yet (the subscriber's first connect).
#[cfg(feature = "mqtt")]
async fn subscribed(broker: &Broker) -> bool {
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::net::TcpStream::connect(broker.addr).is_ok()
}

/// RabbitMQ (the machine's server, guest/guest on loopback): every stored event is
/// confirmed into a durable queue through the route's exchange, as stored, with its
/// stable id as `message_id`; a message no queue is bound for comes back
/// unroutable, which is a failed attempt, never a success.
#[cfg(feature = "rabbitmq")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_confirmed_into_a_rabbitmq_queue_and_unroutable_ones_fail() {
    use lapin::options::{
        BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    };
    use lapin::types::FieldTable;
    use thulium_inbox::bus::rabbitmq::RabbitPublisher;
    let Some(uri) = thulium_testkit::brokers::rabbitmq() else {
        return;
    };
    let suffix = format!("{:08x}", fastrand::u32(..));
    let (exchange, queue) = (
        format!("thulium-test-{suffix}"),
        format!("thulium-test-{suffix}"),
    );
    let connection = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let admin = connection.create_channel().await.unwrap();
    admin
        .exchange_declare(
            exchange.as_str().into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    admin
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    admin
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "thulium.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let rabbit = RouteName::new("rabbit").unwrap();
    let (store, ids) = filled(dir.path(), &rabbit).await;
    let password = thulium::Password::from("guest");
    let publisher = RabbitPublisher::connect(
        "amqp://127.0.0.1:5672/%2f",
        Some(("guest".into(), password)),
        &exchange,
        Template::parse("thulium.{account}.{action}").unwrap(),
        ForwardFormat::AsReceived,
        Duration::from_secs(5),
    )
    .unwrap();
    let (stop, dispatching) = dispatch(&store, &rabbit, publisher.clone());
    until_done(&store, EVENTS, Duration::from_secs(60)).await;
    drop(stop);
    dispatching.await.unwrap();
    let mut bodies = HashMap::new();
    while let Some(message) = admin
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let id = message
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string())
            .expect("a message id");
        assert_eq!(message.delivery.properties.delivery_mode(), &Some(2));
        bodies.insert(id, message.delivery.data.clone());
    }
    assert_eq!(bodies.len() as u64, EVENTS, "every event once in the queue");
    for id in &ids {
        let stored = store.get(*id).await.unwrap().unwrap();
        assert!(
            bodies.values().any(|body| body[..] == stored.body[..]),
            "event {id}"
        );
    }

    // A routing key no queue is bound for: returned, so failed.
    let lost = RouteName::new("lost").unwrap();
    let store = EmbeddedStore::open(dir.path().join("lost.redb")).unwrap();
    let id = store
        .put(ticket(1, 0).for_routes(vec![lost.clone()]))
        .await
        .unwrap()
        .id();
    let nowhere = RabbitPublisher::connect(
        "amqp://127.0.0.1:5672/%2f",
        Some(("guest".into(), thulium::Password::from("guest"))),
        &exchange,
        Template::parse("nowhere.{action}").unwrap(),
        ForwardFormat::AsReceived,
        Duration::from_secs(5),
    )
    .unwrap();
    let (stop, dispatching) = dispatch(&store, &lost, nowhere);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let error = loop {
        let event = store.get(id).await.unwrap().unwrap();
        if let Some(error) = event.last_error {
            break error;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the attempt never failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(error.contains("unroutable"), "{error}");
    assert!(!error.contains("guest@"), "{error}");
    assert_eq!(store.stats().await.unwrap().done, 0);
    drop(stop);
    dispatching.await.unwrap();
    admin
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}
