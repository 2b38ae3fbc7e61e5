// A real, certified OpenID Connect provider (npm oidc-provider) for the token
// engine's tests, over HTTPS on 127.0.0.1 with the test's own certificate.
//   node oidc_server.mjs TLS_CERT TLS_KEY CLIENT_SECRET ASSERTION_CERT
// Prints {"listening": PORT} on stderr when ready. Clients:
//   broker-secret: client_credentials, client_secret_post
//   broker-jwt:    client_credentials, private_key_jwt with ASSERTION_CERT's key
//   broker-native: authorization_code (PKCE) and refresh_token, client_secret_post,
//                  redirect http://127.0.0.1/ on any port (RFC 8252 loopback);
//                  refresh tokens rotate on every use. Users sign in through the
//                  provider's development login and consent pages (any login).
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { createPublicKey } from 'node:crypto';
import Provider from 'oidc-provider';

const [tlsCert, tlsKey, clientSecret, assertionCert] = process.argv.slice(2);
const jwk = createPublicKey(readFileSync(assertionCert)).export({ format: 'jwk' });

const server = createServer({ cert: readFileSync(tlsCert), key: readFileSync(tlsKey) });
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const provider = new Provider(`https://127.0.0.1:${port}`, {
    clients: [
      {
        client_id: 'broker-secret',
        client_secret: clientSecret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_post',
        scope: 'imap',
      },
      {
        client_id: 'broker-jwt',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'PS256',
        jwks: { keys: [{ ...jwk, use: 'sig' }] },
        scope: 'imap',
      },
      {
        client_id: 'broker-native',
        client_secret: clientSecret,
        application_type: 'native',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/'],
        token_endpoint_auth_method: 'client_secret_post',
      },
    ],
    scopes: ['openid', 'offline_access', 'imap'],
    rotateRefreshToken: true,
    features: { clientCredentials: { enabled: true }, devInteractions: { enabled: true } },
  });
  provider.proxy = false;
  server.on('request', provider.callback());
  process.stderr.write(`${JSON.stringify({ listening: port })}\n`);
});
