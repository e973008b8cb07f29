//! The server speaks TLS (HTTP/2 via ALPN) with a PEM key pair, and the
//! remote backend connects to it.

use std::sync::Arc;

use kv_core::{Kv, KvValue, MemoryBackend, key};

#[tokio::test]
async fn remote_backend_over_tls() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();

    let config = kv_remote::ServerConfig::new(["tls-token-1234567"])
        .with_tls_pem(&cert_path, &key_path)
        .unwrap();
    let (listener, addr) = kv_remote::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    tokio::spawn(kv_remote::serve(
        listener,
        Arc::new(MemoryBackend::new()),
        config,
        std::future::pending(),
    ));

    let url = format!("https://localhost:{}", addr.port());
    let remote = kv_remote::RemoteConfig::new(url.clone(), "tls-token-1234567")
        .with_root_certificate_pem(cert.cert.pem())
        .connect()
        .await
        .unwrap();
    let kv = Kv::new(remote);
    let stamp = kv.set(key!["secure"], KvValue::U64(1)).await.unwrap();
    let entry = kv.get(key!["secure"]).await.unwrap().unwrap();
    assert_eq!(entry.versionstamp, stamp);

    // Without trusting the certificate, connecting fails at once (see
    // `misconfigured`).
    let untrusted = kv_remote::RemoteConfig::new(url, "tls-token-1234567")
        .connect()
        .await;
    assert!(
        matches!(untrusted, Err(kv_core::Error::InvalidArgument(_))),
        "{untrusted:?}"
    );
}

/// A wrong or missing TLS file gives an error that names the file and what
/// it lacks (the bare errors were "No such file or directory", "no items
/// found", or a handshake message at startup).
#[test]
fn tls_file_errors_name_the_file() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    let missing = dir.path().join("missing.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let error =
        |cert: &std::path::Path, key: &std::path::Path| match kv_remote::ServerConfig::new([
            "tls-token-1234567",
        ])
        .with_tls_pem(cert, key)
        {
            Ok(_) => panic!("{} and {} were accepted", cert.display(), key.display()),
            Err(e) => e.to_string(),
        };
    let cases = [
        (
            &cert_path,
            &missing,
            "missing.pem: cannot read a private key",
        ),
        (&missing, &key_path, "missing.pem: cannot read certificates"),
        (&key_path, &key_path, "key.pem: no certificate"),
        (&cert_path, &cert_path, "cert.pem: no private key"),
    ];
    for (cert, key, want) in cases {
        let got = error(cert, key);
        assert!(got.contains(want), "{got:?} should say {want:?}");
    }
}
