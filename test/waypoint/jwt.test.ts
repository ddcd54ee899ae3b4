import test from 'ava';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { HOST, VIP, startFixture } from './harness.ts';

/** RequestAuthentication and a JWT claim condition through the assembled waypoint (tokens signed with jose). */

const REVIEWS = `${VIP.reviews}:9080`;
const ISSUER = 'https://issuer.example.com';

test.serial('JWT: a verified claim allows, a missing or wrong claim is denied, a bad token is refused with 401', async (t) => {
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const other = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
  const l7 = `
requestAuthentications:
  - name: jwt
    namespace: prod
    targetServices: [prod/${HOST.reviews}]
    rules: [{ issuer: "${ISSUER}", audiences: [reviews], jwks: '${JSON.stringify({ keys: [jwk] })}' }]
authorizationPolicies:
  - name: admins
    namespace: prod
    targetServices: [prod/${HOST.reviews}]
    rules:
      - { to: [{ paths: [/admin-api/*] }], when: [{ key: "request.auth.claims[groups]", values: [admins] }] }
      - { to: [{ notPaths: [/admin-api/*] }] }
`;
  const f = await startFixture(t, { l7 });
  const token = (claims: Record<string, unknown>, key = privateKey, exp = '5m') =>
    new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(ISSUER).setSubject('alice').setAudience('reviews').setIssuedAt().setExpirationTime(exp).sign(key);
  const get = (path: string, bearer?: string) => f.http1(REVIEWS, { path, headers: bearer ? { authorization: `Bearer ${bearer}` } : {} });

  const admin = await get('/admin-api/x', await token({ groups: ['dev', 'admins'] }));
  t.is(admin.status, 200);
  const seen = f.requests.find((r) => r.url === '/admin-api/x');
  t.is(seen?.headers['authorization'], undefined, 'the token is not forwarded');

  t.is((await get('/admin-api/y', await token({ groups: ['dev'] }))).status, 403);
  const none = await get('/admin-api/z');
  t.is(none.status, 403, 'no token: unauthenticated, and the claim condition does not hold');
  t.is(none.body, 'RBAC: access denied');
  t.is((await get('/public')).status, 200, 'no token is fine where no claim is required');

  for (const [why, bad] of [
    ['signed by another key', await token({ groups: ['admins'] }, other.privateKey)],
    ['expired', await token({ groups: ['admins'] }, privateKey, '-1m')],
    ['alg none', `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify({ iss: ISSUER, sub: 'x', aud: 'reviews', groups: ['admins'] })).toString('base64url')}.`],
    ['not a JWT', 'garbage'],
  ] as const) {
    const res = await get('/admin-api/x', bad);
    t.is(res.status, 401, why);
    t.is(res.body, 'Jwt verification fails', why);
  }
  const refused = f.log.records.filter((r) => r['code'] === 'WAYPOINT_JWT_INVALID');
  t.is(refused.length, 4);
  t.is(f.requests.filter((r) => r.url.startsWith('/admin-api/')).length, 1, 'only the admin reached the app');
});
