"""The admin API's table: every endpoint is one row (its method and path,
its handler, the pydantic models of its body and of its answer, and the error
statuses it can give). The routes and the OpenAPI document are both built
from it, so the document cannot drift from the code."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel

from ...registry.rows import MAX_LIMIT, SOURCES
from ...tenancy.keys import NAME as TENANT_NAME
from . import analytics, decisions, history, registry, targets, tenants
from .common import Handler
from .models import (
    ROUTER_NAME,
    AgentModels,
    AgentPreferences,
    AgentPreferencesBody,
    Deleted,
    DeployBody,
    Deployed,
    ExportAnswer,
    ExportDocument,
    HealthBody,
    HealthDetailed,
    HealthOverview,
    Imported,
    KeyBody,
    KeyCreated,
    KeyInfo,
    KeyList,
    ModelAnalytics,
    PolicyChanged,
    PushBody,
    Pushed,
    RequestList,
    RequestMetrics,
    RequestRow,
    RolledBack,
    RouteBody,
    Routed,
    RouterDetail,
    RouterList,
    RoutingTestBody,
    RoutingTested,
    RuleList,
    TargetState,
    VersionDetail,
    VersionList,
    WorkspaceAnalytics,
    WorkspaceConfig,
    WorkspaceConfigBody,
)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str                       # aiohttp's form, below `prefix`: /routers/{name}
    handler: Handler
    summary: str
    answer: type[BaseModel]
    body: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()    # beyond 400, 401, 403 and 503 (the registry unusable), which every one may give
    query: tuple[str, ...] = ()
    prefix: str = "/api"            # "": served at the gateway's root (the service's /health/detailed)

    @property
    def full_path(self) -> str:
        return self.prefix + self.path


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/routers", registry.list_routers, "Every router of the registry", RouterList, errors=(409,)),
    Endpoint("GET", "/routers/{name}", registry.get_router, "A router: its versions, deployments and config",
             RouterDetail, errors=(404, 409)),
    Endpoint("DELETE", "/routers/{name}", registry.delete_router,
             "Delete a router: every version, deployment and its request history", Deleted, errors=(404, 409)),
    Endpoint("GET", "/routers/{name}/versions", registry.list_versions, "The versions of a router", VersionList,
             errors=(404, 409)),
    Endpoint("POST", "/routers/{name}/versions", registry.push, "Push a new version (checked as `routelang push`)",
             Pushed, body=PushBody, status=201, errors=(409, 413, 422)),
    Endpoint("GET", "/routers/{name}/versions/{version}", registry.get_version, "One stored version", VersionDetail,
             errors=(404, 409)),
    Endpoint("POST", "/routers/{name}/deploy", registry.deploy, "Deploy a version; the answer has the semantic diff",
             Deployed, body=DeployBody, errors=(404, 409, 422)),
    Endpoint("POST", "/routers/{name}/rollback", registry.rollback, "Make the previously deployed version active again",
             RolledBack, errors=(404, 409)),
    Endpoint("GET", "/routers/{name}/rules", registry.rules, "The rules of the active (else latest) version", RuleList,
             errors=(404, 409)),
    Endpoint("GET", "/routers/{name}/requests", history.list_requests, "The request history, newest first",
             RequestList, errors=(404, 409), query=("limit", "source")),
    Endpoint("GET", "/requests/{id}", history.get_request, "One request of the history", RequestRow, errors=(404, 409)),
    Endpoint("POST", "/route", decisions.route, "The routing decision for a request (nothing is sent upstream)", Routed,
             body=RouteBody, errors=(404, 409, 413, 422)),
    Endpoint("POST", "/routing/test", decisions.routing_test, "The decision with each condition of each rule",
             RoutingTested, body=RoutingTestBody, errors=(404, 409, 413, 422)),
    Endpoint("GET", "/export", registry.export, "The whole registry: every router, version and deployment",
             ExportAnswer, errors=(409,)),
    Endpoint("POST", "/import", registry.import_, "Import an export (idempotent: versions are matched by content)",
             Imported, body=ExportDocument, errors=(409, 413, 422)),
    Endpoint("POST", "/targets/{router}/{target}/drain", targets.drain, "Take a target out of selection by hand",
             TargetState, errors=(404,)),
    Endpoint("POST", "/targets/{router}/{target}/undrain", targets.undrain, "Put a drained target back", TargetState,
             errors=(404,)),
    Endpoint("POST", "/targets/{router}/{target}/health", targets.push_health, "Report a target's health from outside",
             TargetState, body=HealthBody, errors=(404,)),
    # Tenants (docs/tenants.md): keys, and the model-router service's workspace and agent shapes.
    Endpoint("POST", "/keys", tenants.create_key, "Issue a tenant key (its secret is shown once)", KeyCreated,
             body=KeyBody, status=201, errors=(409,)),
    Endpoint("GET", "/keys", tenants.list_keys, "Every tenant key (never a secret)", KeyList, errors=(409,),
             query=("workspace",)),
    Endpoint("DELETE", "/keys/{key}", tenants.revoke_key, "Revoke a tenant key", KeyInfo, errors=(404, 409)),
    Endpoint("GET", "/workspaces/{workspace}/config", tenants.get_workspace, "A workspace, in the service's shape",
             WorkspaceConfig, errors=(404,), query=("router",)),
    Endpoint("POST", "/workspaces/{workspace}/config", tenants.set_workspace,
             "Set a workspace: a new checked version, deployed; the answer has the semantic diff", PolicyChanged,
             body=WorkspaceConfigBody, errors=(404, 409, 422), query=("router", "dryRun")),
    Endpoint("GET", "/agents/{agent}/preferences", tenants.get_agent, "An agent, in the service's shape",
             AgentPreferences, errors=(404,), query=("router",)),
    Endpoint("POST", "/agents/{agent}/preferences", tenants.set_agent,
             "Set an agent: a new checked version, deployed; the answer has the semantic diff", PolicyChanged,
             body=AgentPreferencesBody, errors=(404, 409, 422), query=("router", "dryRun")),
    Endpoint("GET", "/agents/{agent}/models", tenants.agent_models, "The targets an agent may use, and which are"
             " selectable now", AgentModels, errors=(404,), query=("router",)),
    # The model-router service's analytics (from the request history) and health.
    Endpoint("GET", "/analytics/workspaces/{workspace}", analytics.workspace_analytics,
             "A workspace's requests, tokens, cost, latency and success from the history", WorkspaceAnalytics,
             errors=(409,), query=("timeRange",)),
    Endpoint("GET", "/analytics/models", analytics.model_analytics,
             "Requests, tokens, cost, latency and success per target or model from the history", ModelAnalytics,
             errors=(409,), query=("timeRange", "modelId")),
    Endpoint("GET", "/metrics/requests", analytics.request_metrics, "The newest requests of the history",
             RequestMetrics, errors=(409,), query=("limit",)),
    Endpoint("GET", "/health/overview", analytics.health_overview,
             "The targets' health, the rules, and the last hour's requests", HealthOverview),
    Endpoint("GET", "/health/detailed", analytics.health_detailed,
             "Each part of the gateway checked: routers, targets, shared state, registry (503: unhealthy)",
             HealthDetailed, prefix=""),
)

PARAMETERS = {
    "name": {"type": "string", "pattern": f"^{ROUTER_NAME}$"},
    "router": {"type": "string", "pattern": f"^{ROUTER_NAME}$"},
    "version": {"type": "integer", "minimum": 1},
    "id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    "target": {"type": "string", "minLength": 1},
    "key": {"type": "string", "pattern": "^key_[0-9a-f]{12}$"},
    "workspace": {"type": "string", "pattern": f"^{TENANT_NAME.pattern}$"},
    "agent": {"type": "string", "pattern": f"^{TENANT_NAME.pattern}$"},
}
QUERY = {"limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100},
         "source": {"type": "string", "enum": list(SOURCES), "description": "only the rows of this source"},
         "workspace": {"type": "string", "description": "only this workspace's keys"},
         "router": {"type": "string", "pattern": f"^{ROUTER_NAME}$",
                    "description": "the router (default: the gateway's default router)"},
         "dryRun": {"type": "boolean", "default": False, "description": "check and diff, store nothing"},
         "timeRange": {"type": "string", "enum": list(analytics.TIME_RANGES), "default": analytics.DEFAULT_TIME_RANGE},
         "modelId": {"type": "string", "description": "a target name, or a model name (every target serving it)"}}


def _regex(path: str) -> re.Pattern:
    return re.compile("^" + re.sub(r"\{[a-z]+\}", "[^/]+", path) + "$")


PATTERNS = [(_regex(e.full_path), e.method) for e in ENDPOINTS] + [(re.compile("^/api/openapi.json$"), "GET")]
