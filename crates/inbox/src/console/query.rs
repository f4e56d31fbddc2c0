//! The event list's query string: parsed and checked, with what is wrong said
//! back, and turned into the store's [`Filter`].

use super::html;
use thulium::text::shorten;

use crate::model::{EventId, Filter, State};
use crate::routing::{AccountName, RouteName};

/// The list's query, as typed into the form.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct ListQuery {
    pub(super) state: Option<String>,
    pub(super) route: Option<String>,
    pub(super) account: Option<String>,
    pub(super) action: Option<String>,
    pub(super) from: Option<String>,
    pub(super) to: Option<String>,
    pub(super) q: Option<String>,
    pub(super) before: Option<String>,
    pub(super) limit: Option<String>,
}

impl ListQuery {
    /// The store's filter, or what is wrong with the query.
    pub(super) fn filter(&self) -> Result<Filter, String> {
        let present = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        // A value that is wrong is quoted back cut short: an error page never echoes
        // a whole hostile input.
        let quoted = |value: &str| shorten(value, 40).into_owned();
        let state = present(&self.state)
            .map(|s| {
                s.parse::<State>().map_err(|_| {
                    format!(
                        "`{}` is not a state (pending, in_flight, done, dead)",
                        quoted(&s)
                    )
                })
            })
            .transpose()?;
        let route = present(&self.route)
            .map(|r| {
                // `unrouted` is a name to look for here, though no route may take it.
                RouteName::try_from(r.clone())
                    .map_err(|_| format!("`{}` is not a route name", quoted(&r)))
            })
            .transpose()?;
        let account = present(&self.account)
            .map(|a| {
                AccountName::new(&a).map_err(|_| format!("`{}` is not an account name", quoted(&a)))
            })
            .transpose()?;
        let action = present(&self.action);
        if action.as_ref().is_some_and(|a| a.len() > 200) {
            return Err("the action is longer than 200 characters".into());
        }
        let text = present(&self.q);
        if text.as_ref().is_some_and(|t| t.len() > 200) {
            return Err("the search text is longer than 200 characters".into());
        }
        let from = present(&self.from)
            .map(|t| html::parse_time(&t))
            .transpose()?;
        let to = present(&self.to)
            .map(|t| html::parse_time(&t))
            .transpose()?;
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            return Err("the start of the time range is not before its end".into());
        }
        let before = present(&self.before)
            .map(|b| {
                b.parse::<u64>()
                    .map_err(|_| format!("`{}` is not an event id", quoted(&b)))
            })
            .transpose()?;
        let limit = present(&self.limit)
            .map(|l| match l.parse::<usize>() {
                Ok(n) if (1..=200).contains(&n) => Ok(n),
                _ => Err(format!("`{}` is not a page size from 1 to 200", quoted(&l))),
            })
            .transpose()?;
        Ok(Filter {
            state,
            route,
            account,
            action,
            received_from: from,
            received_to: to,
            text,
            before: before.map(EventId),
            after: None,
            limit: Some(limit.unwrap_or(50)),
        })
    }
}
