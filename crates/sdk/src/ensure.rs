//! [`Client::ensure_webhook`]: a subscription that exists once, however often the
//! service that needs it starts.

use crate::client::Client;
use crate::error::Error;
use crate::types::{NewWebhook, Webhook};

/// What [`Client::ensure_webhook`] found or did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Ensured {
    /// No equal subscription existed; this one was created.
    Created(Webhook),
    /// An equal subscription was already there; nothing was sent but the list.
    Exists(Webhook),
}

impl Ensured {
    /// Whether a subscription was created.
    pub fn created(&self) -> bool {
        matches!(self, Ensured::Created(_))
    }

    /// The subscription, created or found.
    pub fn webhook(&self) -> &Webhook {
        match self {
            Ensured::Created(webhook) | Ensured::Exists(webhook) => webhook,
        }
    }
}

impl Client {
    /// Makes sure `webhook` is subscribed: lists the account's subscriptions and
    /// creates it only if none is equal (the same URL, the same actions in any order,
    /// the same auth user, and the same password where Thulium shows one; when it
    /// shows an empty password for a user that has one, the password cannot be
    /// compared and the subscription counts as equal). Returns what it did.
    ///
    /// What it cannot promise, because Thulium documents no idempotency key and no
    /// delete (see `docs/thulium/API-FACTS.md`):
    /// - Two processes that call it at the same moment can both find nothing and
    ///   both create: Thulium then delivers each event twice (a durable inbox
    ///   recognises the second as a duplicate). Call it from one place, such as a
    ///   deployment step, where that matters.
    /// - A subscription that differs (another URL, other actions, an old password)
    ///   is not changed or removed: it keeps receiving events until removed in
    ///   Thulium's own panel.
    ///
    /// The input is validated first, as for [`Client::create_webhook`].
    pub async fn ensure_webhook(&self, webhook: &NewWebhook) -> Result<Ensured, Error> {
        webhook.check(self.allow_plain_http_subscription_auth)?;
        let existing = self.list_webhooks().await?;
        if let Some(found) = existing.into_iter().find(|w| is_equal(w, webhook)) {
            return Ok(Ensured::Exists(found));
        }
        self.create_webhook(webhook).await.map(Ensured::Created)
    }
}

/// Whether the stored subscription `existing` is the one `wanted` asks for.
fn is_equal(existing: &Webhook, wanted: &NewWebhook) -> bool {
    fn actions(list: &[crate::Action]) -> Vec<&str> {
        let mut names: Vec<&str> = list.iter().map(crate::Action::as_str).collect();
        names.sort_unstable();
        names.dedup();
        names
    }
    let user = wanted.http_auth_user.as_deref().unwrap_or_default();
    let password_matches = match &wanted.http_auth_password {
        Some(password) => {
            existing.http_auth_password.is_empty() && !user.is_empty()
                || existing.http_auth_password == *password
        }
        None => existing.http_auth_password.is_empty(),
    };
    existing.subscription_url == wanted.subscription_url
        && actions(&existing.actions) == actions(&wanted.actions)
        && existing.http_auth_user == user
        && password_matches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Password};

    fn stored(url: &str, actions: &[Action], user: &str, password: &str) -> Webhook {
        Webhook {
            id: 1,
            actions: actions.to_vec(),
            subscription_url: url.into(),
            http_auth_user: user.into(),
            http_auth_password: Password::new(password),
        }
    }

    #[test]
    fn equal_means_url_actions_in_any_order_user_and_shown_password() {
        let wanted = NewWebhook::new(
            "https://example.pl/hook",
            [Action::TicketCreated, Action::AgentRinging],
        )
        .with_auth("thulium", "s3cret");
        let both = [Action::AgentRinging, Action::TicketCreated];
        assert!(is_equal(
            &stored("https://example.pl/hook", &both, "thulium", "s3cret"),
            &wanted
        ));
        assert!(
            is_equal(
                &stored("https://example.pl/hook", &both, "thulium", ""),
                &wanted
            ),
            "a password Thulium does not show cannot be compared"
        );
        for other in [
            stored("https://example.pl/other", &both, "thulium", "s3cret"),
            stored("https://example.pl/hook", &both[..1], "thulium", "s3cret"),
            stored("https://example.pl/hook", &both, "someone", "s3cret"),
            stored("https://example.pl/hook", &both, "thulium", "old"),
            stored("https://example.pl/hook", &both, "", ""),
        ] {
            assert!(!is_equal(&other, &wanted), "{other:?}");
        }
        let plain = NewWebhook::new("https://example.pl/hook", both.clone());
        assert!(is_equal(
            &stored("https://example.pl/hook", &both, "", ""),
            &plain
        ));
        assert!(!is_equal(
            &stored("https://example.pl/hook", &both, "thulium", "s3cret"),
            &plain
        ));
    }
}
