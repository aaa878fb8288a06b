//! A fake authorization server on 127.0.0.1 for answers the sandbox never gives (a non-JSON
//! success, a 2 MiB body, a registration naming a foreign management URI): TLS with the
//! sandbox's PKI helpers (aws-lc-rs), client certificates requested, every request answered
//! from a canned table and counted. Network I/O on loopback only.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use hyper::{Request, Response, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use sandbox_as::{pki::ServerPki, tls::server_config};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A canned answer.
#[derive(Clone)]
pub struct Canned {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// A running fake AS; aborted on drop.
pub struct FakeAs {
    pub ca_pem: String,
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for FakeAs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAs {
    /// Serves `routes` (path → answer; anything else 404) on a free loopback port.
    pub async fn start(routes: HashMap<String, Canned>) -> anyhow::Result<Self> {
        let pki = ServerPki::generate()?;
        let acceptor = TlsAcceptor::from(server_config(&pki)?);
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let requests = Arc::new(AtomicUsize::new(0));
        let routes = Arc::new(routes);
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, routes, counter) =
                    (acceptor.clone(), routes.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let answer = routes.get(req.uri().path()).cloned();
                        async move { Ok::<_, Infallible>(respond(answer)) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(Self {
            ca_pem: pki.ca_pem,
            port,
            requests,
            task,
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn respond(answer: Option<Canned>) -> Response<Body> {
    let answer = answer.unwrap_or(Canned {
        status: 404,
        content_type: "application/json",
        body: br#"{"error":"not_found"}"#.to_vec(),
    });
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = hyper::StatusCode::from_u16(answer.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = hyper::header::HeaderValue::from_str(answer.content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
