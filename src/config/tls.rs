//! `--ssl-certfile` and `--ssl-keyfile`: the certificate chain and private key, read and
//! checked at start-up into a rustls server config.
//!
//! Everything that can be wrong with the two files is found here, before a server is started
//! or a port is bound: a missing or unreadable file, a file without the PEM section it should
//! hold, a key that rustls cannot use, a key that does not belong to the certificate. Each is
//! one line naming the flag and the file, as uvicorn's errors do not.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::ConfigError;

/// HTTPS settings: the files named on the command line and the server config built from them.
#[derive(Clone)]
pub struct TlsSettings {
    pub certfile: PathBuf,
    pub keyfile: PathBuf,
    /// The chain and its (matching) key, offering HTTP/1.1 through ALPN.
    pub server_config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("certfile", &self.certfile)
            .field("keyfile", &self.keyfile)
            .finish_non_exhaustive()
    }
}

const CERT_FLAG: &str = "--ssl-certfile";
const KEY_FLAG: &str = "--ssl-keyfile";

/// The TLS settings of a run: none without either flag, an error with only one of them.
pub fn from_flags(
    certfile: Option<&Path>,
    keyfile: Option<&Path>,
) -> Result<Option<TlsSettings>, ConfigError> {
    match (certfile, keyfile) {
        (None, None) => Ok(None),
        (Some(cert), None) => Err(flag(
            KEY_FLAG,
            format!(
                "is needed too: --ssl-certfile {} was given without the private key's file",
                cert.display()
            ),
        )),
        (None, Some(key)) => Err(flag(
            CERT_FLAG,
            format!(
                "is needed too: --ssl-keyfile {} was given without the certificate's file",
                key.display()
            ),
        )),
        (Some(cert), Some(key)) => load(cert, key).map(Some),
    }
}

/// Reads a PEM certificate chain and a PEM private key (PKCS#8 `PRIVATE KEY`, PKCS#1
/// `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`; RSA, ECDSA or Ed25519) and checks that the key
/// is the certificate's.
pub fn load(certfile: &Path, keyfile: &Path) -> Result<TlsSettings, ConfigError> {
    let cert_pem = read(CERT_FLAG, certfile)?;
    let key_pem = read(KEY_FLAG, keyfile)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| at(CERT_FLAG, certfile, format!("not a valid PEM file: {e}")))?;
    if chain.is_empty() {
        return Err(at(
            CERT_FLAG,
            certfile,
            "no PEM certificate in it (expected a -----BEGIN CERTIFICATE----- section)".into(),
        ));
    }
    let key = private_key(keyfile, &key_pem)?;
    // The provider is named rather than taken from the process default, so the server config
    // never depends on which rustls backends other crates happen to enable.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| at(CERT_FLAG, certfile, format!("cannot set up TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| explain(certfile, keyfile, e))?;
    // axum serves HTTP/1.1 only here; saying so spares clients that offer h2 a failed attempt.
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsSettings {
        certfile: certfile.to_path_buf(),
        keyfile: keyfile.to_path_buf(),
        server_config: Arc::new(server_config),
    })
}

fn private_key(keyfile: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, ConfigError> {
    use rustls::pki_types::pem::Error as PemError;
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => Ok(key),
        Err(PemError::NoItemsFound) => {
            // Encrypted keys are a common surprise: say what to do rather than "no key".
            let message = if contains(pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----") {
                "the private key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)"
            } else {
                "no PEM private key in it (expected a -----BEGIN PRIVATE KEY-----, \
                 RSA PRIVATE KEY or EC PRIVATE KEY section)"
            };
            Err(at(KEY_FLAG, keyfile, message.into()))
        }
        Err(e) => Err(at(KEY_FLAG, keyfile, format!("not a valid PEM file: {e}"))),
    }
}

/// Names the file at fault for an error rustls gives while pairing the chain with the key.
fn explain(certfile: &Path, keyfile: &Path, e: rustls::Error) -> ConfigError {
    use rustls::{Error, InconsistentKeys};
    match e {
        Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => at(
            KEY_FLAG,
            keyfile,
            format!(
                "this private key does not belong to the certificate in {}",
                certfile.display()
            ),
        ),
        Error::InvalidCertificate(_) | Error::NoCertificatesPresented => at(
            CERT_FLAG,
            certfile,
            format!("the certificate cannot be used: {e}"),
        ),
        e => at(
            KEY_FLAG,
            keyfile,
            format!("the private key cannot be used: {e}"),
        ),
    }
}

fn read(name: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| at(name, path, format!("cannot read: {e}")))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn at(name: &str, path: &Path, message: String) -> ConfigError {
    flag(name, format!("{}: {message}", path.display()))
}

fn flag(name: &str, message: String) -> ConfigError {
    ConfigError::Flag {
        flag: name.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    struct Files {
        dir: PathBuf,
    }

    impl Files {
        fn new(name: &str) -> std::io::Result<Files> {
            let dir =
                std::env::temp_dir().join(format!("mcpo-tls-unit-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            Ok(Files { dir })
        }

        fn write(&self, name: &str, text: &str) -> std::io::Result<PathBuf> {
            let path = self.dir.join(name);
            std::fs::write(&path, text)?;
            Ok(path)
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn self_signed(key: rcgen::KeyPair) -> Result<(String, String), rcgen::Error> {
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
        let cert = params.self_signed(&key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    #[test]
    fn loads_ecdsa_ed25519_and_rsa_pkcs8_keys() -> TestResult {
        let files = Files::new("kinds")?;
        for (name, alg) in [
            ("p256", &rcgen::PKCS_ECDSA_P256_SHA256),
            ("p384", &rcgen::PKCS_ECDSA_P384_SHA384),
            ("ed25519", &rcgen::PKCS_ED25519),
            ("rsa", &rcgen::PKCS_RSA_SHA256),
        ] {
            let (cert, key) = self_signed(rcgen::KeyPair::generate_for(alg)?)?;
            let c = files.write(&format!("{name}.crt"), &cert)?;
            let k = files.write(&format!("{name}.key"), &key)?;
            let tls = load(&c, &k).map_err(|e| format!("{name}: {e}"))?;
            assert_eq!(tls.server_config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        }
        Ok(())
    }

    #[test]
    fn each_mistake_names_its_flag_and_file() -> TestResult {
        let files = Files::new("mistakes")?;
        let (cert, key) = self_signed(rcgen::KeyPair::generate()?)?;
        let (_, other_key) = self_signed(rcgen::KeyPair::generate()?)?;
        let c = files.write("c.pem", &cert)?;
        let k = files.write("k.pem", &key)?;
        let other = files.write("other.pem", &other_key)?;
        let text = files.write("notes.txt", "just some text\n")?;
        let encrypted = files.write(
            "enc.pem",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )?;
        let missing = files.dir.join("missing.pem");
        // certfile, keyfile, the flag and the file the error names, what it says
        type Case<'a> = (
            Option<&'a Path>,
            Option<&'a Path>,
            &'a str,
            &'a Path,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (Some(&c), Some(&missing), KEY_FLAG, &missing, "cannot read"),
            (Some(&missing), Some(&k), CERT_FLAG, &missing, "cannot read"),
            (
                Some(&text),
                Some(&k),
                CERT_FLAG,
                &text,
                "no PEM certificate",
            ),
            (Some(&c), Some(&text), KEY_FLAG, &text, "no PEM private key"),
            (Some(&c), Some(&c), KEY_FLAG, &c, "no PEM private key"),
            (
                Some(&c),
                Some(&encrypted),
                KEY_FLAG,
                &encrypted,
                "encrypted",
            ),
            (Some(&c), Some(&other), KEY_FLAG, &other, "does not belong"),
            (Some(&c), None, KEY_FLAG, &c, "is needed too"),
            (None, Some(&k), CERT_FLAG, &k, "is needed too"),
        ];
        for (cert, key, name, file, what) in cases {
            let err = match from_flags(cert, key) {
                Ok(_) => return Err(format!("{cert:?} {key:?} was accepted").into()),
                Err(e) => e.to_string(),
            };
            assert!(
                err.starts_with(name)
                    && err.contains(&file.display().to_string())
                    && err.contains(what)
                    && !err.contains('\n'),
                "{err}"
            );
        }
        assert!(from_flags(None, None)?.is_none());
        Ok(())
    }
}
