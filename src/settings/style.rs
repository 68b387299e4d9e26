//! The two communication styles a route can be given.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a [`Bus::send`](crate::Bus::send) call reaches its handler.
///
/// ```
/// use switchboard::Style;
///
/// let style: Style = "async".parse().unwrap();
/// assert_eq!(style, Style::Async);
/// assert_eq!(Style::default(), Style::Sync);
/// assert!("sometimes".parse::<Style>().is_err());
/// ```
///
/// The calling code is the same in both styles; configuration picks one per
/// subject pattern.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    /// Request/reply: the caller waits for the handler's answer and sees its errors.
    #[default]
    Sync,
    /// Publish: the caller returns once the backend has accepted the event; the
    /// handler runs later, and its outcome travels on as further events.
    Async,
}

impl Style {
    /// The name used in configuration: `sync` or `async`.
    pub fn as_str(self) -> &'static str {
        match self {
            Style::Sync => "sync",
            Style::Async => "async",
        }
    }
}

impl fmt::Display for Style {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Style {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "sync" => Ok(Style::Sync),
            "async" => Ok(Style::Async),
            other => Err(Error::config(format!(
                "unknown style `{other}`: expected `sync` or `async`"
            ))),
        }
    }
}
