//! Label matchers in Alertmanager's syntax: `name="value"`, `name!="value"`, `name=~"regex"`,
//! `name!~"regex"`. Regexes are anchored (they must match the whole value); a label an alert
//! does not have matches as the empty string.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    fn symbol(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

/// At most the first 64 bytes of `s`, for messages.
fn truncated(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Longest label name in a matcher.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest value (or regex) in a matcher.
pub const MAX_VALUE_BYTES: usize = 4096;
/// Most memory a matcher's compiled regex may take.
const MAX_REGEX_BYTES: usize = 1 << 20;

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Self, String> {
        if name.len() > MAX_NAME_BYTES || !valid_label_name(name) {
            return Err(format!(
                "invalid label name {:?} in matcher: use letters, digits and _, at most \
                 {MAX_NAME_BYTES} of them",
                truncated(name)
            ));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(format!(
                "the value of the matcher on {name} is {} bytes long; at most {MAX_VALUE_BYTES}",
                value.len()
            ));
        }
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(MAX_REGEX_BYTES)
                    .dfa_size_limit(MAX_REGEX_BYTES)
                    .build()
                    .map_err(|e| {
                        format!("invalid regex {:?} for label {name}: {e}", truncated(value))
                    })?,
            ),
            _ => None,
        };
        Ok(Self {
            name: name.into(),
            op,
            value: value.into(),
            regex,
        })
    }

    /// Parses `name="value"` (quotes optional, `\"` and `\\` escaped inside them).
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let at = t
            .find(['=', '!'])
            .ok_or_else(|| format!("invalid matcher {s:?}: expected name=\"value\", name!=\"value\", name=~\"regex\" or name!~\"regex\""))?;
        let name = t[..at].trim();
        let rest = &t[at..];
        let (op, value) = [
            ("=~", MatchOp::Regex),
            ("!~", MatchOp::NotRegex),
            ("!=", MatchOp::NotEqual),
            ("=", MatchOp::Equal),
        ]
        .into_iter()
        .find_map(|(sym, op)| rest.strip_prefix(sym).map(|v| (op, v.trim())))
        .ok_or_else(|| format!("invalid matcher {s:?}: unknown operator"))?;
        let value = match value.strip_prefix('"') {
            Some(inner) => {
                let inner = inner
                    .strip_suffix('"')
                    .ok_or_else(|| format!("invalid matcher {s:?}: unterminated quote"))?;
                let mut out = String::with_capacity(inner.len());
                let mut chars = inner.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        // Only \" and \\ are escapes; other backslashes stay (regexes).
                        match chars.next() {
                            Some(n @ ('"' | '\\')) => out.push(n),
                            Some(n) => {
                                out.push('\\');
                                out.push(n);
                            }
                            None => return Err(format!("invalid matcher {s:?}: dangling \\")),
                        }
                    } else {
                        out.push(c);
                    }
                }
                out
            }
            None => value.to_string(),
        };
        Self::new(name, op, &value)
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match (&self.op, &self.regex) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(r)) => r.is_match(v),
            (MatchOp::NotRegex, Some(r)) => !r.is_match(v),
            _ => false,
        }
    }
}

/// All matchers hold (an empty list matches everything).
pub fn matches_all(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escaped = self.value.replace('\\', "\\\\").replace('"', "\\\"");
        write!(f, "{}{}\"{}\"", self.name, self.op.symbol(), escaped)
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Matcher::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn operators_quotes_and_anchoring() {
        let l = labels(&[("severity", "page"), ("service", "checkout-api")]);
        for (m, want) in [
            ("severity=\"page\"", true),
            ("severity = page", true),
            ("severity!=\"page\"", false),
            ("service=~\"checkout.*\"", true),
            ("service=~\"checkout\"", false),
            ("service!~\"cart|search\"", true),
            ("team=\"\"", true),
            ("team!=\"\"", false),
        ] {
            assert_eq!(
                Matcher::parse(m).expect("valid in this test").matches(&l),
                want,
                "{m}"
            );
        }
        let re = Matcher::parse(r#"code=~"5\d\d""#).expect("valid in this test");
        assert_eq!(re.value, r"5\d\d");
        assert!(re.matches(&labels(&[("code", "503")])));
        assert!(!re.matches(&labels(&[("code", "5dd")])));
        let q = Matcher::parse(r#"x="a \"b\" \\c""#).expect("valid in this test");
        assert_eq!(q.value, r#"a "b" \c"#);
        assert_eq!(
            Matcher::parse(&q.to_string()).expect("valid in this test"),
            q
        );
    }

    #[test]
    fn bad_matchers_are_explained() {
        for (m, want) in [
            ("severity", "expected name="),
            ("sev-erity=\"x\"", "invalid label name"),
            ("x=~\"(\"", "invalid regex"),
            ("x=\"open", "unterminated quote"),
        ] {
            let e = Matcher::parse(m).expect_err("must be refused");
            assert!(e.contains(want), "{m}: {e}");
        }
    }
}
