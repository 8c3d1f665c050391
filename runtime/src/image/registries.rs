//! `registries.yaml`: registry mirrors, credentials and TLS settings in the
//! shape k3s reads from `/etc/rancher/k3s/registries.yaml` (rancher/wharfie's
//! `Registry` type), and the pure resolution of an image to the endpoints to
//! pull it from, in the order containerd tries them under k3s.
//!
//! Differences from k3s, all refused loudly rather than ignored: `rewrite`
//! rules (regular expressions) and endpoint URLs with a path other than `/v2`
//! are not supported yet; unknown keys are errors. Outpost adds `mirrorOnly`
//! on a mirror, the per-registry form of k3s's node flag
//! `--disable-default-registry-endpoint`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use super::reference::{is_registry_host, ImageRef, DOCKER_HUB};

/// The `mirrors`/`configs` key that applies to registries without their own entry.
const WILDCARD: &str = "*";
/// The host containerd talks to for Docker Hub.
const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

/// The contents of a `registries.yaml` file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    #[serde(
        default,
        deserialize_with = "mirror_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    mirrors: BTreeMap<String, Mirror>,
    #[serde(
        default,
        deserialize_with = "config_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    configs: BTreeMap<String, RegistryConfig>,
}

/// The endpoints to pull a registry's images from (`mirrors.<registry>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawMirror")]
pub struct Mirror {
    endpoint: Vec<EndpointUrl>,
    /// Outpost extension, YAML key `mirrorOnly`: never fall back to the
    /// registry itself. k3s has no per-file setting for this, only the node
    /// flag `--disable-default-registry-endpoint`, which acts on every
    /// registry with a `mirrors` entry; on `"*"` this covers every registry
    /// without its own entry.
    #[serde(rename = "mirrorOnly", skip_serializing_if = "is_false")]
    mirror_only: bool,
}

/// A mirror endpoint URL, `[http[s]://]host[:port][/v2]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EndpointUrl {
    url: String,
    scheme: Scheme,
    host: String,
}

/// An endpoint URL from `registries.yaml` that outpost cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid registry endpoint {url:?}: {reason}")]
pub struct InvalidEndpoint {
    /// The URL as written.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Credentials and TLS settings for one endpoint host (`configs.<host>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// How to authenticate (`auth:`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Auth::is_anonymous"
    )]
    pub auth: Auth,
    /// TLS settings (`tls:`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Tls::is_default"
    )]
    pub tls: Tls,
}

/// How to authenticate to an endpoint.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawAuth", into = "RawAuth")]
pub enum Auth {
    /// No credentials.
    #[default]
    Anonymous,
    /// HTTP basic credentials (`username`/`password`, or `auth` as base64 `user:pass`).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth2 refresh token for the registry's token service (`identity_token`).
    IdentityToken(String),
}

/// TLS settings for an endpoint (`configs.<host>.tls`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawTls")]
pub struct Tls {
    /// CA bundle to verify the server with, in addition to the system roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (always given together with `key_file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Client key (always given together with `cert_file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Do not verify the server's certificate.
    #[serde(skip_serializing_if = "is_false")]
    pub insecure_skip_verify: bool,
}

/// The URL scheme to talk to an endpoint with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

/// One place to try pulling an image from, with what to present there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to put in URLs.
    pub host: String,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Whether this is a mirror rather than the image's own registry (pass `ns=<registry>`).
    pub mirror: bool,
    /// Credentials from `configs` for this host.
    pub auth: Auth,
    /// TLS settings from `configs` for this host.
    pub tls: Tls,
}

/// A `registries.yaml` that cannot be read or used.
#[derive(Debug, thiserror::Error)]
pub enum RegistriesError {
    /// The file exists but cannot be read.
    #[error("cannot read registries config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid YAML, or not a valid registries config.
    #[error("invalid registries config {origin}: {source}")]
    Parse {
        origin: String,
        #[source]
        source: serde_yaml_ng::Error,
    },
}

/// Reads `registries.yaml` at `path`; a missing file is an empty config.
pub fn load(path: &Path) -> Result<RegistriesConfig, RegistriesError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RegistriesConfig::default()),
        Err(source) => Err(RegistriesError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Parses `registries.yaml` text; `origin` names it in errors (a file path).
pub fn parse(text: &str, origin: &str) -> Result<RegistriesConfig, RegistriesError> {
    // An empty document (or only comments) is an empty config.
    serde_yaml_ng::from_str(text).map_err(|source| RegistriesError::Parse {
        origin: origin.to_owned(),
        source,
    })
}

impl RegistriesConfig {
    /// `mirrors`, keyed by registry `host[:port]` or `"*"`.
    pub fn mirrors(&self) -> &BTreeMap<String, Mirror> {
        &self.mirrors
    }

    /// `configs`, keyed by endpoint `host[:port]` or `"*"`.
    pub fn configs(&self) -> &BTreeMap<String, RegistryConfig> {
        &self.configs
    }

    /// The endpoints to try for `image`, in order: the endpoints of the
    /// mirror for its registry (or of the `"*"` mirror if it has none), then
    /// the registry itself unless that mirror is `mirrorOnly`.
    pub fn endpoints(&self, image: &ImageRef) -> Vec<Endpoint> {
        let registry = image.registry();
        let mirror = self
            .mirrors
            .get(registry)
            .or_else(|| self.mirrors.get(WILDCARD));
        let (own_scheme, own_host) = registry_endpoint(registry);
        let mut out = Vec::new();
        for url in mirror.map_or(&[][..], |m| m.endpoint.as_slice()) {
            self.add_endpoint(&mut out, url.scheme, &url.host, url.host != own_host);
        }
        if !mirror.is_some_and(|m| m.mirror_only) {
            self.add_endpoint(&mut out, own_scheme, &own_host, false);
        }
        out
    }

    /// Appends an endpoint unless the same scheme and host are already listed.
    fn add_endpoint(&self, out: &mut Vec<Endpoint>, scheme: Scheme, host: &str, mirror: bool) {
        if out.iter().any(|e| e.scheme == scheme && e.host == host) {
            return;
        }
        let config = self.config_for(host).cloned().unwrap_or_default();
        out.push(Endpoint {
            host: host.to_owned(),
            scheme,
            mirror,
            auth: config.auth,
            tls: config.tls,
        });
    }

    /// `configs` for an endpoint host: its own entry (Docker Hub's also under
    /// `docker.io`, as k3s looks it up), else the `"*"` entry.
    fn config_for(&self, host: &str) -> Option<&RegistryConfig> {
        let alias = (host == DOCKER_HUB_HOST).then_some(DOCKER_HUB);
        [Some(host), alias, Some(WILDCARD)]
            .into_iter()
            .flatten()
            .find_map(|key| self.configs.get(key))
    }
}

impl Mirror {
    /// The endpoints to try, in order.
    pub fn endpoints(&self) -> &[EndpointUrl] {
        &self.endpoint
    }

    /// Whether the registry itself is never tried (`mirrorOnly`, an outpost extension).
    pub fn mirror_only(&self) -> bool {
        self.mirror_only
    }
}

impl EndpointUrl {
    /// The scheme, written or defaulted (`https`, or `http` for a loopback host with a port).
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// `host[:port]`, with `docker.io` turned into Docker Hub's API host.
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl FromStr for EndpointUrl {
    type Err = InvalidEndpoint;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| InvalidEndpoint {
            url: url.to_owned(),
            reason,
        };
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "http" => (Some(Scheme::Http), rest),
                "https" => (Some(Scheme::Https), rest),
                _ => {
                    return Err(invalid(format!(
                        "scheme {scheme:?} is not supported: use http:// or https://"
                    )))
                }
            },
            None => (None, url),
        };
        let (host, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        if host.contains('@') {
            return Err(invalid(
                "credentials do not belong in the URL: put them in configs.<host>.auth".into(),
            ));
        }
        if !is_registry_host(host) {
            return Err(invalid(format!(
                "host {host:?} is not a host name, IPv4 address or [IPv6] address \
                 with an optional :port"
            )));
        }
        if path.contains(['?', '#']) {
            return Err(invalid(
                "a query or fragment is not supported: give only scheme, host and port".into(),
            ));
        }
        if !matches!(path.trim_end_matches('/'), "" | "/v2") {
            return Err(invalid(format!(
                "path {path:?} is not supported yet: give the registry's root URL \
                 (outpost always uses /v2)"
            )));
        }
        // As k3s: without a scheme, loopback hosts on a port other than 443 speak plain HTTP.
        let scheme = scheme.unwrap_or_else(|| match split_port(host) {
            (name, Some(port)) if port != "443" && is_loopback(name) => Scheme::Http,
            _ => Scheme::Https,
        });
        let host = if host == DOCKER_HUB {
            DOCKER_HUB_HOST
        } else {
            host
        };
        Ok(EndpointUrl {
            url: url.to_owned(),
            scheme,
            host: host.to_owned(),
        })
    }
}

impl TryFrom<String> for EndpointUrl {
    type Error = InvalidEndpoint;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<EndpointUrl> for String {
    fn from(u: EndpointUrl) -> String {
        u.url
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl Auth {
    /// Whether no credentials are configured.
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Auth::Anonymous)
    }
}

// Hand-written so that secrets never reach logs.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Auth::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

impl Tls {
    fn is_default(&self) -> bool {
        *self == Tls::default()
    }
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scheme and host containerd uses for a registry without a mirror:
/// Docker Hub's API host, plain HTTP for loopback hosts, HTTPS otherwise.
fn registry_endpoint(registry: &str) -> (Scheme, String) {
    if registry == DOCKER_HUB {
        return (Scheme::Https, DOCKER_HUB_HOST.to_owned());
    }
    let scheme = if is_loopback(split_port(registry).0) {
        Scheme::Http
    } else {
        Scheme::Https
    };
    (scheme, registry.to_owned())
}

/// Splits a valid `host[:port]` (host possibly a bracketed IPv6 address)
/// into the bare host and the port.
fn split_port(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((addr, after)) => (addr, after.strip_prefix(':')),
            None => (host, None),
        };
    }
    match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    }
}

/// `localhost` or a loopback address, as containerd's `IsLocalhost`.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `key:` with no value means the type's default, as in k3s's examples.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn mirror_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Mirror>, D::Error> {
    registry_map(d, "mirror", |raw: RawMirror| Mirror::try_from(raw))
}

fn config_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, RegistryConfig>, D::Error> {
    registry_map(d, "configs", Ok)
}

/// A map keyed by registry `host[:port]` or `"*"`, whose values may be null;
/// `convert` checks each value, and its error is reported with the key.
fn registry_map<'de, D, R, T>(
    d: D,
    what: &str,
    convert: impl Fn(R) -> Result<T, String>,
) -> Result<BTreeMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    R: Deserialize<'de> + Default,
{
    let map = Option::<BTreeMap<String, Option<R>>>::deserialize(d)?.unwrap_or_default();
    map.into_iter()
        .map(|(key, value)| {
            if key != WILDCARD && !is_registry_host(&key) {
                return Err(D::Error::custom(format!(
                    "{what} key {key:?} is not a registry host[:port] nor \"*\": write it as in image \
                     names, without scheme or path"
                )));
            }
            match convert(value.unwrap_or_default()) {
                Ok(value) => Ok((key, value)),
                Err(e) => Err(D::Error::custom(format!("{what} {key:?}: {e}"))),
            }
        })
        .collect()
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMirror {
    #[serde(default, deserialize_with = "null_as_default")]
    endpoint: Vec<EndpointUrl>,
    #[serde(default, deserialize_with = "null_as_default")]
    rewrite: BTreeMap<String, String>,
    #[serde(default, rename = "mirrorOnly")]
    mirror_only: bool,
}

impl TryFrom<RawMirror> for Mirror {
    type Error = String;

    fn try_from(raw: RawMirror) -> Result<Self, Self::Error> {
        if !raw.rewrite.is_empty() {
            return Err(
                "rewrite is not supported by outpost (its rules are regular expressions): \
                        remove it and serve the same repository paths on the mirror"
                    .to_owned(),
            );
        }
        Ok(Mirror {
            endpoint: raw.endpoint,
            mirror_only: raw.mirror_only,
        })
    }
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity_token: Option<String>,
}

impl TryFrom<RawAuth> for Auth {
    type Error = String;

    fn try_from(raw: RawAuth) -> Result<Self, Self::Error> {
        // An empty string is unset, as in k3s (Go zero values).
        let set = |s: Option<String>| s.filter(|s| !s.is_empty());
        let (username, password) = (set(raw.username), set(raw.password));
        let (auth, token) = (set(raw.auth), set(raw.identity_token));
        match (username, password, auth, token) {
            (None, None, None, None) => Ok(Auth::Anonymous),
            (Some(username), password, None, None) => Ok(Auth::Basic {
                username,
                password: password.unwrap_or_default(),
            }),
            (None, Some(_), None, None) => Err("password is set without username".to_owned()),
            (None, None, Some(auth), None) => decode_basic(&auth),
            (None, None, None, Some(token)) => Ok(Auth::IdentityToken(token)),
            _ => {
                Err("give one of username/password, auth or identity_token, not several".to_owned())
            }
        }
    }
}

impl From<Auth> for RawAuth {
    fn from(auth: Auth) -> RawAuth {
        match auth {
            Auth::Anonymous => RawAuth::default(),
            Auth::Basic { username, password } => RawAuth {
                username: Some(username),
                password: Some(password),
                ..RawAuth::default()
            },
            Auth::IdentityToken(token) => RawAuth {
                identity_token: Some(token),
                ..RawAuth::default()
            },
        }
    }
}

/// The `auth` field: base64 of `username:password`, as in docker's config.json.
fn decode_basic(auth: &str) -> Result<Auth, String> {
    let invalid = || "auth must be the base64 encoding of username:password".to_owned();
    let bytes = decode_base64(auth.trim()).ok_or_else(invalid)?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (username, password) = text.split_once(':').ok_or_else(invalid)?;
    if username.is_empty() {
        return Err(invalid());
    }
    // containerd trims NULs that some tools leave around the password.
    Ok(Auth::Basic {
        username: username.to_owned(),
        password: password.trim_matches('\0').to_owned(),
    })
}

/// Standard base64 (RFC 4648 alphabet), padding optional.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let data = s
        .strip_suffix("==")
        .or_else(|| s.strip_suffix('='))
        .unwrap_or(s);
    // Padding, when present, completes the last group of four (`% 4` kept
    // rather than `is_multiple_of`, which is newer than rust-version 1.85).
    let padded_tail = s.len() % 4;
    if data.len() % 4 == 1 || (data.len() != s.len() && padded_tail > 0) {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in data.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero, as in a canonical encoding.
    (acc == 0).then_some(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "null_as_default")]
    insecure_skip_verify: bool,
}

impl TryFrom<RawTls> for Tls {
    type Error = String;

    fn try_from(raw: RawTls) -> Result<Self, Self::Error> {
        let set = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
        let (cert_file, key_file) = (set(raw.cert_file), set(raw.key_file));
        match (&cert_file, &key_file) {
            (Some(cert), None) => {
                return Err(format!(
                    "cert_file {} is set without key_file",
                    cert.display()
                ))
            }
            (None, Some(key)) => {
                return Err(format!(
                    "key_file {} is set without cert_file",
                    key.display()
                ))
            }
            _ => {}
        }
        Ok(Tls {
            ca_file: set(raw.ca_file),
            cert_file,
            key_file,
            insecure_skip_verify: raw.insecure_skip_verify,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the k3s docs ("With TLS", "With Authentication") plus
    /// a plain-HTTP local registry and the wildcard.
    const K3S_EXAMPLE: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "https://registry.example.com:5000"
  "registry.local:5000":
    endpoint:
      - "http://registry.local:5000"
  "*":
    endpoint:
      - "https://cache.example.com"
configs:
  "registry.example.com:5000":
    auth:
      username: xxxxxx # this is the registry username
      password: yyyyyy # this is the registry password
    tls:
      cert_file: /etc/ssl/client.crt
      key_file: /etc/ssl/client.key
      ca_file: /etc/ssl/ca.crt
  "docker.io":
  "*":
    tls:
      insecure_skip_verify: true
"#;

    fn config(yaml: &str) -> RegistriesConfig {
        match parse(yaml, "test.yaml") {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    /// One line per endpoint: `scheme://host [mirror] [auth] [tls]`.
    fn render(endpoints: &[Endpoint]) -> Vec<String> {
        endpoints
            .iter()
            .map(|e| {
                let mut line = format!("{}://{}", e.scheme, e.host);
                if e.mirror {
                    line.push_str(" mirror");
                }
                match &e.auth {
                    Auth::Anonymous => {}
                    Auth::Basic { username, password } => {
                        line.push_str(&format!(" basic={username}:{password}"))
                    }
                    Auth::IdentityToken(t) => line.push_str(&format!(" token={t}")),
                }
                if let Some(ca) = &e.tls.ca_file {
                    line.push_str(&format!(" ca={}", ca.display()));
                }
                if let Some(cert) = &e.tls.cert_file {
                    line.push_str(&format!(" cert={}", cert.display()));
                }
                if e.tls.insecure_skip_verify {
                    line.push_str(" insecure");
                }
                line
            })
            .collect()
    }

    #[test]
    fn parses_the_k3s_example() {
        let c = config(K3S_EXAMPLE);
        assert_eq!(
            c.mirrors().keys().collect::<Vec<_>>(),
            ["*", "docker.io", "registry.local:5000"]
        );
        let hub = &c.mirrors()["docker.io"];
        assert_eq!(hub.endpoints().len(), 1);
        assert_eq!(hub.endpoints()[0].host(), "registry.example.com:5000");
        assert_eq!(hub.endpoints()[0].scheme(), Scheme::Https);
        assert_eq!(
            hub.endpoints()[0].to_string(),
            "https://registry.example.com:5000"
        );
        assert!(!hub.mirror_only());
        let reg = &c.configs()["registry.example.com:5000"];
        assert_eq!(
            reg.auth,
            Auth::Basic {
                username: "xxxxxx".into(),
                password: "yyyyyy".into()
            }
        );
        assert_eq!(
            reg.tls,
            Tls {
                ca_file: Some("/etc/ssl/ca.crt".into()),
                cert_file: Some("/etc/ssl/client.crt".into()),
                key_file: Some("/etc/ssl/client.key".into()),
                insecure_skip_verify: false,
            }
        );
        assert_eq!(
            c.configs()["docker.io"],
            RegistryConfig::default(),
            "an empty entry is allowed"
        );

        // Serialising gives back an equivalent file.
        let yaml = serde_yaml_ng::to_string(&c).expect("serialise");
        assert_eq!(config(&yaml), c, "{yaml}");
    }

    #[test]
    fn empty_files_are_empty_configs() {
        for text in [
            "",
            "\n",
            "# nothing yet\n",
            "---\n",
            "mirrors:\nconfigs:\n",
            "{}",
        ] {
            assert_eq!(config(text), RegistriesConfig::default(), "{text:?}");
        }
    }

    #[test]
    fn endpoints_in_pull_order() {
        fn check(yaml: &str, image: &str, expect: &[&str]) {
            let image: ImageRef = image.parse().expect("image reference");
            assert_eq!(
                render(&config(yaml).endpoints(&image)),
                expect,
                "{image} with\n{yaml}"
            );
        }
        // No config: the registry itself; Docker Hub at its API host; loopback over HTTP.
        check("", "busybox", &["https://registry-1.docker.io"]);
        check("", "quay.io/app", &["https://quay.io"]);
        check("", "localhost:5000/app", &["http://localhost:5000"]);
        check("", "localhost/app", &["http://localhost"]);
        check("", "127.0.0.1:5000/app", &["http://127.0.0.1:5000"]);
        check("", "127.9.9.9/app", &["http://127.9.9.9"]);
        check("", "[::1]:5000/app", &["http://[::1]:5000"]);
        check("", "10.0.0.1:5000/app", &["https://10.0.0.1:5000"]);
        // The realistic file.
        check(
            K3S_EXAMPLE,
            "busybox",
            &[
                "https://registry.example.com:5000 mirror basic=xxxxxx:yyyyyy ca=/etc/ssl/ca.crt cert=/etc/ssl/client.crt",
                "https://registry-1.docker.io",
            ],
        );
        check(
            K3S_EXAMPLE,
            "registry.local:5000/app",
            &[
                "http://registry.local:5000 insecure",
                "https://registry.local:5000 insecure",
            ],
        );
        check(
            K3S_EXAMPLE,
            "quay.io/app",
            &[
                "https://cache.example.com mirror insecure",
                "https://quay.io insecure",
            ],
        );
        // Mirrors in the order written, duplicates once, the registry last.
        check(
            "mirrors:\n  quay.io:\n    endpoint: [https://m2.example, 'http://m1.example:5000/v2/', https://m2.example/v2]",
            "quay.io/app",
            &["https://m2.example mirror", "http://m1.example:5000 mirror", "https://quay.io"],
        );
        // A mirror entry naming the registry itself: not a mirror, not repeated.
        check(
            "mirrors:\n  docker.io:\n    endpoint: [https://docker.io, https://m.example]",
            "busybox",
            &["https://registry-1.docker.io", "https://m.example mirror"],
        );
        // mirrorOnly: never the registry itself.
        check(
            "mirrors:\n  docker.io:\n    endpoint: [https://m.example]\n    mirrorOnly: true",
            "busybox",
            &["https://m.example mirror"],
        );
        check(
            "mirrors:\n  quay.io:\n    mirrorOnly: true",
            "quay.io/app",
            &[],
        );
        // The wildcard applies only to registries without their own mirror.
        let wild =
            "mirrors:\n  '*':\n    endpoint: [https://all.example]\n    mirrorOnly: true\n  \
                    quay.io:\n    endpoint: [https://q.example]";
        check(wild, "ghcr.io/app", &["https://all.example mirror"]);
        check(wild, "busybox", &["https://all.example mirror"]);
        check(
            wild,
            "quay.io/app",
            &["https://q.example mirror", "https://quay.io"],
        );
        // Schemeless endpoints: https, except loopback on a port other than 443.
        check(
            "mirrors:\n  quay.io:\n    endpoint: ['m.example:5000', 'localhost:5000', 'localhost:443', '[::1]:5000', 127.0.0.1]",
            "quay.io/app",
            &[
                "https://m.example:5000 mirror",
                "http://localhost:5000 mirror",
                "https://localhost:443 mirror",
                "http://[::1]:5000 mirror",
                "https://127.0.0.1 mirror",
                "https://quay.io",
            ],
        );
    }

    #[test]
    fn configs_are_keyed_by_endpoint_host() {
        fn check(configs: &str, image: &str, expect: &[&str]) {
            let yaml = format!(
                "mirrors:\n  docker.io:\n    endpoint: ['https://m.example:5000']\nconfigs:\n{configs}"
            );
            let image: ImageRef = image.parse().expect("image reference");
            assert_eq!(
                render(&config(&yaml).endpoints(&image)),
                expect,
                "{image} with\n{yaml}"
            );
        }
        let basic = |who: &str| format!("    auth: {{username: {who}, password: pw}}\n");
        // The mirror's host, not the image's registry, selects the config.
        check(
            &format!(
                "  'm.example:5000':\n{}  docker.io:\n{}",
                basic("mirror"),
                basic("hub")
            ),
            "busybox",
            &[
                "https://m.example:5000 mirror basic=mirror:pw",
                "https://registry-1.docker.io basic=hub:pw",
            ],
        );
        // Without the port it is another host.
        check(
            &format!("  m.example:\n{}", basic("x")),
            "busybox",
            &[
                "https://m.example:5000 mirror",
                "https://registry-1.docker.io",
            ],
        );
        // Docker Hub's API host is looked up first, then docker.io.
        check(
            &format!(
                "  registry-1.docker.io:\n{}  docker.io:\n{}",
                basic("api"),
                basic("hub")
            ),
            "busybox",
            &[
                "https://m.example:5000 mirror",
                "https://registry-1.docker.io basic=api:pw",
            ],
        );
        // "*" for every host without its own entry, even an empty one.
        check(
            "  '*':\n    tls: {insecure_skip_verify: true}\n  registry-1.docker.io:\n",
            "busybox",
            &[
                "https://m.example:5000 mirror insecure",
                "https://registry-1.docker.io",
            ],
        );
        check(
            "  quay.io:\n    auth: {identity_token: tok}\n",
            "quay.io/app",
            &["https://quay.io token=tok"],
        );
    }

    #[test]
    fn auth_forms() {
        fn check(auth: &str, expect: Result<Auth, &str>) {
            let yaml = format!("configs:\n  r.example:\n    auth: {auth}\n");
            let got = parse(&yaml, "r.yaml")
                .map(|c| c.configs()["r.example"].auth.clone())
                .map_err(|e| e.to_string());
            match (got, expect) {
                (Ok(got), Ok(expect)) => assert_eq!(got, expect, "{auth}"),
                (Err(got), Err(expect)) => assert!(got.contains(expect), "{auth}: {got}"),
                (got, expect) => panic!("{auth}: got {got:?}, expected {expect:?}"),
            }
        }
        let basic = |u: &str, p: &str| {
            Ok(Auth::Basic {
                username: u.into(),
                password: p.into(),
            })
        };
        check("{username: u, password: p}", basic("u", "p"));
        check("{username: u}", basic("u", ""));
        check("{username: u, password: p, auth: ''}", basic("u", "p"));
        check("{auth: dXNlcjpwYXNz}", basic("user", "pass"));
        check("{auth: YWxpY2U6czNjcjN0Ong=}", basic("alice", "s3cr3t:x"));
        check("{auth: YWxpY2U6czNjcjN0Ong}", basic("alice", "s3cr3t:x"));
        check("{auth: Ym9iOg==}", basic("bob", ""));
        check("{auth: w7xuw686Y8O2ZMOp}", basic("ünï", "cödé"));
        check("{auth: YTpi}", basic("a", "b"));
        check(
            "{identity_token: t0k}",
            Ok(Auth::IdentityToken("t0k".into())),
        );
        check("{}", Ok(Auth::Anonymous));
        check("", Ok(Auth::Anonymous));
        check(
            "{auth: bm9jb2xvbg==}",
            Err("auth must be the base64 encoding of username:password"),
        );
        check(
            "{auth: 'not base64!'}",
            Err("auth must be the base64 encoding"),
        );
        check(
            "{auth: dXNlcjpwYXN}",
            Err("auth must be the base64 encoding"),
        );
        check("{auth: YTpi=}", Err("auth must be the base64 encoding"));
        check("{password: p}", Err("password is set without username"));
        check(
            "{username: u, identity_token: t}",
            Err("give one of username/password, auth or identity_token"),
        );
        check("{auth: YTpi, identity_token: t}", Err("give one of"));
        check("{username: u, token: t}", Err("unknown field `token`"));
    }

    #[test]
    fn base64_round_trips() {
        // Known vectors from RFC 4648.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(
                decode_base64(encoded).as_deref(),
                Some(plain.as_bytes()),
                "{encoded}"
            );
            assert_eq!(
                decode_base64(encoded.trim_end_matches('=')).as_deref(),
                Some(plain.as_bytes()),
                "{encoded}"
            );
        }
        for bad in ["Z", "Zg===", "Zm9v=", "Z=g=", "Zg-_"] {
            assert_eq!(decode_base64(bad), None, "{bad}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        fn check(yaml: &str, expect: &str) {
            match parse(yaml, "/etc/outpost/registries.yaml") {
                Ok(c) => panic!("accepted {yaml:?} as {c:?}"),
                Err(e) => {
                    let got = e.to_string();
                    assert!(
                        got.starts_with("invalid registries config /etc/outpost/registries.yaml: "),
                        "{got}"
                    );
                    assert!(got.contains(expect), "{yaml:?}:\n got {got}\nwant {expect}");
                }
            }
        }
        // Typos are errors, with where they are.
        check(
            "mirror:\n  docker.io: {}",
            "unknown field `mirror`, expected `mirrors` or `configs`",
        );
        check(
            "mirrors:\n  docker.io:\n    endpoints: [https://m.example]",
            "mirrors.docker.io: unknown field `endpoints`, expected one of `endpoint`, `rewrite`, `mirrorOnly` at line 3 column 5",
        );
        check(
            "mirrors:\n  docker.io:\n    mirror_only: true",
            "unknown field `mirror_only`",
        );
        check(
            "configs:\n  r.example:\n    tls:\n      insecure: true",
            "configs.r.example.tls: unknown field `insecure`",
        );
        check(
            "configs:\n  r.example:\n    auth:\n      user: u",
            "unknown field `user`",
        );
        check(
            "configs:\n  r.example:\n    authentication: {}",
            "unknown field `authentication`, expected `auth` or `tls`",
        );
        check("auths: {}", "unknown field `auths`");
        check(
            "mirrors: [docker.io]",
            "mirrors: invalid type: sequence, expected a map",
        );
        check(
            "mirrors:\n  docker.io:\n    endpoint: https://m.example",
            "invalid type: string",
        );
        // Rewrites need regular expressions.
        check(
            "mirrors:\n  docker.io:\n    endpoint: [https://m.example]\n    rewrite:\n      '^rancher/(.*)': 'mirror/$1'",
            r#"mirror "docker.io": rewrite is not supported by outpost"#,
        );
        // Endpoint URLs outpost cannot use yet.
        check(
            "mirrors:\n  docker.io:\n    endpoint: [https://m.example/v2/prefix]",
            r#"invalid registry endpoint "https://m.example/v2/prefix": path "/v2/prefix" is not supported yet"#,
        );
        check(
            "mirrors:\n  docker.io:\n    endpoint: [https://m.example/dockerhub]",
            r#"path "/dockerhub" is not supported yet"#,
        );
        check(
            "mirrors:\n  docker.io:\n    endpoint: [ftp://m.example]",
            r#"scheme "ftp" is not supported"#,
        );
        check(
            "mirrors:\n  docker.io:\n    endpoint: [https://u:p@m.example]",
            "credentials do not belong in the URL",
        );
        check(
            "mirrors:\n  docker.io:\n    endpoint: ['https://m.example?ns=x']",
            "a query or fragment is not supported",
        );
        check(
            "mirrors:\n  docker.io:\n    endpoint: ['https://']",
            r#"host "" is not a host name"#,
        );
        check(
            "mirrors:\n  docker.io:\n    endpoint: ['https://m_x.example']",
            r#"host "m_x.example" is not"#,
        );
        // Keys that could never match an image or an endpoint.
        check(
            "mirrors:\n  https://docker.io:\n    endpoint: [https://m.example]",
            r#"mirror key "https://docker.io" is not a registry host[:port]"#,
        );
        check(
            "configs:\n  m.example/v2:\n    auth: {username: u}",
            r#"configs key "m.example/v2" is not a registry host[:port]"#,
        );
        // TLS client certificates come in pairs.
        check(
            "configs:\n  r.example:\n    tls: {cert_file: /c.crt}",
            "cert_file /c.crt is set without key_file",
        );
        check(
            "configs:\n  r.example:\n    tls: {key_file: /c.key}",
            "key_file /c.key is set without cert_file",
        );
        // Not YAML at all.
        check("mirrors: {", "line");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("registries.yaml");
        assert_eq!(
            load(&path).expect("missing file"),
            RegistriesConfig::default()
        );

        std::fs::write(&path, K3S_EXAMPLE).expect("write");
        assert_eq!(load(&path).expect("valid file"), config(K3S_EXAMPLE));

        std::fs::write(&path, "mirrors:\n  docker.io:\n    endpont: []\n").expect("write");
        let err = load(&path).expect_err("typo").to_string();
        let want = format!(
            "invalid registries config {}: mirrors.docker.io: unknown field `endpont`",
            path.display()
        );
        assert!(err.starts_with(&want), "{err}");
        assert!(err.ends_with("at line 3 column 5"), "{err}");

        let err = load(dir.path()).expect_err("a directory").to_string();
        assert!(
            err.starts_with(&format!(
                "cannot read registries config {}: ",
                dir.path().display()
            )),
            "{err}"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let auth = Auth::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        let token = Auth::IdentityToken("s3cr3t".into());
        let shown = format!("{auth:?} {token:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cr3t"),
            "{shown}"
        );
        assert!(shown.contains("\"u\""), "{shown}");
    }
}
