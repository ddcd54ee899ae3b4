import test from 'ava';
import type { LoadBalancing, Service, Workload } from '../../src/workload-api/types.ts';
import { chooseIp, pickVipService, rankByLocality, weightedPick } from '../../src/ztunnel/endpoint-selection.ts';

const weighted: Array<[string, number[], number, number | undefined]> = [
  ['first slot', [1, 3], 0, 0],
  ['boundary goes to the next slot', [1, 3], 0.25, 1],
  ['last slot', [1, 3], 0.999, 1],
  ['zero weights are skipped', [0, 2, 0], 0, 1],
  ['nothing positive: none', [0, 0], 0.5, undefined],
  ['empty: none', [], 0.5, undefined],
];
for (const [name, weights, draw, expected] of weighted) {
  test(`weightedPick: ${name}`, (t) => {
    const items = weights.map((_, i) => i);
    t.is(weightedPick(items, (i) => weights[i] ?? 0, () => draw), expected);
  });
}

const w = (name: string, over: Partial<Workload> = {}): { workload: Workload } => ({
  workload: { name, network: 'n1', node: 'node1', clusterId: 'c1', locality: { region: 'r1', zone: 'z1', subzone: 's1' }, ...over } as Workload,
});
const source = w('src').workload;
const lb = (mode: LoadBalancing['mode'], routingPreference: LoadBalancing['routingPreference']): LoadBalancing => ({ mode, routingPreference, healthPolicy: 'ONLY_HEALTHY' });
const far = w('far', { locality: { region: 'r2', zone: 'z1', subzone: 's1' } });
const zone = w('zone', { locality: { region: 'r1', zone: 'z2', subzone: 's1' } });
const same = w('same');
const remote = w('remote', { network: 'n2' });
const otherCluster = w('other-cluster', { clusterId: 'c2' });

const ranking: Array<[string, LoadBalancing | undefined, Array<{ workload: Workload }>, string[]]> = [
  ['no LB: everything', undefined, [far, zone, same], ['far', 'zone', 'same']],
  ['UNSPECIFIED: everything', lb('UNSPECIFIED_MODE', ['REGION']), [far, same], ['far', 'same']],
  ['FAILOVER: best rank only', lb('FAILOVER', ['REGION', 'ZONE']), [far, zone, same], ['same']],
  ['FAILOVER: falls back to the next rank', lb('FAILOVER', ['REGION', 'ZONE']), [far, zone], ['zone']],
  ['FAILOVER: rank 0 for all keeps all', lb('FAILOVER', ['REGION', 'ZONE']), [far, w('far2', { locality: { region: 'r3', zone: 'z1', subzone: 's1' } })], ['far', 'far2']],
  ['STRICT: full matches only', lb('STRICT', ['REGION', 'ZONE']), [zone, same], ['same']],
  ['STRICT: none', lb('STRICT', ['REGION', 'ZONE']), [far, zone], []],
  ['CLUSTER scope', lb('FAILOVER', ['CLUSTER']), [otherCluster, same], ['same']],
  ['NETWORK first beats a remote full locality match', lb('FAILOVER', ['NETWORK', 'REGION', 'ZONE']), [remote, far], ['far']],
  ['NETWORK first: mismatch keeps counting later scopes', lb('FAILOVER', ['NETWORK', 'REGION']), [remote, w('remote-far', { network: 'n2', locality: { region: 'r2', zone: 'z1', subzone: 's1' } })], ['remote']],
  ['NETWORK first under STRICT: a network mismatch is not a full match', lb('STRICT', ['NETWORK', 'REGION']), [remote, same], ['same']],
];
for (const [name, policy, candidates, expected] of ranking) {
  test(`rankByLocality: ${name}`, (t) => {
    t.deepEqual(rankByLocality(candidates, policy, source).map((c) => c.workload.name), expected);
  });
}

const s = (namespace: string, over: Partial<Service> = {}): Service => ({ namespace, visibility: 'PUBLIC', canonical: false, ...over }) as Service;
const vip: Array<[string, Service[], string, string | undefined]> = [
  ['single', [s('x')], 'a', 'x'],
  ['client namespace first', [s('x', { canonical: true }), s('a')], 'a', 'a'],
  ['canonical next', [s('x'), s('y', { canonical: true })], 'a', 'y'],
  ['first otherwise', [s('x'), s('y')], 'a', 'x'],
  ['NAMESPACE visibility hides other namespaces', [s('x', { visibility: 'NAMESPACE', canonical: true }), s('y')], 'a', 'y'],
  ['only hidden services: none', [s('x', { visibility: 'NAMESPACE' })], 'a', undefined],
  ['NAMESPACE visibility in the client namespace is visible', [s('a', { visibility: 'NAMESPACE' })], 'a', 'a'],
];
for (const [name, services, client, expected] of vip) {
  test(`pickVipService: ${name}`, (t) => {
    t.is(pickVipService(services, client)?.namespace, expected);
  });
}

const ips: Array<[string, string[], Service['ipFamilies'], string, string | undefined]> = [
  ['the dialled IP when it is the workload\'s', ['10.0.0.1', '10.0.0.2'], 'AUTOMATIC', '10.0.0.2', '10.0.0.2'],
  ['the request family first', ['fd00::1', '10.0.0.1'], 'DUAL', '10.96.0.1', '10.0.0.1'],
  ['another family when the request family is missing', ['fd00::1'], 'AUTOMATIC', '10.96.0.1', 'fd00::1'],
  ['IPV4_ONLY', ['fd00::1', '10.0.0.1'], 'IPV4_ONLY', 'fd00::99', '10.0.0.1'],
  ['IPV6_ONLY with no IPv6: none', ['10.0.0.1'], 'IPV6_ONLY', '10.96.0.1', undefined],
  ['no addresses: none', [], 'AUTOMATIC', '10.96.0.1', undefined],
];
for (const [name, addresses, families, original, expected] of ips) {
  test(`chooseIp: ${name}`, (t) => {
    t.is(chooseIp({ addresses } as unknown as Workload, families, original), expected);
  });
}
