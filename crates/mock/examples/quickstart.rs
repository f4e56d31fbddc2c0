//! The whole loop on one machine, with no Thulium account: a fake Thulium, a receiver,
//! a subscription made with the SDK, events delivered and printed as typed values.
//!
//! ```sh
//! cargo run --example quickstart
//! ```

use std::time::Duration;

use thulium::event::Event;
use thulium::receiver::Receiver;
use thulium::{Action, NewWebhook};
use thulium_mock::MockThulium;
use tokio::sync::mpsc;

/// The actions the quickstart subscribes to and emits (with the vendor's example
/// values), plus one the SDK does not know: still delivered, kept whole.
const ACTIONS: &[&str] = &[
    "CHAT_CONVERSATION_CREATED",
    "AGENT_RINGING",
    "TICKET_CREATED",
    "CALL_QUEUE_ENTERED",
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. The fake Thulium, in-process on a free loopback port.
    let thulium = MockThulium::start().await?;
    println!(
        "fake Thulium at {} (API user {})",
        thulium.base_url(),
        thulium.api_user()
    );

    // 2. Our receiver, protected by the credentials we will give Thulium.
    let hook_password = format!("hook-{:016x}", fastrand_seed());
    let (events, mut received) = mpsc::unbounded_channel::<Event>();
    let app = Receiver::with_basic_auth("thulium", hook_password.as_str())?.router(
        "/thulium",
        move |event: Event| {
            let events = events.clone();
            async move {
                events
                    .send(event)
                    .map_err(|_| "the quickstart stopped listening")
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/thulium", listener.local_addr()?);
    tokio::spawn(thulium::server::serve(
        listener,
        app,
        thulium::server::ServerLimits::default(),
        std::future::pending(),
    ));
    println!("receiver at {hook_url}");

    // 3. Subscribe the receiver with the SDK, exactly as against the real Thulium.
    let client = thulium.client_builder().build()?;
    let subscription = client
        .create_webhook(
            &NewWebhook::new(&hook_url, ACTIONS.iter().copied())
                .with_auth("thulium", hook_password.as_str()),
        )
        .await?;
    println!(
        "subscribed: id {} for {}",
        subscription.id,
        subscription
            .actions
            .iter()
            .map(Action::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    );

    // 4. Thulium emits events; the receiver hands them over typed.
    let unknown_fields = [
        ("connection_id".to_string(), "1416225570.342".to_string()),
        ("queue_id".to_string(), "155".to_string()),
    ];
    for action in ACTIONS {
        let fields = if Action::from(*action).is_known() {
            &[][..]
        } else {
            &unknown_fields[..]
        };
        thulium.emit(&thulium::event::examples::event(action, fields)?);
    }
    for _ in ACTIONS {
        let event = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .map_err(|_| "no event arrived within 10 s")?
            .ok_or("the receiver stopped")?;
        describe(&event);
    }

    // 5. What Thulium now holds. The receiver hands an event over before its 200
    //    reaches the fake, so wait until the fake has recorded every outcome.
    if !thulium.wait_until_settled(Duration::from_secs(10)).await {
        return Err("the fake still had deliveries in flight after 10 s".into());
    }
    for webhook in client.list_webhooks().await? {
        println!(
            "subscription {}: {} actions -> {} (auth: {})",
            webhook.id,
            webhook.actions.len(),
            webhook.subscription_url,
            if webhook.has_auth() { "yes" } else { "no" }
        );
    }
    let deliveries = thulium.deliveries();
    let all_delivered = deliveries
        .iter()
        .all(|d| d.state == thulium_mock::DeliveryState::Delivered);
    println!(
        "{} deliveries, {} attempts, all delivered: {all_delivered}",
        deliveries.len(),
        deliveries.iter().map(|d| d.attempts.len()).sum::<usize>(),
    );
    if !all_delivered {
        return Err("some deliveries failed".into());
    }
    Ok(())
}

fn describe(event: &Event) {
    let at = event
        .occurred_at()
        .map(|d| d.to_string())
        .unwrap_or_else(|| "?".into());
    match event {
        Event::ChatConversationCreated(chat) => println!(
            "[{at}] chat {} started by {} <{}> in queue {}",
            chat.conversation_id,
            chat.client_name.as_deref().unwrap_or("anonymous"),
            chat.client_email.as_deref().unwrap_or("-"),
            chat.chat_queue_id
        ),
        Event::AgentRinging(ring) => println!(
            "[{at}] {}'s phone rings: {} -> {} (queue {})",
            ring.agent_login,
            ring.source_number.as_deref().unwrap_or("withheld"),
            ring.destination_number,
            ring.queue_id
        ),
        Event::TicketCreated(ticket) => println!(
            "[{at}] ticket {} for customer {} ({})",
            ticket.ticket_id, ticket.customer_id, ticket.direction
        ),
        other => println!(
            "[{at}] {} (not known to the SDK, kept as received): {}",
            other.action(),
            other.to_json()
        ),
    }
}

/// A per-run value for the demo password, without pulling in a random-number crate.
fn fastrand_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}
