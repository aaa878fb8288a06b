#!/usr/bin/env node
// The oidc-provider peer of the tpp-operator e2e tests: a real, third-party FAPI 2.0
// authorization server on loopback (test-infra Part B). TLS is terminated here (Node https,
// client certificates requested but not required) so the provider sees every client
// certificate; the issuer is `https://localhost:<port>` and the socket is bound to 127.0.0.1.
//
// Flags (each also read from the environment variable in brackets; a flag wins):
//   --port <n>                   [PEER_PORT]       listening port; 0 (default) picks a free one
//   --state-dir <dir>            [PEER_STATE_DIR]  required: provider keys, token and pid files
//   --ca <file>                  [PEER_CA]         required: test CA PEM (client cert chains)
//   --cert <file>, --key <file>  [PEER_CERT, PEER_KEY]  required: serving certificate and key
//   --directory-jwks <file>      [PEER_DIRECTORY_JWKS]  software-statement keys (signed DCR)
//   --initial-access-token <v>   [PEER_INITIAL_ACCESS_TOKEN]  fixed value (default: random)
//   --par required|optional|off  [PEER_PAR]        PAR switch (default required)
//   --client-auth-algs <a,b>     [PEER_CLIENT_AUTH_ALGS]  client-assertion and request-object
//                                algorithms (default PS256)
//   --client-credentials-ttl <s> [PEER_CLIENT_CREDENTIALS_TTL]  lifetime of client_credentials
//                                access tokens in seconds (default 600)
//
// At start it writes exactly one JSON line to stdout, then nothing else:
//   {"ready":true,"issuer":"https://localhost:<port>","port":<port>,"pid":<pid>,
//    "initial_access_token_file":"<state-dir>/initial-access-token","par":"required",
//    "client_auth_signing_algs":["PS256"]}
// The initial access token itself (policies applied, valid 24 h) is only in that file (mode
// 0600); the pid is also in `<state-dir>/pid`. Provider error events go to stderr as JSON
// lines (`{"event":"grant.error","error":...,"error_description":...,"detail":...}`), and so
// are the registrations it creates, updates and deletes (`{"event":"registration_create.success",
// "client_id":...}`: the client id only, never a registration access token), which the chaos
// campaign counts (docs/reliability.md, "The campaign").

import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:https';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import * as jose from 'jose';
import Provider from 'oidc-provider';

import { POLICY, configuration } from './configuration.mjs';
import { adapter } from './store.mjs';
import signedRegistration from './signed_registration.mjs';

const ERROR_EVENTS = [
  'server_error', 'grant.error', 'registration_create.error', 'registration_read.error',
  'registration_update.error', 'registration_delete.error', 'introspection.error',
  'pushed_authorization_request.error', 'authorization.error', 'userinfo.error',
  'revocation.error', 'jwks.error', 'discovery.error',
];

const REGISTRATION_EVENTS = [
  'registration_create.success', 'registration_update.success', 'registration_delete.success',
];

function log(event, fields) {
  process.stderr.write(`${JSON.stringify({ event, ...fields })}\n`);
}

function fail(message) {
  log('startup.error', { error_description: message });
  process.exit(2);
}

function options() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      'state-dir': { type: 'string' },
      ca: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      'directory-jwks': { type: 'string' },
      'initial-access-token': { type: 'string' },
      par: { type: 'string' },
      'client-auth-algs': { type: 'string' },
      'client-credentials-ttl': { type: 'string' },
    },
    strict: true,
  });
  const env = process.env;
  const pick = (flag, name) => values[flag] ?? env[name];
  const opts = {
    port: Number(pick('port', 'PEER_PORT') ?? 0),
    stateDir: pick('state-dir', 'PEER_STATE_DIR'),
    ca: pick('ca', 'PEER_CA'),
    cert: pick('cert', 'PEER_CERT'),
    key: pick('key', 'PEER_KEY'),
    directoryJwks: pick('directory-jwks', 'PEER_DIRECTORY_JWKS'),
    initialAccessToken: pick('initial-access-token', 'PEER_INITIAL_ACCESS_TOKEN'),
    par: pick('par', 'PEER_PAR') ?? 'required',
    clientAuthAlgs: (pick('client-auth-algs', 'PEER_CLIENT_AUTH_ALGS') ?? 'PS256')
      .split(',').map((s) => s.trim()).filter(Boolean),
    clientCredentialsTtl: Number(pick('client-credentials-ttl', 'PEER_CLIENT_CREDENTIALS_TTL') ?? 600),
  };
  for (const [name, value] of [['state-dir', opts.stateDir], ['ca', opts.ca], ['cert', opts.cert], ['key', opts.key]]) {
    if (!value) fail(`--${name} is required`);
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) fail('--port must be 0..65535');
  if (!['required', 'optional', 'off'].includes(opts.par)) fail('--par must be required, optional or off');
  if (opts.clientAuthAlgs.length === 0) fail('--client-auth-algs must name at least one algorithm');
  if (!Number.isInteger(opts.clientCredentialsTtl) || opts.clientCredentialsTtl < 1) fail('--client-credentials-ttl must be a positive number of seconds');
  return opts;
}

/** The provider's PS256 signing key, persisted so id_tokens stay verifiable (gotcha 13). */
async function providerJwks(stateDir) {
  const path = join(stateDir, 'provider-jwks.json');
  if (existsSync(path)) return JSON.parse(readFileSync(path, 'utf8'));
  const { privateKey } = await jose.generateKeyPair('PS256', { modulusLength: 2048, extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  jwk.kid = await jose.calculateJwkThumbprint(jwk);
  jwk.alg = 'PS256';
  jwk.use = 'sig';
  const jwks = { keys: [jwk] };
  writeFileSync(path, JSON.stringify(jwks), { mode: 0o600 });
  return jwks;
}

async function main() {
  const opts = options();
  mkdirSync(opts.stateDir, { recursive: true });
  let handler = (req, res) => { res.statusCode = 503; res.end(); };
  const server = createServer({
    key: readFileSync(opts.key),
    cert: readFileSync(opts.cert),
    ca: [readFileSync(opts.ca)],
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2',
  }, (req, res) => handler(req, res));
  server.on('tlsClientError', (err) => log('tls.error', { error_description: err.message }));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const issuer = `https://localhost:${port}`;

  const provider = new Provider(issuer, configuration({
    issuer,
    jwks: await providerJwks(opts.stateDir),
    cookieKeys: [randomBytes(32).toString('base64url')],
    par: opts.par,
    clientAuthAlgs: opts.clientAuthAlgs,
    clientCredentialsTtl: opts.clientCredentialsTtl,
    adapter: adapter(),
  }));
  for (const event of ERROR_EVENTS) {
    provider.on(event, (ctx, err) => log(event, {
      error: err?.error ?? err?.name,
      error_description: err?.error_description ?? err?.message,
      detail: err?.error_detail,
      path: ctx?.path,
    }));
  }
  for (const event of REGISTRATION_EVENTS) {
    provider.on(event, (ctx, client) => log(event, { client_id: client?.clientId }));
  }

  const expiresIn = 24 * 60 * 60;
  const initialAccessToken = await new provider.InitialAccessToken({
    jti: opts.initialAccessToken, expiresIn, policies: [POLICY],
  }).save();
  const signedRegistrationToken = await new provider.InitialAccessToken({ expiresIn, policies: [POLICY] }).save();
  provider.use(signedRegistration({
    issuer,
    directoryJwksPath: opts.directoryJwks,
    registrationToken: () => signedRegistrationToken,
    log,
  }));

  const tokenFile = join(opts.stateDir, 'initial-access-token');
  writeFileSync(tokenFile, initialAccessToken, { mode: 0o600 });
  writeFileSync(join(opts.stateDir, 'pid'), `${process.pid}\n`);
  handler = provider.callback();
  process.stdout.write(`${JSON.stringify({
    ready: true,
    issuer,
    port,
    pid: process.pid,
    initial_access_token_file: tokenFile,
    par: opts.par,
    client_auth_signing_algs: opts.clientAuthAlgs,
  })}\n`);

  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => fail(err?.stack ?? String(err)));
