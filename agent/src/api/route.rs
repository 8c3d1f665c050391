//! Request paths to what they name, and query strings to values: pure, so
//! the Kubernetes path layout is tested without a server.

use std::collections::HashMap;

use super::resources::{self, Resource};

/// What a request path names.
#[derive(Debug, Clone)]
pub enum Route {
    /// `/version`
    Version,
    /// `/healthz`, `/livez`, `/readyz`
    Health,
    /// `/api`: the core group's versions.
    CoreVersions,
    /// `/apis`: the other groups.
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1`, `/apis/{group}/{version}`: the resources of a group version.
    Resources {
        group: String,
        version: String,
    },
    /// A list (or watch): in one namespace, or all for `None`.
    Collection {
        resource: &'static Resource,
        namespace: Option<String>,
    },
    /// One object; `namespace` is `None` for cluster-scoped kinds.
    Object {
        resource: &'static Resource,
        namespace: Option<String>,
        name: String,
    },
    /// `/api/v1/namespaces/{ns}/pods/{name}/log`
    PodLog {
        namespace: String,
        name: String,
    },
    /// `/api/v1/namespaces/{ns}/pods/{name}/exec`
    PodExec {
        namespace: String,
        name: String,
    },
    NotFound,
}

/// Routes a request path (without its query).
pub fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segments.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz"] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", group] if resources::groups().iter().any(|(g, _)| g == group) => {
            Route::Group((*group).to_owned())
        }
        ["api", version, rest @ ..] => in_group("", version, rest),
        ["apis", group, version, rest @ ..] => in_group(group, version, rest),
        _ => Route::NotFound,
    }
}

/// Routes the part of a path after `/api/v1` or `/apis/{group}/{version}`.
fn in_group(group: &str, version: &str, rest: &[&str]) -> Route {
    let served = resources::RESOURCES
        .iter()
        .any(|r| r.group == group && r.version == version);
    if !served {
        return Route::NotFound;
    }
    let find = |plural: &str| resources::by_path(group, version, plural);
    let valid = |name: &str| !name.is_empty();
    match rest {
        [] => Route::Resources {
            group: group.to_owned(),
            version: version.to_owned(),
        },
        // `/api/v1/namespaces/{ns}/pods/{name}/log`
        ["namespaces", ns, "pods", name, "log"] if group.is_empty() && valid(ns) && valid(name) => {
            Route::PodLog {
                namespace: (*ns).to_owned(),
                name: (*name).to_owned(),
            }
        }
        ["namespaces", ns, "pods", name, "exec"]
            if group.is_empty() && valid(ns) && valid(name) =>
        {
            Route::PodExec {
                namespace: (*ns).to_owned(),
                name: (*name).to_owned(),
            }
        }
        ["namespaces", ns, plural, tail @ ..] if valid(ns) => match (find(plural), tail) {
            (Some(r), []) if r.namespaced => Route::Collection {
                resource: r,
                namespace: Some((*ns).to_owned()),
            },
            // `/status` reads the object, as GET on the status subresource does.
            (Some(r), [name] | [name, "status"]) if r.namespaced && valid(name) => Route::Object {
                resource: r,
                namespace: Some((*ns).to_owned()),
                name: (*name).to_owned(),
            },
            // `/api/v1/namespaces/{name}/status`
            (_, []) if *plural == "status" && group.is_empty() => Route::Object {
                resource: namespaces(),
                namespace: None,
                name: (*ns).to_owned(),
            },
            _ => Route::NotFound,
        },
        [plural] => match find(plural) {
            Some(r) => Route::Collection {
                resource: r,
                namespace: None,
            },
            None => Route::NotFound,
        },
        // Cluster-scoped objects: `/api/v1/namespaces/{name}`.
        [plural, name] => match find(plural) {
            Some(r) if !r.namespaced && valid(name) => Route::Object {
                resource: r,
                namespace: None,
                name: (*name).to_owned(),
            },
            _ => Route::NotFound,
        },
        _ => Route::NotFound,
    }
}

fn namespaces() -> &'static Resource {
    // The table always has namespaces; a missing row is a programming error
    // caught by the tests.
    resources::by_kind("Namespace").expect("the resource table has namespaces")
}

/// A query string's parameters, percent-decoded (`+` is a space, as Go's
/// `url.ParseQuery` reads it). A repeated key keeps its first value.
pub fn query(q: Option<&str>) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.entry(decode(k)).or_insert_with(|| decode(v));
    }
    params
}

/// Percent-decodes a query component; invalid escapes are kept as they are.
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query component (everything but RFC 3986 unreserved characters).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A boolean parameter as Go's `strconv.ParseBool` reads it; absent is false.
pub fn flag(params: &HashMap<String, String>, key: &str) -> Result<bool, String> {
    match params.get(key).map(String::as_str) {
        None | Some("") => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(format!(
            "invalid value {other:?} for {key}: expected true or false"
        )),
    }
}

/// An integer parameter, if present.
pub fn number(params: &HashMap<String, String>, key: &str) -> Result<Option<i64>, String> {
    match params.get(key).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("invalid value {v:?} for {key}: expected an integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(r: &Route) -> String {
        match r {
            Route::Collection {
                resource,
                namespace,
            } => format!("list {} in {namespace:?}", resource.plural),
            Route::Object {
                resource,
                namespace,
                name,
            } => format!("get {} {name} in {namespace:?}", resource.plural),
            Route::PodLog { namespace, name } => format!("log {namespace}/{name}"),
            Route::PodExec { namespace, name } => format!("exec {namespace}/{name}"),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn paths_route_like_the_api_server() {
        fn check(path: &str, expect: &str) {
            assert_eq!(kind(&route(path)), expect, "{path}");
        }
        check("/version", "Version");
        check("/healthz", "Health");
        check("/api", "CoreVersions");
        check("/api/", "CoreVersions");
        check("/apis", "Groups");
        check("/apis/apps", "Group(\"apps\")");
        check("/apis/nope", "NotFound");
        check("/api/v1", "Resources { group: \"\", version: \"v1\" }");
        check(
            "/apis/apps/v1",
            "Resources { group: \"apps\", version: \"v1\" }",
        );
        check("/api/v2", "NotFound");
        check("/api/v1/pods", "list pods in None");
        check(
            "/api/v1/namespaces/default/pods",
            "list pods in Some(\"default\")",
        );
        check(
            "/api/v1/namespaces/default/pods/web",
            "get pods web in Some(\"default\")",
        );
        check(
            "/api/v1/namespaces/default/pods/web/status",
            "get pods web in Some(\"default\")",
        );
        check("/api/v1/namespaces/default/pods/web/log", "log default/web");
        check("/api/v1/namespaces/default/configmaps/x/log", "NotFound");
        check(
            "/api/v1/namespaces/default/events",
            "list events in Some(\"default\")",
        );
        check(
            "/api/v1/namespaces/default/limitranges/l",
            "get limitranges l in Some(\"default\")",
        );
        check("/api/v1/resourcequotas", "list resourcequotas in None");
        check("/api/v1/namespaces", "list namespaces in None");
        check("/api/v1/namespaces/prod", "get namespaces prod in None");
        check(
            "/api/v1/namespaces/prod/status",
            "get namespaces prod in None",
        );
        // Namespaces are not namespaced; pods are.
        check("/api/v1/namespaces/prod/namespaces", "NotFound");
        check("/api/v1/pods/web", "NotFound");
        check(
            "/api/v1/namespaces/default/pods/web/exec",
            "exec default/web",
        );
        check(
            "/apis/apps/v1/namespaces/default/deployments/web",
            "get deployments web in Some(\"default\")",
        );
        check("/apis/apps/v1/deployments", "list deployments in None");
        check("/apis/apps/v1/namespaces/default/pods", "NotFound");
        check("/api/v1/namespaces/default/deployments", "NotFound");
        check("/api/v1/nothing", "NotFound");
        check("/", "NotFound");
        check("", "NotFound");
        check("/api/v1/namespaces//pods", "NotFound");
    }

    #[test]
    fn queries_decode() {
        let q = query(Some(
            "labelSelector=app%3Dweb%2Ctier+in+%28a%2Cb%29&watch=1&watch=0&empty&x=%zz",
        ));
        assert_eq!(q["labelSelector"], "app=web,tier in (a,b)");
        assert_eq!(q["watch"], "1");
        assert_eq!(q["empty"], "");
        assert_eq!(q["x"], "%zz");
        assert_eq!(decode("%"), "%");
        assert_eq!(decode("a%4"), "a%4");
        assert_eq!(decode("%41"), "A");
        assert_eq!(decode(&encode("app in (a, b),!x=é")), "app in (a, b),!x=é");
        assert_eq!(encode("a=b c"), "a%3Db%20c");
        assert_eq!(flag(&q, "watch"), Ok(true));
        assert_eq!(flag(&q, "missing"), Ok(false));
        assert!(flag(&query(Some("watch=yes")), "watch").is_err());
        assert_eq!(
            number(&query(Some("tailLines=10")), "tailLines"),
            Ok(Some(10))
        );
        assert!(number(&query(Some("tailLines=ten")), "tailLines").is_err());
    }
}
