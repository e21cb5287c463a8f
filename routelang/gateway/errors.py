"""Errors the gateway itself answers with, in OpenAI's shape:
`{"error": {"message", "type", "param", "code"}}`. Each `code` is distinct and
documented in docs/gateway.md; the status decides which exception the
official `openai` client raises."""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class Kind:
    status: int
    type: str
    code: str


INVALID_JSON = Kind(400, "invalid_request_error", "invalid_json")
INVALID_REQUEST = Kind(400, "invalid_request_error", "invalid_request")
NO_MATCHING_RULE = Kind(400, "invalid_request_error", "no_matching_rule")
UNSUPPORTED = Kind(400, "invalid_request_error", "unsupported_by_targets")
MISSING_API_KEY = Kind(401, "authentication_error", "missing_api_key")
INVALID_API_KEY = Kind(401, "authentication_error", "invalid_api_key")
NOT_FOUND = Kind(404, "invalid_request_error", "unknown_endpoint")
METHOD_NOT_ALLOWED = Kind(405, "invalid_request_error", "method_not_allowed")
REQUEST_TIMEOUT = Kind(408, "invalid_request_error", "request_timeout")
TOO_LARGE = Kind(413, "invalid_request_error", "request_too_large")
ALL_TARGETS_FAILED = Kind(502, "upstream_error", "all_targets_failed")
STREAM_INTERRUPTED = Kind(502, "upstream_error", "stream_interrupted")
TARGETS_UNAVAILABLE = Kind(503, "service_unavailable", "targets_unavailable")
NOT_READY = Kind(503, "service_unavailable", "not_ready")
INTERNAL = Kind(500, "internal_error", "internal_error")
# Tenants (docs/tenants.md): a key's workspace and agent, their limits, budgets and restrictions.
RATE_LIMITED = Kind(429, "rate_limit_error", "rate_limited")
BUDGET_EXCEEDED = Kind(429, "insufficient_quota", "budget_exceeded")
MODEL_NOT_ALLOWED = Kind(403, "permission_error", "model_not_allowed")
UNKNOWN_WORKSPACE = Kind(403, "permission_error", "unknown_workspace")
NO_QUALIFIED_TARGET = Kind(503, "service_unavailable", "no_qualified_target")
TENANT_STATE_UNAVAILABLE = Kind(503, "service_unavailable", "tenant_state_unavailable")  # the Redis ledger is down

# The admin API's (routelang/gateway/admin.py, docs/registry.md#the-admin-api).
NOT_ADMIN = Kind(403, "permission_error", "admin_key_required")
NOT_FOUND_ROUTER = Kind(404, "not_found_error", "router_not_found")   # also the OpenAI endpoints' (/r/NAME/...)
NOT_FOUND_VERSION = Kind(404, "not_found_error", "version_not_found")
NOT_FOUND_REQUEST = Kind(404, "not_found_error", "request_not_found")
NOT_FOUND_TARGET = Kind(404, "not_found_error", "target_not_found")
NOT_FOUND_KEY = Kind(404, "not_found_error", "key_not_found")
NOT_FOUND_POLICY = Kind(404, "not_found_error", "policy_not_found")   # no such workspace or agent
NOT_SERVED = Kind(404, "not_found_error", "router_not_served")
NO_REGISTRY = Kind(409, "conflict_error", "no_registry")
NOT_DEPLOYED = Kind(409, "conflict_error", "not_deployed")
NOTHING_TO_ROLL_BACK = Kind(409, "conflict_error", "nothing_to_roll_back")
DOES_NOT_CHECK = Kind(422, "invalid_request_error", "does_not_check")
REGISTRY_UNAVAILABLE = Kind(503, "service_unavailable", "registry_unavailable")


def error_body(kind: Kind, message: str, param: str | None = None, **extra) -> dict:
    """`extra`: more members of `error` (the admin API's `diagnostics`)."""
    return {"error": {"message": message, "type": kind.type, "param": param, "code": kind.code, **extra}}


def error_bytes(kind: Kind, message: str, param: str | None = None, **extra) -> bytes:
    return orjson.dumps(error_body(kind, message, param, **extra))
