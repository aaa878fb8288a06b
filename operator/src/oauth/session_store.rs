//! [`LatestTicket`]: the TLS session store of one AS client. It keeps, per server name (at most
//! [`SERVERS`] of them: an AS's endpoints live on one or two hosts), the key-exchange hint and
//! only the **newest** TLS 1.3 ticket (and TLS 1.2 session).
//!
//! Why not rustls's `ClientSessionMemoryCache`: it keeps up to eight TLS 1.3 tickets per server,
//! each with its own copy of the server's certificate chain, and a server sends new tickets
//! after every handshake. With one AS client per TppClient certificate that was ~13 KiB per
//! client at N = 1,000 (the heap profile in BENCHMARKS.md, "Memory"), for tickets that are
//! used one at a time, minutes apart: a refresh needs one ticket, and its handshake brings the
//! next. Keeping the newest is also the one most likely to be accepted (tickets expire).
//! Pure data behind a mutex; no I/O.

use std::sync::Mutex;

use rustls::NamedGroup;
use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls_pki_types::ServerName;

/// Server names remembered; the least recently stored goes first.
pub const SERVERS: usize = 4;

#[derive(Default)]
struct Slot {
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tls13: Option<Tls13ClientSessionValue>,
}

/// A session store that keeps one ticket per server name.
#[derive(Default)]
pub struct LatestTicket {
    slots: Mutex<Vec<(ServerName<'static>, Slot)>>,
}

impl std::fmt::Debug for LatestTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatestTicket").finish_non_exhaustive()
    }
}

impl LatestTicket {
    fn edit<T>(&self, name: ServerName<'static>, f: impl FnOnce(&mut Slot) -> T) -> T {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let at = match slots.iter().position(|(n, _)| *n == name) {
            Some(i) => i,
            None => {
                if slots.len() >= SERVERS {
                    slots.remove(0);
                }
                slots.push((name, Slot::default()));
                slots.len() - 1
            }
        };
        f(&mut slots[at].1)
    }

    fn read<T>(&self, name: &ServerName<'_>, f: impl FnOnce(&mut Slot) -> Option<T>) -> Option<T> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter_mut()
            .find(|(n, _)| n == name)
            .and_then(|(_, slot)| f(slot))
    }
}

impl ClientSessionStore for LatestTicket {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.edit(server_name, |s| s.kx_hint = Some(group));
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.read(server_name, |s| s.kx_hint)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.edit(server_name, |s| s.tls12 = Some(value));
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.read(server_name, |s| s.tls12.clone())
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.read(server_name, |s| s.tls12.take());
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.edit(server_name, |s| s.tls13 = Some(value));
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.read(server_name, |s| s.tls13.take())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::client::Resumption;
    use rustls::{ClientConfig, ClientConnection, HandshakeKind, ServerConfig, ServerConnection};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    use super::*;

    /// A server that sends four tickets after each handshake and a client on `store`.
    fn configs(store: Arc<LatestTicket>) -> (Arc<ClientConfig>, Arc<ServerConfig>) {
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("key: {e}"));
        let cert = rcgen::CertificateParams::new(vec!["as.example".into()])
            .and_then(|p| p.self_signed(&key))
            .unwrap_or_else(|e| panic!("cert: {e}"));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.with_no_client_auth().with_single_cert(
                    vec![cert.der().clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                )
            })
            .unwrap_or_else(|e| panic!("server config: {e}"));
        server.send_tls13_tickets = 4;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(cert.der().to_vec()))
            .unwrap_or_else(|e| panic!("root: {e}"));
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .unwrap_or_else(|e| panic!("client config: {e}"));
        client.resumption = Resumption::store(store);
        (Arc::new(client), Arc::new(server))
    }

    /// One handshake in memory, pumped until neither side has anything to send (the tickets
    /// come after the client's Finished).
    fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> HandshakeKind {
        let mut c = ClientConnection::new(client.clone(), name("as.example"))
            .unwrap_or_else(|e| panic!("client: {e}"));
        let mut s = ServerConnection::new(server.clone()).unwrap_or_else(|e| panic!("server: {e}"));
        for _ in 0..16 {
            let mut buf = Vec::new();
            while c.wants_write() {
                let _ = c.write_tls(&mut buf);
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                let _ = s.read_tls(&mut rd);
                s.process_new_packets()
                    .unwrap_or_else(|e| panic!("server: {e}"));
            }
            let mut back = Vec::new();
            while s.wants_write() {
                let _ = s.write_tls(&mut back);
            }
            let mut rd = &back[..];
            while !rd.is_empty() {
                let _ = c.read_tls(&mut rd);
                c.process_new_packets()
                    .unwrap_or_else(|e| panic!("client: {e}"));
            }
            if buf.is_empty() && back.is_empty() && !c.is_handshaking() {
                break;
            }
        }
        c.handshake_kind()
            .unwrap_or_else(|| panic!("handshake unfinished"))
    }

    #[test]
    fn of_the_tickets_a_server_sends_only_the_newest_is_kept_and_the_next_handshake_resumes() {
        let store = Arc::new(LatestTicket::default());
        let (client, server) = configs(store.clone());
        assert_eq!(handshake(&client, &server), HandshakeKind::Full);
        // The server sent four tickets; the store holds one.
        let held = store.take_tls13_ticket(&name("as.example"));
        assert!(held.is_some(), "a ticket is kept");
        assert!(
            store.take_tls13_ticket(&name("as.example")).is_none(),
            "only one ticket is kept, and it is handed out once"
        );
        if let Some(ticket) = held {
            store.insert_tls13_ticket(name("as.example"), ticket);
        }
        assert_eq!(handshake(&client, &server), HandshakeKind::Resumed);
        assert_eq!(
            handshake(&client, &server),
            HandshakeKind::Resumed,
            "a resumed handshake brings the next ticket"
        );
    }

    fn name(s: &str) -> ServerName<'static> {
        ServerName::try_from(s.to_owned()).unwrap_or_else(|_| panic!("{s} is a valid name"))
    }

    #[test]
    fn the_key_exchange_hint_is_kept_per_server_name() {
        let store = LatestTicket::default();
        store.set_kx_hint(name("as.example"), NamedGroup::X25519);
        store.set_kx_hint(name("mtls.as.example"), NamedGroup::secp256r1);
        assert_eq!(store.kx_hint(&name("as.example")), Some(NamedGroup::X25519));
        assert_eq!(
            store.kx_hint(&name("mtls.as.example")),
            Some(NamedGroup::secp256r1)
        );
        assert_eq!(store.kx_hint(&name("other.example")), None);
    }

    #[test]
    fn at_most_four_server_names_are_remembered_the_oldest_going_first() {
        let store = LatestTicket::default();
        for i in 0..=SERVERS {
            store.set_kx_hint(name(&format!("h{i}.example")), NamedGroup::X25519);
        }
        assert_eq!(store.kx_hint(&name("h0.example")), None);
        assert_eq!(
            store.kx_hint(&name(&format!("h{SERVERS}.example"))),
            Some(NamedGroup::X25519)
        );
        let slots = store.slots.lock().map(|s| s.len()).unwrap_or(0);
        assert_eq!(slots, SERVERS);
    }
}
