"""A minimal CRI client for the end-to-end tests (crictl is not packaged in Debian 12).

Usage: python cri_client.py SOCKET METHOD TIMEOUT_SECONDS < request.json

METHOD is a CRI v1 RuntimeService or ImageService method name (RunPodSandbox, ExecSync,
ListImages, ...); the request is its message as JSON (proto3 JSON mapping, field names in
lowerCamelCase or as in api.proto). Prints the response as JSON on stdout and exits 0; a gRPC
error is printed on stderr with exit 1. Top-level bytes fields (ExecSync's stdout and stderr) are
printed as UTF-8 text rather than base64. The stubs come from PyPI `container-runtime-interface-api`
(generated from k8s.io/cri-api), installed into a venv by the test harness.
"""

import json
import sys

import grpc
from google.protobuf import json_format

from cri_api.v1 import api_pb2, api_pb2_grpc


def main() -> int:
    socket, method, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    channel = grpc.insecure_channel(f"unix://{socket}")
    stub = None
    for service in ("RuntimeService", "ImageService"):
        candidate = getattr(api_pb2_grpc, f"{service}Stub")(channel)
        if hasattr(candidate, method):
            stub = candidate
            break
    if stub is None:
        print(f"unknown CRI method {method}", file=sys.stderr)
        return 2
    request_type = getattr(api_pb2, f"{method}Request")
    request = json_format.ParseDict(json.load(sys.stdin), request_type())
    try:
        response = getattr(stub, method)(request, timeout=timeout)
    except grpc.RpcError as err:
        print(f"{method}: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    out = json_format.MessageToDict(response, preserving_proto_field_name=True)
    # Top-level bytes fields (ExecSync's stdout/stderr) as text instead of base64.
    for field in response.DESCRIPTOR.fields:
        if field.type == field.TYPE_BYTES and field.name in out:
            out[field.name] = getattr(response, field.name).decode("utf-8", "replace")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
