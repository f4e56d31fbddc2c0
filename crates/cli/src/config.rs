//! The relay's configuration file (TOML): everything `thulium listen` takes, in
//! sections, with secrets only as the name of the environment variable that holds
//! them. The file becomes the flags it stands for, placed before the command line's
//! own, so a flag given too overrides it and every value is checked by the same
//! parser as its flag. `thulium config check` reports each mistake with its line and
//! column.

use std::ffi::OsString;
use std::path::Path;

use clap::Parser as _;
use toml::de::{DeTable, DeValue};

use crate::args::Cli;
use crate::failure::Failure;

/// A key of the file and the flag it stands for.
struct Key {
    section: &'static str,
    name: &'static str,
    flag: &'static str,
    /// A boolean that adds the flag when true (no value).
    switch: bool,
}

const fn key(section: &'static str, name: &'static str, flag: &'static str) -> Key {
    Key {
        section,
        name,
        flag,
        switch: false,
    }
}

/// A key that is `true` or `false` and stands for a flag without a value.
const fn switch(section: &'static str, name: &'static str, flag: &'static str) -> Key {
    Key {
        switch: true,
        ..key(section, name, flag)
    }
}

/// Every key, in the order of the commented example (`deploy/relay.toml`).
const KEYS: &[Key] = &[
    key("receive", "addr", "--addr"),
    key("receive", "path", "--path"),
    key("receive", "auth_user", "--auth-user"),
    key("receive", "password_env", "--password-env"),
    key("receive", "password_file", "--password-file"),
    switch("receive", "no_auth", "--no-auth"),
    key("receive", "body_limit", "--body-limit"),
    key("receive", "header_timeout", "--header-timeout"),
    key("receive", "body_timeout", "--body-timeout"),
    key("receive", "max_connections", "--max-connections"),
    key("receive", "subscribe", "--subscribe"),
    key("receive", "actions", "--action"),
    key("inbox", "location", "--inbox"),
    key("inbox", "schema", "--inbox-schema"),
    key("inbox", "password_env", "--inbox-password-env"),
    switch("inbox", "search_index", "--inbox-search-index"),
    key("inbox", "keep", "--keep"),
    key("inbox", "cache_mb", "--inbox-cache-mb"),
    key("inbox", "max_backlog", "--max-backlog"),
    key("dispatch", "concurrency", "--concurrency"),
    key("dispatch", "handler_timeout", "--handler-timeout"),
    key("dispatch", "max_attempts", "--max-attempts"),
    key("dispatch", "breaker_after", "--breaker-after"),
    key("forward", "to", "--forward-to"),
    key("forward", "auth_user", "--forward-auth-user"),
    key("forward", "password_env", "--forward-password-env"),
    key("forward", "password_file", "--forward-password-file"),
    key("forward", "format", "--forward-format"),
    switch("forward", "sign", "--forward-sign"),
    key(
        "forward",
        "signing_secret_env",
        "--forward-signing-secret-env",
    ),
    key("console", "addr", "--console"),
    key("console", "user", "--console-user"),
    key("console", "password_env", "--console-password-env"),
    key("console", "password_file", "--console-password-file"),
    key("console", "hosts", "--console-host"),
    switch("console", "behind_tls_proxy", "--console-behind-tls-proxy"),
    key("log", "level", "--log-level"),
    key("log", "format", "--log-format"),
];

/// One thing wrong in the file, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong and what to write instead.
    pub message: String,
}

/// The flags a file stands for, with the key each came from (`section.name`).
#[derive(Debug, Default)]
pub struct Settings {
    /// `--flag value` pairs (a switch alone), in the file's order.
    pub args: Vec<OsString>,
    /// `(section.name, flag, value)` of each setting, for SIGHUP's comparison.
    pub values: Vec<(String, &'static str, String)>,
}

impl Settings {
    /// The value the file gives `section.name`, if any.
    pub fn get(&self, section_key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(key, ..)| key == section_key)
            .map(|(.., value)| value.as_str())
    }
}

/// Reads and checks the file at `path`.
pub fn load(path: &Path) -> Result<Result<Settings, Vec<Mistake>>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    Ok(parse(&text))
}

/// The settings `text` holds, or every mistake in it.
pub fn parse(text: &str) -> Result<Settings, Vec<Mistake>> {
    let at = |offset: usize| position(text, offset);
    let mistake = |offset: usize, message: String| {
        let (line, column) = at(offset);
        Mistake {
            line,
            column,
            message,
        }
    };
    let (table, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(errors
            .iter()
            .map(|e| {
                let offset = e.span().map_or(0, |span| span.start);
                mistake(offset, e.message().trim().to_string())
            })
            .collect());
    }
    let mut mistakes = Vec::new();
    let mut settings = Settings::default();
    // In the file's order (the parsed table is sorted by name).
    let mut in_order: Vec<_> = table.get_ref().iter().collect();
    in_order.sort_by_key(|(name, _)| name.span().start);
    for (section, body) in in_order {
        let section_name = section.get_ref().as_ref();
        let DeValue::Table(entries) = body.get_ref() else {
            mistakes.push(mistake(
                section.span().start,
                format!("`{section_name}` must be a section ([{section_name}])"),
            ));
            continue;
        };
        if let Some(named) = NAMED.iter().find(|n| n.section == section_name) {
            named_tables(named, entries, &mistake, &mut settings, &mut mistakes);
            continue;
        }
        if !KEYS.iter().any(|k| k.section == section_name) {
            mistakes.push(mistake(
                section.span().start,
                format!(
                    "unknown section [{section_name}]; the sections are {}",
                    sections().join(", ")
                ),
            ));
            continue;
        }
        let mut entries: Vec<_> = entries.iter().collect();
        entries.sort_by_key(|(name, _)| name.span().start);
        for (name, value) in entries {
            let name_text = name.get_ref().as_ref();
            let offset = name.span().start;
            let Some(key) = KEYS
                .iter()
                .find(|k| k.section == section_name && k.name == name_text)
            else {
                let message = if name_text.contains("password") || name_text.contains("secret") {
                    secret_in_file(name_text)
                } else {
                    let known: Vec<&str> = KEYS
                        .iter()
                        .filter(|k| k.section == section_name)
                        .map(|k| k.name)
                        .collect();
                    format!(
                        "unknown key `{name_text}` in [{section_name}]; it takes {}",
                        known.join(", ")
                    )
                };
                mistakes.push(mistake(offset, message));
                continue;
            };
            let value_offset = value.span().start;
            let text = match (value.get_ref(), key.switch) {
                (DeValue::Boolean(on), true) => on.to_string(),
                (_, true) => {
                    mistakes.push(mistake(
                        value_offset,
                        format!("{section_name}.{name_text} must be true or false"),
                    ));
                    continue;
                }
                (DeValue::String(text), false) => text.to_string(),
                (DeValue::Integer(number), false) => number.as_str().replace('_', ""),
                (DeValue::Array(items), false)
                    if items
                        .iter()
                        .all(|item| matches!(item.get_ref(), DeValue::String(_))) =>
                {
                    // A list: the flag once per item; shown joined by newlines.
                    items
                        .iter()
                        .filter_map(|item| match item.get_ref() {
                            DeValue::String(text) => Some(text.to_string()),
                            _ => None,
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                }
                (_, false) => {
                    mistakes.push(mistake(
                        value_offset,
                        format!(
                            "{section_name}.{name_text} must be a string, a number or a list of strings"
                        ),
                    ));
                    continue;
                }
            };
            let args: Vec<OsString> = match (key.switch, text.as_str()) {
                (true, "true") => vec![key.flag.into()],
                (true, _) => Vec::new(),
                (false, _) if matches!(value.get_ref(), DeValue::Array(_)) => text
                    .lines()
                    .flat_map(|item| [key.flag.into(), item.into()])
                    .collect(),
                (false, _) => vec![key.flag.into(), text.clone().into()],
            };
            // The value alone, through the flag's own parser.
            if let Err(error) = Cli::try_parse_from(
                ["thulium".into(), "listen".into()]
                    .into_iter()
                    .chain(args.clone()),
            ) && !matches!(
                error.kind(),
                clap::error::ErrorKind::MissingRequiredArgument
                    | clap::error::ErrorKind::ArgumentConflict
            ) {
                mistakes.push(mistake(
                    value_offset,
                    format!(
                        "{section_name}.{name_text}: {}",
                        without_flag(&first_line(&error))
                    ),
                ));
                continue;
            }
            settings.args.extend(args);
            settings
                .values
                .push((format!("{section_name}.{name_text}"), key.flag, text));
        }
    }
    if mistakes.is_empty() {
        // The values together (one setting that needs another).
        let whole = ["thulium".into(), "listen".into()]
            .into_iter()
            .chain(settings.args.clone());
        if let Err(error) = Cli::try_parse_from(whole) {
            mistakes.push(mistake(0, in_file_terms(&whole_message(&error))));
        }
    }
    if mistakes.is_empty() {
        Ok(settings)
    } else {
        mistakes.sort_by_key(|m| (m.line, m.column));
        Err(mistakes)
    }
}

/// The command line `thulium listen --config FILE ...` stands for: the file's flags
/// right after `listen`, then everything the user typed (whose flags win, being
/// later). Global options typed before `listen` may follow it.
pub fn command_line(settings: &Settings, typed: Vec<OsString>) -> Vec<OsString> {
    let mut typed = typed.into_iter();
    let mut line: Vec<OsString> = typed.next().into_iter().collect();
    let rest: Vec<OsString> = typed.collect();
    let listen = rest.iter().position(|arg| arg == "listen");
    line.push("listen".into());
    line.extend(settings.args.iter().cloned());
    line.extend(
        rest.into_iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != listen)
            .map(|(_, arg)| arg),
    );
    line
}

/// `path:line:column: message` for each mistake.
pub fn report(path: &Path, mistakes: &[Mistake]) -> String {
    mistakes
        .iter()
        .map(|m| {
            format!(
                "{}:{}:{}: {}",
                path.display(),
                m.line,
                m.column,
                crate::output::escape(&m.message)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a key that looks like a secret gets: secrets are never in the file.
fn secret_in_file(key: &str) -> String {
    format!(
        "`{key}`: a secret is never written in the file; set password_env to the name of the environment variable that holds it, or password_file to the file"
    )
}

fn sections() -> Vec<String> {
    let mut names: Vec<String> = KEYS.iter().map(|k| format!("[{}]", k.section)).collect();
    names.dedup();
    names.extend(NAMED.iter().map(|n| format!("[{}.NAME]", n.section)));
    names
}

/// A section of named tables (`[routes.NAME]`, `[accounts.NAME]`), each one flag
/// with a spec (`crate::routes`, `crate::accounts`).
struct Named {
    section: &'static str,
    /// A table of it, in the singular.
    one: &'static str,
    flag: &'static str,
    keys: &'static [&'static str],
    head: Option<(&'static str, &'static str)>,
    /// Checks a spec with the flag's own parser.
    check: fn(&str) -> Result<(), String>,
}

const NAMED: &[Named] = &[
    Named {
        section: "routes",
        one: "route",
        flag: "--route",
        keys: crate::routes::KEYS,
        head: crate::routes::HEAD,
        check: |spec| spec.parse::<crate::routes::RouteSpec>().map(drop),
    },
    Named {
        section: "accounts",
        one: "account",
        flag: "--receive-for",
        keys: crate::accounts::KEYS,
        head: None,
        check: |spec| spec.parse::<crate::accounts::AccountSpec>().map(drop),
    },
];

/// The tables of a [`Named`] section: each becomes its flag with a spec.
fn named_tables(
    named: &Named,
    tables: &DeTable<'_>,
    mistake: &dyn Fn(usize, String) -> Mistake,
    settings: &mut Settings,
    mistakes: &mut Vec<Mistake>,
) {
    let section = named.section;
    let mut tables: Vec<_> = tables.iter().collect();
    tables.sort_by_key(|(name, _)| name.span().start);
    for (name, table) in tables {
        let (name_text, offset) = (name.get_ref().as_ref(), name.span().start);
        let DeValue::Table(keys) = table.get_ref() else {
            mistakes.push(mistake(
                offset,
                format!("`{section}.{name_text}` must be a table ([{section}.{name_text}])"),
            ));
            continue;
        };
        let mut entries = Vec::new();
        let mut keys: Vec<_> = keys.iter().collect();
        keys.sort_by_key(|(key, _)| key.span().start);
        for (key, value) in keys {
            let key_text = key.get_ref().as_ref();
            if !named.keys.contains(&key_text) {
                let message = if key_text.contains("password") || key_text.contains("secret") {
                    secret_in_file(key_text)
                } else {
                    format!(
                        "unknown key `{key_text}` in [{section}.{name_text}]; a{n} {one} takes {}",
                        named.keys.join(", "),
                        n = if named.one.starts_with('a') { "n" } else { "" },
                        one = named.one,
                    )
                };
                mistakes.push(mistake(key.span().start, message));
                continue;
            }
            let text = match value.get_ref() {
                DeValue::String(text) => text.to_string(),
                DeValue::Integer(number) => number.as_str().replace('_', ""),
                DeValue::Boolean(on) => on.to_string(),
                DeValue::Array(items) => items
                    .iter()
                    .filter_map(|item| match item.get_ref() {
                        DeValue::String(text) => Some(text.to_string()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                _ => {
                    mistakes.push(mistake(
                        value.span().start,
                        format!("{section}.{name_text}.{key_text} must be a string, a number, true or false, or a list of strings"),
                    ));
                    continue;
                }
            };
            entries.push((key_text.to_string(), text));
        }
        let spec = crate::routes::spec_of(section, named.head, name_text, &entries)
            .and_then(|spec| (named.check)(&spec).map(|()| spec));
        match spec {
            Ok(spec) => {
                settings
                    .args
                    .extend([named.flag.into(), spec.clone().into()]);
                settings
                    .values
                    .push((format!("{section}.{name_text}"), named.flag, spec));
            }
            Err(message) => mistakes.push(mistake(offset, message)),
        }
    }
}

/// clap's first line without its `error: ` prefix.
fn first_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    rendered
        .lines()
        .next()
        .unwrap_or("invalid value")
        .trim_start_matches("error: ")
        .to_string()
}

/// clap's "invalid value 'x' for '--flag <X>': why" without the flag, which the
/// message's key already names.
fn without_flag(message: &str) -> String {
    match message.find(" for '--") {
        Some(start) => match message[start + 6..].find('\'') {
            Some(end) => format!("{}{}", &message[..start], &message[start + 6 + end + 1..]),
            None => message.to_string(),
        },
        None => message.to_string(),
    }
}

/// clap's message up to its usage line, as one line.
fn whole_message(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    rendered
        .lines()
        .take_while(|line| !line.starts_with("Usage:"))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_string()
}

/// `message` with each flag it names written as the file's key (`--forward-to`
/// becomes `forward.to`).
fn in_file_terms(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find("--") {
        out.push_str(&rest[..start]);
        let flag_len = rest[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(rest.len() - start);
        let flag = &rest[start..start + flag_len];
        match KEYS.iter().find(|k| k.flag == flag) {
            Some(key) => out.push_str(&format!("{}.{}", key.section, key.name)),
            None => out.push_str(flag),
        }
        rest = &rest[start + flag_len..];
    }
    out.push_str(rest);
    out
}

/// The 1-based line and column (in characters) of byte `offset`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_file_becomes_its_flags() {
        let settings = parse(
            "[receive]\naddr = \"0.0.0.0:8080\"\nno_auth = true\n\n[inbox]\nlocation = \"/var/lib/thulium/events.redb\"\nmax_backlog = 1_000\n",
        )
        .unwrap();
        let args: Vec<_> = settings.args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "--addr",
                "0.0.0.0:8080",
                "--no-auth",
                "--inbox",
                "/var/lib/thulium/events.redb",
                "--max-backlog",
                "1000"
            ]
        );
        assert_eq!(settings.get("inbox.max_backlog"), Some("1000"));
    }

    #[test]
    fn each_mistake_has_its_line_and_column() {
        let mistakes = parse(
            "[receive]\naddr = \"nowhere\"\npassword = \"hunter2\"\n[dispatch]\nconcurency = 4\nmax_attempts = 0\n[forwrd]\nto = 1\n",
        )
        .unwrap_err();
        let found: Vec<(usize, usize, bool)> = mistakes
            .iter()
            .map(|m| (m.line, m.column, m.message.is_empty()))
            .collect();
        assert_eq!(
            found,
            [
                (2, 8, false),
                (3, 1, false),
                (5, 1, false),
                (6, 16, false),
                (7, 2, false)
            ],
            "{mistakes:#?}"
        );
        assert!(
            mistakes[1].message.contains("password_env"),
            "{mistakes:#?}"
        );
        assert!(!mistakes.iter().any(|m| m.message.contains("hunter2")));
        assert!(mistakes[2].message.contains("concurrency"), "{mistakes:#?}");
    }

    #[test]
    fn a_syntax_error_has_its_place_too() {
        let mistakes = parse("[receive]\naddr = \"0.0.0.0:80\n").unwrap_err();
        assert_eq!(mistakes[0].line, 2, "{mistakes:#?}");
    }

    #[test]
    fn a_setting_that_needs_another_is_named_as_a_key() {
        let mistakes = parse("[forward]\nauth_user = \"relay\"\n").unwrap_err();
        assert!(mistakes[0].message.contains("forward.to"), "{mistakes:#?}");
    }

    #[test]
    fn typed_flags_come_after_the_file() {
        let settings = parse("[receive]\naddr = \"0.0.0.0:1\"\n").unwrap();
        let line = command_line(
            &settings,
            [
                "thulium",
                "-v",
                "listen",
                "--config",
                "f",
                "--addr",
                "127.0.0.1:2",
            ]
            .map(OsString::from)
            .to_vec(),
        );
        let line: Vec<_> = line.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            line,
            [
                "thulium",
                "listen",
                "--addr",
                "0.0.0.0:1",
                "-v",
                "--config",
                "f",
                "--addr",
                "127.0.0.1:2"
            ]
        );
        let cli = Cli::try_parse_from(line).unwrap();
        let crate::args::Command::Listen(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.addr.to_string(), "127.0.0.1:2");
        assert_eq!(cli.verbose, 1);
    }
}
