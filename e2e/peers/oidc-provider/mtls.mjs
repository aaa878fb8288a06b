// The `features.mTLS` callbacks for a provider that terminates TLS itself (test-infra B3).
//
// Node's https server runs with `requestCert: true, rejectUnauthorized: false`, so every client
// certificate reaches the provider: self-signed ones are good enough for certificate binding,
// while `tls_client_auth` additionally needs `socket.authorized` (chain verified against the
// test CA). No I/O beyond reading the request's socket.

/** The client certificate of the request's TLS connection, or undefined. */
export function getCertificate(ctx) {
  const socket = ctx.req.socket;
  if (typeof socket.getPeerX509Certificate !== 'function') return undefined;
  return socket.getPeerX509Certificate() ?? undefined;
}

/** Whether the client certificate chains to the test CA (`ca` of the https server). */
export function certificateAuthorized(ctx) {
  return ctx.req.socket.authorized === true;
}

/** Splits an RFC 4514 string on unescaped commas. */
function splitRfc4514(dn) {
  const parts = [];
  let current = '';
  for (let i = 0; i < dn.length; i += 1) {
    const c = dn[i];
    if (c === '\\' && i + 1 < dn.length) {
      current += dn[i + 1];
      i += 1;
    } else if (c === ',') {
      parts.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  parts.push(current);
  return parts;
}

/** `TYPE=value` pairs, types upper-cased, sorted: order-insensitive comparison. */
function normalise(pairs) {
  return pairs
    .map((p) => p.trim())
    .filter((p) => p.length > 0)
    .map((p) => {
      const at = p.indexOf('=');
      if (at < 0) return p;
      return `${p.slice(0, at).trim().toUpperCase()}=${p.slice(at + 1).trim()}`;
    })
    .sort()
    .join('\n');
}

/** Node renders a subject as newline-separated `CN=x\nO=y`; RFC 4514 uses commas. */
export function subjectDnMatches(nodeSubject, rfc4514) {
  return normalise(nodeSubject.split('\n')) === normalise(splitRfc4514(rfc4514));
}

const SAN_PREFIX = {
  tls_client_auth_san_dns: 'DNS:',
  tls_client_auth_san_ip: 'IP Address:',
  tls_client_auth_san_email: 'email:',
  tls_client_auth_san_uri: 'URI:',
};

/** Whether the certificate's subject or SAN equals the registered `tls_client_auth_*` value. */
export function certificateSubjectMatches(ctx, property, expected) {
  const cert = getCertificate(ctx);
  if (!cert) return false;
  if (property === 'tls_client_auth_subject_dn') {
    return subjectDnMatches(cert.subject ?? '', expected);
  }
  const prefix = SAN_PREFIX[property];
  if (!prefix) return false;
  return (cert.subjectAltName ?? '')
    .split(', ')
    .some((entry) => entry.startsWith(prefix) && entry.slice(prefix.length) === expected);
}
