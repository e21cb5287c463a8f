"""An OTLP/HTTP trace receiver for the tests: a real server on loopback that takes
`POST /v1/traces` (protobuf, gzip or not, as the OpenTelemetry exporters send it),
decodes each ExportTraceServiceRequest with opentelemetry-proto and keeps its spans
as plain dicts."""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

KINDS = {Span.SPAN_KIND_SERVER: "server", Span.SPAN_KIND_CLIENT: "client", Span.SPAN_KIND_INTERNAL: "internal"}
STATUSES = {Status.STATUS_CODE_UNSET: "unset", Status.STATUS_CODE_OK: "ok", Status.STATUS_CODE_ERROR: "error"}


def _value(any_value) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


class OtlpSink:
    """`url` is the base URL to give `--otlp-endpoint`; `spans` grows as exports arrive."""

    def __init__(self):
        self.spans: list[dict] = []
        self.resources: list[dict] = []
        self.paths: list[str] = []
        self.content_types: list[str] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                data = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    data = gzip.decompress(data)
                sink.receive(self.path, self.headers.get("Content-Type", ""), data)
                body = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                return   # quiet: the tests read `spans`

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def receive(self, path: str, content_type: str, data: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(data)
        with self.lock:
            self.paths.append(path)
            self.content_types.append(content_type)
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                self.resources.append(resource)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append({
                            "name": span.name, "kind": KINDS.get(span.kind, str(span.kind)),
                            "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex() or None,
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                            "status": STATUSES.get(span.status.code, str(span.status.code)),
                            "scope": scope_spans.scope.name, "resource": resource,
                            "start_ns": span.start_time_unix_nano, "end_ns": span.end_time_unix_nano})

    def of_kind(self, kind: str) -> list[dict]:
        with self.lock:
            return [s for s in self.spans if s["kind"] == kind]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
