//! Content digests (`sha256:<64 hex>`), the only algorithm the store accepts.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A validated `sha256:<hex>` content digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest {
    hex: String,
}

/// A string that is not a `sha256:` digest of 64 lowercase hex characters.
#[derive(Debug, thiserror::Error)]
#[error("invalid digest {0:?}: expected sha256:<64 lowercase hex characters>")]
pub struct InvalidDigest(pub String);

impl Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(data))
    }

    /// Finishes a running hash into a digest.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Digest {
            hex: hex::encode(hasher.finalize()),
        }
    }

    /// The 64 hex characters, without the algorithm (used as file names).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// A short form for tables and messages (12 hex characters, as docker shows).
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl FromStr for Digest {
    type Err = InvalidDigest;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| InvalidDigest(s.to_owned()))?;
        let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(InvalidDigest(s.to_owned()));
        }
        Ok(Digest {
            hex: hex.to_owned(),
        })
    }
}

impl TryFrom<String> for Digest {
    type Error = InvalidDigest;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_sha256_hex() {
        let check = |s: &str, ok: bool| assert_eq!(s.parse::<Digest>().is_ok(), ok, "{s}");
        let good = format!("sha256:{}", "a".repeat(64));
        check(&good, true);
        check(&good.to_uppercase(), false);
        check(&format!("sha512:{}", "a".repeat(64)), false);
        check(&format!("sha256:{}", "a".repeat(63)), false);
        check(&format!("sha256:{}/../x", "a".repeat(58)), false);
        check("", false);
    }

    #[test]
    fn hashes_content() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
