//! Bundles in, objects or rendered problems out: each case is the manifest a
//! user writes and exactly what they would read.

use serde_json::{json, Value};

use super::*;

/// The objects of a bundle (`file (document n): Kind ns/name`), or its problems.
fn render(files: &[(&str, &str)]) -> String {
    let files: Vec<BundleFile> = files
        .iter()
        .map(|(name, content)| BundleFile {
            name: (*name).to_owned(),
            content: content.as_bytes().to_vec(),
        })
        .collect();
    match parse_bundle(&files) {
        Ok(objects) => objects
            .iter()
            .map(|l| {
                let unsupported = match &l.object {
                    Object::Unsupported(u) => format!(" (unsupported {})", u.api_version),
                    _ => String::new(),
                };
                format!(
                    "{} (document {}): {}{unsupported}",
                    l.file,
                    l.document,
                    l.object.key()
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => e.to_string(),
    }
}

fn check_files(files: &[(&str, &str)], expect: &str) {
    let got = render(files);
    assert_eq!(
        got,
        expect.trim(),
        "\n--- got:\n{got}\n--- expected:\n{}\n",
        expect.trim()
    );
}

/// One file, `m.yaml`.
fn check(yaml: &str, expect: &str) {
    check_files(&[("m.yaml", yaml)], expect);
}

/// The single object of `yaml`, as JSON after defaults.
fn decoded(yaml: &str) -> Value {
    let file = BundleFile {
        name: "m.yaml".to_owned(),
        content: yaml.as_bytes().to_vec(),
    };
    match parse_bundle(&[file]) {
        Ok(objects) if objects.len() == 1 => objects[0].object.to_json(),
        other => panic!("expected one object, got {other:?}"),
    }
}

/// A pod named web whose spec is the flow-style map `spec`.
fn pod(spec: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec: {{{spec}}}\n")
}

/// A pod with one container `app` (image nginx) with `fields` added.
fn container(fields: &str) -> String {
    pod(&format!(
        "containers: [{{name: app, image: nginx, {fields}}}]"
    ))
}

const WEB_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels: {app: web, app.kubernetes.io/version: "1.2"}
  annotations: {example.com/owner: "team a", note: "anything: goes"}
spec:
  initContainers:
  - name: migrate
    image: registry.local:5000/shop/migrate:v3
    command: [/bin/migrate, --up]
  containers:
  - name: web
    image: nginx:1.27
    ports:
    - {name: http, containerPort: 8080}
    - {name: metrics, containerPort: 9090, protocol: TCP}
    env:
    - {name: MODE, value: production}
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: TEAM
      valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}
    - name: DB_PASSWORD
      valueFrom: {secretKeyRef: {name: db, key: password}}
    - name: MEM_LIMIT
      valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
    envFrom:
    - configMapRef: {name: web-config}
    - prefix: DB_
      secretRef: {name: db, optional: true}
    resources:
      requests: {cpu: 250m, memory: 64Mi}
      limits: {cpu: 1, memory: 128Mi}
    livenessProbe:
      httpGet: {path: /healthz, port: http, httpHeaders: [{name: X-Probe, value: "1"}]}
      initialDelaySeconds: 5
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 5
    startupProbe:
      exec: {command: [cat, /tmp/ready]}
      failureThreshold: 30
    lifecycle:
      preStop: {exec: {command: [nginx, -s, quit]}}
    volumeMounts:
    - {name: cache, mountPath: /var/cache/nginx}
    - {name: config, mountPath: /etc/nginx/conf.d, readOnly: true}
    - {name: tls, mountPath: /etc/tls, readOnly: true}
    - {name: logs, mountPath: /var/log/nginx, subPath: web}
    securityContext:
      runAsUser: 101
      runAsGroup: 101
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL], add: [NET_BIND_SERVICE, cap_chown]}
  volumes:
  - {name: cache, emptyDir: {medium: Memory, sizeLimit: 64Mi}}
  - {name: config, configMap: {name: web-config, items: [{key: default.conf, path: default.conf}]}}
  - {name: tls, secret: {secretName: web-tls, defaultMode: 0400}}
  - {name: logs, hostPath: {path: /var/log/pods, type: DirectoryOrCreate}}
  restartPolicy: Always
  terminationGracePeriodSeconds: 10
  securityContext: {fsGroup: 101, supplementalGroups: [4]}
"#;

const OTHERS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
# the configuration of the web pod
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config, namespace: shop}
data:
  default.conf: |
    server { listen 8080; }
  MODE: production
binaryData:
  logo.png: iVBORw0KGgo=
---
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: shop}
stringData: {password: hunter2}
---
apiVersion: v1
kind: Secret
metadata: {name: web-tls, namespace: shop}
type: kubernetes.io/tls
data: {tls.crt: Y3J0, tls.key: a2V5}
---
apiVersion: v1
kind: LimitRange
metadata: {name: limits, namespace: shop}
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 256Mi}
    max: {cpu: 2, memory: 1Gi}
    min: {cpu: 10m}
    maxLimitRequestRatio: {cpu: 10}
  - type: Pod
    max: {memory: 2Gi}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: quota, namespace: shop}
spec:
  hard: {pods: 10, requests.cpu: 4, requests.memory: 4Gi, limits.memory: 8Gi, count/configmaps: 20}
"#;

#[test]
fn valid_bundles() {
    check(WEB_POD, "m.yaml (document 1): Pod shop/web");
    check(
        OTHERS,
        "
m.yaml (document 1): Namespace shop
m.yaml (document 2): ConfigMap shop/web-config
m.yaml (document 3): Secret shop/db
m.yaml (document 4): Secret shop/web-tls
m.yaml (document 5): LimitRange shop/limits
m.yaml (document 6): ResourceQuota shop/quota",
    );
    // Several files, JSON among them, empty and comment-only documents, a List.
    check_files(
        &[
            ("a/ns.json", r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "edge"}}"#),
            ("b/empty.yaml", "# nothing here yet\n---\n---\n"),
            (
                "c/list.yml",
                "---\n# a list\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b, namespace: edge}}\n",
            ),
            ("d/pod.yaml", &pod("containers: [{name: app, image: busybox}]")),
        ],
        "
a/ns.json (document 1): Namespace edge
c/list.yml (document 1): ConfigMap default/a
c/list.yml (document 1): ConfigMap edge/b
d/pod.yaml (document 1): Pod default/web",
    );
    check("", "");
    check("apiVersion: v1\nkind: List\nitems: []\n", "");
}

#[test]
fn unsupported_kinds_are_kept() {
    check(
        "
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec: {replicas: 2, anything: [1, 2]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader, namespace: ignored}
---
apiVersion: example.com/v1alpha1
kind: Widget
metadata: {name: w, namespace: edge}
---
apiVersion: v2
kind: Pod
metadata: {name: future}
---
apiVersion: extensions/v1beta1
kind: Deployment
metadata: {name: old}
",
        "
m.yaml (document 1): StatefulSet default/web (unsupported apps/v1)
m.yaml (document 2): ClusterRole reader (unsupported rbac.authorization.k8s.io/v1)
m.yaml (document 3): Widget edge/w (unsupported example.com/v1alpha1)
m.yaml (document 4): Pod default/future (unsupported v2)
m.yaml (document 5): Deployment default/old (unsupported extensions/v1beta1)",
    );
    let raw = decoded(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web}\nspec: {replicas: 2}\n",
    );
    assert_eq!(
        raw,
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web", "namespace": "default"}, "spec": {"replicas": 2}})
    );
    // Only their identity is checked.
    check(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {namespace: Bad_NS}\n",
        "
m.yaml (document 1): metadata.name: required value: name is required
m.yaml (document 1): metadata.namespace: invalid value: \"Bad_NS\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    );
    check(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: a/b}\n",
        "m.yaml (document 1): StatefulSet default/a/b: metadata.name: invalid value: \"a/b\": may not contain '/'",
    );
}

/// A Deployment `web` with `spec` (flow-style map entries) added to a valid one.
fn deployment(spec: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec: {{selector: {{matchLabels: {{app: web}}}}, template: {{metadata: {{labels: {{app: web}}}}, spec: {{containers: [{{name: app, image: nginx}}]}}}}, {spec}}}\n"
    )
}

const DEPLOYMENT: &str = "m.yaml (document 1): Deployment default/web: ";

#[test]
fn workloads() {
    let d = decoded(&deployment("replicas: 3"));
    assert_eq!(
        d["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
    let d = decoded(&deployment("strategy: {type: Recreate}"));
    assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
    assert_eq!(d["spec"]["replicas"], 1);
    check_all(
        DEPLOYMENT,
        &[
            (
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {selector: {matchLabels: {app: api}}, template: {metadata: {labels: {app: web}}, spec: {containers: [{name: app, image: nginx}]}}}\n".to_owned(),
                &["spec.template.metadata.labels: invalid value: \"app=web\": `selector` does not match template `labels`"],
            ),
            (
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {template: {spec: {containers: [{name: app, image: nginx}]}}}\n".to_owned(),
                &["spec.selector: required value: empty selector is invalid for deployment"],
            ),
            (
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {selector: {}, template: {spec: {containers: [{name: app, image: nginx}]}}}\n".to_owned(),
                &["spec.selector: required value: empty selector is invalid for deployment"],
            ),
            (
                deployment("replicas: -1, minReadySeconds: 700"),
                &[
                    "spec.replicas: invalid value: -1: must be greater than or equal to 0",
                    "spec.progressDeadlineSeconds: invalid value: 600: must be greater than minReadySeconds",
                ],
            ),
            (
                deployment("strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}"),
                &["spec.strategy.rollingUpdate.maxUnavailable: invalid value: \"0\": may not be 0 when `maxSurge` is 0"],
            ),
            (
                deployment("strategy: {rollingUpdate: {maxSurge: ten, maxUnavailable: 120%}}"),
                &[
                    "spec.strategy.rollingUpdate.maxSurge: invalid value: \"ten\": a valid percent string must be a numeric string followed by an ending '%'",
                    "spec.strategy.rollingUpdate.maxUnavailable: invalid value: \"120%\": must not be greater than 100%",
                ],
            ),
            (
                deployment("strategy: {type: Recreate, rollingUpdate: {maxSurge: 1}}"),
                &["spec.strategy.rollingUpdate: forbidden: may not be specified when strategy `type` is 'Recreate'"],
            ),
            (
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {selector: {matchLabels: {app: web}}, template: {metadata: {labels: {app: web}}, spec: {restartPolicy: Never, containers: [{name: app}]}}}\n".to_owned(),
                &[
                    "spec.template.spec.containers[0].image: required value",
                    "spec.template.spec.restartPolicy: unsupported value: \"Never\": supported values: \"Always\"",
                ],
            ),
        ],
    );
    let job = |spec: &str| {
        format!("apiVersion: batch/v1\nkind: Job\nmetadata: {{name: work}}\nspec: {{template: {{spec: {{containers: [{{name: app, image: busybox}}]{spec}}}}}}}\n")
    };
    let j = decoded(&job(", restartPolicy: Never"));
    assert_eq!(j["spec"]["completions"], 1);
    assert_eq!(j["spec"]["parallelism"], 1);
    assert_eq!(j["spec"]["backoffLimit"], 6);
    check(
        &job(""),
        "m.yaml (document 1): Job default/work: spec.template.spec.restartPolicy: unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
    );
    let indexed = |spec: &str| {
        format!("apiVersion: batch/v1\nkind: Job\nmetadata: {{name: work}}\nspec: {{completionMode: Indexed{spec}, template: {{spec: {{restartPolicy: Never, containers: [{{name: app, image: busybox}}]}}}}}}\n")
    };
    assert_eq!(decoded(&indexed(""))["spec"]["completions"], 1);
    assert_eq!(
        decoded(&indexed(", completions: 3"))["spec"]["completionMode"],
        "Indexed"
    );
    check(
        &indexed(", parallelism: 2"),
        "m.yaml (document 1): Job default/work: spec.completions: required value: when completion mode is Indexed",
    );
    check(
        &indexed(", completions: 100001"),
        "m.yaml (document 1): Job default/work: spec.completions: invalid value: 100001: must be less than or equal to 100000 when completion mode is Indexed",
    );
    let ds = decoded("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec: {selector: {matchLabels: {app: a}}, template: {metadata: {labels: {app: a}}, spec: {containers: [{name: app, image: busybox}]}}}\n");
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
    );
}

#[test]
fn defaults() {
    assert_eq!(
        decoded(&pod("containers: [{name: app, image: nginx, ports: [{containerPort: 80}], readinessProbe: {httpGet: {port: 80}, periodSeconds: 0}, resources: {limits: {memory: 64Mi}}}, {name: side, image: 'nginx:1.27', imagePullPolicy: Never}], volumes: [{name: c, configMap: {name: c}}]")),
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "nginx",
                        "imagePullPolicy": "Always",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "readinessProbe": {
                            "httpGet": {"path": "/", "port": 80, "scheme": "HTTP"},
                            "initialDelaySeconds": 0,
                            "periodSeconds": 10,
                            "timeoutSeconds": 1,
                            "successThreshold": 1,
                            "failureThreshold": 3
                        },
                        "resources": {"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File"
                    },
                    {
                        "name": "side",
                        "image": "nginx:1.27",
                        "imagePullPolicy": "Never",
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File"
                    }
                ],
                "dnsPolicy": "ClusterFirst",
                "enableServiceLinks": true,
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "volumes": [{"name": "c", "configMap": {"name": "c", "defaultMode": 420}}]
            }
        })
    );
    // File modes are octal in YAML 1.1, as Kubernetes reads manifests (not in JSON).
    assert_eq!(
        decoded(&pod("containers: [{name: a, image: b}], volumes: [{name: s, secret: {secretName: s, defaultMode: 0400, items: [{key: k, path: p, mode: 0755}]}}]"))
            .pointer("/spec/volumes/0/secret"),
        Some(&json!({"secretName": "s", "defaultMode": 256, "items": [{"key": "k", "path": "p", "mode": 493}]}))
    );
    check_files(
        &[(
            "p.json",
            r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": {"containers": [{"name": "a", "image": "b"}], "volumes": [{"name": "c", "configMap": {"name": "c", "defaultMode": "0400"}}]}}"#,
        )],
        r#"p.json (document 1): Pod default/web: spec.volumes[0].configMap.defaultMode: invalid type: string "0400", expected i32"#,
    );
    // Status is observed, never desired.
    let with_status = decoded("apiVersion: v1\nkind: Pod\nmetadata: {name: web, creationTimestamp: null}\nspec: {containers: [{name: a, image: 'b:1'}]}\nstatus: {phase: Running}\n");
    assert_eq!(with_status.get("status"), None);
    assert_eq!(
        with_status.pointer("/spec/containers/0/imagePullPolicy"),
        Some(&json!("IfNotPresent"))
    );
    // stringData is merged into data (winning) and removed; the type defaults to Opaque.
    assert_eq!(
        decoded("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {a: YQ==, b: Yg==}\nstringData: {b: B, c: C}\n"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}, "type": "Opaque", "data": {"a": "YQ==", "b": "Qg==", "c": "Qw=="}})
    );
    // A Namespace has no namespace.
    assert_eq!(
        decoded("apiVersion: v1\nkind: Namespace\nmetadata: {name: n, namespace: x}\n"),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}})
    );
    // LimitRange items: the default limit is the max, the default request the default limit, else the min.
    assert_eq!(
        decoded("apiVersion: v1\nkind: LimitRange\nmetadata: {name: l}\nspec: {limits: [{type: Container, max: {memory: 1Gi}, min: {cpu: 10m}}]}\n")
            .pointer("/spec/limits/0"),
        Some(&json!({"type": "Container", "max": {"memory": "1Gi"}, "min": {"cpu": "10m"}, "default": {"memory": "1Gi"}, "defaultRequest": {"cpu": "10m", "memory": "1Gi"}}))
    );
}

#[test]
fn unreadable_files() {
    check_files(
        &[
            ("a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n   bad: indent\n"),
            ("b.yaml", "kind: ConfigMap\n\u{0}"),
            ("c.json", "{\"apiVersion\": \"v1\",}"),
            ("d.yaml", "- just\n- a list\n---\nplain text\n---\n42\n"),
            ("e.yaml", "apiVersion: v1\nkind: List\nitems: [1, {kind: List}]\n---\napiVersion: v1\nkind: List\nitems: {a: 1}\n"),
        ],
        "
a.yaml (document 1): invalid YAML: mapping values are not allowed in this context at line 5 column 7
b.yaml (document 1): invalid YAML: control characters are not allowed at line 2 column 1
c.json (document 1): invalid JSON: trailing comma at line 1 column 21
d.yaml (document 1): expected a Kubernetes object (a map with apiVersion, kind and metadata), found a list
d.yaml (document 2): expected a Kubernetes object (a map with apiVersion, kind and metadata), found a string
d.yaml (document 3): expected a Kubernetes object (a map with apiVersion, kind and metadata), found a number
e.yaml (document 1): expected a Kubernetes object (a map with apiVersion, kind and metadata), found a number (in List items[0])
e.yaml (document 1): a List inside a List is not supported (in List items[1])
e.yaml (document 2): items: must be a list, not a map",
    );
    let not_utf8 = BundleFile {
        name: "x.yaml".to_owned(),
        content: b"kind: Pod\nname: caf\xe9\n".to_vec(),
    };
    assert_eq!(
        parse_bundle(&[not_utf8]).map_err(|e| e.to_string()),
        Err(
            "x.yaml: not valid UTF-8 at line 2, column 10: manifests must be UTF-8 text".to_owned()
        )
    );
}

#[test]
fn identity_and_types() {
    check(
        "metadata: {name: x}\n---\napiVersion: v1\nkind: 3\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: app, image: nginx, ports: [{containerPort: '80'}]}]}\n",
        r#"
m.yaml (document 1): apiVersion: required value
m.yaml (document 1): kind: required value
m.yaml (document 2): kind: must be a string, not a number
m.yaml (document 3): Pod default/web: spec.containers[0].ports[0].containerPort: invalid type: string "80", expected i32"#,
    );
    check(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {version: 2}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {a: not base64!}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: t}\nstringData: {pin: 1234}\n",
        r#"
m.yaml (document 1): ConfigMap default/c: metadata.labels.version: invalid type: integer `2`, expected a string (quote the value to make it a string)
m.yaml (document 2): Secret default/s: data.a: Invalid symbol 32, offset 3.
m.yaml (document 3): Secret default/t: stringData.pin: invalid type: expected a string (the value is not shown: it is secret)"#,
    );
}

#[test]
fn unknown_fields() {
    check(
        &container("imagee: typo, resources: {limit: {cpu: 1}}"),
        "
m.yaml (document 1): Pod default/web: spec.containers[0].imagee: unknown field
m.yaml (document 1): Pod default/web: spec.containers[0].resources.limit: unknown field",
    );
    check(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, label: {a: b}}\ndata: {a: b}\nspec: {}\nextra: null\n",
        "
m.yaml (document 1): ConfigMap default/c: metadata.label: unknown field
m.yaml (document 1): ConfigMap default/c: spec: unknown field",
    );
    // Unknown fields and invalid values are reported together.
    check(
        &pod("containers: [{name: App, image: nginx, imagee: x}]"),
        "
m.yaml (document 1): Pod default/web: spec.containers[0].imagee: unknown field
m.yaml (document 1): Pod default/web: spec.containers[0].name: invalid value: \"App\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    );
}

/// Cases: a manifest and the problems of its single object, each line
/// prefixed with `prefix`.
fn check_all(prefix: &str, cases: &[(String, &[&str])]) {
    for (yaml, expect) in cases {
        let expect: Vec<String> = expect
            .iter()
            .map(|line| format!("{prefix}{line}"))
            .collect();
        check(yaml, &expect.join("\n"));
    }
}

const POD: &str = "m.yaml (document 1): Pod default/web: ";

#[test]
fn metadata() {
    let meta = |meta: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{{meta}}}\n");
    let subdomain = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    check_all(
        "m.yaml (document 1): ",
        &[
            (meta("labels: {a: b}"), &["metadata.name: required value: name or generateName is required"]),
            (
                meta("generateName: web-"),
                &["metadata.generateName: forbidden: generateName is not supported by outpost: a manifest is applied again on every sync; set metadata.name"],
            ),
            (meta("name: Web_1"), &[&format!("ConfigMap default/Web_1: metadata.name: invalid value: \"Web_1\": {subdomain}")]),
            (meta("name: web, namespace: a.b"), &["ConfigMap a.b/web: metadata.namespace: invalid value: \"a.b\": must not contain dots"]),
            (
                meta("name: web, labels: {/x: ok, a: -bad}"),
                &[
                    "ConfigMap default/web: metadata.labels: invalid value: \"/x\": prefix part must be non-empty",
                    "ConfigMap default/web: metadata.labels: invalid value: \"-bad\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                ],
            ),
            (
                meta("name: web, annotations: {Example.com/Owner: ok, -x/y: '1'}"),
                &[
                    "ConfigMap default/web: metadata.annotations: invalid value: \"-x/y\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                ],
            ),
            (
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop.eu}\n".to_owned(),
                &["Namespace shop.eu: metadata.name: invalid value: \"shop.eu\": must not contain dots"],
            ),
        ],
    );
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, annotations: {{a: '{}'}}}}\n",
        "x".repeat(256 * 1024)
    );
    check(&big, "m.yaml (document 1): ConfigMap default/c: metadata.annotations: too long: must have at most 262144 bytes");
}

#[test]
fn pod_spec() {
    check_all(
        POD,
        &[
            ("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\n".to_owned(), &["spec: required value"]),
            (pod("containers: []"), &["spec.containers: required value"]),
            (pod("containers: [{name: app, image: nginx}], restartPolicy: Sometimes"), &[
                "spec.restartPolicy: unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ]),
            (pod("containers: [{name: a, image: b}], terminationGracePeriodSeconds: -1, activeDeadlineSeconds: 0"), &[
                "spec.terminationGracePeriodSeconds: invalid value: -1: must be greater than or equal to 0",
                "spec.activeDeadlineSeconds: invalid value: 0: must be between 1 and 2147483647, inclusive",
            ]),
            (pod("containers: [{name: a, image: b}], dnsPolicy: None, hostname: a.b"), &[
                "spec.dnsConfig: required value: must provide `dnsConfig` when `dnsPolicy` is None",
                "spec.hostname: invalid value: \"a.b\": must not contain dots",
            ]),
            (pod("containers: [{name: a, image: b}], securityContext: {runAsUser: -1, supplementalGroups: [1, -2]}"), &[
                "spec.securityContext.runAsUser: invalid value: -1: must be between 0 and 4294967295, inclusive",
                "spec.securityContext.supplementalGroups[1]: invalid value: -2: must be between 0 and 4294967295, inclusive",
            ]),
        ],
    );
}

#[test]
fn containers() {
    check_all(
        POD,
        &[
            (pod("containers: [{name: app}]"), &["spec.containers[0].image: required value"]),
            (pod("containers: [{image: nginx}]"), &["spec.containers[0].name: required value"]),
            (pod("containers: [{name: a.b, image: ' nginx'}]"), &[
                "spec.containers[0].name: invalid value: \"a.b\": must not contain dots",
                "spec.containers[0].image: invalid value: \" nginx\": must not have leading or trailing whitespace",
            ]),
            // Names are unique across init containers and containers.
            (pod("initContainers: [{name: app, image: a}], containers: [{name: app, image: b}, {name: app, image: c}]"), &[
                "spec.containers[0].name: duplicate value: \"app\"",
                "spec.containers[1].name: duplicate value: \"app\"",
            ]),
            (container("imagePullPolicy: Sometimes, terminationMessagePolicy: Stdout, restartPolicy: Always"), &[
                "spec.containers[0].imagePullPolicy: unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
                "spec.containers[0].terminationMessagePolicy: unsupported value: \"Stdout\": supported values: \"File\", \"FallbackToLogsOnError\"",
                "spec.containers[0].restartPolicy: forbidden: may not be set for non-init containers",
            ]),
            (pod("initContainers: [{name: init, image: a, restartPolicy: Never}], containers: [{name: b, image: b}]"), &[
                "spec.initContainers[0].restartPolicy: unsupported value: \"Never\": supported values: \"Always\"",
            ]),
            (container("securityContext: {runAsGroup: -5, privileged: true, allowPrivilegeEscalation: false, capabilities: {add: [NET_ADMINN, CAP_SYS_TIME], drop: [all]}}"), &[
                "spec.containers[0].securityContext.runAsGroup: invalid value: -5: must be between 0 and 4294967295, inclusive",
                "spec.containers[0].securityContext.capabilities.add[0]: invalid value: \"NET_ADMINN\": unknown capability (e.g. 'NET_ADMIN', 'SYS_TIME' or 'ALL')",
                "spec.containers[0].securityContext.allowPrivilegeEscalation: invalid value: \"false\": cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ]),
            (container("securityContext: {seccompProfile: {type: Localhost}}"), &[
                "spec.containers[0].securityContext.seccompProfile.localhostProfile: required value",
            ]),
        ],
    );
}

#[test]
fn ports() {
    check_all(
        POD,
        &[
            (container("ports: [{containerPort: 0}, {containerPort: 65536, hostPort: 70000}]"), &[
                "spec.containers[0].ports[0].containerPort: invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[1].containerPort: invalid value: 65536: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[1].hostPort: invalid value: 70000: must be between 1 and 65535, inclusive",
            ]),
            (container("ports: [{name: http, containerPort: 80}, {name: http, containerPort: 81}, {name: metrics-endpoint-1, containerPort: 82}, {name: '8080', containerPort: 83}]"), &[
                "spec.containers[0].ports[1].name: duplicate value: \"http\"",
                "spec.containers[0].ports[2].name: invalid value: \"metrics-endpoint-1\": must be no more than 15 characters",
                "spec.containers[0].ports[3].name: invalid value: \"8080\": must contain at least one letter (a-z)",
            ]),
            (pod("containers: [{name: a, image: a, ports: [{containerPort: 80, hostPort: 8080}, {containerPort: 81, protocol: tcp}]}, {name: b, image: b, ports: [{containerPort: 80, hostPort: 8080}]}]"), &[
                "spec.containers[0].ports[1].protocol: unsupported value: \"tcp\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
                "spec.containers[1].ports[0].hostPort: duplicate value: \"8080/TCP\"",
            ]),
        ],
    );
}

#[test]
fn env() {
    check_all(
        POD,
        &[
            (container("env: [{name: 1ST, value: x}, {value: y}]"), &[
                "spec.containers[0].env[0].name: invalid value: \"1ST\": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')",
                "spec.containers[0].env[1].name: required value",
            ]),
            (container("env: [{name: A, valueFrom: {}}, {name: B, value: x, valueFrom: {fieldRef: {fieldPath: metadata.name}, secretKeyRef: {name: s, key: k}}}]"), &[
                "spec.containers[0].env[0].valueFrom: required value: must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                "spec.containers[0].env[1].valueFrom: forbidden: may not have more than one field specified at a time",
                "spec.containers[0].env[1].valueFrom: forbidden: may not be specified when `value` is not empty",
            ]),
            (container("env: [{name: A, valueFrom: {fieldRef: {fieldPath: spec.hostname}}}, {name: B, valueFrom: {resourceFieldRef: {resource: limits.gpu}}}]"), &[
                "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: unsupported value: \"spec.hostname\": supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"spec.nodeName\", \"spec.serviceAccountName\", \"status.hostIP\", \"status.hostIPs\", \"status.podIP\", \"status.podIPs\", \"metadata.labels['<KEY>']\", \"metadata.annotations['<KEY>']\"",
                "spec.containers[0].env[1].valueFrom.resourceFieldRef.resource: unsupported value: \"limits.gpu\": supported values: \"limits.cpu\", \"limits.memory\", \"limits.ephemeral-storage\", \"requests.cpu\", \"requests.memory\", \"requests.ephemeral-storage\"",
            ]),
            (container("env: [{name: A, valueFrom: {configMapKeyRef: {name: '', key: 'a b'}}}]"), &[
                "spec.containers[0].env[0].valueFrom.configMapKeyRef.name: required value",
                "spec.containers[0].env[0].valueFrom.configMapKeyRef.key: invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            ]),
            (container("envFrom: [{prefix: x}, {configMapRef: {name: a}, secretRef: {name: b}}, {secretRef: {name: ''}, prefix: '9'}]"), &[
                "spec.containers[0].envFrom[0]: required value: must specify one of: `configMapRef` or `secretRef`",
                "spec.containers[0].envFrom[1]: forbidden: may not have more than one field specified at a time",
                "spec.containers[0].envFrom[2].secretRef.name: required value",
                "spec.containers[0].envFrom[2].prefix: invalid value: \"9\": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')",
            ]),
        ],
    );
}

#[test]
fn volumes() {
    check_all(
        POD,
        &[
            (pod("containers: [{name: a, image: a}], volumes: [{name: v}, {name: v, emptyDir: {}}, {name: w, emptyDir: {}, hostPath: {path: /x}}]"), &[
                "spec.volumes[0]: required value: must specify a volume type",
                "spec.volumes[1].name: duplicate value: \"v\"",
                "spec.volumes[2].hostPath: forbidden: may not specify more than 1 volume type",
            ]),
            (pod("containers: [{name: a, image: a}], volumes: [{name: data, persistentVolumeClaim: {claimName: data}}, {name: Bad, projected: {sources: []}}]"), &[
                "spec.volumes[0].persistentVolumeClaim: volume type persistentVolumeClaim is not supported by outpost: use emptyDir, configMap, secret or hostPath",
                "spec.volumes[1].name: invalid value: \"Bad\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                "spec.volumes[1].projected: volume type projected is not supported by outpost: use emptyDir, configMap, secret or hostPath",
            ]),
            (pod("containers: [{name: a, image: a}], volumes: [{name: a, hostPath: {path: var/log, type: Folder}}, {name: b, hostPath: {path: /var/../etc}}, {name: c, emptyDir: {medium: Disk, sizeLimit: 1x}}]"), &[
                "spec.volumes[0].hostPath.path: invalid value: \"var/log\": must be an absolute path",
                "spec.volumes[0].hostPath.type: unsupported value: \"Folder\": supported values: \"\", \"DirectoryOrCreate\", \"Directory\", \"FileOrCreate\", \"File\", \"Socket\", \"CharDevice\", \"BlockDevice\"",
                "spec.volumes[1].hostPath.path: invalid value: \"/var/../etc\": must not contain '..'",
                "spec.volumes[2].emptyDir.medium: unsupported value: \"Disk\": supported values: \"\", \"Memory\"",
                "spec.volumes[2].emptyDir.sizeLimit: invalid quantity \"1x\": expected a number with an optional suffix like 64Mi or 1G",
            ]),
            (pod("containers: [{name: a, image: a}], volumes: [{name: a, configMap: {name: '', defaultMode: 0o1000, items: [{key: '..x', path: /abs}, {key: k, path: '../up', mode: -1}]}}, {name: b, secret: {}}]"), &[
                "spec.volumes[0].configMap.name: required value",
                "spec.volumes[0].configMap.defaultMode: invalid value: 512: must be a number between 0 and 0777 (octal), both inclusive",
                "spec.volumes[0].configMap.items[0].key: invalid value: \"..x\": must not start with '..'",
                "spec.volumes[0].configMap.items[0].path: invalid value: \"/abs\": must be a relative path",
                "spec.volumes[0].configMap.items[1].path: invalid value: \"../up\": must not contain '..'",
                "spec.volumes[0].configMap.items[1].mode: invalid value: -1: must be a number between 0 and 0777 (octal), both inclusive",
                "spec.volumes[1].secret.secretName: required value",
            ]),
            (pod("containers: [{name: a, image: a, volumeMounts: [{name: data, mountPath: /data}, {name: v, mountPath: data}, {name: v, mountPath: /data, subPath: /x}, {name: '', mountPath: ''}]}], volumes: [{name: v, emptyDir: {}}]"), &[
                "spec.containers[0].volumeMounts[0].name: not found: \"data\"",
                "spec.containers[0].volumeMounts[1].mountPath: invalid value: \"data\": must be an absolute path",
                "spec.containers[0].volumeMounts[2].mountPath: invalid value: \"/data\": must be unique",
                "spec.containers[0].volumeMounts[2].subPath: invalid value: \"/x\": must be a relative path",
                "spec.containers[0].volumeMounts[3].name: required value",
                "spec.containers[0].volumeMounts[3].mountPath: required value",
            ]),
        ],
    );
}

#[test]
fn resources() {
    check_all(
        POD,
        &[
            (container("resources: {requests: {cpu: 2, memory: 1Gi}, limits: {cpu: 500m, memory: 1Gi}}"), &[
                "spec.containers[0].resources.requests: invalid value: \"2\": must be less than or equal to cpu limit of 500m",
            ]),
            (container("resources: {limits: {memory: 12MB, cpu: -1, gpu: 1, nvidia.com/gpu: 1}}"), &[
                "spec.containers[0].resources.limits[cpu]: invalid value: \"-1\": must be greater than or equal to 0",
                "spec.containers[0].resources.limits[gpu]: invalid value: \"gpu\": must be a standard resource for containers",
                "spec.containers[0].resources.limits[memory]: invalid quantity \"12MB\": expected a number with an optional suffix like 64Mi or 1G",
            ]),
            (container("resources: {requests: {cpu: x}}"), &[
                "spec.containers[0].resources.requests[cpu]: invalid cpu quantity \"x\": expected e.g. 500m, 0.5 or 2",
            ]),
        ],
    );
}

#[test]
fn probes() {
    check_all(
        POD,
        &[
            (container("livenessProbe: {periodSeconds: 5}"), &["spec.containers[0].livenessProbe: required value: must specify a handler type"]),
            (container("readinessProbe: {exec: {command: [ls]}, tcpSocket: {port: 80}}"), &[
                "spec.containers[0].readinessProbe: forbidden: may not specify more than 1 handler type",
            ]),
            (container("startupProbe: {grpc: {port: 9000}}"), &["spec.containers[0].startupProbe.grpc: grpc probes are not supported by outpost: use exec, httpGet or tcpSocket"]),
            (container("livenessProbe: {exec: {}, initialDelaySeconds: -1, periodSeconds: -5, failureThreshold: -1, successThreshold: 2}"), &[
                "spec.containers[0].livenessProbe.exec.command: required value",
                "spec.containers[0].livenessProbe.initialDelaySeconds: invalid value: -1: must be greater than or equal to 0",
                "spec.containers[0].livenessProbe.periodSeconds: invalid value: -5: must be greater than zero",
                "spec.containers[0].livenessProbe.failureThreshold: invalid value: -1: must be greater than zero",
                "spec.containers[0].livenessProbe.successThreshold: invalid value: 2: must be 1",
            ]),
            (container("readinessProbe: {httpGet: {port: 0, scheme: FTP, httpHeaders: [{name: 'X Y', value: z}]}, successThreshold: 2}"), &[
                "spec.containers[0].readinessProbe.httpGet.port: invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.containers[0].readinessProbe.httpGet.scheme: unsupported value: \"FTP\": supported values: \"HTTP\", \"HTTPS\"",
                "spec.containers[0].readinessProbe.httpGet.httpHeaders[0].name: invalid value: \"X Y\": a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')",
            ]),
            (container("readinessProbe: {tcpSocket: {port: '8080'}}"), &[
                "spec.containers[0].readinessProbe.tcpSocket.port: invalid value: \"8080\": must contain at least one letter (a-z)",
            ]),
            (pod("initContainers: [{name: i, image: i, livenessProbe: {exec: {command: [x]}}}, {name: s, image: s, restartPolicy: Always, livenessProbe: {exec: {command: [x]}}}], containers: [{name: a, image: a, lifecycle: {postStart: {}}}]"), &[
                "spec.initContainers[0].livenessProbe: forbidden: may not be set for init containers without restartPolicy=Always",
                "spec.containers[0].lifecycle.postStart: required value: must specify a handler type",
            ]),
        ],
    );
}

#[test]
fn config_maps_and_secrets() {
    check_all(
        "m.yaml (document 1): ",
        &[
            ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {'a b': x, k: y}\nbinaryData: {k: eQ==}\n".to_owned(), &[
                "ConfigMap default/c: data[a b]: invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                "ConfigMap default/c: data[k]: invalid value: \"k\": duplicate of key present in binaryData",
            ]),
            ("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {'..': x}\n".to_owned(), &[
                "Secret default/s: data[..]: invalid value: \"..\": must not be '..'",
            ]),
            ("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\nstringData: {tls.crt: x}\n".to_owned(), &[
                "Secret default/s: data[tls.key]: required value",
            ]),
            ("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/dockerconfigjson\nstringData: {.dockerconfigjson: '{'}\n".to_owned(), &[
                "Secret default/s: data[.dockerconfigjson]: invalid value: \"<secret contents redacted>\": EOF while parsing an object at line 1 column 1",
            ]),
        ],
    );
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\ndata: {{a: '{}'}}\n",
        "x".repeat(1024 * 1024 + 1)
    );
    check(
        &big,
        "m.yaml (document 1): ConfigMap default/c: data: too long: must have at most 1048576 bytes",
    );
}

#[test]
fn limit_ranges_and_quotas() {
    check_all(
        "m.yaml (document 1): ",
        &[
            ("apiVersion: v1\nkind: LimitRange\nmetadata: {name: l}\nspec: {limits: [{type: Node}, {type: Pod, default: {cpu: 1}}, {type: Container, min: {memory: 2Gi}, max: {memory: 1Gi}, maxLimitRequestRatio: {cpu: 0.5}}]}\n".to_owned(), &[
                "LimitRange default/l: spec.limits[0].type: unsupported value: \"Node\": supported values: \"Pod\", \"Container\", \"PersistentVolumeClaim\"",
                "LimitRange default/l: spec.limits[1].default: forbidden: may not be specified when `type` is 'Pod'",
                "LimitRange default/l: spec.limits[2].min[memory]: invalid value: \"2Gi\": min value 2Gi is greater than max value 1Gi",
                "LimitRange default/l: spec.limits[2].default[memory]: invalid value: \"1Gi\": min value 2Gi is greater than default value 1Gi",
                "LimitRange default/l: spec.limits[2].defaultRequest[memory]: invalid value: \"1Gi\": min value 2Gi is greater than default request value 1Gi",
                "LimitRange default/l: spec.limits[2].maxLimitRequestRatio[cpu]: invalid value: \"0.5\": ratio 0.5 is less than 1",
            ]),
            ("apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q}\nspec: {hard: {gpus: 1, pods: -1}, scopes: [Sometimes]}\n".to_owned(), &[
                "ResourceQuota default/q: spec.hard[gpus]: invalid value: \"gpus\": must be a standard resource for quota",
                "ResourceQuota default/q: spec.hard[pods]: invalid value: \"-1\": must be greater than or equal to 0",
                "ResourceQuota default/q: spec.scopes[0]: unsupported value: \"Sometimes\": supported values: \"Terminating\", \"NotTerminating\", \"BestEffort\", \"NotBestEffort\", \"PriorityClass\", \"CrossNamespacePodAffinity\", \"VolumeAttributesClass\"",
            ]),
        ],
    );
}

/// A Service `web` whose spec is the flow-style map `spec`.
fn service(spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{{spec}}}\n")
}

const SERVICE: &str = "m.yaml (document 1): Service default/web: ";

#[test]
fn services() {
    // The API server's defaults, and what its registry fills in on create.
    assert_eq!(
        decoded(&service("selector: {app: web}, ports: [{port: 80}]")),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "type": "ClusterIP",
                "selector": {"app": "web"},
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "sessionAffinity": "None",
                "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack"
            }
        })
    );
    assert_eq!(
        decoded(&service("type: NodePort, selector: {app: web}, sessionAffinity: ClientIP, clusterIP: 10.43.0.20, ports: [{name: dns, port: 53, protocol: UDP, targetPort: dns, nodePort: 30053}]"))["spec"],
        json!({
            "type": "NodePort",
            "selector": {"app": "web"},
            "clusterIP": "10.43.0.20",
            "clusterIPs": ["10.43.0.20"],
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns", "nodePort": 30053}],
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
            "externalTrafficPolicy": "Cluster",
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack"
        })
    );
    let lb = decoded(&service(
        "type: LoadBalancer, ports: [{port: 443, targetPort: 0}]",
    ));
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(lb["spec"]["ports"][0]["targetPort"], 443);
    // Headless without a selector takes every family the cluster has.
    let headless = decoded(&service("clusterIP: None"));
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");
    assert_eq!(
        decoded(&service(
            "type: ExternalName, externalName: db.example.com."
        ))["spec"],
        json!({"type": "ExternalName", "externalName": "db.example.com.", "sessionAffinity": "None"})
    );
    // Status is observed, never desired.
    assert_eq!(
        decoded("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\nstatus: {loadBalancer: {ingress: [{ip: 1.2.3.4}]}}\n").get("status"),
        None
    );
    check(
        &service("type: LoadBalancer, ports: [{port: 80}], externalTrafficPolicy: Local"),
        "m.yaml (document 1): Service default/web",
    );

    let label = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    let subdomain = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    check_all(
        SERVICE,
        &[
            (service("selector: {app: web}"), &["spec.ports: required value"]),
            (service("ports: [{port: 80}, {port: 80}]"), &[
                "spec.ports[0].name: required value",
                "spec.ports[1].name: required value",
                "spec.ports[1]: duplicate value: \"80/TCP\"",
            ]),
            (service("ports: [{name: Web, port: 0, protocol: SCTP}, {name: b, port: 81, protocol: tcp, targetPort: Http}, {name: b, port: 82, targetPort: 70000, appProtocol: 'a b'}]"), &[
                &format!("spec.ports[0].name: invalid value: \"Web\": {label}"),
                "spec.ports[0].port: invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[0].protocol: SCTP is not supported by outpost: use TCP or UDP",
                "spec.ports[0].targetPort: invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[1].protocol: unsupported value: \"tcp\": supported values: \"TCP\", \"UDP\"",
                "spec.ports[1].targetPort: invalid value: \"Http\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "spec.ports[2].name: duplicate value: \"b\"",
                "spec.ports[2].targetPort: invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.ports[2].appProtocol: invalid value: \"a b\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ]),
            (service("type: Cluster, ports: [{port: 80}]"), &[
                "spec.type: unsupported value: \"Cluster\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            ]),
            (service("ports: [{port: 80, nodePort: 30080}]"), &[
                "spec.ports[0].nodePort: forbidden: may not be used when `type` is 'ClusterIP'",
            ]),
            (service("type: NodePort, ports: [{name: a, port: 80, nodePort: 80}, {name: b, port: 81, nodePort: 30080}, {name: c, port: 82, nodePort: 30080}, {name: d, port: 83, protocol: UDP, nodePort: 30080}]"), &[
                "spec.ports[0].nodePort: invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
                "spec.ports[2].nodePort: duplicate value: 30080",
            ]),
            (service("type: NodePort, clusterIP: None, ports: [{port: 80}]"), &[
                "spec.clusterIP: invalid value: \"None\": may not be set to 'None' for NodePort services",
            ]),
            (service("clusterIP: 10.43.0.300, ports: [{port: 80}]"), &[
                "spec.clusterIP: invalid value: \"10.43.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ]),
            (service("clusterIP: 'fd00::1', ports: [{port: 80}]"), &[
                "spec.clusterIP: \"fd00::1\": IPv6 is not supported by outpost: give an IPv4 address, or leave clusterIP empty to have one allocated",
            ]),
            (service("clusterIP: 10.43.0.5, clusterIPs: [10.43.0.6], ports: [{port: 80}]"), &[
                "spec.clusterIPs: invalid value: \"10.43.0.6\": first value must match `clusterIP`",
            ]),
            (service("clusterIPs: [10.43.0.5, 'fd00::5'], ports: [{port: 80}]"), &[
                "spec.clusterIPs: invalid value: \"10.43.0.5,fd00::5\": must be empty when `clusterIP` is not specified",
                "spec.clusterIPs: dual-stack services are not supported by outpost: give one IPv4 address",
            ]),
            (service("ipFamilies: [IPv6, IPv4, IPv4], ipFamilyPolicy: RequireDualStack, ports: [{port: 80}]"), &[
                "spec.ipFamilies[0]: IPv6 is not supported by outpost: services are IPv4 only",
                "spec.ipFamilies[2]: duplicate value: \"IPv4\"",
                "spec.ipFamilyPolicy: invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services",
            ]),
            (service("type: ExternalName"), &["spec.externalName: required value"]),
            (service("type: ExternalName, externalName: Bad_Name., clusterIP: 10.43.0.5, ipFamilyPolicy: SingleStack, externalTrafficPolicy: Local"), &[
                "spec.clusterIPs: forbidden: may not be set for ExternalName services",
                "spec.ipFamilyPolicy: forbidden: may not be set for ExternalName services",
                &format!("spec.externalName: invalid value: \"Bad_Name\": {subdomain}"),
                "spec.externalTrafficPolicy: invalid value: \"Local\": may only be set for externally-accessible services",
            ]),
            (service("ports: [{port: 80}], sessionAffinity: Sticky"), &[
                "spec.sessionAffinity: unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
            ]),
            (service("ports: [{port: 80}], sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}"), &[
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds: invalid value: 86401: must be greater than 0 and less than 86400",
            ]),
            (service("ports: [{port: 80}], selector: {app: -web, 'a b': x}"), &[
                "spec.selector: invalid value: \"a b\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                "spec.selector: invalid value: \"-web\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ]),
            (service("type: LoadBalancer, ports: [{port: 80}], externalIPs: [192.168.1.50], loadBalancerSourceRanges: [10.0.0.0/8], loadBalancerIP: 192.168.1.50"), &[
                "spec.externalIPs: externalIPs are not supported by outpost: use a NodePort or LoadBalancer service, reachable on the node's addresses",
                "spec.loadBalancerSourceRanges: loadBalancerSourceRanges is not supported by outpost: a LoadBalancer service is reachable from anywhere on the node's addresses",
                "spec.loadBalancerIP: loadBalancerIP is not supported by outpost: a LoadBalancer service gets the node's addresses",
            ]),
            (service("ports: [{port: 80}], externalTrafficPolicy: Local, internalTrafficPolicy: Node, healthCheckNodePort: 30500"), &[
                "spec.externalTrafficPolicy: invalid value: \"Local\": may only be set for externally-accessible services",
                "spec.healthCheckNodePort: invalid value: 30500: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
                "spec.internalTrafficPolicy: unsupported value: \"Node\": supported values: \"Cluster\", \"Local\"",
            ]),
        ],
    );
    // Service names are DNS-1035 labels: they become DNS names and variables.
    check(
        "apiVersion: v1\nkind: Service\nmetadata: {name: 1web, labels: {'-x': y}}\nspec: {ports: [{port: 80}]}\n",
        "
m.yaml (document 1): Service default/1web: metadata.name: invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')
m.yaml (document 1): Service default/1web: metadata.labels: invalid value: \"-x\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
    );
    check(
        "apiVersion: v1\nkind: Service\nmetadata: {}\nspec: {clusterIP: None}\n",
        "m.yaml (document 1): metadata.name: required value: name or generateName is required",
    );
}

#[test]
fn problems_in_several_files() {
    check_files(
        &[
            ("manifests/a.yaml", &format!("{}---\n{}", pod("containers: [{name: app, image: nginx}]"), pod("containers: [{name: app}]"))),
            ("manifests/b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n"),
            (
                "manifests/c.yaml",
                &format!(
                    "apiVersion: v1\nkind: List\nitems:\n- {{apiVersion: v1, kind: ConfigMap, metadata: {{name: ok}}}}\n- {{apiVersion: v1, kind: Pod, metadata: {{name: p, namespace: edge}}, spec: {{containers: [{{name: a, image: a, ports: [{{containerPort: 0}}]}}]}}}}\n---\n{}",
                    pod("containers: [{name: app, image: nginx}]")
                ),
            ),
            ("manifests/d.yaml", "kind: ConfigMap\n"),
        ],
        "
manifests/a.yaml (document 2): Pod default/web: duplicate object: already defined in manifests/a.yaml (document 1)
manifests/a.yaml (document 2): Pod default/web: spec.containers[0].image: required value
manifests/c.yaml (document 1): ConfigMap default/ok: duplicate object: already defined in manifests/b.yaml (document 1) (in List items[0])
manifests/c.yaml (document 1): Pod edge/p: spec.containers[0].ports[0].containerPort: invalid value: 0: must be between 1 and 65535, inclusive (in List items[1])
manifests/c.yaml (document 2): Pod default/web: duplicate object: already defined in manifests/a.yaml (document 1)
manifests/d.yaml (document 1): apiVersion: required value",
    );
}

#[test]
fn problem_display() {
    let problem = Problem {
        file: "manifests/web.yaml".to_owned(),
        document: 2,
        object: Some(ObjectKey::namespaced("Pod", "default", "web")),
        field: Some("spec.containers[0].image".to_owned()),
        message: "required value".to_owned(),
    };
    assert_eq!(problem.to_string(), "manifests/web.yaml (document 2): Pod default/web: spec.containers[0].image: required value");
    let file = Problem {
        file: "x.yaml".to_owned(),
        document: 0,
        object: None,
        field: None,
        message: "unreadable".to_owned(),
    };
    assert_eq!(
        BundleError {
            problems: vec![problem.clone(), file]
        }
        .to_string(),
        format!("{problem}\nx.yaml: unreadable")
    );
}

#[test]
fn object_accessors() {
    let objects = parse_bundle(&[BundleFile {
        name: "m.yaml".to_owned(),
        content: OTHERS.as_bytes().to_vec(),
    }])
    .map_err(|e| e.to_string())
    .expect("valid bundle");
    let kinds: Vec<&str> = objects.iter().map(|l| l.object.kind()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ConfigMap",
            "Secret",
            "Secret",
            "LimitRange",
            "ResourceQuota"
        ]
    );
    for l in &objects {
        let json = l.object.to_json();
        assert_eq!(json["apiVersion"], "v1");
        assert_eq!(json["kind"], l.object.kind());
    }
    assert_eq!(
        objects[2].object.to_json()["data"],
        json!({"password": "aHVudGVyMg=="})
    );
}
