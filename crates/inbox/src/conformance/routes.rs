//! The cases of routes: each route's entries have their own state, and an event no
//! route takes is kept, done, and never handed over.

use std::time::Duration;

use super::{attempt, failed, ticket};
use crate::model::{Filter, Outcome, Pause, PutOutcome, Replay, RouteStats, State, now_ms};
use crate::routing::{AccountName, RouteName};
use crate::store::{ClaimRequest, Store, StoreError};

const HOUR: Duration = Duration::from_secs(3600);

fn route(name: &str) -> RouteName {
    RouteName::new(name).expect("a valid route name")
}

fn counts(stats: &[RouteStats], name: &RouteName) -> (u64, u64, u64, u64) {
    stats
        .iter()
        .find(|r| r.route == *name)
        .map_or((0, 0, 0, 0), |r| (r.pending, r.in_flight, r.done, r.dead))
}

/// An event two routes take is two entries: each claimed only on its route, each
/// finished, counted, listed and replayed on its own; a redelivery adds to neither.
pub async fn routes_fan_out_with_their_own_state<S: Store>(store: S) {
    let (crm, audit) = (route("crm"), route("audit"));
    let both = vec![crm.clone(), audit.clone()];
    let first = store
        .put(ticket(1, 0).for_routes(both.clone()))
        .await
        .unwrap();
    let PutOutcome::Stored(id) = first else {
        panic!("a new event must be Stored, got {first:?}")
    };
    assert_eq!(
        store
            .put(ticket(1, 0).for_routes(both.clone()))
            .await
            .unwrap(),
        PutOutcome::Duplicate(id),
        "a redelivery is one, whatever the routes"
    );
    store
        .put(ticket(2, 0).for_routes(vec![audit.clone()]))
        .await
        .unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(counts(&stats.routes, &crm), (1, 0, 0, 0));
    assert_eq!(counts(&stats.routes, &audit), (2, 0, 0, 0));
    assert_eq!((stats.pending, stats.received, stats.duplicates), (3, 3, 1));
    assert!(
        stats
            .routes
            .iter()
            .all(|r| r.oldest_open_received_at.is_some()),
        "{stats:?}"
    );

    // Each route claims only its own entries.
    let on_crm = store
        .claim(ClaimRequest::now(10, HOUR).on(crm.clone()))
        .await
        .unwrap();
    assert_eq!(on_crm.len(), 1);
    assert_eq!(
        (on_crm[0].event.route.clone(), on_crm[0].claim.id),
        (crm.clone(), id)
    );
    let on_audit = store
        .claim(ClaimRequest::now(10, HOUR).on(audit.clone()))
        .await
        .unwrap();
    assert_eq!(on_audit.len(), 2);
    assert!(
        on_audit
            .iter()
            .all(|c| c.event.route == audit && c.claim.id != id)
    );
    assert!(
        store
            .claim(ClaimRequest::now(10, HOUR))
            .await
            .unwrap()
            .is_empty(),
        "the default route has nothing"
    );
    assert!(
        store
            .claim(ClaimRequest::now(10, HOUR).on(route("nowhere")))
            .await
            .unwrap()
            .is_empty()
    );

    // One route fails, the other takes its events.
    store
        .dead_letter(on_crm[0].claim, attempt(1, failed()))
        .await
        .unwrap();
    for claimed in &on_audit {
        store
            .ack(claimed.claim, attempt(1, Outcome::Delivered))
            .await
            .unwrap();
    }
    let stats = store.stats().await.unwrap();
    assert_eq!(counts(&stats.routes, &crm), (0, 0, 0, 1));
    assert_eq!(counts(&stats.routes, &audit), (0, 0, 2, 0));
    let dead_on_crm = store
        .list(Filter {
            state: Some(State::Dead),
            route: Some(crm.clone()),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(dead_on_crm.len(), 1);
    let listed_audit = store
        .list(Filter {
            route: Some(audit.clone()),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed_audit.len(), 2);
    assert!(
        listed_audit
            .iter()
            .all(|e| e.route == audit && e.state == State::Done)
    );

    // A replay of one route's dead entries leaves the other route alone.
    assert_eq!(
        store.replay(Replay::DeadOn(audit.clone())).await.unwrap(),
        0
    );
    assert_eq!(store.replay(Replay::DeadOn(crm.clone())).await.unwrap(), 1);
    let stats = store.stats().await.unwrap();
    assert_eq!(counts(&stats.routes, &crm), (1, 0, 0, 0));
    assert_eq!(counts(&stats.routes, &audit), (0, 0, 2, 0));

    // Another event with the same key and other content is stored for each route.
    let conflict = store.put(ticket(1, 1).for_routes(both)).await.unwrap();
    assert!(matches!(conflict, PutOutcome::Conflict(_)), "{conflict:?}");
    let stats = store.stats().await.unwrap();
    assert_eq!(counts(&stats.routes, &crm).0, 2);
    assert_eq!(counts(&stats.routes, &audit).0, 1);
}

/// An event no route takes is one entry on the unrouted route: done at once,
/// counted and listed, never claimed, replayed or set aside, purged as any done one.
pub async fn unrouted_events_are_kept_done<S: Store>(store: S) {
    let unrouted = RouteName::unrouted();
    let id = store
        .put(ticket(1, 0).for_routes(Vec::new()))
        .await
        .unwrap()
        .id();
    let kept = store.get(id).await.unwrap().expect("kept");
    assert_eq!(
        (kept.route.clone(), kept.state),
        (unrouted.clone(), State::Done)
    );
    assert!(kept.finished_at.is_some());
    let stats = store.stats().await.unwrap();
    assert_eq!(counts(&stats.routes, &unrouted), (0, 0, 1, 0));
    assert_eq!((stats.done, stats.open()), (1, 0));
    assert!(
        store
            .claim(ClaimRequest::now(10, HOUR).on(unrouted.clone()))
            .await
            .unwrap()
            .is_empty()
    );
    for refused in [
        store.replay(Replay::Id(id)).await.map(drop),
        store.set_aside(id, "x".into()).await,
    ] {
        assert!(
            matches!(&refused, Err(StoreError::WrongState { reason, .. }) if reason.contains("no route")),
            "{refused:?}"
        );
    }
    let everything = Replay::ReceivedBetween {
        from: 0,
        to: now_ms() + 1,
    };
    assert_eq!(store.replay(everything).await.unwrap(), 0);
    assert_eq!(
        store
            .replay(Replay::DeadOn(unrouted.clone()))
            .await
            .unwrap(),
        0
    );
    let listed = store
        .list(Filter {
            route: Some(unrouted),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let purged = store.purge(now_ms() + 1, 0).await.unwrap();
    assert_eq!(purged.events, 1);
    assert!(store.get(id).await.unwrap().is_none());
}

/// A route's pause is kept until a resume, replaced by a later one, listed in the
/// stats even before the route took anything, and its reason kept as written.
pub async fn pauses_are_kept_per_route<S: Store>(store: S) {
    let (crm, audit) = (route("crm"), route("audit"));
    assert_eq!(store.pause_of(crm.clone()).await.unwrap(), None);
    let by_hand = Pause::by_hand("maintenance until 18:00");
    store
        .set_pause(crm.clone(), Some(by_hand.clone()))
        .await
        .unwrap();
    assert_eq!(
        store.pause_of(crm.clone()).await.unwrap(),
        Some(by_hand.clone())
    );
    assert_eq!(store.pause_of(audit.clone()).await.unwrap(), None);
    let stats = store.stats().await.unwrap();
    let listed = stats
        .routes
        .iter()
        .find(|r| r.route == crm)
        .expect("listed");
    assert_eq!(listed.paused.as_ref(), Some(&by_hand));
    assert_eq!(listed.open(), 0);

    store
        .put(ticket(1, 0).for_routes(vec![crm.clone(), audit.clone()]))
        .await
        .unwrap();
    let breaker = Pause {
        since: 5,
        reason: "circuit breaker".into(),
        probe_at: Some(now_ms() + 10_000),
    };
    store
        .set_pause(crm.clone(), Some(breaker.clone()))
        .await
        .unwrap();
    let stats = store.stats().await.unwrap();
    let crm_stats = stats.routes.iter().find(|r| r.route == crm).unwrap();
    assert_eq!(
        (crm_stats.pending, crm_stats.paused.as_ref()),
        (1, Some(&breaker))
    );
    let audit_stats = stats.routes.iter().find(|r| r.route == audit).unwrap();
    assert_eq!(audit_stats.paused, None);

    store.set_pause(crm.clone(), None).await.unwrap();
    assert_eq!(store.pause_of(crm.clone()).await.unwrap(), None);
    store.set_pause(crm.clone(), None).await.unwrap();
    let stats = store.stats().await.unwrap();
    assert!(stats.routes.iter().all(|r| r.paused.is_none()), "{stats:?}");
}

/// Two accounts' events with one dedup key are two events, each recognised when
/// its own account sends it again; each is stored, listed and filtered with its
/// account.
pub async fn accounts_keep_their_own_redeliveries<S: Store>(store: S) {
    let acme = AccountName::new("acme").unwrap();
    let beta = AccountName::new("beta").unwrap();
    let from = |account: Option<&AccountName>| ticket(1, 0).from_account(account.cloned());
    let a = store.put(from(Some(&acme))).await.unwrap();
    let b = store.put(from(Some(&beta))).await.unwrap();
    let none = store.put(from(None)).await.unwrap();
    for outcome in [a, b, none] {
        assert!(matches!(outcome, PutOutcome::Stored(_)), "{outcome:?}");
    }
    assert_eq!(
        store.put(from(Some(&acme))).await.unwrap(),
        PutOutcome::Duplicate(a.id())
    );
    assert_eq!(
        store.put(from(Some(&beta))).await.unwrap(),
        PutOutcome::Duplicate(b.id())
    );
    assert_eq!(
        store.put(from(None)).await.unwrap(),
        PutOutcome::Duplicate(none.id())
    );
    let other = ticket(1, 1).from_account(Some(acme.clone()));
    assert!(matches!(
        store.put(other).await.unwrap(),
        PutOutcome::Conflict(_)
    ));
    let stored = store.get(a.id()).await.unwrap().unwrap();
    assert_eq!(stored.account.as_ref(), Some(&acme));
    assert_eq!(store.get(none.id()).await.unwrap().unwrap().account, None);
    let listed = store
        .list(Filter {
            account: Some(beta.clone()),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|e| e.id).collect::<Vec<_>>(), [b.id()]);
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.received, stats.duplicates, stats.conflicts),
        (7, 3, 1)
    );
}
