import test from 'ava';
import type { AuthorizationPolicy__Output } from '../../src/workload-api/generated/ambient/l7/AuthorizationPolicy.ts';
import type { DestinationPolicy__Output } from '../../src/workload-api/generated/ambient/l7/DestinationPolicy.ts';
import type { RequestAuthentication__Output } from '../../src/workload-api/generated/ambient/l7/RequestAuthentication.ts';
import type { RouteConfiguration__Output } from '../../src/workload-api/generated/ambient/l7/RouteConfiguration.ts';
import { destinationPolicyFromWire, l7AuthorizationFromWire, requestAuthenticationFromWire, routeConfigurationFromWire } from '../../src/workload-api/l7-convert.ts';
import { encodeDestinationPolicy, encodeL7Authorization, encodeRequestAuthentication, encodeRouteConfiguration } from '../../src/workload-api/l7-encode.ts';
import { parseL7Config } from '../../src/workload-api/l7-local.ts';
import { decodeMessage } from '../../src/workload-api/proto.ts';

// What the control plane encodes, the waypoint decodes to the same domain value: every field of every L7 type.
const FILE = `
routeConfigurations:
  - namespace: shop
    hostname: reviews.shop.svc.cluster.local
    ports: [9080]
    routes:
      - name: regex-and-headers
        matches:
          - path: { regex: "/v[0-9]+/.*" }
            headers: [{ name: x-user, value: { prefix: test- } }, { name: x-debug, invert: true }]
            queryParams: [{ name: canary }, { name: lang, value: { exact: fr } }]
            method: POST
        backends:
          - namespace: shop
            hostname: reviews.shop.svc.cluster.local
            port: 9080
            subset: v2
            weight: 3
            requestHeaders: { set: [{ name: x-backend, value: v2 }], add: [], remove: [] }
            responseHeaders: { set: [], add: [{ name: x-served-by, value: v2 }], remove: [x-internal] }
        requestHeaders: { set: [{ name: x-route, value: r1 }], add: [{ name: x-trace, value: "1" }], remove: [cookie] }
        responseHeaders: { set: [], add: [], remove: [server] }
        rewrite: { fullPath: /rewritten, host: internal.example }
        timeout: 2.25s
        retries: { attempts: 2, retryOn: [gateway-error, retriable-status-codes], retriableStatusCodes: [503, 409] }
        fault: { abort: { grpcStatus: 14, percentage: { value: 12.5 } } }
      - name: moved
        matches: [{ path: { exact: /old } }]
        redirect: { scheme: https, host: shop.example, port: 8443, prefixMatch: /new, statusCode: 308 }
      - name: everything-else
        mirrors: [{ namespace: shop, hostname: shadow.shop.svc.cluster.local, port: 80, subset: s, percentage: { value: 1 } }]
destinationPolicies:
  - namespace: shop
    hostname: reviews.shop.svc.cluster.local
    trafficPolicy:
      loadBalancer: { consistentHash: { useSourceIp: true } }
      connectionPool: { maxConnections: 10, http1MaxPendingRequests: 2, http2MaxRequests: 30, maxRequestsPerConnection: 4, maxRetries: 5, connectTimeout: 250ms }
      outlierDetection: { consecutive_5xxErrors: 3, consecutiveGatewayErrors: 2, interval: 1s, baseEjectionTime: 2s, maxEjectionPercent: 50, minHealthPercent: 20 }
    subsets:
      - { name: v1, labels: { version: v1 }, trafficPolicy: { loadBalancer: { simple: LEAST_REQUEST } } }
      - { name: v2, labels: { version: v2 }, workloadUids: [Kubernetes//Pod/shop/reviews-v2] }
  - namespace: shop
    hostname: ratings.shop.svc.cluster.local
    trafficPolicy: { loadBalancer: { consistentHash: { httpCookieName: session } } }
requestAuthentications:
  - name: jwt
    namespace: shop
    targetServices: [shop/reviews.shop.svc.cluster.local]
    rules:
      - { issuer: https://issuer.example, audiences: [shop], jwks: '{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b"}]}', fromHeaders: [{ name: x-jwt, prefix: "Bearer " }], fromParams: [token], forwardOriginalToken: true }
      - { issuer: other, jwksUri: "https://issuer.example/jwks" }
authorizationPolicies:
  - name: guard
    namespace: shop
    action: DENY
    targetServices: [shop/reviews.shop.svc.cluster.local]
    dryRun: true
    rules:
      - from: [{ principals: [a], notPrincipals: [b], requestPrincipals: [c], notRequestPrincipals: [d], namespaces: [e], notNamespaces: [f], ipBlocks: [10.0.0.0/8], notIpBlocks: [10.1.0.0/16] }]
        to: [{ hosts: [h], notHosts: [nh], ports: ["80"], notPorts: ["81"], methods: [GET], notMethods: [PUT], paths: [/a], notPaths: [/b*] }]
        when: [{ key: "request.auth.claims[groups]", values: [admin], notValues: [guest] }]
`;

test('L7 encode → decode → convert gives every route, destination policy, authorization policy and request authentication back', (t) => {
  const parsed = parseL7Config(FILE);
  if (!parsed.ok) return t.fail(parsed.errors.join('\n'));
  const { routes, destinations, policies, authentications: requestAuthentications } = parsed.value;
  t.is(requestAuthentications.length, 1);
  for (const ra of requestAuthentications) {
    const back = requestAuthenticationFromWire(decodeMessage<RequestAuthentication__Output>('ambient.l7.RequestAuthentication', encodeRequestAuthentication(ra)));
    if (!back.ok) return t.fail(back.errors.join('\n'));
    t.deepEqual(back.value, ra);
  }
  t.is(routes.length, 1);
  t.is(destinations.length, 2);
  t.is(policies.length, 1);
  for (const rc of routes) {
    const back = routeConfigurationFromWire(decodeMessage<RouteConfiguration__Output>('ambient.l7.RouteConfiguration', encodeRouteConfiguration(rc)));
    if (!back.ok) return t.fail(back.errors.join('\n'));
    t.deepEqual(back.value, rc);
  }
  for (const dp of destinations) {
    const back = destinationPolicyFromWire(decodeMessage<DestinationPolicy__Output>('ambient.l7.DestinationPolicy', encodeDestinationPolicy(dp)));
    if (!back.ok) return t.fail(back.errors.join('\n'));
    t.deepEqual(back.value, dp);
  }
  for (const p of policies) {
    const back = l7AuthorizationFromWire(decodeMessage<AuthorizationPolicy__Output>('ambient.l7.AuthorizationPolicy', encodeL7Authorization(p)));
    if (!back.ok) return t.fail(back.errors.join('\n'));
    t.deepEqual(back.value, p);
  }
  // The sample really exercises what it claims to.
  const first = routes[0]?.routes[0];
  t.is(first?.matches[0]?.path?.kind, 'regex');
  t.is(routes[0]?.routes[1]?.redirect?.statusCode, 308);
  t.deepEqual(destinations[0]?.trafficPolicy?.loadBalancer, { kind: 'hash', key: { kind: 'source-ip' } });
});
