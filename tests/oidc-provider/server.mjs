// A real OpenID Connect server (the `oidc-provider` package) shaped like Keycloak, for keybound's
// keycloak-client integration tests. NOT for production: it keeps everything in memory, prints no secrets
// but trusts its configuration file, and exposes test-only endpoints.
//
// Usage: node server.mjs [CONFIG.json]
//
// The first line on stdout is `listening <port>` once the server accepts connections (port 0 in the
// configuration picks a free loopback port). Everything else goes to stderr.
//
// Paths match Keycloak's: each realm is an issuer `http://127.0.0.1:<port>/realms/<realm>` with
//   POST /realms/<realm>/protocol/openid-connect/token
//   GET  /realms/<realm>/protocol/openid-connect/certs
//   GET  /realms/<realm>/.well-known/openid-configuration
//
// Keycloak's rules for client assertions (RFC 7523 private_key_jwt), beyond oidc-provider's own:
//   - exactly one `aud` value ("Multiple audiences not allowed"),
//   - `iat` at most `clockTolerance` (15 s) in the future,
//   - lifetime at most `maxAssertionLifetime` (60 s): with `iat`, rejected when now > iat + 60; without
//     `iat`, rejected when exp - now > 60,
//   - `jti` single use (oidc-provider's replay detection), exp/nbf with 15 s clock tolerance.
// Error descriptions of rejected client authentication are surfaced as Keycloak does (oidc-provider hides
// them by default), with Keycloak's status: 400 invalid_client for a refused client assertion, 401
// invalid_client only when no client authenticated (unknown client, wrong secret, an assertion whose iss is
// not the client: Keycloak ignores it).
//
// Grants: a `password` grant (Keycloak's direct access grant) registered with registerGrantType, checking
// the realm's users; refresh_token (rotating, Keycloak-style); client_credentials.
//
// Test-only endpoints (outside /realms):
//   GET  /__stats                        token requests per realm and grant (counted on arrival), successes
//                                        and errors
//   POST /__stats/reset                  zero the counters
//   POST /__admin/<realm>/revoke-refresh-tokens   invalidate every refresh token issued so far in the realm
//   POST /__admin/<realm>/delay-token?ms=N        delay every token response of the realm by N ms
//   POST /__admin/<realm>/hang-token?on=1        hold every token request of the realm without an answer (an
//                                        identity provider that accepts connections but does not answer),
//                                        counted on arrival as requests["hung-by-admin"], with the arrival
//                                        times (ms since the epoch) in hungAt; hang-token?on=0 stops
//                                        holding and answers the held requests HTTP 503
//   POST /__admin/<realm>/fail-token?count=N&status=S[&after=1]  answer the next N token requests with
//                                        HTTP S (after=1: after processing them, so their jti is used up)
//   POST /__admin/<realm>/answer-token?count=N&kind=K[&status=S][&value=V]  process the next N token
//                                        requests, then answer them wrongly (status S, default 200):
//                                          html            an HTML error page (text/html)
//                                          malformed-json  truncated JSON (application/json)
//                                          no-access-token a JSON token response without access_token
//                                          not-an-object   a JSON array
//                                          expires-in      the real token response with expires_in set to
//                                                          the JSON number text V (e.g. -1, 1e30,
//                                                          18446744073709551616)
//
// Configuration (JSON file; every member optional):
// {
//   "host": "127.0.0.1", "port": 0,
//   "accessTokenTtl": 300, "refreshTokenTtl": 1800,
//   "clockTolerance": 15, "maxAssertionLifetime": 60,
//   "realms": { "<realm>": { "clients": [ <oidc-provider client metadata> ],
//                            "users": [ { "username": "...", "password": "..." } ] } }
// }

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import process from 'node:process';

import Provider, { errors } from 'oidc-provider';

const DEFAULT_CONFIG = {
  host: '127.0.0.1',
  port: 0,
  accessTokenTtl: 300,
  refreshTokenTtl: 1800,
  clockTolerance: 15,
  maxAssertionLifetime: 60,
  realms: {
    partner: {
      clients: [
        {
          client_id: 'example-partner',
          client_secret: 'example-partner-dummysecret',
          token_endpoint_auth_method: 'client_secret_post',
          grant_types: ['password', 'refresh_token'],
        },
      ],
      users: [{ username: 'exampleuser@partner.example.com', password: 'SecÜre!P4ssw0rd' }],
    },
  },
};

const config = { ...DEFAULT_CONFIG, ...(process.argv[2] ? JSON.parse(readFileSync(process.argv[2], 'utf8')) : {}) };

// Counters the tests read on the server side.
const stats = {};
function realmStats(realm) {
  stats[realm] ??= { requests: {}, success: {}, errors: {} };
  return stats[realm];
}
function bump(map, key) {
  map[key] = (map[key] ?? 0) + 1;
}

const KEYCLOAK_PATHS = {
  authorization: '/protocol/openid-connect/auth',
  token: '/protocol/openid-connect/token',
  jwks: '/protocol/openid-connect/certs',
  userinfo: '/protocol/openid-connect/userinfo',
  revocation: '/protocol/openid-connect/revoke',
  introspection: '/protocol/openid-connect/token/introspect',
  end_session: '/protocol/openid-connect/logout',
};

function epoch() {
  return Math.floor(Date.now() / 1000);
}

// oidc-provider answers every invalid_client with 401; Keycloak keeps 401 for these, where no client
// authenticated at all, and answers 400 when it refused the client's assertion.
const NO_CLIENT_AUTHENTICATED = /client not found|invalid secret|iss \(JWT issuer\)|authentication mechanism does not match/;

// Keycloak's wording for the failures a client must be able to tell apart.
function keycloakDescription(err) {
  const detail = String(err.error_detail ?? '');
  if (/jwt expired/.test(detail)) return 'Token is not active (expired)';
  if (/jwt not active yet/.test(detail)) return 'Token is not active (nbf is in the future)';
  if (/must only be used once/.test(detail)) return 'Token reuse detected';
  if (/signature verification failed|no matching key|JWKSNoMatchingKey/i.test(detail)) {
    return 'Client authentication with signed JWT failed: Signature on JWT token failed validation';
  }
  if (NO_CLIENT_AUTHENTICATED.test(detail)) return 'Invalid client or Invalid client credentials';
  return detail || err.error_description;
}

function makeProvider(realm, realmConfig, origin) {
  const issuer = `${origin}/realms/${realm}`;
  const users = new Map((realmConfig.users ?? []).map((u) => [u.username, u]));
  const refreshGrants = new Set();
  // Resolvers of the requests held by hang-token (not part of the JSON shown by the admin endpoints).
  const held = [];
  const admin = {
    hang: false,
    delayMs: 0, failCount: 0, failStatus: 503, failAfter: false,
    answerCount: 0, answerKind: 'html', answerStatus: 200, answerValue: '0',
  };

  const provider = new Provider(issuer, {
    clients: realmConfig.clients ?? [],
    clientDefaults: {
      grant_types: ['password', 'refresh_token'],
      response_types: [],
      redirect_uris: [],
      id_token_signed_response_alg: 'RS256',
    },
    clockTolerance: config.clockTolerance,
    routes: KEYCLOAK_PATHS,
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      introspection: { enabled: true },
      clientCredentials: { enabled: true },
    },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'api'],
    enabledJWA: {
      clientAuthSigningAlgValues: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384'],
    },
    ttl: {
      AccessToken: config.accessTokenTtl,
      ClientCredentials: config.accessTokenTtl,
      RefreshToken: config.refreshTokenTtl,
      Grant: config.refreshTokenTtl * 10,
      IdToken: config.accessTokenTtl,
    },
    rotateRefreshToken: true,
    async findAccount(_ctx, id) {
      return { accountId: id, async claims() { return { sub: id }; } };
    },
    async assertJwtClientAuthClaimsAndHeader(_ctx, claims) {
      const now = epoch();
      if (Array.isArray(claims.aud) && claims.aud.length !== 1) {
        throw new errors.InvalidClientAuth('Multiple audiences not allowed');
      }
      if (typeof claims.iat === 'number') {
        if (claims.iat > now + config.clockTolerance) {
          throw new errors.InvalidClientAuth('Token was issued in the future');
        }
        if (now > claims.iat + config.maxAssertionLifetime) {
          throw new errors.InvalidClientAuth(`Token is not active (issued more than ${config.maxAssertionLifetime} s ago)`);
        }
      } else if (claims.exp - now > config.maxAssertionLifetime) {
        throw new errors.InvalidClientAuth(`Token exp is more than ${config.maxAssertionLifetime} s in the future`);
      }
    },
  });
  provider.proxy = false;

  // Keycloak's direct access grant.
  provider.registerGrantType('password', async (ctx) => {
    const { username, password } = ctx.oidc.params;
    if (!username || !password) {
      throw new errors.InvalidRequest('Missing parameter: username or password');
    }
    const user = users.get(username);
    if (!user || user.password !== password) {
      const err = new errors.InvalidGrant('Invalid user credentials');
      err.status = err.statusCode = 401;
      err.error_description = 'Invalid user credentials';
      throw err;
    }
    const { client } = ctx.oidc;
    const requested = (ctx.oidc.params.scope ?? '').split(' ').filter(Boolean);
    const scope = requested.filter((s) => client.scope === undefined || client.scope.split(' ').includes(s) || ['openid', 'offline_access', 'profile', 'email'].includes(s));

    const grant = new provider.Grant({ accountId: username, clientId: client.clientId });
    if (scope.length) grant.addOIDCScope(scope.join(' '));
    const grantId = await grant.save();

    const at = new provider.AccessToken({
      accountId: username, client, grantId, gty: 'password', scope: scope.join(' ') || undefined,
    });
    const accessToken = await at.save();

    const rt = new provider.RefreshToken({
      accountId: username, client, grantId, gty: 'password', scope: scope.join(' ') || undefined,
      expiresWithSession: false,
    });
    const refreshToken = await rt.save();

    let idToken;
    if (scope.includes('openid')) {
      const token = new provider.IdToken({ sub: username }, { ctx, client });
      token.scope = 'openid';
      idToken = await token.issue({ use: 'idtoken' });
    }

    ctx.body = {
      access_token: accessToken,
      expires_in: at.expiration,
      refresh_token: refreshToken,
      token_type: 'Bearer',
      id_token: idToken,
      scope: scope.join(' ') || undefined,
    };
  }, ['username', 'password', 'scope']);

  provider.on('refresh_token.saved', (token) => refreshGrants.add(token.grantId));

  // Count on arrival, answer like Keycloak, and honour the admin switches.
  provider.use(async (ctx, next) => {
    const isToken = ctx.method === 'POST' && ctx.path === KEYCLOAK_PATHS.token;
    if (isToken) {
      if (admin.hang) {
        const stats = realmStats(realm);
        bump(stats.requests, 'hung-by-admin');
        (stats.hungAt ??= []).push(Date.now());
        await new Promise((resolve) => held.push(resolve));
        ctx.status = 503;
        ctx.body = { error: 'temporarily_unavailable', error_description: 'the test held this request' };
        return;
      }
      if (admin.delayMs > 0) await new Promise((r) => setTimeout(r, admin.delayMs));
      if (admin.failCount > 0 && !admin.failAfter) {
        admin.failCount -= 1;
        bump(realmStats(realm).requests, 'failed-by-admin');
        ctx.status = admin.failStatus;
        ctx.body = { error: 'temporarily_unavailable', error_description: 'failure injected by the test' };
        return;
      }
    }
    await next();
    if (!isToken) return;
    const grantType = ctx.oidc?.params?.grant_type ?? 'unknown';
    bump(realmStats(realm).requests, grantType);
    if (admin.failCount > 0 && admin.failAfter) {
      // The request was fully processed (its assertion's jti is now used up), but the client sees a failure.
      admin.failCount -= 1;
      bump(realmStats(realm).requests, 'failed-by-admin');
      ctx.status = admin.failStatus;
      ctx.body = { error: 'temporarily_unavailable', error_description: 'failure injected by the test' };
      return;
    }
    if (ctx.status === 200 && ctx.body?.access_token) {
      bump(realmStats(realm).success, grantType);
      // Keycloak's extra members; clients must also tolerate unknown ones.
      ctx.body = {
        ...ctx.body,
        refresh_expires_in: ctx.body.refresh_token ? config.refreshTokenTtl : 0,
        'not-before-policy': 0,
        session_state: randomUUID(),
        'x-test-unknown-member': { nested: true },
      };
    } else if (ctx.body?.error) {
      bump(realmStats(realm).errors, `${grantType}:${ctx.body.error}`);
    }
    if (admin.answerCount > 0) {
      // The request was processed; the client gets a broken answer instead of the real one.
      admin.answerCount -= 1;
      bump(realmStats(realm).requests, `answered-${admin.answerKind}`);
      const real = ctx.body;
      ctx.status = admin.answerStatus;
      ctx.set('cache-control', 'no-store');
      switch (admin.answerKind) {
        case 'html':
          ctx.type = 'text/html; charset=utf-8';
          ctx.body = '<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>'
            + '<body><h1>Gateway error</h1><p>The upstream server is not available.</p></body></html>\n';
          break;
        case 'malformed-json':
          ctx.type = 'application/json';
          ctx.body = '{"access_token":"eyJhbGciOiJSUzI1NiJ9.truncated","expires_in":30';
          break;
        case 'no-access-token':
          ctx.type = 'application/json';
          ctx.body = JSON.stringify({ token_type: 'Bearer', expires_in: 300, scope: 'profile' });
          break;
        case 'not-an-object':
          ctx.type = 'application/json';
          ctx.body = JSON.stringify([real]);
          break;
        case 'expires-in': {
          ctx.type = 'application/json';
          const text = JSON.stringify({ ...real, expires_in: 0 });
          ctx.body = text.replace('"expires_in":0', `"expires_in":${admin.answerValue}`);
          break;
        }
        default:
          ctx.status = 500;
          ctx.body = { error: 'server_error', error_description: `unknown answer kind ${admin.answerKind}` };
      }
    }
  });

  provider.on('grant.error', (ctx, err) => {
    if (ctx.body && typeof ctx.body === 'object' && err.error === 'invalid_client') {
      ctx.body.error_description = keycloakDescription(err);
      if (!NO_CLIENT_AUTHENTICATED.test(String(err.error_detail ?? ''))) {
        ctx.status = 400;
        ctx.remove('www-authenticate');
      }
    } else if (ctx.body && typeof ctx.body === 'object' && err.error === 'invalid_grant' && err.error_detail) {
      ctx.body.error_description = String(err.error_detail);
    }
    process.stderr.write(`oidc-test-server: realm=${realm} grant=${ctx.oidc?.params?.grant_type} error=${err.error} detail=${err.error_detail ?? ''}\n`);
  });
  provider.on('server_error', (_ctx, err) => {
    process.stderr.write(`oidc-test-server: realm=${realm} server_error ${err.stack}\n`);
  });

  return {
    provider,
    callback: provider.callback(),
    async revokeRefreshTokens() {
      const ids = [...refreshGrants];
      refreshGrants.clear();
      await Promise.all(ids.map((id) => provider.RefreshToken.revokeByGrantId(id)));
      return ids.length;
    },
    admin,
    setHang(on) {
      admin.hang = on;
      if (!on) held.splice(0).forEach((resolve) => resolve());
    },
  };
}

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

const realms = new Map();

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://localhost');
    const m = /^\/realms\/([^/]+)(\/.*)?$/.exec(url.pathname);
    if (m && realms.has(m[1])) {
      req.originalUrl = req.url;
      req.url = req.url.slice(`/realms/${m[1]}`.length) || '/';
      return realms.get(m[1]).callback(req, res);
    }
    if (url.pathname === '/__stats' && req.method === 'GET') return json(res, 200, stats);
    if (url.pathname === '/__stats/reset' && req.method === 'POST') {
      for (const k of Object.keys(stats)) delete stats[k];
      return json(res, 200, {});
    }
    const a = /^\/__admin\/([^/]+)\/([a-z-]+)$/.exec(url.pathname);
    if (a && req.method === 'POST' && realms.has(a[1])) {
      const realm = realms.get(a[1]);
      switch (a[2]) {
        case 'revoke-refresh-tokens':
          return json(res, 200, { revoked_grants: await realm.revokeRefreshTokens() });
        case 'hang-token':
          realm.setHang(url.searchParams.get('on') !== '0');
          return json(res, 200, realm.admin);
        case 'delay-token':
          realm.admin.delayMs = Number(url.searchParams.get('ms') ?? 0);
          return json(res, 200, realm.admin);
        case 'answer-token':
          realm.admin.answerCount = Number(url.searchParams.get('count') ?? 1);
          realm.admin.answerKind = url.searchParams.get('kind') ?? 'html';
          realm.admin.answerStatus = Number(url.searchParams.get('status') ?? 200);
          realm.admin.answerValue = url.searchParams.get('value') ?? '0';
          return json(res, 200, realm.admin);
        case 'fail-token':
          realm.admin.failCount = Number(url.searchParams.get('count') ?? 1);
          realm.admin.failStatus = Number(url.searchParams.get('status') ?? 503);
          realm.admin.failAfter = url.searchParams.get('after') === '1';
          return json(res, 200, realm.admin);
        default:
      }
    }
    return json(res, 404, { error: 'not_found' });
  } catch (err) {
    process.stderr.write(`oidc-test-server: ${err.stack}\n`);
    return json(res, 500, { error: 'server_error' });
  }
});

server.listen(config.port, config.host, () => {
  const { port } = server.address();
  const origin = `http://${config.host}:${port}`;
  for (const [name, realmConfig] of Object.entries(config.realms)) {
    realms.set(name, makeProvider(name, realmConfig, origin));
  }
  process.stdout.write(`listening ${port}\n`);
});

// Stop when the parent (the Rust test) goes away: it holds our stdin open.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
