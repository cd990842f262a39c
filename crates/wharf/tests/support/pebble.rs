//! Debian's `pebble` ACME test server, with `pebble-challtestsrv` as its DNS (every name is
//! 127.0.0.1), validating challenges against the gateway's own ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use wharf_testkit::{Trust, get_tls};

use super::{free_port, require_tool};

pub struct Pebble {
    _dns: Child,
    _pebble: Child,
    /// The ACME directory URL.
    pub directory: String,
    /// PEM file of the CA behind Pebble's own HTTPS (trust it for the directory).
    pub directory_root: PathBuf,
    ca_pem: String,
    mgmt: SocketAddr,
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("process starts")
}

/// Waits until something accepts connections on `addr` (the server's readiness).
async fn listening(addr: SocketAddr) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {addr} after 10 s");
}

impl Pebble {
    /// Starts Pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `https_port`, issuing
    /// certificates that live `validity_secs`.
    pub async fn start(dir: &Path, http_port: u16, https_port: u16, validity_secs: u64) -> Pebble {
        require_tool("pebble", "pebble");
        require_tool("pebble-challtestsrv", "pebble");
        // A CA for Pebble's own HTTPS (the directory) and a leaf for localhost / 127.0.0.1.
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
        let leaf =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("pebble.pem"), leaf_cert.pem()).unwrap();
        std::fs::write(dir.join("pebble.key"), leaf_key.serialize_pem()).unwrap();
        let directory_root = dir.join("pebble-ca.pem");
        std::fs::write(&directory_root, ca_cert.pem()).unwrap();

        let (acme_port, mgmt_port, dns_port) = (free_port(), free_port(), free_port());
        let dns = spawn(Command::new("pebble-challtestsrv").args([
            "-dns01",
            &format!("127.0.0.1:{dns_port}"),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &format!("127.0.0.1:{}", free_port()),
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
        ]));
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
            "certificate": dir.join("pebble.pem"),
            "privateKey": dir.join("pebble.key"),
            "httpPort": http_port,
            "tlsPort": https_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity_secs,
        }});
        std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
        let pebble = spawn(
            Command::new("pebble")
                .arg("-config")
                .arg(dir.join("pebble.json"))
                .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0"),
        );
        let mgmt = SocketAddr::from(([127, 0, 0, 1], mgmt_port));
        listening(SocketAddr::from(([127, 0, 0, 1], acme_port))).await;
        listening(mgmt).await;
        Pebble {
            _dns: dns,
            _pebble: pebble,
            directory: format!("https://127.0.0.1:{acme_port}/dir"),
            directory_root,
            ca_pem: ca_cert.pem(),
            mgmt,
        }
    }

    /// This run's root, which issued certificates chain to (from the management interface).
    pub async fn root(&self) -> Trust {
        let r = get_tls(
            self.mgmt,
            "localhost",
            "/roots/0",
            &["http/1.1"],
            &Trust::Roots(self.ca_pem.clone().into_bytes()),
        )
        .await
        .unwrap();
        assert_eq!(r.reply.status, 200);
        Trust::Roots(r.reply.body.to_vec())
    }
}
