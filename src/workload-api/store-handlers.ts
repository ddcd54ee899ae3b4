import { errorMessage } from '../core/errors.ts';
import type { Result } from '../core/result.ts';
import { addressFromWire, authorizationFromWire } from './convert.ts';
import type { Address__Output } from './generated/istio/workload/Address.ts';
import type { Authorization__Output } from './generated/istio/security/Authorization.ts';
import { decodeMessage, messageNameOf, TypeUrl } from './proto.ts';
import type { WorkloadStore } from './store.ts';
import { serviceKey, type Address, type AuthorizationPolicy } from './types.ts';
import type { Rejection, XdsHandler, XdsResource } from './xds-types.ts';

/** Decodes and converts one resource; malformed bytes and invalid fields both become a reason. */
function convertResource<W, D>(resource: XdsResource, expectedTypeUrl: string, convert: (wire: W) => Result<D>): Result<D> {
  if (resource.typeUrl !== expectedTypeUrl) return { ok: false, errors: [`resource type ${JSON.stringify(resource.typeUrl)} is not ${expectedTypeUrl}`] };
  let wire: W;
  try {
    wire = decodeMessage<W>(messageNameOf(expectedTypeUrl), resource.value);
  } catch (err) {
    return { ok: false, errors: [`malformed protobuf: ${errorMessage(err)}`] };
  }
  return convert(wire);
}

function addressKey(address: Address): string {
  return address.kind === 'workload' ? address.workload.uid : serviceKey(address.service.namespace, address.service.hostname);
}

/**
 * Applies Address resources to the store: every valid one is applied, every invalid one is
 * rejected with its field-path reason and leaves the last good version in place. Two resources of
 * one response naming the same workload uid or service: the second is rejected.
 */
export function addressHandler(store: WorkloadStore): XdsHandler {
  return {
    typeUrl: TypeUrl.address,
    handle(resources, removed) {
      const rejections: Rejection[] = [];
      const seen = new Set<string>();
      for (const resource of resources) {
        const converted = convertResource<Address__Output, Address>(resource, TypeUrl.address, addressFromWire);
        if (!converted.ok) {
          rejections.push({ name: resource.name, reason: converted.errors.join('; ') });
          continue;
        }
        const key = addressKey(converted.value);
        if (seen.has(key)) {
          rejections.push({ name: resource.name, reason: `duplicate ${converted.value.kind === 'workload' ? 'uid' : 'service'} ${key} in one response` });
          continue;
        }
        seen.add(key);
        store.upsertAddress(converted.value);
      }
      for (const name of removed) store.removeAddress(name);
      return rejections;
    },
  };
}

/** Applies Authorization resources, keyed `namespace/name`, with the same partial-apply rule. */
export function authorizationHandler(store: WorkloadStore): XdsHandler {
  return {
    typeUrl: TypeUrl.authorization,
    handle(resources, removed) {
      const rejections: Rejection[] = [];
      for (const resource of resources) {
        const converted = convertResource<Authorization__Output, AuthorizationPolicy>(resource, TypeUrl.authorization, authorizationFromWire);
        if (converted.ok) store.upsertPolicy(converted.value);
        else rejections.push({ name: resource.name, reason: converted.errors.join('; ') });
      }
      for (const name of removed) store.removePolicy(name);
      return rejections;
    },
  };
}

