//! The physical floors measured in the same run as the scale benchmark, on this machine, before
//! the control plane starts: RSA-2048 key generation with aws-lc-rs (the onboarding floor is
//! `N x 2 keygens / cores`), and the refresh path floor: parse the PKCS#8 signing key, one raw
//! RSA-PSS sign, and the client side of a full TLS 1.3 mTLS handshake in memory with an RSA-2048
//! client certificate (the handshake code is shared with `operator/benches`), plus the client
//! side of the one API write a refresh needs: a server-side-apply PATCH of a credentials Secret
//! over an established connection ([`measure_apply`], once the control plane runs).
//!
//! Every floor is **CPU time of the measuring thread** (`CLOCK_THREAD_CPUTIME_ID`), as the
//! operator's cost per refresh is CPU time (`/proc/<pid>/stat`): the same unit on both sides of
//! each ratio, and neither inflated when other processes take the cores.

use std::time::Duration;

use anyhow::Result;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PSS_SHA256, RsaKeyPair};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::Serialize;
use tpp_operator::identity::cert::{CertificateProfile, self_signed};
use tpp_operator::identity::{KeyAlgorithm, PrivateKey};

#[allow(dead_code)]
#[path = "../../../operator/benches/support/mtls.rs"]
mod mtls;

/// The floors of this run.
#[derive(Clone, Debug, Serialize)]
pub struct Floors {
    /// Cores the floor divides by (`available_parallelism`).
    pub cores: usize,
    /// RSA-2048 keys generated to time key generation.
    pub keygen_samples: u32,
    /// Mean RSA-2048 key generation, ms.
    pub keygen_rsa2048_ms: f64,
    /// Refresh paths timed.
    pub path_samples: u32,
    /// PKCS#8 parse + RSA-PSS sign, ms.
    pub parse_sign_ms: f64,
    /// Full mTLS handshake, client side, ms.
    pub handshake_ms: f64,
    /// Server-side-apply PATCHes of a credentials Secret timed ([`measure_apply`]).
    pub apply_samples: u32,
    /// One server-side-apply PATCH of a credentials Secret body over an established kube
    /// client connection, client side (serialise, send, receive, parse the answer), ms.
    pub apply_ms: f64,
    /// `parse_sign_ms + handshake_ms + apply_ms`: the CPU a refresh cannot do without.
    pub refresh_path_ms: f64,
}

/// CPU time used so far by the calling thread.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux provides.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

impl Floors {
    /// Onboarding floor for `n` clients: two RSA-2048 keys each, spread over every core.
    pub fn onboarding_s(&self, n: usize) -> f64 {
        n as f64 * 2.0 * self.keygen_rsa2048_ms / 1000.0 / self.cores.max(1) as f64
    }
}

/// Measures the floors: `keygens` key generations, `paths` refresh paths (after a warm-up).
pub fn measure(keygens: u32, paths: u32) -> Result<Floors> {
    let start = thread_cpu();
    for _ in 0..keygens {
        PrivateKey::generate(KeyAlgorithm::Rsa2048)?;
    }
    let keygen = thread_cpu().saturating_sub(start);

    let server = mtls::server();
    let transport = PrivateKey::generate(KeyAlgorithm::Rsa2048)?;
    let profile =
        CertificateProfile::new("C=GB,O=Example TPP,CN=floor", Duration::from_secs(86_400))?;
    let cert = self_signed(&transport, &profile, jiff::Timestamp::now())?;
    let chain = vec![CertificateDer::from_pem_slice(cert.pem.as_bytes())?];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        transport.expose_pkcs8_der().to_vec(),
    ));
    let client = mtls::client_config(&server.ca_pem, chain, key, false);
    let signing = PrivateKey::generate(KeyAlgorithm::Rsa2048)?;
    let pkcs8 = signing.expose_pkcs8_der().to_vec();
    let rng = SystemRandom::new();
    let message = vec![b'e'; 600];
    let mut out = [0u8; 256];
    let (mut sign, mut handshake) = (Duration::ZERO, Duration::ZERO);
    for i in 0..paths + paths / 10 {
        let t = thread_cpu();
        let pair = RsaKeyPair::from_pkcs8(&pkcs8).map_err(|e| anyhow::anyhow!("parse: {e}"))?;
        pair.sign(&RSA_PSS_SHA256, &rng, &message, &mut out)
            .map_err(|e| anyhow::anyhow!("sign: {e}"))?;
        let s = thread_cpu().saturating_sub(t);
        let (h, _) = mtls::handshake_timed(&client, &server.config, thread_cpu);
        if i >= paths / 10 {
            sign += s;
            handshake += h;
        }
    }
    let ms = |d: Duration, n: u32| d.as_secs_f64() * 1e3 / f64::from(n.max(1));
    let (parse_sign_ms, handshake_ms) = (ms(sign, paths), ms(handshake, paths));
    Ok(Floors {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        keygen_samples: keygens,
        keygen_rsa2048_ms: ms(keygen, keygens),
        path_samples: paths,
        parse_sign_ms,
        handshake_ms,
        apply_samples: 0,
        apply_ms: 0.0,
        refresh_path_ms: parse_sign_ms + handshake_ms,
    })
}

impl Floors {
    /// Adds the apply floor ([`measure_apply`]) to the refresh path.
    pub fn with_apply(mut self, samples: u32, apply_ms: f64) -> Self {
        self.apply_samples = samples;
        self.apply_ms = apply_ms;
        self.refresh_path_ms = self.parse_sign_ms + self.handshake_ms + apply_ms;
        self
    }
}

/// The client-side CPU of one server-side-apply PATCH of `body` (a Secret) over an established
/// connection, ms: on a thread of its own with a single-threaded runtime, so the kube client's
/// whole work (JSON out, TLS, HTTP/2, the answer parsed into a `Secret`) runs on the thread
/// whose CPU time is read. `make_client` builds the client inside that runtime; `samples`
/// PATCHes are timed after a tenth as many untimed ones (connection set up, caches warm).
pub fn measure_apply<F, Fut>(
    make_client: F,
    namespace: &str,
    body: k8s_openapi::api::core::v1::Secret,
    samples: u32,
) -> Result<f64>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<kube::Client>>,
{
    let namespace = namespace.to_owned();
    let worker = std::thread::spawn(move || -> Result<f64> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let client = make_client().await?;
            let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
                kube::Api::namespaced(client, &namespace);
            let name = body.metadata.name.clone().unwrap_or_default();
            let params = kube::api::PatchParams::apply("bench-floor").force();
            let mut timed = Duration::ZERO;
            for i in 0..samples + samples / 10 {
                let t = thread_cpu();
                api.patch(&name, &params, &kube::api::Patch::Apply(&body))
                    .await?;
                if i >= samples / 10 {
                    timed += thread_cpu().saturating_sub(t);
                }
            }
            Ok(timed.as_secs_f64() * 1e3 / f64::from(samples.max(1)))
        })
    });
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("the apply floor's thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_are_positive_and_the_onboarding_floor_scales_with_n() {
        let f = measure(1, 2).expect("floors");
        assert!(f.keygen_rsa2048_ms > 0.0 && f.handshake_ms > 0.0 && f.parse_sign_ms > 0.0);
        assert!((f.onboarding_s(200) - 2.0 * f.onboarding_s(100)).abs() < 1e-9);
    }
}
