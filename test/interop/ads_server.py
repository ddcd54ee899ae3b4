#!/usr/bin/env python3
"""A delta ADS server in Python grpcio, for interop with our xDS client.

Prints JSON lines on stdout: first {"port": N}, then {"event": "stream", "metadata": {...}} per
stream and {"event": "request", ...} per DeltaDiscoveryRequest it receives. To the initial Address
request it answers with two workloads, one valid ("good") and one with an empty uid ("bad"); to the
initial Authorization request with an empty response. Stops when stdin closes.
Needs the *_pb2 modules of the project's protos on PYTHONPATH (test/helpers/python-protos.ts).
"""
import json
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf import any_pb2, json_format

import discovery_pb2
import workload_pb2

ADDRESS = 'type.googleapis.com/istio.workload.Address'
AUTHORIZATION = 'type.googleapis.com/istio.security.Authorization'

_lock = threading.Lock()


def emit(obj):
    with _lock:
        sys.stdout.write(json.dumps(obj) + '\n')
        sys.stdout.flush()


def address_resource(name, uid, version):
    address = workload_pb2.Address(workload=workload_pb2.Workload(uid=uid, name=name, namespace='default'))
    value = any_pb2.Any(type_url=ADDRESS, value=address.SerializeToString())
    return discovery_pb2.Resource(name=name, version=version, resource=value)


def delta_aggregated_resources(request_iterator, context):
    emit({'event': 'stream', 'metadata': {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}})
    for request in request_iterator:
        emit({
            'event': 'request',
            'typeUrl': request.type_url,
            'nonce': request.response_nonce,
            'hasNode': request.HasField('node'),
            'nodeId': request.node.id,
            'metadata': json_format.MessageToDict(request.node.metadata),
            'initialResourceVersions': dict(request.initial_resource_versions),
            'subscribe': list(request.resource_names_subscribe),
            'errorDetail': request.error_detail.message if request.HasField('error_detail') else None,
        })
        if request.response_nonce:
            continue
        if request.type_url == ADDRESS:
            yield discovery_pb2.DeltaDiscoveryResponse(
                type_url=ADDRESS,
                nonce='addr-1',
                system_version_info='py-1',
                resources=[
                    address_resource('good', 'Kubernetes//Pod/default/good', 'v1'),
                    address_resource('bad', '', 'v1'),
                ],
            )
        elif request.type_url == AUTHORIZATION:
            yield discovery_pb2.DeltaDiscoveryResponse(type_url=AUTHORIZATION, nonce='authz-1', system_version_info='py-1')


def main():
    handler = grpc.method_handlers_generic_handler(
        'envoy.service.discovery.v3.AggregatedDiscoveryService',
        {
            'DeltaAggregatedResources': grpc.stream_stream_rpc_method_handler(
                delta_aggregated_resources,
                request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                response_serializer=discovery_pb2.DeltaDiscoveryResponse.SerializeToString,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port('127.0.0.1:0')
    server.start()
    emit({'port': port})
    sys.stdin.read()  # until the test closes stdin
    server.stop(0).wait()


if __name__ == '__main__':
    main()
