//! What can go wrong in alert delivery, in one type.

use std::path::PathBuf;

use crate::format::FormatError;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The `[notify]` config (or a receiver built from it) cannot work; the message names the
    /// key, receiver or route.
    #[error("{0}")]
    Config(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file of the outbox, the notification log or the silences that cannot be read as it
    /// is (written by a newer release, or damaged where damage cannot be set aside).
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
    /// A silence made through the API that makes no sense; the message says why.
    #[error("{0}")]
    InvalidSilence(String),
    #[error("no silence has id {0:?}")]
    SilenceNotFound(String),
    #[error("silence {0:?} is defined in the config file; change it there")]
    SilenceFromConfig(String),
}

impl NotifyError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NotifyError::Io {
            path: path.into(),
            source,
        }
    }
}
