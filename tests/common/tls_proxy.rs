//! A TLS-terminating proxy in front of a real collector, for the shims' `https://` tests: how a
//! remote collector is deployed (the collector serves plain HTTP; a proxy or load balancer does
//! TLS). A throw-away CA made with `rcgen` issues the proxy's certificate for `localhost` and
//! `127.0.0.1`; the CA's PEM is written to a file the shims are pointed at
//! (`AGENT_CONSOLE_CA_FILE`), next to the PEM of a second, unrelated CA (the "wrong CA").
//! Included with `#[path]` by the tests that need it (`hook_shim.rs`, `openclaw_shim.rs`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

pub struct TlsProxy {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// PEM of the CA that issued the proxy's certificate.
    pub ca_file: PathBuf,
    /// PEM of another CA, which did not.
    pub wrong_ca_file: PathBuf,
    /// Connections whose TLS handshake completed (each then piped to the collector).
    pub proxied: Arc<AtomicUsize>,
    /// Why handshakes failed, as the server saw it.
    pub refused: Arc<Mutex<Vec<String>>>,
    /// Sent after each entry pushed to `refused` (the server side learns of a refusal after the
    /// client has already exited: tests await it instead of reading `refused` at once).
    refusal: tokio::sync::watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().expect("ca key");
    let cert = params.self_signed(&key).expect("self-signed ca");
    (cert.pem(), Issuer::new(params, key))
}

impl TlsProxy {
    /// Listen on 127.0.0.1:0 and pipe every TLS connection to `backend` (`http://host:port`).
    pub async fn start(backend: &str) -> TlsProxy {
        let backend = backend.strip_prefix("http://").expect("an http:// backend").to_string();
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca_pem, issuer) = ca("agent-console test CA");
        let (wrong_pem, _) = ca("some other CA");
        let ca_file = dir.path().join("ca.pem");
        let wrong_ca_file = dir.path().join("wrong-ca.pem");
        std::fs::write(&ca_file, ca_pem).expect("write ca");
        std::fs::write(&wrong_ca_file, wrong_pem).expect("write wrong ca");

        let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("leaf");
        leaf.distinguished_name.push(DnType::CommonName, "localhost");
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("sign leaf");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![leaf_cert.der().clone()], key)
            .expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        let proxied = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let (p, r) = (proxied.clone(), refused.clone());
        let (refusal_tx, refusal) = tokio::sync::watch::channel(0usize);
        let refusal_tx = Arc::new(refusal_tx);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, backend, p, r) = (acceptor.clone(), backend.clone(), p.clone(), r.clone());
                let refusal_tx = refusal_tx.clone();
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(s) => s,
                        Err(e) => {
                            r.lock().expect("refused").push(e.to_string());
                            refusal_tx.send_modify(|n| *n += 1);
                            return;
                        }
                    };
                    p.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut up) = TcpStream::connect(&backend).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
        TlsProxy { url, ca_file, wrong_ca_file, proxied, refused, refusal, task, _dir: dir }
    }

    /// The handshake failures seen so far, once there is at least one (waits for the server side
    /// to record the refusal; gives up after 30 s with what it has, so a test fails, not hangs).
    #[allow(dead_code)]
    pub async fn refusals(&self) -> Vec<String> {
        let mut rx = self.refusal.clone();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), rx.wait_for(|n| *n > 0)).await;
        self.refused.lock().expect("refused").clone()
    }

    pub fn ca(&self) -> String {
        self.ca_file.display().to_string()
    }

    pub fn wrong_ca(&self) -> String {
        self.wrong_ca_file.display().to_string()
    }
}
