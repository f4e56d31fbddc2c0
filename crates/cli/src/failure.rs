//! How the CLI fails: one line on stderr and an exit code that says what kind.

use std::fmt;
use std::process::ExitCode;

/// What kind of failure, as the exit code tells scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Bad flags or input; nothing was sent. Exit 2.
    Usage,
    /// Thulium or the receiver answered with an error. Exit 3.
    Refused,
    /// No answer: cannot connect, timeout. Exit 4.
    Network,
    /// Anything else. Exit 1.
    Other,
    /// The output could not be written (a full disk, a broken device). Exit 5.
    Output,
    /// Whoever read our output stopped (`| head`): end quietly with 0, as Unix
    /// tools do.
    ClosedPipe,
}

/// A failure with a message that says what to do.
#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Usage,
            message: message.into(),
        }
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Refused,
            message: message.into(),
        }
    }

    pub fn network(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Network,
            message: message.into(),
        }
    }

    pub fn other(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Other,
            message: message.into(),
        }
    }

    /// Writing to stdout failed.
    pub fn output(error: &std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            Self {
                kind: Kind::ClosedPipe,
                message: String::new(),
            }
        } else {
            Self {
                kind: Kind::Output,
                message: format!("cannot write the output: {error}"),
            }
        }
    }

    /// Whether the failure is reported at all (a closed pipe is not).
    pub fn is_silent(&self) -> bool {
        self.kind == Kind::ClosedPipe
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self.kind {
            Kind::Usage => 2,
            Kind::Refused => 3,
            Kind::Network => 4,
            Kind::Output => 5,
            Kind::ClosedPipe => 0,
            Kind::Other => 1,
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<thulium::Error> for Failure {
    fn from(error: thulium::Error) -> Self {
        use thulium::Error as E;
        let kind = match &error {
            E::InvalidInput { .. } | E::Config { .. } => Kind::Usage,
            E::Unauthorized { .. } | E::Api { .. } | E::UnexpectedResponse { .. } => Kind::Refused,
            E::Timeout { .. } | E::Connect { .. } | E::Transport { .. } => Kind::Network,
            _ => Kind::Other,
        };
        Self {
            kind,
            message: error.to_string(),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Self::other(error.to_string())
    }
}

impl From<thulium_inbox::StoreError> for Failure {
    fn from(error: thulium_inbox::StoreError) -> Self {
        use thulium_inbox::StoreError as E;
        let kind = match &error {
            E::NotFound(_) | E::WrongState { .. } => Kind::Usage,
            _ => Kind::Other,
        };
        Self {
            kind,
            message: error.to_string(),
        }
    }
}

impl From<thulium_inbox::relay::RelayError> for Failure {
    fn from(error: thulium_inbox::relay::RelayError) -> Self {
        use thulium_inbox::relay::RelayError as E;
        match error {
            E::Store(error) => error.into(),
            other => Self::other(other.to_string()),
        }
    }
}
