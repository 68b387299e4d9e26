//! Backend options from a URL query string (or a config map), checked strictly:
//! a malformed value or an unknown key is an error that names the key.

use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

/// The `key=value` options of a backend URL, consumed by the adapter as it reads them.
///
/// Whatever the adapter did not read is reported by [`finish`](Self::finish),
/// so a typo such as `?bufer=10` fails instead of being silently ignored.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pairs: Vec<(String, String)>,
}

impl Options {
    /// Reads the query string of `url`; a key given twice is an error.
    pub fn from_url(url: &url::Url) -> Result<Self> {
        let mut options = Options::default();
        for (key, value) in url.query_pairs() {
            options.set(key.into_owned(), value.into_owned())?;
        }
        Ok(options)
    }

    /// Adds an option; a key given twice is an error.
    pub fn set(&mut self, key: String, value: String) -> Result<()> {
        if key.is_empty() {
            return Err(Error::config("empty option name in URL query"));
        }
        if self.pairs.iter().any(|(k, _)| *k == key) {
            return Err(Error::config(format!(
                "option `{key}` is given more than once"
            )));
        }
        self.pairs.push((key, value));
        Ok(())
    }

    /// Removes and returns the raw value of `key`.
    pub fn take(&mut self, key: &str) -> Option<String> {
        let index = self.pairs.iter().position(|(k, _)| k == key)?;
        Some(self.pairs.remove(index).1)
    }

    /// Removes every option starting with `prefix` and returns them with the prefix cut off
    /// (for pass-through settings such as `rdkafka.linger.ms=5`).
    pub fn take_prefixed(&mut self, prefix: &str) -> Vec<(String, String)> {
        let (taken, kept) = std::mem::take(&mut self.pairs)
            .into_iter()
            .partition(|(key, _)| key.starts_with(prefix) && key.len() > prefix.len());
        self.pairs = kept;
        let mut taken: Vec<(String, String)> = taken;
        for (key, _) in &mut taken {
            key.drain(..prefix.len());
        }
        taken
    }

    /// Removes `key` and parses it with [`FromStr`].
    pub fn take_parsed<T>(&mut self, key: &str) -> Result<Option<T>>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.take(key)
            .map(|raw| {
                raw.parse().map_err(|e| {
                    Error::config(format!("option `{key}`: cannot parse `{raw}`: {e}"))
                })
            })
            .transpose()
    }

    /// Removes `key` and parses it as a duration such as `250ms`, `5s` or `1m`.
    pub fn take_duration(&mut self, key: &str) -> Result<Option<Duration>> {
        self.take(key)
            .map(|raw| parse_duration(key, &raw))
            .transpose()
    }

    /// Removes `key` and parses `true`/`false` (also `1`/`0`, `yes`/`no`).
    pub fn take_bool(&mut self, key: &str) -> Result<Option<bool>> {
        self.take(key)
            .map(|raw| match raw.as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(Error::config(format!(
                    "option `{key}`: expected true or false, got `{raw}`"
                ))),
            })
            .transpose()
    }

    /// Fails if any option was not read, listing the options `backend` knows
    /// (its own and the core ones every URL takes) and suggesting the closest.
    pub fn finish(self, backend: &str, known: &[&str]) -> Result<()> {
        let Some((key, _)) = self.pairs.first() else {
            return Ok(());
        };
        let all: Vec<&str> = known.iter().chain(CORE_OPTIONS).copied().collect();
        let suggestion = all
            .iter()
            .map(|name| (strsim::jaro_winkler(key, name), *name))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, name)| format!("did you mean `{name}`? "))
            .unwrap_or_default();
        Err(Error::config(format!(
            "unknown option `{key}` for {backend}: {suggestion}(known: {})",
            all.join(", ")
        )))
    }
}

/// Options every URL accepts, whatever the backend.
pub const CORE_OPTIONS: &[&str] = &["request_timeout"];

/// Parses a human duration (`250ms`, `5s`, `2m`); zero is rejected.
pub fn parse_duration(key: &str, raw: &str) -> Result<Duration> {
    let duration = humantime::parse_duration(raw).map_err(|e| {
        Error::config(format!(
            "option `{key}`: `{raw}` is not a duration ({e}); use e.g. 500ms or 5s"
        ))
    })?;
    if duration.is_zero() {
        return Err(Error::config(format!(
            "option `{key}` must be greater than zero"
        )));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> Options {
        Options::from_url(&url::Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn reads_and_rejects() {
        let mut o = options("memory://?buffer=16&timeout=250ms&flag=yes");
        assert_eq!(o.take_parsed::<usize>("buffer").unwrap(), Some(16));
        assert_eq!(
            o.take_duration("timeout").unwrap(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(o.take_bool("flag").unwrap(), Some(true));
        o.finish("memory", &[]).unwrap();

        let mut o = options("memory://?buffer=lots");
        let err = o.take_parsed::<usize>("buffer").unwrap_err();
        assert!(err.to_string().contains("`buffer`"), "{err}");

        let err = options("memory://?bufer=1")
            .finish("memory", &["buffer"])
            .unwrap_err();
        assert!(err.to_string().contains("unknown option `bufer`"), "{err}");
        assert!(err.to_string().contains("did you mean `buffer`?"), "{err}");
        let err = options("memory://?request_timout=1s")
            .finish("memory", &["buffer"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean `request_timeout`?"), "{err}");
        assert!(err.contains("buffer, request_timeout"), "{err}");

        let err = Options::from_url(&url::Url::parse("memory://?a=1&a=2").unwrap()).unwrap_err();
        assert!(err.to_string().contains("more than once"));

        assert!(options("memory://?t=0s").take_duration("t").is_err());

        let mut o = options("kafka://?rdkafka.linger.ms=5&other=1&rdkafka.=x");
        assert_eq!(
            o.take_prefixed("rdkafka."),
            [("linger.ms".to_owned(), "5".to_owned())]
        );
        assert!(o
            .finish("kafka", &[])
            .unwrap_err()
            .to_string()
            .contains("`other`"));
        assert!(options("memory://?t=soon").take_duration("t").is_err());
    }
}
