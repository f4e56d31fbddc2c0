//! `--route SPEC` (and the config file's `[routes.NAME]` tables): a destination
//! of the relay with the actions it takes and how its forwards are sent.
//!
//! A spec is the route's name and destination, then `key=value` words. The
//! destination is an HTTP endpoint, or a broker: `nats://host:port` (NATS
//! JetStream; `subject=thulium.{account}.{action}` by default) or
//! `redis://host:port/db` (Redis Streams; `stream=thulium:events` by default,
//! `maxlen=N` to trim), `mqtt://host:port` (QoS 1; `topic=thulium/{account}/{action}`
//! by default) or `amqp://host:port/vhost` (RabbitMQ; `exchange=NAME`,
//! `routing-key=thulium.{account}.{action}` by default). A spec reads:
//! `crm=https://crm.example.com/thulium actions=CHAT_*,TICKET_* format=json
//! concurrency=4 timeout=10s max-attempts=20 retry=1s..10m breaker=5 auth-user=relay
//! password-env=CRM_PASSWORD sign`. What a route leaves out comes from the listener's own flags
//! (`--concurrency`, `--handler-timeout`, `--max-attempts`, `--forward-format`).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use thulium_inbox::bus::Template;
use thulium_inbox::routing::{AccountName, ActionPattern, RouteName};

use crate::args::{ForwardFormat, parse_duration};

/// One route, as given.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteSpec {
    /// Its name.
    pub name: RouteName,
    /// Where its events go: an http(s) URL, or a broker's.
    pub to: String,
    /// The broker, for a route into a message bus (`None`: HTTP).
    pub bus: Option<Bus>,
    /// The actions it takes (none: every action).
    pub actions: Vec<ActionPattern>,
    /// The body sent, unless the listener's.
    pub format: Option<ForwardFormat>,
    /// Forwards at once, unless the listener's.
    pub concurrency: Option<u32>,
    /// The longest one forward may take, unless the listener's.
    pub timeout: Option<Duration>,
    /// Attempts before an entry is dead, unless the listener's.
    pub max_attempts: Option<u32>,
    /// The first and the longest wait between attempts, unless 1 s and 1 h.
    pub retry: Option<(Duration, Duration)>,
    /// Failures in a row that pause it (0: never), unless the listener's.
    pub breaker: Option<u32>,
    /// The most forwards started per second.
    pub rate: Option<f64>,
    /// The answers that dead-letter an event at once, unless the default ones.
    pub final_statuses: Option<Vec<u16>>,
    /// The accounts whose events it takes (none: every account's).
    pub accounts: Vec<AccountName>,
    /// Basic auth user sent.
    pub auth_user: Option<String>,
    /// The variable that holds that user's password.
    pub password_env: Option<String>,
    /// The file that holds that user's password.
    pub password_file: Option<PathBuf>,
    /// Sign its forwards (Standard Webhooks).
    pub sign: bool,
    /// The variable that holds its signing secrets, unless the listener's.
    pub signing_secret_env: Option<String>,
}

/// A route's broker and where on it each event goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Bus {
    /// NATS JetStream, to this subject.
    Nats {
        /// The subject of each event.
        subject: Template,
    },
    /// RabbitMQ, to this exchange with this routing key.
    Rabbit {
        /// The exchange (`""`: the default one, where the key is a queue's name).
        exchange: String,
        /// The routing key of each event.
        routing_key: Template,
    },
    /// MQTT, QoS 1, to this topic.
    Mqtt {
        /// The topic of each event.
        topic: Template,
    },
    /// Redis Streams, to this stream.
    Redis {
        /// The stream (key) of each event.
        stream: Template,
        /// Trimmed to about this many entries.
        max_len: Option<u64>,
    },
}

/// The routing key a RabbitMQ route publishes with unless it names one.
pub const RABBIT_ROUTING_KEY: &str = "thulium.{account}.{action}";

/// The topic an MQTT route publishes to unless it names one.
pub const MQTT_TOPIC: &str = "thulium/{account}/{action}";

/// The stream a Redis route appends to unless it names one.
pub const REDIS_STREAM: &str = "thulium:events";

/// The subject a NATS route publishes to unless it names one.
pub const NATS_SUBJECT: &str = "thulium.{account}.{action}";

/// The keys a spec takes after `NAME=URL`, as the config file spells them.
pub const KEYS: &[&str] = &[
    "to",
    "actions",
    "format",
    "concurrency",
    "timeout",
    "max_attempts",
    "retry",
    "subject",
    "stream",
    "maxlen",
    "topic",
    "exchange",
    "routing_key",
    "breaker",
    "rate",
    "final",
    "accounts",
    "auth_user",
    "password_env",
    "password_file",
    "sign",
    "signing_secret_env",
];

impl FromStr for RouteSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut words = text.split_whitespace();
        let head = words.next().unwrap_or_default();
        let (name, to) = head
            .split_once('=')
            .ok_or_else(|| format!("`{head}`: a route starts with NAME=URL"))?;
        let name = RouteName::new(name).map_err(|e| e.to_string())?;
        // The forwarder or the broker's client checks the URL whole when the relay
        // starts; a password never stands in it.
        let (scheme, rest) = to.split_once("://").unwrap_or_default();
        if rest
            .split('/')
            .next()
            .is_some_and(|authority| authority.contains('@'))
        {
            return Err(format!(
                "route {name}: credentials never go in the URL; give auth-user and password-env"
            ));
        }
        let bus = match scheme {
            "http" | "https" => None,
            "nats" | "tls" => Some(Bus::Nats {
                subject: Template::parse(NATS_SUBJECT)?,
            }),
            "redis" => Some(Bus::Redis {
                stream: Template::parse(REDIS_STREAM)?,
                max_len: None,
            }),
            "mqtt" => Some(Bus::Mqtt {
                topic: Template::parse(MQTT_TOPIC)?,
            }),
            "amqp" => Some(Bus::Rabbit {
                exchange: String::new(),
                routing_key: Template::parse(RABBIT_ROUTING_KEY)?,
            }),
            _ => {
                return Err(format!(
                    "route {name}: `{to}` must be an http://, https://, nats://, redis://, mqtt:// or amqp:// URL"
                ));
            }
        };
        let mut spec = RouteSpec {
            name,
            to: to.to_string(),
            bus,
            actions: Vec::new(),
            format: None,
            concurrency: None,
            timeout: None,
            max_attempts: None,
            retry: None,
            breaker: None,
            rate: None,
            final_statuses: None,
            accounts: Vec::new(),
            auth_user: None,
            password_env: None,
            password_file: None,
            sign: false,
            signing_secret_env: None,
        };
        for word in words {
            let (key, value) = word.split_once('=').unwrap_or((word, "true"));
            let key = key.replace('-', "_");
            let bad = |what: &str| format!("route {}: {key}={value}: {what}", spec.name);
            let number = |range: std::ops::RangeInclusive<u32>| {
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| {
                        bad(&format!(
                            "a number from {} to {}",
                            range.start(),
                            range.end()
                        ))
                    })
            };
            match key.as_str() {
                "actions" => {
                    spec.actions = value
                        .split(',')
                        .filter(|a| !a.is_empty())
                        .map(ActionPattern::new)
                        .collect::<Result<_, _>>()
                        .map_err(|e| bad(&e.to_string()))?;
                }
                "accounts" => {
                    spec.accounts = value
                        .split(',')
                        .filter(|a| !a.is_empty())
                        .map(AccountName::new)
                        .collect::<Result<_, _>>()
                        .map_err(|e| bad(&e.to_string()))?;
                }
                "format" => {
                    spec.format = Some(
                        <ForwardFormat as clap::ValueEnum>::from_str(value, false)
                            .map_err(|_| bad("as-received, form or json"))?,
                    );
                }
                "concurrency" => spec.concurrency = Some(number(1..=10_000)?),
                "max_attempts" => spec.max_attempts = Some(number(1..=u32::MAX)?),
                "breaker" => spec.breaker = Some(number(0..=u32::MAX)?),
                "final" => {
                    let statuses = value
                        .split(',')
                        .filter(|s| !s.is_empty() && *s != "none")
                        .map(|s| s.parse::<u16>().ok().filter(|c| (300..600).contains(c)))
                        .collect::<Option<Vec<u16>>>()
                        .ok_or_else(|| {
                            bad("HTTP statuses from 300 to 599, e.g. 400,404,410, or none")
                        })?;
                    spec.final_statuses = Some(statuses);
                }
                "rate" => {
                    let per_second = value
                        .trim_end_matches("/s")
                        .parse::<f64>()
                        .ok()
                        .filter(|r| *r > 0.0 && r.is_finite())
                        .ok_or_else(|| bad("forwards per second above zero, e.g. 20 or 0.5"))?;
                    spec.rate = Some(per_second);
                }
                "timeout" => spec.timeout = Some(parse_duration(value).map_err(|e| bad(&e))?),
                "subject" => match &mut spec.bus {
                    Some(Bus::Nats { subject }) => {
                        *subject = Template::parse(value).map_err(|e| bad(&e))?;
                    }
                    _ => return Err(bad("only a nats:// route has a subject")),
                },
                "exchange" => match &mut spec.bus {
                    Some(Bus::Rabbit { exchange, .. }) => *exchange = value.to_string(),
                    _ => return Err(bad("only an amqp:// route has an exchange")),
                },
                "routing_key" => match &mut spec.bus {
                    Some(Bus::Rabbit { routing_key, .. }) => {
                        *routing_key = Template::parse(value).map_err(|e| bad(&e))?;
                    }
                    _ => return Err(bad("only an amqp:// route has a routing key")),
                },
                "topic" => match &mut spec.bus {
                    Some(Bus::Mqtt { topic }) => {
                        *topic = Template::parse(value).map_err(|e| bad(&e))?;
                    }
                    _ => return Err(bad("only an mqtt:// route has a topic")),
                },
                "stream" => match &mut spec.bus {
                    Some(Bus::Redis { stream, .. }) => {
                        *stream = Template::parse(value).map_err(|e| bad(&e))?;
                    }
                    _ => return Err(bad("only a redis:// route has a stream")),
                },
                "maxlen" => match &mut spec.bus {
                    Some(Bus::Redis { max_len, .. }) => {
                        *max_len = Some(
                            value
                                .parse::<u64>()
                                .ok()
                                .filter(|n| *n > 0)
                                .ok_or_else(|| bad("a number of entries above zero"))?,
                        );
                    }
                    _ => return Err(bad("only a redis:// route has a maxlen")),
                },
                "retry" => {
                    let (first, longest) = value
                        .split_once("..")
                        .ok_or_else(|| bad("FIRST..LONGEST, e.g. 1s..1h"))?;
                    let first = parse_duration(first).map_err(|e| bad(&e))?;
                    let longest = parse_duration(longest).map_err(|e| bad(&e))?;
                    if first.is_zero() || first > longest {
                        return Err(bad(
                            "the first wait must be above zero and at most the longest",
                        ));
                    }
                    spec.retry = Some((first, longest));
                }
                "auth_user" => spec.auth_user = Some(value.to_string()),
                "password_env" => spec.password_env = Some(value.to_string()),
                "password_file" => spec.password_file = Some(value.into()),
                "signing_secret_env" => spec.signing_secret_env = Some(value.to_string()),
                "sign" => {
                    spec.sign = value
                        .parse()
                        .map_err(|_| bad("true or false (or `sign` alone)"))?;
                }
                "password" | "secret" | "signing_secret" => {
                    return Err(bad(
                        "a secret is never given here; name the environment variable that holds it (password_env, signing_secret_env) or the file (password_file)",
                    ));
                }
                _ => {
                    return Err(bad(&format!(
                        "unknown key; a route takes {}",
                        KEYS[1..].join(", ")
                    )));
                }
            }
        }
        if spec.auth_user.is_none() && (spec.password_env.is_some() || spec.password_file.is_some())
        {
            return Err(format!(
                "route {}: a password needs auth_user (the user it goes with)",
                spec.name
            ));
        }
        Ok(spec)
    }
}

/// A config file's table `[section.NAME]` (its keys as the spec's `KEYS` name
/// them) as the spec its flag takes: `NAME=HEAD` when the section has a head key
/// (a route's `to`, required), else `NAME`, then `key=value` words; each value
/// already text (lists joined by `,`).
pub fn spec_of(
    section: &str,
    head: Option<(&str, &str)>,
    name: &str,
    entries: &[(String, String)],
) -> Result<String, String> {
    let mut spec = name.to_string();
    if let Some((head, what)) = head {
        let value = entries
            .iter()
            .find(|(key, _)| key == head)
            .map(|(_, value)| value.as_str())
            .ok_or_else(|| format!("[{section}.{name}] needs `{head}`, {what}"))?;
        spec.push('=');
        spec.push_str(value);
    }
    for (key, value) in entries
        .iter()
        .filter(|(key, _)| head.is_none_or(|(head, _)| key != head))
    {
        if value.chars().any(char::is_whitespace) {
            return Err(format!(
                "{section}.{name}.{key}: a value here cannot hold spaces"
            ));
        }
        spec.push_str(&format!(" {key}={value}"));
    }
    Ok(spec)
}

/// What a route's table must hold first: `to`.
pub const HEAD: Option<(&str, &str)> = Some(("to", "the URL its events are POSTed to"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_reads_every_key() {
        let spec: RouteSpec = "crm=https://crm.example.com/in actions=CHAT_*,TICKET_CREATED format=json concurrency=4 timeout=10s max-attempts=20 retry=500ms..5m breaker=0 rate=2.5/s final=404,410 auth-user=relay password-env=CRM_PW sign"
            .parse()
            .unwrap();
        assert_eq!(spec.name.as_str(), "crm");
        assert_eq!(spec.to, "https://crm.example.com/in");
        assert_eq!(spec.actions.len(), 2);
        assert_eq!(spec.format, Some(ForwardFormat::Json));
        assert_eq!((spec.concurrency, spec.max_attempts), (Some(4), Some(20)));
        assert_eq!(spec.timeout, Some(Duration::from_secs(10)));
        assert_eq!(spec.breaker, Some(0));
        assert_eq!(spec.rate, Some(2.5));
        assert_eq!(spec.final_statuses, Some(vec![404, 410]));
        assert_eq!(
            spec.retry,
            Some((Duration::from_millis(500), Duration::from_secs(300)))
        );
        assert_eq!(spec.auth_user.as_deref(), Some("relay"));
        assert_eq!(spec.password_env.as_deref(), Some("CRM_PW"));
        assert!(spec.sign);
        let plain: RouteSpec = "audit=http://127.0.0.1:9000/".parse().unwrap();
        assert!(plain.actions.is_empty() && !plain.sign && plain.format.is_none());
    }

    #[test]
    fn broker_routes_take_their_own_keys_and_defaults() {
        let nats: RouteSpec = "bus=nats://127.0.0.1:4222".parse().unwrap();
        assert_eq!(
            nats.bus,
            Some(Bus::Nats {
                subject: Template::parse(NATS_SUBJECT).unwrap()
            })
        );
        let redis: RouteSpec = "cache=redis://127.0.0.1:6379/0 stream=s:{route} maxlen=100"
            .parse()
            .unwrap();
        assert_eq!(
            redis.bus,
            Some(Bus::Redis {
                stream: Template::parse("s:{route}").unwrap(),
                max_len: Some(100)
            })
        );
        let mqtt: RouteSpec = "iot=mqtt://127.0.0.1:1883 topic=t/{action}"
            .parse()
            .unwrap();
        assert_eq!(
            mqtt.bus,
            Some(Bus::Mqtt {
                topic: Template::parse("t/{action}").unwrap()
            })
        );
        let rabbit: RouteSpec =
            "mq=amqp://127.0.0.1:5672/%2f exchange=events routing-key=t.{action}"
                .parse()
                .unwrap();
        assert_eq!(
            rabbit.bus,
            Some(Bus::Rabbit {
                exchange: "events".into(),
                routing_key: Template::parse("t.{action}").unwrap()
            })
        );
        assert_eq!("web=https://x/in".parse::<RouteSpec>().unwrap().bus, None);
    }

    #[test]
    fn a_bad_spec_says_what_is_wrong() {
        for (spec, says) in [
            ("crm", "NAME=URL"),
            ("Crm=http://x/", "route name"),
            ("unrouted=http://x/", "reserved"),
            (
                "crm=ftp://x/",
                "http://, https://, nats://, redis://, mqtt:// or amqp://",
            ),
            (
                "c=mqtt://127.0.0.1:1883 exchange=x",
                "only an amqp:// route",
            ),
            (
                "c=redis://127.0.0.1:6379 topic=a/b",
                "only an mqtt:// route",
            ),
            ("c=redis://127.0.0.1:6379 maxlen=0", "above zero"),
            ("c=nats://127.0.0.1:4222 stream=x", "only a redis:// route"),
            ("crm=https://u:pw@x/", "credentials never go in the URL"),
            ("crm=https://x/ subject=a.b", "only a nats:// route"),
            (
                "bus=nats://127.0.0.1:4222 subject=a.{who}",
                "names {account}",
            ),
            ("crm=http://x/ actions=CHAT-X", "action pattern"),
            ("crm=http://x/ concurrency=0", "from 1 to 10000"),
            ("crm=http://x/ retry=5s", "FIRST..LONGEST"),
            ("crm=http://x/ rate=0", "above zero"),
            ("crm=http://x/ final=200", "from 300 to 599"),
            ("crm=http://x/ retry=1h..1s", "at most the longest"),
            ("crm=http://x/ colour=red", "unknown key"),
            ("crm=http://x/ password=hunter2", "never given here"),
            ("crm=http://x/ password-env=X", "needs auth_user"),
        ] {
            let error = spec.parse::<RouteSpec>().unwrap_err();
            assert!(error.contains(says), "{spec}: {error}");
        }
    }

    #[test]
    fn a_config_table_becomes_a_spec() {
        let entries = [
            ("actions".to_string(), "CHAT_*,CALL_*".to_string()),
            ("to".to_string(), "https://x/in".to_string()),
            ("sign".to_string(), "true".to_string()),
        ];
        let spec = spec_of("routes", HEAD, "crm", &entries).unwrap();
        assert_eq!(spec, "crm=https://x/in actions=CHAT_*,CALL_* sign=true");
        assert!(spec.parse::<RouteSpec>().is_ok());
        assert!(
            spec_of("routes", HEAD, "crm", &entries[..1])
                .unwrap_err()
                .contains("needs `to`")
        );
    }
}
