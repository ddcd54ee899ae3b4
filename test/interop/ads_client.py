"""An independent delta-ADS client (Python grpcio) for interop tests of our xDS server.

Usage: ads_client.py '<json>' with PYTHONPATH holding the *_pb2 modules compiled from proto/.
json: {"address": "127.0.0.1:port", "typeUrl": "...", "nodeId": "...", "responses": N}
Subscribes wildcard to typeUrl, decodes every istio.workload.Address in the responses, ACKs each,
and prints one JSON line per response:
  {"nonce", "systemVersionInfo", "typeUrl", "resources": [{name, version, anyTypeUrl, kind, uid,
   name_, namespace, hostname, ips}], "removed": [...]}
After N responses (the last one ACKed) it half-closes the stream, waits for the server to end it,
prints {"done": true, "code": "<status>"} and exits 0. Any failure prints {"error": "..."} and exits 1.
"""
import ipaddress
import json
import queue
import sys

import grpc

import discovery_pb2
import workload_pb2

METHOD = '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources'


def ip_text(raw):
    return str(ipaddress.ip_address(bytes(raw)))


def describe(resource):
    address = workload_pb2.Address.FromString(resource.resource.value)
    out = {
        'name': resource.name,
        'version': resource.version,
        'anyTypeUrl': resource.resource.type_url,
        'kind': address.WhichOneof('type'),
    }
    if out['kind'] == 'workload':
        w = address.workload
        out.update(uid=w.uid, workloadName=w.name, namespace=w.namespace, ips=[ip_text(a) for a in w.addresses])
    elif out['kind'] == 'service':
        s = address.service
        out.update(serviceName=s.name, namespace=s.namespace, hostname=s.hostname,
                   ips=[ip_text(a.address) for a in s.addresses])
    return out


def main():
    spec = json.loads(sys.argv[1])
    requests = queue.Queue()

    def request_iterator():
        while True:
            item = requests.get()
            if item is None:
                return
            yield item

    channel = grpc.insecure_channel(spec['address'])
    try:
        grpc.channel_ready_future(channel).result(timeout=10)
        call = channel.stream_stream(
            METHOD,
            request_serializer=discovery_pb2.DeltaDiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DeltaDiscoveryResponse.FromString,
        )
        node = discovery_pb2.Node(id=spec['nodeId'])
        requests.put(discovery_pb2.DeltaDiscoveryRequest(node=node, type_url=spec['typeUrl']))
        responses = call(request_iterator())
        seen = 0
        for response in responses:
            line = {
                'nonce': response.nonce,
                'systemVersionInfo': response.system_version_info,
                'typeUrl': response.type_url,
                'resources': [describe(r) for r in response.resources],
                'removed': list(response.removed_resources),
            }
            requests.put(discovery_pb2.DeltaDiscoveryRequest(type_url=response.type_url, response_nonce=response.nonce))
            print(json.dumps(line), flush=True)
            seen += 1
            if seen >= spec['responses']:
                requests.put(None)  # half-close; the server ends the call with OK
        print(json.dumps({'done': True, 'code': responses.code().name}), flush=True)
    except grpc.RpcError as err:
        print(json.dumps({'error': f'{err.code().name}: {err.details()}'}), flush=True)
        sys.exit(1)
    finally:
        channel.close()


if __name__ == '__main__':
    main()
