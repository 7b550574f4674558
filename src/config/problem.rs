//! A problem with a config, a route change or a tenant directory, as a
//! value: the setting it is about (when there is one) and a sentence a
//! person can act on. Checks collect every problem before they answer, so
//! a person fixes them all in one go; the CLI prints the sentences, the
//! admin API answers them with their settings.

use std::fmt;

use serde::Serialize;

/// One thing wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The setting, spelled as in the config file (`limits.max_frame_bytes`,
    /// `route.phase`), when the problem is about one.
    pub key: Option<String>,
    /// What is wrong and what to do, as the person reads it.
    pub message: String,
}

impl Problem {
    /// A problem about setting `key`.
    pub fn at(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// A problem whose sentence begins with the setting it is about, quoted
    /// in backticks (the form every check here writes: "`topology.index`
    /// is 3 but ..."); any other sentence is about no one setting.
    pub fn new(message: impl Into<String>) -> Problem {
        let message = message.into();
        let key = message
            .strip_prefix('`')
            .and_then(|rest| rest.split_once('`'))
            .map(|(key, _)| key)
            .filter(|key| {
                !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            })
            .map(str::to_owned);
        Problem { key, message }
    }

    /// The same problem, its sentence saying where it was found
    /// (`"{prefix}: {message}"`).
    pub fn found_in(self, prefix: impl fmt::Display) -> Problem {
        Problem {
            message: format!("{prefix}: {}", self.message),
            ..self
        }
    }
}

impl From<String> for Problem {
    fn from(message: String) -> Problem {
        Problem::new(message)
    }
}

impl From<&str> for Problem {
    fn from(message: &str) -> Problem {
        Problem::new(message)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The sentences of `problems`, in order (what a log line or a CLI prints).
pub fn messages(problems: &[Problem]) -> Vec<String> {
    problems.iter().map(|p| p.message.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_knows_the_setting_its_sentence_begins_with() {
        let p = Problem::new("`limits.max_frame_bytes` must be between 1KiB and 256MiB");
        assert_eq!(p.key.as_deref(), Some("limits.max_frame_bytes"));
        assert_eq!(
            p.to_string(),
            "`limits.max_frame_bytes` must be between 1KiB and 256MiB"
        );
        let file = Problem::new("cannot read /etc/cutover.toml: not found");
        assert_eq!(file.key, None);
        // A quoted value, not a setting, names no key.
        assert_eq!(Problem::new("`a b` is not a phase").key, None);
        let at = Problem::at("route.shard", "the route file sets route.shard = \"x\"");
        assert_eq!(at.key.as_deref(), Some("route.shard"));
    }
}
