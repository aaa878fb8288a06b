// Signed (OBIE-style) dynamic client registration for oidc-provider (test-infra B6,
// wire-spec §3.4). oidc-provider accepts only `application/json` at `/reg`; this Koa middleware
// takes `POST /reg` and `PUT /reg/:id` with `Content-Type: application/jwt` (or
// `application/jose`), verifies
//
//   1. the `software_statement` (PS256) against the directory JWKS file (re-read per request),
//   2. the request JWT (PS256, `aud` = issuer, at most 5 minutes old, `iat`/`exp`/`jti`
//      required, `jti` single-use, `iss` = the statement's `software_id`) against the
//      statement's inline `software_jwks`,
//
// then hands the claims on to the provider as a JSON body: JWT-only claims dropped, `jwks`
// defaulted to the statement's keys, `software_id` copied from the statement, `client_id`
// taken from the path on PUT. A valid statement stands in for the initial access token on
// POST (the middleware presents the peer's own signed-registration token, which carries the
// same registration policies). Failures answer 400 `invalid_software_statement`.
// I/O: reads the request body and the directory JWKS file.

import { readFile } from 'node:fs/promises';

import * as jose from 'jose';

const BODY_LIMIT = 64 * 1024;
const MAX_AGE_SECONDS = 300;
const JWT_ONLY = ['iss', 'aud', 'iat', 'exp', 'nbf', 'jti', 'software_statement'];
const CONTENT_TYPES = ['application/jwt', 'application/jose'];

class Rejected extends Error {}

async function readLimited(req) {
  const chunks = [];
  let received = 0;
  for await (const chunk of req) {
    received += chunk.length;
    if (received > BODY_LIMIT) throw new Rejected(`request body exceeds ${BODY_LIMIT} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8').trim();
}

async function directoryKeys(path) {
  if (!path) throw new Rejected('no directory jwks is configured');
  let parsed;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (cause) {
    throw new Rejected(`directory jwks unreadable: ${cause.message}`);
  }
  return jose.createLocalJWKSet(parsed);
}

async function verify(what, fn) {
  try {
    return await fn();
  } catch (cause) {
    if (cause instanceof Rejected) throw cause;
    throw new Rejected(`${what}: ${cause.code ?? cause.name}: ${cause.message}`);
  }
}

/**
 * The middleware. `options`: `issuer`, `directoryJwksPath` (may be undefined: every signed
 * request is then rejected), `registrationToken()` (a bearer that passes the registration
 * endpoint's initial-access-token check), `log(event, fields)`.
 */
export default function signedRegistration({ issuer, directoryJwksPath, registrationToken, log }) {
  const seen = new Map(); // jti -> expiry (epoch seconds)

  function remember(jti, exp) {
    const now = Math.floor(Date.now() / 1000);
    for (const [k, until] of seen) if (until < now) seen.delete(k);
    if (seen.has(jti)) throw new Rejected('request jti was already used');
    seen.set(jti, exp);
  }

  return async function signedRegistrationMiddleware(ctx, next) {
    const isPost = ctx.method === 'POST' && ctx.path === '/reg';
    const put = ctx.method === 'PUT' ? /^\/reg\/([^/]+)$/.exec(ctx.path) : null;
    if ((!isPost && !put) || !CONTENT_TYPES.includes(ctx.request.type)) {
      await next();
      return;
    }
    let claims;
    try {
      const compact = await readLimited(ctx.req);
      const unverified = await verify('request jwt', () => jose.decodeJwt(compact));
      if (typeof unverified.software_statement !== 'string') {
        throw new Rejected('request jwt has no software_statement');
      }
      const keys = await directoryKeys(directoryJwksPath);
      const { payload: ssa } = await verify('software statement', () => jose.jwtVerify(
        unverified.software_statement,
        keys,
        { algorithms: ['PS256'] },
      ));
      if (!ssa.software_jwks || !Array.isArray(ssa.software_jwks.keys)) {
        throw new Rejected('software statement has no software_jwks');
      }
      const { payload } = await verify('request jwt', () => jose.jwtVerify(
        compact,
        jose.createLocalJWKSet(ssa.software_jwks),
        {
          algorithms: ['PS256'],
          audience: issuer,
          maxTokenAge: MAX_AGE_SECONDS,
          requiredClaims: ['iat', 'exp', 'jti'],
        },
      ));
      if (ssa.software_id !== undefined && payload.iss !== ssa.software_id) {
        throw new Rejected('request jwt iss is not the software statement software_id');
      }
      remember(payload.jti, payload.exp);
      claims = { ...payload };
      for (const name of JWT_ONLY) delete claims[name];
      if (!claims.jwks && !claims.jwks_uri) claims.jwks = ssa.software_jwks;
      if (ssa.software_id !== undefined) claims.software_id = ssa.software_id;
      if (put) claims.client_id = decodeURIComponent(put[1]);
    } catch (err) {
      const description = err instanceof Rejected ? err.message : 'signed registration request could not be read';
      log('signed_registration.error', { error: 'invalid_software_statement', error_description: description });
      ctx.status = 400;
      ctx.set('cache-control', 'no-store');
      ctx.body = { error: 'invalid_software_statement', error_description: description };
      return;
    }
    // type-is only sees a body with a content-length (or transfer-encoding) header.
    ctx.req.headers['content-type'] = 'application/json';
    ctx.req.headers['content-length'] = String(Buffer.byteLength(JSON.stringify(claims)));
    delete ctx.req.headers['transfer-encoding'];
    if (isPost) ctx.req.headers.authorization = `Bearer ${registrationToken()}`;
    ctx.request.body = claims;
    await next();
  };
}
