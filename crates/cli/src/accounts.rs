//! `listen --receive-for SPEC` (and the config file's `[accounts.NAME]` tables): a Thulium
//! account the relay receives for, on its own path with its own credentials.
//!
//! A spec is the account's name, then `key=value` words:
//! `acme path=/thulium/acme auth-user=thulium password-env=ACME_WEBHOOK_PASSWORD`.
//! By default the path is `/thulium/NAME`, the user `thulium`, and the password in
//! `THULIUM_ACCOUNT_<NAME>_PASSWORD`.

use std::path::PathBuf;
use std::str::FromStr;

use thulium_inbox::routing::AccountName;

/// One account, as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSpec {
    /// Its name (`acme` for https://acme.thulium.com).
    pub name: AccountName,
    /// Where its deliveries are POSTed.
    pub path: String,
    /// The Basic-auth user its subscription sends.
    pub auth_user: String,
    /// The variable that holds its password.
    pub password_env: String,
    /// The file that holds its password, instead.
    pub password_file: Option<PathBuf>,
}

/// The keys a spec takes after the name, as the config file spells them.
pub const KEYS: &[&str] = &["path", "auth_user", "password_env", "password_file"];

impl FromStr for AccountSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut words = text.split_whitespace();
        let name = words.next().unwrap_or_default();
        let name = AccountName::new(name).map_err(|e| e.to_string())?;
        let mut spec = AccountSpec {
            path: format!("/thulium/{name}"),
            auth_user: "thulium".into(),
            password_env: format!(
                "THULIUM_ACCOUNT_{}_PASSWORD",
                name.as_str().to_ascii_uppercase().replace('-', "_")
            ),
            password_file: None,
            name,
        };
        for word in words {
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| format!("account {}: `{word}` is not key=value", spec.name))?;
            let key = key.replace('-', "_");
            match key.as_str() {
                "path" if value.starts_with('/') => spec.path = value.to_string(),
                "path" => {
                    return Err(format!(
                        "account {}: path `{value}` must start with /",
                        spec.name
                    ));
                }
                "auth_user" => spec.auth_user = value.to_string(),
                "password_env" => spec.password_env = value.to_string(),
                "password_file" => spec.password_file = Some(value.into()),
                "password" | "secret" => {
                    return Err(format!(
                        "account {}: a password is never given here; name the environment variable that holds it (password_env) or the file (password_file)",
                        spec.name
                    ));
                }
                _ => {
                    return Err(format!(
                        "account {}: unknown key `{key}`; an account takes {}",
                        spec.name,
                        KEYS.join(", ")
                    ));
                }
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_has_defaults_and_reads_every_key() {
        let plain: AccountSpec = "Acme".parse().unwrap();
        assert_eq!(plain.name.as_str(), "acme");
        assert_eq!(plain.path, "/thulium/acme");
        assert_eq!(plain.auth_user, "thulium");
        assert_eq!(plain.password_env, "THULIUM_ACCOUNT_ACME_PASSWORD");
        let full: AccountSpec =
            "beta-eu path=/in/beta auth-user=hooks password-env=BETA_PW password-file=/run/pw"
                .parse()
                .unwrap();
        assert_eq!(
            (
                full.path.as_str(),
                full.auth_user.as_str(),
                full.password_env.as_str()
            ),
            ("/in/beta", "hooks", "BETA_PW")
        );
        assert_eq!(full.password_file, Some(PathBuf::from("/run/pw")));
        for (bad, says) in [
            ("acme.thulium.com", "not a Thulium account name"),
            ("acme path=in", "must start with /"),
            ("acme colour=red", "unknown key"),
            ("acme password=hunter2", "never given here"),
            ("acme path", "not key=value"),
        ] {
            let error = bad.parse::<AccountSpec>().unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
