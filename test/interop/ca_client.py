"""Calls Istio's CreateCertificate with Python's grpcio (gRPC core, BoringSSL) against our CA server.

Reads one JSON object on stdin:
  {"target": "127.0.0.1:15012", "rootCaPem": "...", "serverName": "istiod.istio-system.svc",
   "calls": [{"name": "...", "token": "..."|null, "csr": "...", "ttl": 3600, "impersonatedIdentity": "..."|null}]}
and prints one JSON array on stdout, one entry per call:
  {"name": ..., "ok": true, "certChain": [...]} or {"name": ..., "ok": false, "status": "UNAUTHENTICATED", "details": "..."}
The _pb2 modules come from PYTHONPATH (compiled from the project's proto/ by protoc).
"""
import json
import sys

import grpc
from google.protobuf import struct_pb2

import citadel_pb2

METHOD = "/istio.v1.auth.IstioCertificateService/CreateCertificate"


def main() -> None:
    spec = json.load(sys.stdin)
    creds = grpc.ssl_channel_credentials(root_certificates=spec["rootCaPem"].encode())
    options = [("grpc.ssl_target_name_override", spec["serverName"])]
    results = []
    with grpc.secure_channel(spec["target"], creds, options=options) as channel:
        create = channel.unary_unary(
            METHOD,
            request_serializer=citadel_pb2.IstioCertificateRequest.SerializeToString,
            response_deserializer=citadel_pb2.IstioCertificateResponse.FromString,
        )
        for call in spec["calls"]:
            request = citadel_pb2.IstioCertificateRequest(csr=call["csr"], validity_duration=call["ttl"])
            if call.get("impersonatedIdentity"):
                metadata = struct_pb2.Struct()
                metadata.update({"ImpersonatedIdentity": call["impersonatedIdentity"]})
                request.metadata.CopyFrom(metadata)
            headers = [("clusterid", "Kubernetes")]
            if call.get("token"):
                headers.append(("authorization", "Bearer " + call["token"]))
            try:
                response = create(request, metadata=headers, timeout=20)
                results.append({"name": call["name"], "ok": True, "certChain": list(response.cert_chain)})
            except grpc.RpcError as err:
                results.append({"name": call["name"], "ok": False, "status": err.code().name, "details": err.details()})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
