//! Image references (`busybox`, `127.0.0.1:5000/app:v1`, `reg/app@sha256:…`),
//! normalised as the kubelet and containerd do: docker's reference grammar
//! (`distribution/reference`, `ParseNormalizedNamed`), Docker Hub defaults
//! (`docker.io`, `library/`, `:latest`).

use std::fmt;
use std::str::FromStr;

use super::Digest;

/// Docker Hub as it appears in canonical names.
pub(crate) const DOCKER_HUB: &str = "docker.io";
/// The legacy name of Docker Hub, rewritten to [`DOCKER_HUB`].
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// Docker's limit on the length of `registry/repository`.
const NAME_MAX: usize = 255;
/// Docker's limit on the length of a tag.
const TAG_MAX: usize = 128;

/// A normalised image reference: registry, repository, and a tag, a digest or both.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// A string that is not an image reference, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct InvalidReference {
    /// The reference as given.
    pub reference: String,
    /// What is wrong with it.
    pub reason: InvalidReason,
}

/// What is wrong with an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReason {
    /// Nothing was given.
    #[error("the reference is empty")]
    Empty,
    /// 64 hex characters name an image id, which cannot be pulled.
    #[error("64 hex characters are an image id, not a name: use name@sha256:<hex> instead")]
    ImageId,
    /// `registry/repository` is longer than docker allows.
    #[error("the name is longer than {NAME_MAX} characters")]
    TooLong,
    /// The first component looked like a registry but is not a `host[:port]`.
    #[error(
        "registry {0:?} is not a host name, IPv4 address or [IPv6] address with an optional :port"
    )]
    Registry(String),
    /// The repository has uppercase letters.
    #[error("repository name {0:?} must be lowercase")]
    Uppercase(String),
    /// The repository does not follow docker's grammar.
    #[error(
        "repository name {0:?} must be components of lowercase letters and digits, \
         joined by '.', '_', '__' or dashes, separated by '/'"
    )]
    Repository(String),
    /// The tag does not follow docker's grammar.
    #[error(
        "tag {0:?} must be 1 to {TAG_MAX} letters, digits, '_', '.' or '-', \
         not starting with '.' or '-'"
    )]
    Tag(String),
    /// The digest uses an algorithm the store does not keep.
    #[error("digest {0:?} is not supported: only sha256 digests are")]
    DigestAlgorithm(String),
    /// The digest is malformed.
    #[error("digest {0:?} must be sha256:<64 lowercase hex characters>")]
    Digest(String),
}

impl ImageRef {
    /// The registry as `host[:port]` (`docker.io` for Docker Hub).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository inside the registry (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (`latest` is added when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest the reference is pinned to, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same repository pinned by `digest`, without a tag.
    pub fn with_digest(&self, digest: Digest) -> ImageRef {
        ImageRef {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn repo_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl FromStr for ImageRef {
    type Err = InvalidReference;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s).map_err(|reason| InvalidReference {
            reference: s.to_owned(),
            reason,
        })
    }
}

impl TryFrom<String> for ImageRef {
    type Error = InvalidReference;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ImageRef> for String {
    fn from(r: ImageRef) -> String {
        r.to_string()
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn parse(s: &str) -> Result<ImageRef, InvalidReason> {
    if s.is_empty() {
        return Err(InvalidReason::Empty);
    }
    if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(InvalidReason::ImageId);
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(parse_digest(digest)?)),
        None => (s, None),
    };
    // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(tag) = tag {
        if !is_tag(tag) {
            return Err(InvalidReason::Tag(tag.to_owned()));
        }
    }
    let (registry, repository) = split_registry(name)?;
    if registry.len() + 1 + repository.len() > NAME_MAX {
        return Err(InvalidReason::TooLong);
    }
    let tag = match (tag, &digest) {
        (Some(tag), _) => Some(tag.to_owned()),
        (None, Some(_)) => None,
        (None, None) => Some("latest".to_owned()),
    };
    Ok(ImageRef {
        registry,
        repository,
        tag,
        digest,
    })
}

/// Splits `name` into registry and repository the way docker's
/// `splitDockerDomain` does, then validates both.
fn split_registry(name: &str) -> Result<(String, String), InvalidReason> {
    let (registry, remote) = match name.split_once('/') {
        // Docker also takes an uppercase first component as a registry, since
        // repositories cannot have uppercase letters but host names can.
        Some((first, remote))
            if first == "localhost"
                || first.contains(['.', ':'])
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, remote)
        }
        _ => (DOCKER_HUB, name),
    };
    let registry = if registry == DOCKER_HUB_LEGACY {
        DOCKER_HUB
    } else {
        registry
    };
    if !is_registry_host(registry) {
        return Err(InvalidReason::Registry(registry.to_owned()));
    }
    if remote.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(InvalidReason::Uppercase(remote.to_owned()));
    }
    if !remote.split('/').all(is_path_component) {
        return Err(InvalidReason::Repository(remote.to_owned()));
    }
    let repository = if registry == DOCKER_HUB && !remote.contains('/') {
        format!("library/{remote}")
    } else {
        remote.to_owned()
    };
    Ok((registry.to_owned(), repository))
}

fn parse_digest(s: &str) -> Result<Digest, InvalidReason> {
    match s.split_once(':') {
        Some(("sha256", _)) => s.parse().map_err(|_| InvalidReason::Digest(s.to_owned())),
        Some((algorithm, hex))
            if is_digest_algorithm(algorithm)
                && hex.len() >= 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Err(InvalidReason::DigestAlgorithm(s.to_owned()))
        }
        _ => Err(InvalidReason::Digest(s.to_owned())),
    }
}

/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*`
fn is_digest_algorithm(s: &str) -> bool {
    s.split(['-', '_', '+', '.']).all(|part| {
        let mut bytes = part.bytes();
        bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
            && bytes.all(|b| b.is_ascii_alphanumeric())
    })
}

/// `[\w][\w.-]{0,127}`
fn is_tag(s: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut bytes = s.bytes();
    s.len() <= TAG_MAX
        && bytes.next().is_some_and(word)
        && bytes.all(|b| word(b) || b == b'.' || b == b'-')
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn is_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |i: usize| {
        b.get(i)
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    let mut i = 0;
    loop {
        let start = i;
        while alnum(i) {
            i += 1;
        }
        if i == start {
            return false; // empty component, or a separator at either end or doubled
        }
        match b.get(i) {
            None => return true,
            Some(b'.') => i += 1,
            Some(b'_') => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            Some(b'-') => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            Some(_) => return false,
        }
    }
}

/// Whether `s` is a registry `host[:port]` as docker's grammar spells it: a
/// host name or IPv4 address, or a bracketed IPv6 address, with an optional
/// numeric port.
pub(crate) fn is_registry_host(s: &str) -> bool {
    let (host_ok, port) = match s.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((addr, after)) => {
                let addr_ok =
                    !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
                match after {
                    "" => (addr_ok, None),
                    _ => match after.strip_prefix(':') {
                        Some(port) => (addr_ok, Some(port)),
                        None => return false,
                    },
                }
            }
            None => return false,
        },
        None => match s.split_once(':') {
            Some((host, port)) => (is_domain(host), Some(port)),
            None => (is_domain(s), None),
        },
    };
    host_ok && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Dot-separated labels of letters, digits and inner dashes.
fn is_domain(s: &str) -> bool {
    s.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// Parses `input` and compares its canonical form (or its error) with `expect`.
    fn check(input: &str, expect: &str) {
        let got = match input.parse::<ImageRef>() {
            Ok(r) => r.to_string(),
            Err(e) => format!("error: {}", e.reason),
        };
        assert_eq!(got, expect, "input {input:?}");
    }

    #[test]
    fn normalises_like_containerd() {
        let d = format!("sha256:{HEX}");
        for (input, expect) in [
            ("busybox", "docker.io/library/busybox:latest".to_owned()),
            ("busybox:1.36", "docker.io/library/busybox:1.36".to_owned()),
            (
                "library/busybox",
                "docker.io/library/busybox:latest".to_owned(),
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest".to_owned(),
            ),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest".to_owned(),
            ),
            (
                "index.docker.io/rancher/pause:3.6",
                "docker.io/rancher/pause:3.6".to_owned(),
            ),
            (
                "rancher/mirrored-pause:3.6",
                "docker.io/rancher/mirrored-pause:3.6".to_owned(),
            ),
            (
                "registry.k8s.io/pause:3.9",
                "registry.k8s.io/pause:3.9".to_owned(),
            ),
            ("ghcr.io/a/b/c", "ghcr.io/a/b/c:latest".to_owned()),
            ("localhost/app", "localhost/app:latest".to_owned()),
            ("localhost:5000/app:v1", "localhost:5000/app:v1".to_owned()),
            ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest".to_owned()),
            ("myreg:5000/app", "myreg:5000/app:latest".to_owned()),
            ("[::1]:5000/app:v1", "[::1]:5000/app:v1".to_owned()),
            ("[fe80::1]/team/app", "[fe80::1]/team/app:latest".to_owned()),
            // Without a '.', ':' or "localhost" the first component is a Docker Hub namespace.
            ("myreg/app", "docker.io/myreg/app:latest".to_owned()),
            // Single names with a colon are name:tag, as in docker.
            (
                "localhost:5000",
                "docker.io/library/localhost:5000".to_owned(),
            ),
            (
                "example.com",
                "docker.io/library/example.com:latest".to_owned(),
            ),
            // An uppercase first component is a registry (docker's rule).
            ("Reg/app", "Reg/app:latest".to_owned()),
            (
                "team/a.b-c_d__e---f",
                "docker.io/team/a.b-c_d__e---f:latest".to_owned(),
            ),
            ("app:V1_x.y-z", "docker.io/library/app:V1_x.y-z".to_owned()),
            (&*format!("app@{d}"), format!("docker.io/library/app@{d}")),
            (
                &*format!("127.0.0.1:5000/app@{d}"),
                format!("127.0.0.1:5000/app@{d}"),
            ),
            (&*format!("reg.io/app:v1@{d}"), format!("reg.io/app:v1@{d}")),
            (&*format!("{HEX}:v1"), format!("docker.io/library/{HEX}:v1")),
        ] {
            check(input, &expect);
        }
    }

    #[test]
    fn rejects_what_docker_rejects() {
        let long = "a".repeat(250);
        let long_tag = "t".repeat(129);
        for (input, expect) in [
            ("", "the reference is empty"),
            (
                HEX,
                "64 hex characters are an image id, not a name: use name@sha256:<hex> instead",
            ),
            ("BusyBox", r#"repository name "BusyBox" must be lowercase"#),
            (
                "library/BusyBox",
                r#"repository name "library/BusyBox" must be lowercase"#,
            ),
            (
                "reg.io/Team/app",
                r#"repository name "Team/app" must be lowercase"#,
            ),
            ("app/", r#"repository name "app/" must be components"#),
            ("a//b", r#"repository name "a//b" must be components"#),
            ("-app", r#"repository name "-app" must be components"#),
            ("app-", r#"repository name "app-" must be components"#),
            ("a..b", r#"repository name "a..b" must be components"#),
            ("a___b", r#"repository name "a___b" must be components"#),
            ("a.-b", r#"repository name "a.-b" must be components"#),
            ("a b", r#"repository name "a b" must be components"#),
            ("reg.io/", r#"repository name "" must be components"#),
            (
                "reg.io:5000:6000/app",
                r#"registry "reg.io:5000:6000" is not a host name"#,
            ),
            ("reg.io:/app", r#"registry "reg.io:" is not a host name"#),
            ("-reg.io/app", r#"registry "-reg.io" is not a host name"#),
            ("reg..io/app", r#"registry "reg..io" is not a host name"#),
            ("[::1/app", r#"registry "[::1" is not a host name"#),
            ("[]:5000/app", r#"registry "[]:5000" is not a host name"#),
            ("[::1]x/app", r#"registry "[::1]x" is not a host name"#),
            ("[zz::1]/app", r#"registry "[zz::1]" is not a host name"#),
            ("app:", r#"tag "" must be 1 to 128"#),
            ("app:.v1", r#"tag ".v1" must be 1 to 128"#),
            ("app:-v1", r#"tag "-v1" must be 1 to 128"#),
            ("app:v/1", r#"registry "app:v" is not a host name"#),
            ("a_b.c/app", r#"registry "a_b.c" is not a host name"#),
            ("app:v1+x", r#"tag "v1+x" must be 1 to 128"#),
            (&*format!("app:{long_tag}"), r#"tag "ttttt"#),
            (
                &*format!("reg.io/{long}"),
                "the name is longer than 255 characters",
            ),
            (
                "app@sha256:abc",
                r#"digest "sha256:abc" must be sha256:<64"#,
            ),
            ("app@latest", r#"digest "latest" must be sha256:<64"#),
            ("app@", r#"digest "" must be sha256:<64"#),
        ] {
            let err = match input.parse::<ImageRef>() {
                Ok(r) => panic!("{input:?} parsed as {r}"),
                Err(e) => e,
            };
            let got = err.reason.to_string();
            assert!(
                got.starts_with(expect),
                "input {input:?}: got {got:?}, expected {expect:?}…"
            );
            assert_eq!(err.reference, input);
        }
        // Other algorithms are valid references that the store cannot verify.
        check(
            &format!("app@sha512:{HEX}{HEX}"),
            &format!(
                "error: digest \"sha512:{HEX}{HEX}\" is not supported: only sha256 digests are"
            ),
        );
        check(
            &format!("app@sha256:{}", HEX.to_uppercase()),
            &format!(
                "error: digest \"sha256:{}\" must be sha256:<64 lowercase hex characters>",
                HEX.to_uppercase()
            ),
        );
    }

    #[test]
    fn error_names_the_reference() {
        let err = "Foo".parse::<ImageRef>().expect_err("uppercase");
        assert_eq!(
            err.to_string(),
            r#"invalid image reference "Foo": repository name "Foo" must be lowercase"#
        );
    }

    #[test]
    fn accessors_and_derived_names() {
        let r: ImageRef = "127.0.0.1:5000/team/app:v1".parse().expect("valid");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.digest(), None);
        assert_eq!(r.repo_name(), "127.0.0.1:5000/team/app");

        let digest: Digest = format!("sha256:{HEX}").parse().expect("digest");
        let pinned = r.with_digest(digest.clone());
        assert_eq!(
            pinned.to_string(),
            format!("127.0.0.1:5000/team/app@sha256:{HEX}")
        );
        assert_eq!(pinned.tag(), None);
        assert_eq!(pinned.digest(), Some(&digest));

        let plain: ImageRef = format!("busybox@sha256:{HEX}").parse().expect("valid");
        assert_eq!(plain.tag(), None, "a digest alone gets no :latest");
        assert_eq!(plain.repo_name(), "docker.io/library/busybox");
    }

    #[test]
    fn serde_is_the_canonical_string() {
        let r: ImageRef = "busybox".parse().expect("valid");
        let json = serde_json::to_string(&r).expect("serialise");
        assert_eq!(json, r#""docker.io/library/busybox:latest""#);
        let back: ImageRef = serde_json::from_str(r#""busybox""#).expect("deserialise");
        assert_eq!(back, r);
        let err = serde_json::from_str::<ImageRef>(r#""Bad""#).expect_err("uppercase");
        assert!(err.to_string().contains("must be lowercase"), "{err}");
    }

    #[test]
    fn registry_hosts() {
        let check = |s: &str, ok: bool| assert_eq!(is_registry_host(s), ok, "{s:?}");
        for ok in [
            "docker.io",
            "localhost",
            "localhost:5000",
            "10.0.0.1:443",
            "[::1]",
            "[::1]:5000",
            "a-b.c",
        ] {
            check(ok, true);
        }
        for bad in [
            "", "*", ":5000", "a:", "a:b", "a_b", "a/b", "-a", "a-", "a..b", "[::1]:", "[]",
            "[::g]", "::1",
        ] {
            check(bad, false);
        }
    }
}
