//! HTTPS: with `--ssl-certfile` and `--ssl-keyfile` the proxy serves the same API over TLS
//! (tools, docs, diagnostics with the client's address, the drain on SIGTERM), and every
//! mistake with the two files is one line naming the flag and the file, exit 2, before any
//! server is started.
//!
//! Certificates are made at run time with rcgen. Key files come in the encodings people
//! have: PKCS#8 (`PRIVATE KEY`, what rcgen and `openssl genpkey` write), SEC1 (`EC PRIVATE
//! KEY`, `openssl ecparam -genkey`) and PKCS#1 (`RSA PRIVATE KEY`, `openssl genrsa` before
//! 3.0); the last two are cut out of rcgen's PKCS#8 here.

use crate::common;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Proc, eventually, mcpo_bin, signal, stdio_fake, tempdir::TempDir};
use serde_json::{Value, json};

/// How the private key is written to its file.
#[derive(Debug, Clone, Copy)]
enum KeyFile {
    Pkcs8,
    /// `EC PRIVATE KEY`, with the curve named, as OpenSSL writes it.
    Sec1,
    /// `RSA PRIVATE KEY`.
    Pkcs1,
}

/// A self-signed certificate for 127.0.0.1 and localhost, and its key, in files.
struct Pki {
    dir: TempDir,
    cert: PathBuf,
    key: PathBuf,
    cert_pem: String,
}

impl Pki {
    fn new(alg: &'static rcgen::SignatureAlgorithm, encoding: KeyFile) -> Pki {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        let cert_pem = params.self_signed(&key).unwrap().pem();
        let pkcs8 = key.serialize_der();
        let key_pem = match encoding {
            KeyFile::Pkcs8 => key.serialize_pem(),
            KeyFile::Sec1 => pem("EC PRIVATE KEY", &sec1_with_curve(&pkcs8_inner(&pkcs8))),
            KeyFile::Pkcs1 => pem("RSA PRIVATE KEY", &pkcs8_inner(&pkcs8)),
        };
        let dir = TempDir::new();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, &cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        Pki {
            dir,
            cert,
            key,
            cert_pem,
        }
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.cert_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }
}

/// One DER element: its tag, its contents, and what follows it.
fn der(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let (tag, first) = (input[0], input[1] as usize);
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        let len = input[2..2 + n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + n)
    };
    (tag, &input[header..header + len], &input[header + len..])
}

fn der_encode(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

/// The algorithm-specific key inside a PKCS#8 `PrivateKeyInfo` (its `privateKey` octets).
fn pkcs8_inner(pkcs8: &[u8]) -> Vec<u8> {
    let (_, info, _) = der(pkcs8);
    let (_, _version, rest) = der(info);
    let (_, _algorithm, rest) = der(rest);
    let (tag, key, _) = der(rest);
    assert_eq!(tag, 0x04, "privateKey is an OCTET STRING");
    key.to_vec()
}

/// A SEC1 `ECPrivateKey` with its `parameters` naming P-256, which a PKCS#8 wrapper leaves
/// out (the curve is in the wrapper) and OpenSSL's own `EC PRIVATE KEY` files carry.
fn sec1_with_curve(sec1: &[u8]) -> Vec<u8> {
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let (_, fields, _) = der(sec1);
    let (_, version, rest) = der(fields);
    let (_, private, rest) = der(rest);
    let mut body = der_encode(0x02, version);
    body.extend(der_encode(0x04, private));
    body.extend(der_encode(0xa0, P256));
    let mut rest = rest;
    while !rest.is_empty() {
        let (tag, contents, next) = der(rest);
        if tag != 0xa0 {
            body.extend(der_encode(tag, contents));
        }
        rest = next;
    }
    der_encode(0x30, &body)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The proxy under test, started with `extra` flags (the TLS ones) over one stdio fake.
struct Https {
    proc: Proc,
    base: String,
    client: reqwest::Client,
    _config: TempDir,
}

impl Https {
    fn start(pki: &Pki, env: &[(&str, &str)]) -> Https {
        let dir = TempDir::new();
        let config = dir.path().join("config.json");
        let text = json!({"mcpServers": {"fake": stdio_fake("tls")}}).to_string();
        std::fs::write(&config, text).unwrap();
        let mut cmd = Command::new(mcpo_bin());
        cmd.args(["--host", "127.0.0.1", "--port", "0", "--config"])
            .arg(&config)
            .arg("--ssl-certfile")
            .arg(&pki.cert)
            .arg("--ssl-keyfile")
            .arg(&pki.key)
            .env("LOG_LEVEL", "WARNING")
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let line = common::wait_for_line(&mut child, "mcpo serving on", Duration::from_secs(60));
        assert!(
            line.starts_with("mcpo serving on https://127.0.0.1:")
                && line.contains("docs: https://"),
            "{line}"
        );
        Https {
            proc: Proc { child },
            base: common::url_in(&line),
            client: pki.client(),
            _config: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str, body: Value) -> (u16, String) {
        let r = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn ready(&self) {
        eventually("the fake's tools", Duration::from_secs(30), async || {
            (self.get("/fake/openapi.json").await.0 == 200).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn https_serves_tools_docs_and_diagnostics() {
    let pki = Pki::new(&rcgen::PKCS_ECDSA_P256_SHA256, KeyFile::Pkcs8);
    let proxy = Https::start(&pki, &[("MCPO_TRUST_LOOPBACK", "true")]);
    proxy.ready().await;

    let (status, body) = proxy
        .post("/fake/echo", json!({"message": "over tls"}))
        .await;
    assert_eq!((status, body.as_str()), (200, "\"over tls\""));

    let (status, body) = proxy.get("/docs").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("<html") || body.contains("<!DOCTYPE"),
        "{body}"
    );
    let (status, body) = proxy.get("/fake/docs").await;
    assert_eq!(status, 200, "{body}");

    // Process details are shown to local clients only when loopback is trusted: a PID here
    // means the handler saw the client's (loopback) address through the TLS listener.
    let (status, body) = proxy.get("/diagnostics").await;
    assert_eq!(status, 200);
    let diag: Value = serde_json::from_str(&body).unwrap();
    assert!(
        diag["servers"]["fake"]["pool"]["members"][0]["pid"].is_u64(),
        "{diag}"
    );

    // Plain HTTP to the HTTPS port gets no answer from the API.
    let plain = proxy.base.replacen("https://", "http://", 1);
    let r = reqwest::Client::new()
        .get(format!("{plain}/openapi.json"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(r.is_err() || !r.unwrap().status().is_success());
}

#[tokio::test]
async fn sec1_and_rsa_pkcs1_keys_serve_too() {
    for (alg, encoding) in [
        (&rcgen::PKCS_ECDSA_P256_SHA256, KeyFile::Sec1),
        (&rcgen::PKCS_RSA_SHA256, KeyFile::Pkcs1),
    ] {
        let pki = Pki::new(alg, encoding);
        let key = std::fs::read_to_string(&pki.key).unwrap();
        let label = match encoding {
            KeyFile::Sec1 => "-----BEGIN EC PRIVATE KEY-----",
            _ => "-----BEGIN RSA PRIVATE KEY-----",
        };
        assert!(key.starts_with(label), "{key}");
        let proxy = Https::start(&pki, &[]);
        proxy.ready().await;
        let (status, body) = proxy.post("/fake/echo", json!({"message": "hi"})).await;
        assert_eq!(status, 200, "{encoding:?}: {body}");
    }
}

/// A client that connects and never starts its handshake holds up nobody: handshakes run
/// beside the accept loop.
#[tokio::test]
async fn a_silent_client_does_not_stall_others() {
    let pki = Pki::new(&rcgen::PKCS_ECDSA_P256_SHA256, KeyFile::Pkcs8);
    let proxy = Https::start(&pki, &[]);
    proxy.ready().await;
    let addr = proxy.base.trim_start_matches("https://").to_string();
    let mut silent: Vec<std::net::TcpStream> = (0..8)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    // One of them sends half a ClientHello and stops.
    silent[0]
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .unwrap();
    // A new client: the proxy's own keeps a connection from `ready` that would need no accept.
    let fresh = pki.client();
    let t = Instant::now();
    let r = fresh
        .get(proxy.url("/openapi.json"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    drop(silent);
}

/// The hostile-input issue, finding 3: 1,100 silent TCP connections filled every handshake
/// slot (1,024) and a normal client timed out behind them. Now a new connection takes the
/// oldest handshake's place when the slots are full, so a real client is served at once.
#[tokio::test]
async fn a_flood_of_silent_connections_does_not_keep_a_client_out() {
    // The flood needs more descriptors than the usual soft limit of 1,024.
    mcpo::net::raise_fd_limit();
    let pki = Pki::new(&rcgen::PKCS_ECDSA_P256_SHA256, KeyFile::Pkcs8);
    let proxy = Https::start(&pki, &[]);
    proxy.ready().await;
    let addr = proxy.base.trim_start_matches("https://").to_string();
    let mut silent = Vec::new();
    for _ in 0..1_100 {
        silent.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let t = Instant::now();
    let r = pki
        .client()
        .get(proxy.url("/openapi.json"))
        .timeout(Duration::from_secs(8))
        .send()
        .await
        .expect("a client behind 1,100 silent connections is served");
    assert_eq!(r.status().as_u16(), 200);
    eprintln!(
        "served after {:?} behind 1,100 silent connections",
        t.elapsed()
    );
    drop(silent);
}

/// The drain on SIGTERM works over TLS as over plain HTTP: the call in flight is answered,
/// then the proxy exits cleanly.
#[tokio::test]
async fn sigterm_lets_https_calls_in_flight_finish() {
    let pki = Pki::new(&rcgen::PKCS_ECDSA_P256_SHA256, KeyFile::Pkcs8);
    let mut proxy = Https::start(&pki, &[]);
    proxy.ready().await;
    let call = {
        let client = proxy.client.clone();
        let url = proxy.url("/fake/sleep");
        tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&json!({"ms": 1500}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    eventually(
        "the call is in flight",
        Duration::from_secs(10),
        async || {
            let (_, body) = proxy.get("/diagnostics").await;
            let diag: Value = serde_json::from_str(&body).ok()?;
            (diag["servers"]["fake"]["pool"]["members"][0]["in_flight"] == 1).then_some(())
        },
    )
    .await;
    signal(proxy.proc.child.id(), "TERM");
    let (status, body) = call.await.unwrap();
    assert_eq!(status, 200, "the call in flight was cut off: {body}");
    assert!(body.contains("slept 1500 ms"), "{body}");
    let exit = proxy.proc.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}

/// Runs `mcpo` with `args` over a stdio server that would never be started.
fn refused(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let out = Command::new(mcpo_bin())
        .args(["--port", "0"])
        .args(args)
        .args(["--", "/nonexistent/never-started"])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_tls_files_exit_2_with_one_line_naming_flag_and_file() {
    let pki = Pki::new(&rcgen::PKCS_ECDSA_P256_SHA256, KeyFile::Pkcs8);
    let other = Pki::new(&rcgen::PKCS_ECDSA_P256_SHA256, KeyFile::Pkcs8);
    let not_pem = pki.dir.path().join("cert.der");
    std::fs::write(&not_pem, b"\x30\x82\x01\x00 definitely not PEM").unwrap();
    let missing = pki.dir.path().join("no-such-key.pem");
    let (cert, key) = (pki.cert.as_os_str(), pki.key.as_os_str());
    let (c, k) = (
        std::ffi::OsStr::new("--ssl-certfile"),
        std::ffi::OsStr::new("--ssl-keyfile"),
    );
    let cases: Vec<(Vec<&std::ffi::OsStr>, &str, &PathBuf, &str)> = vec![
        (
            vec![c, cert, k, missing.as_os_str()],
            "--ssl-keyfile",
            &missing,
            "cannot read",
        ),
        (
            vec![c, cert, k, other.key.as_os_str()],
            "--ssl-keyfile",
            &other.key,
            "does not belong to the certificate",
        ),
        (
            vec![c, not_pem.as_os_str(), k, key],
            "--ssl-certfile",
            &not_pem,
            "no PEM certificate",
        ),
        (vec![c, cert], "--ssl-keyfile", &pki.cert, "is needed too"),
        (vec![k, key], "--ssl-certfile", &pki.key, "is needed too"),
        // The short forms mcpo has.
        (
            vec![
                std::ffi::OsStr::new("-t"),
                cert,
                std::ffi::OsStr::new("-K"),
                missing.as_os_str(),
            ],
            "--ssl-keyfile",
            &missing,
            "cannot read",
        ),
    ];
    for (args, flag, file, what) in cases {
        let (code, stderr) = refused(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        let line = lines[0];
        assert!(
            line.starts_with(&format!("mcpo: error: {flag}: "))
                && line.contains(&file.display().to_string())
                && line.contains(what),
            "{args:?}: {line}"
        );
    }
}
