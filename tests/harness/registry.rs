//! [`Registry`]: a real `docker-registry` (distribution 2.8) inside a test host.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http::try_http_request;
use super::{read_lossy, require_root_and_tools, TestHost};

const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";
/// How long a fresh registry may take to answer `GET /v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A `docker-registry serve` on `127.0.0.1:<port>` inside a [`TestHost`], with its own
/// storage dir and config; killed in `Drop`. Several can run on one host (a mirror and an
/// upstream), each on its own port.
pub struct Registry {
    host: TestHost,
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
    credentials: Option<(String, String)>,
    /// The test CA's certificate (PEM) when serving HTTPS.
    tls_cert: Option<PathBuf>,
}

impl Registry {
    /// Starts an open registry (no auth) and waits until `GET /v2/` answers.
    pub fn start(host: &TestHost) -> Registry {
        Registry::launch(host, None, false)
    }

    /// Starts an open registry serving HTTPS for `127.0.0.1` with a certificate from a
    /// fresh test CA (see [`Registry::tls_cert`]).
    pub fn start_tls(host: &TestHost) -> Registry {
        Registry::launch(host, None, true)
    }

    /// Starts a registry requiring HTTP basic auth (`htpasswd`, bcrypt) for `user`/`pass`.
    pub fn start_with_htpasswd(host: &TestHost, user: &str, pass: &str) -> Registry {
        Registry::launch(host, Some((user.to_owned(), pass.to_owned())), false)
    }

    fn launch(host: &TestHost, credentials: Option<(String, String)>, tls: bool) -> Registry {
        require_root_and_tools(&[DOCKER_REGISTRY, "nsenter"]);
        let dir = tempfile::Builder::new()
            .prefix("outpost-registry-")
            .tempdir()
            .expect("create registry temp dir");
        let port = host.free_port();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).expect("create registry storage dir");
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: {secret}\n",
            storage = storage.display(),
            secret = random_hex(16),
        );
        if let Some((user, pass)) = &credentials {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{}\n", bcrypt(pass)))
                .expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let tls_cert = tls.then(|| {
            // The tls block goes under `http:`, which must still be the last section.
            assert!(
                credentials.is_none(),
                "a registry is either TLS or htpasswd here, not both"
            );
            require_root_and_tools(&["openssl"]);
            // A CA and a server certificate it signs (webpki refuses a CA as the server's own).
            let d = dir.path();
            let (ca, ca_key) = (d.join("ca.pem"), d.join("ca-key.pem"));
            let (cert, key, csr, ext) = (
                d.join("cert.pem"),
                d.join("key.pem"),
                d.join("cert.csr"),
                d.join("ext.cnf"),
            );
            std::fs::write(
                &ext,
                "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
            )
            .expect("write ext");
            let openssl = |args: &[&std::ffi::OsStr]| {
                let out = Command::new("openssl")
                    .args(args)
                    .output()
                    .expect("run openssl");
                assert!(
                    out.status.success(),
                    "openssl {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            let os = |s: &str| std::ffi::OsString::from(s);
            openssl(&[
                &os("req"),
                &os("-x509"),
                &os("-newkey"),
                &os("rsa:2048"),
                &os("-nodes"),
                &os("-days"),
                &os("1"),
                &os("-subj"),
                &os("/CN=outpost test CA"),
                &os("-keyout"),
                ca_key.as_os_str(),
                &os("-out"),
                ca.as_os_str(),
            ]);
            openssl(&[
                &os("req"),
                &os("-new"),
                &os("-newkey"),
                &os("rsa:2048"),
                &os("-nodes"),
                &os("-subj"),
                &os("/CN=127.0.0.1"),
                &os("-keyout"),
                key.as_os_str(),
                &os("-out"),
                csr.as_os_str(),
            ]);
            openssl(&[
                &os("x509"),
                &os("-req"),
                &os("-in"),
                csr.as_os_str(),
                &os("-CA"),
                ca.as_os_str(),
                &os("-CAkey"),
                ca_key.as_os_str(),
                &os("-CAcreateserial"),
                &os("-days"),
                &os("1"),
                &os("-extfile"),
                ext.as_os_str(),
                &os("-out"),
                cert.as_os_str(),
            ]);
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
            ca
        });
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path).expect("create registry log");
        let mut cmd = host.command(DOCKER_REGISTRY);
        cmd.arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup registry log"))
            .stderr(log);
        // Environment variables override the config file: none from the caller.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut registry = Registry {
            host: host.clone(),
            port,
            dir,
            child,
            credentials,
            tls_cert,
        };
        registry.wait_ready();
        registry
    }

    /// Polls `GET /v2/` from inside the host until it answers 200 or 401.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = self.addr();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "docker-registry exited ({status}) at start; log:\n{}",
                    self.log()
                );
            }
            // A TLS server answers a plain request with 400: it is up.
            let up = if self.tls_cert.is_some() { 400 } else { 200 };
            let answer = try_http_request(&self.host, "GET", &addr, "/v2/", &[]);
            if answer.is_ok_and(|r| r.status == up || r.status == 401) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "docker-registry on {addr} not ready within {READY_TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The CA certificate (PEM) that signed the certificate of a registry started with
    /// [`Registry::start_tls`].
    pub fn tls_cert(&self) -> Option<&Path> {
        self.tls_cert.as_deref()
    }

    /// The port it listens on (127.0.0.1 inside its host).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, the registry host part of image references.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The test host it runs in.
    pub fn host(&self) -> &TestHost {
        &self.host
    }

    /// `(user, pass)` if started with htpasswd auth.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(user, pass)| (user.as_str(), pass.as_str()))
    }

    /// Its storage root (`docker/registry/v2/...` below it).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Path of a blob's data file in storage, for tests that corrupt or remove blobs.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        read_lossy(&self.dir.path().join("registry.log"))
    }

    /// The registry's temp dir (config, log, storage).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Hex of `n` random bytes from the kernel.
pub(crate) fn random_hex(n: usize) -> String {
    use std::io::Read;
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    hex::encode(bytes)
}

/// A bcrypt hash (`$2b$05$...`) of `pass` through libxcrypt, as htpasswd files hold.
fn bcrypt(pass: &str) -> String {
    use std::ffi::{c_char, c_int, c_ulong, c_void, CStr, CString};

    #[link(name = "crypt")]
    extern "C" {
        fn crypt_gensalt_rn(
            prefix: *const c_char,
            count: c_ulong,
            rbytes: *const c_char,
            nrbytes: c_int,
            output: *mut c_char,
            output_size: c_int,
        ) -> *mut c_char;
        fn crypt_ra(
            phrase: *const c_char,
            setting: *const c_char,
            data: *mut *mut c_void,
            size: *mut c_int,
        ) -> *mut c_char;
    }

    let prefix = CString::new("$2b$").expect("no NUL");
    let phrase = CString::new(pass).expect("password without NUL");
    let mut setting = [0 as c_char; 64];
    // SAFETY: prefix is a valid C string; a null rbytes asks libxcrypt for OS randomness;
    // output points to a buffer of the stated size that outlives the call.
    let salt = unsafe {
        crypt_gensalt_rn(
            prefix.as_ptr(),
            5,
            std::ptr::null(),
            0,
            setting.as_mut_ptr(),
            setting.len() as c_int,
        )
    };
    assert!(
        !salt.is_null(),
        "crypt_gensalt_rn failed to make a bcrypt salt"
    );
    let mut data: *mut c_void = std::ptr::null_mut();
    let mut size: c_int = 0;
    // SAFETY: phrase and setting are NUL-terminated; crypt_ra allocates `data` itself
    // (we free it below) and returns a pointer into it or null.
    let hash = unsafe { crypt_ra(phrase.as_ptr(), setting.as_ptr(), &mut data, &mut size) };
    let result = if hash.is_null() {
        None
    } else {
        // SAFETY: non-null results of crypt_ra are NUL-terminated strings inside `data`.
        Some(
            unsafe { CStr::from_ptr(hash) }
                .to_string_lossy()
                .into_owned(),
        )
    };
    // SAFETY: `data` was malloc'ed by crypt_ra (or is still null) and is not used again.
    unsafe { nix::libc::free(data) };
    let hash = result.expect("crypt_ra failed to hash the password");
    assert!(
        hash.starts_with("$2b$"),
        "libxcrypt made no bcrypt hash: {hash}"
    );
    hash
}
