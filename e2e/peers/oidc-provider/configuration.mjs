// The oidc-provider configuration of the peer (test-infra B2): an Open Finance style FAPI 2.0
// authorization server. PS256 only, private_key_jwt + tls_client_auth, certificate-bound
// tokens, PAR (required unless switched), client_credentials + authorization_code +
// refresh_token, DCR behind an initial access token with a registration policy, RFC 7592 with
// RAT rotation, introspection and revocation. Pure: builds an object, does no I/O.

import { errors } from 'oidc-provider';

import { certificateAuthorized, certificateSubjectMatches, getCertificate } from './mtls.mjs';

/** The registration policy carried by every initial access token (and inherited by RATs). */
export const POLICY = 'tpp-open-finance';

const AUTH_METHODS = ['private_key_jwt', 'tls_client_auth'];

/**
 * Defaults certificate-bound tokens on, `token_endpoint_auth_signing_alg` (only for
 * private_key_jwt: gotcha 8) and PS256 id_tokens; rejects other auth methods and unbound
 * clients.
 */
function openFinancePolicy(ctx, properties) {
  const method = properties.token_endpoint_auth_method ?? 'private_key_jwt';
  if (!AUTH_METHODS.includes(method)) {
    throw new errors.InvalidClientMetadata(`token_endpoint_auth_method must be one of ${AUTH_METHODS.join(', ')}`);
  }
  properties.token_endpoint_auth_method = method;
  properties.tls_client_certificate_bound_access_tokens ??= true;
  if (properties.tls_client_certificate_bound_access_tokens !== true) {
    throw new errors.InvalidClientMetadata('tls_client_certificate_bound_access_tokens must be true');
  }
  if (method === 'private_key_jwt') {
    properties.token_endpoint_auth_signing_alg ??= 'PS256';
  }
  properties.id_token_signed_response_alg ??= 'PS256';
}

/**
 * The configuration. `opts`: `issuer`, `jwks` (provider signing keys), `cookieKeys`,
 * `par` (`required` | `optional` | `off`), `clientAuthAlgs` (advertised and accepted
 * algorithms of client assertions and request objects), `clientCredentialsTtl` (seconds a
 * client_credentials access token lives; default 600), `adapter` (the storage: store.mjs).
 */
export function configuration({
  issuer, jwks, cookieKeys, par, clientAuthAlgs, clientCredentialsTtl = 600, adapter,
}) {
  const url = (path) => `${issuer}${path}`;
  return {
    adapter,
    jwks,
    cookies: { keys: cookieKeys },
    clientAuthMethods: AUTH_METHODS,
    clientDefaults: {
      grant_types: ['client_credentials'],
      response_types: [],
      id_token_signed_response_alg: 'PS256',
      token_endpoint_auth_method: 'private_key_jwt',
      tls_client_certificate_bound_access_tokens: true,
    },
    enabledJWA: {
      clientAuthSigningAlgValues: clientAuthAlgs,
      idTokenSigningAlgValues: ['PS256'],
      // The client's own JWSs (assertions, request objects) share one algorithm switch.
      requestObjectSigningAlgValues: clientAuthAlgs,
      userinfoSigningAlgValues: ['PS256'],
      introspectionSigningAlgValues: ['PS256'],
      authorizationSigningAlgValues: ['PS256'],
    },
    responseTypes: ['code'],
    scopes: ['openid', 'accounts', 'profile'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'given_name', 'family_name', 'preferred_username'],
    },
    extraClientMetadata: { properties: ['software_id'] },
    async findAccount(ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          return { sub, name: `Test User ${sub}`, given_name: 'Test', family_name: 'User', preferred_username: sub };
        },
      };
    },
    issueRefreshToken: async (ctx, client, code) => client.grantTypeAllowed('refresh_token')
      && code.kind === 'AuthorizationCode',
    ttl: {
      AccessToken: 600,
      ClientCredentials: clientCredentialsTtl,
      AuthorizationCode: 60,
      IdToken: 600,
      RefreshToken: 3600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
    features: {
      fapi: { enabled: true, profile: '2.0' },
      dPoP: { enabled: false },
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // Any authenticated client may introspect any token (the tests introspect their own).
        allowedPolicy: async () => true,
      },
      revocation: { enabled: true },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        selfSignedTlsClientAuth: false,
        getCertificate,
        certificateAuthorized,
        certificateSubjectMatches,
      },
      // Signed request objects (JAR, PS256) by value at PAR, as the sandbox advertises.
      requestObjects: { enabled: true, requireSignedRequestObject: false },
      pushedAuthorizationRequests: {
        enabled: par !== 'off',
        requirePushedAuthorizationRequests: par === 'required',
      },
      registration: {
        enabled: true,
        initialAccessToken: true,
        issueRegistrationAccessToken: true,
        policies: { [POLICY]: openFinancePolicy },
      },
      registrationManagement: { enabled: true, rotateRegistrationAccessToken: true },
    },
    discovery: {
      mtls_endpoint_aliases: {
        token_endpoint: url('/token'),
        revocation_endpoint: url('/token/revocation'),
        introspection_endpoint: url('/token/introspection'),
        userinfo_endpoint: url('/me'),
        ...(par === 'off' ? {} : { pushed_authorization_request_endpoint: url('/request') }),
      },
    },
  };
}
