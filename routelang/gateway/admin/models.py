"""The admin API's pydantic models: the request bodies it validates and the
answers it serialises. The OpenAPI document's schemas are generated from them."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ...tenancy.keys import NAME as TENANT_NAME

ROUTER_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"   # store.ROUTER_NAME, as an OpenAPI pattern
EXPORT_FORMAT = "routelang-registry"
STDLIB_NAME = re.compile(r"<std(\.[A-Za-z_][A-Za-z0-9_]*)+>")


def _relative(name: str) -> bool:
    parts = name.split("/")
    return not name.startswith("/") and "\\" not in name and ":" not in name and \
        all(p not in ("", ".", "..") for p in parts)


# ---- the models: request bodies --------------------------------------------------------

class Body(BaseModel):
    """A request body. Strict: a value of another JSON type is a 400 naming its field, never read as
    something it may not mean (`true` as version 1 or a 1 USD budget, "10" as 10, 2.0 as version 2,
    "false" or 0 as false); a whole number is still a number where a float is asked for."""

    model_config = ConfigDict(extra="forbid", strict=True)


class PushBody(Body):
    """A new version: `.route` source text, or a Mixtrain-schema JSON config (exactly one)."""

    source: str | None = Field(None, description="`.route` text; it may import the standard library only")
    config: dict[str, Any] | None = Field(None, description="a Mixtrain-schema config, imported to `.route`")
    filename: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.route$",
                                 description="with `source`: the entry file's name (default NAME.route)")
    message: str = ""

    @model_validator(mode="after")
    def _one_input(self) -> PushBody:
        if (self.source is None) == (self.config is None):
            raise ValueError("give exactly one of `source` and `config`")
        return self


class DeployBody(Body):
    version: int = Field(ge=1)
    dry_run: bool = Field(False, description="only compute the semantic diff; deploy nothing")


class RouteBody(Body):
    router: str | None = Field(None, description="the router's name (default: the gateway's default router)")
    data: dict[str, Any] = Field(description="the request, as the SDK's `route(data)` takes it")
    record: bool = Field(True, description="record the decision in the request history")


class RoutingTestBody(Body):
    router: str | None = None
    data: dict[str, Any]
    expected_rule: str | None = None


class HealthBody(Body):
    healthy: bool
    detail: str | None = None


class ExportedVersion(Body):
    version: int = Field(ge=1)
    content_hash: str
    message: str
    created_at: float
    entry: str
    sources: dict[str, str]
    compiled: dict[str, Any]

    @field_validator("sources")
    @classmethod
    def _relative_names(cls, sources: dict[str, str]) -> dict[str, str]:
        """They are written to a temporary directory to be checked: never outside it."""
        for name in sources:
            if not (STDLIB_NAME.fullmatch(name) or _relative(name)):
                raise ValueError(f"{name!r} is not a source file's name: a relative path without `..`, "
                                 "or a standard-library module `<std.name>`")
        return sources


class ExportedDeployment(Body):
    version: int = Field(ge=1)
    deployed_at: float
    rolled_back: bool


class ExportedRouter(Body):
    name: str = Field(pattern=f"^{ROUTER_NAME}$")
    active_version: int | None
    versions: list[ExportedVersion]
    deployments: list[ExportedDeployment] = []

    @model_validator(mode="after")
    def _active_is_exported(self) -> ExportedRouter:
        if self.active_version is not None and self.active_version not in {v.version for v in self.versions}:
            raise ValueError(f"active_version {self.active_version} is not among the exported versions")
        return self


class ExportDocument(Body):
    format: Literal["routelang-registry"] = EXPORT_FORMAT
    format_version: Literal[1] = 1
    exported_at: float | None = None
    routers: list[ExportedRouter]


# ---- the models: answers ----------------------------------------------------------------

class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(Answer):
    message: str
    type: str
    param: str | None
    code: str
    diagnostics: list[dict[str, Any]] | None = Field(None, description="the checker's findings (push, import)")


class ErrorBody(Answer):
    error: ErrorDetail


class RouterSummary(Answer):
    name: str
    active_version: int | None
    latest_version: int | None
    served: bool = Field(description="this gateway serves the router now")


class RouterList(Answer):
    object: Literal["list"] = "list"
    data: list[RouterSummary]


class Deployment(Answer):
    version: int
    deployed_at: float
    rolled_back: bool


class RouterDetail(RouterSummary):
    versions: int
    deployments: list[Deployment]
    config: dict[str, Any] = Field(description="the active version's compiled config (the latest's before a deploy)")


class VersionSummary(Answer):
    router: str
    version: int
    content_hash: str
    message: str
    created_at: float
    active: bool


class VersionList(Answer):
    object: Literal["list"] = "list"
    router: str
    active_version: int | None
    data: list[VersionSummary]


class VersionDetail(VersionSummary):
    entry: str
    sources: dict[str, str]
    compiled: dict[str, Any]


class Pushed(VersionSummary):
    created: bool = Field(description="false: identical content was already this version")
    warnings: list[dict[str, Any]]
    warnings_text: str


class DiffSummary(Answer):
    text: str
    changes: list[dict[str, Any]]
    more_changes: list[dict[str, Any]]
    exact: bool
    caveats: list[str]
    policy_changes: list[str] = []      # workspaces and agents added, removed or changed (docs/tenants.md)


class Deployed(Answer):
    router: str
    version: int
    previous_version: int | None
    deployed: bool = Field(description="false: a dry run, or the version was already active")
    diff: DiffSummary | None = Field(description="from the previous active version; null when there was none")


class RolledBack(Answer):
    router: str
    from_version: int
    to_version: int


class Deleted(Answer):
    router: str
    deleted: Literal[True] = True


class RuleList(Answer):
    object: Literal["list"] = "list"
    router: str
    version: int
    data: list[dict[str, Any]]


class TargetOut(Answer):
    provider: str
    model_name: str
    endpoint: str
    weight: float
    label: str | None
    timeout_ms: int | None
    retry_count: int | None
    function_name: str | None
    request_class: str | None
    headers: list[str] | None = Field(description="the names of the target's headers; never their values")
    is_shadow: bool
    name: str | None = Field(None, description="the target's name in the .route file; null when it has none")


class MatchedRule(Answer):
    name: str
    priority: int
    strategy: str


class Routed(Answer):
    router: str
    version: int | None
    matched_rule: MatchedRule | None
    selected_targets: list[TargetOut] = Field(description="what the strategy picked, then the shadows "
                                                          "(the SDK's `selected_targets`)")
    attempts: list[TargetOut] = Field(description="the order the gateway would try targets in, failover included")
    shadows: list[TargetOut]
    reason: str
    unavailable: bool = Field(description="the rule matched but no target may be tried (breakers, health, drain)")
    request_id: str | None = Field(description="the history row recorded for this decision")


class ConditionOut(Answer):
    field: str
    operator: str
    value: Any = None
    words: str = Field(description="the condition as `routelang explain` words it")
    actual: Any = None
    held: bool


class RuleReport(Answer):
    name: str
    priority: int
    matched: bool = Field(description="the rule's whole condition holds for the request")
    selected: bool = Field(description="the rule that routes the request (the first matching, by priority)")
    conditions: list[ConditionOut]


class RoutingTested(Routed):
    rules: list[RuleReport] = Field(description="every enabled rule in evaluation order")
    expected_rule: str | None
    passed: bool | None


class RequestRow(Answer):
    id: str
    time: float
    router: str
    version: int | None
    rule: str | None
    targets: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    status: str
    latency_ms: float | None
    ttft_ms: float | None
    tokens_in: int | None
    tokens_out: int | None
    cost: float | None
    split_label: str | None
    sticky_key_hash: str | None
    client_key_id: str | None
    http_status: int | None = Field(None, description="served by the gateway: the HTTP status of its answer")
    error: str | None = Field(None, description="served by the gateway: its error code, if any")
    source: str = Field(description="gateway (a request served) or sdk (a decision of the SDK or of POST /api/route)")
    first_target: str | None = Field(None, description="served by the gateway: the first target tried")
    first_outcome: str | None = Field(None, description="served by the gateway: the first target's outcome, "
                                                        "its own retries included")
    failed_over: bool | None = Field(None, description="served by the gateway: another target was called after "
                                                       "the first")
    matched_rule: str | None
    selected_target: str | None


class RequestList(Answer):
    object: Literal["list"] = "list"
    router: str
    data: list[RequestRow]


class ImportedRouter(Answer):
    name: str
    created_versions: list[int]
    existing_versions: list[int]
    active_version: int | None
    deployed: bool


class Imported(Answer):
    routers: list[ImportedRouter]


class TargetState(Answer):
    router: str
    target: str
    drained: bool
    healthy: bool | None = Field(description="the last probe or pushed report; null before any")
    health_detail: str | None
    selectable: bool = Field(description="neither drained nor unhealthy")


class ExportAnswer(ExportDocument):
    """The export as answered (the same document POST /api/import takes)."""


# ---- analytics and health (docs/tenants.md) --------------------------------------------------------
# The model-router service's answers, field for field (camelCase). A number the history cannot give
# (no request in the window) is null, never a made-up 0.

class WorkspaceAnalytics(Answer):
    workspaceId: str
    timeRange: str
    totalRequests: int
    uniqueAgents: int = Field(description="agents of the workspace's keys that sent requests")
    totalTokens: int
    totalCost: float = Field(description="USD")
    averageLatency: float | None = Field(description="milliseconds")
    successRate: float | None = Field(description="percent of requests answered")
    modelUsage: dict[str, int] = Field(description="requests per target first sent to")
    agentUsage: dict[str, int] = Field(description="requests per agent of the key (`unknown`: a key without one)")


class ModelAnalytics(Answer):
    timeRange: str
    modelId: str = Field(description="as asked, or `all`")
    targets: list[str] = Field(description="the targets `modelId` names (a target name, or every target serving "
                                           "that model); empty for `all`")
    totalRequests: int
    averageLatency: float | None = Field(description="milliseconds")
    successRate: float | None = Field(description="percent of requests answered")
    totalTokens: int
    totalCost: float = Field(description="USD")
    requestsByAgent: dict[str, int]
    requestsByStatus: dict[str, int] = Field(description="`success`, `error`, `unmatched`, `client_disconnected`")
    hourlyDistribution: dict[str, int] = Field(description="requests per hour of the day (`HH:00`, UTC)")


class TokenUsage(Answer):
    promptTokens: int | None
    completionTokens: int | None
    totalTokens: int | None
    cost: float | None = Field(description="USD")


class RequestMetric(Answer):
    requestId: str
    modelId: str | None = Field(description="the target first sent to")
    agentType: str | None
    workspaceId: str | None
    requestType: None = Field(description="not recorded by routelang: always null")
    latency: float | None = Field(description="milliseconds, the whole request as the gateway saw it")
    totalLatency: float | None = Field(description="the same as `latency`: routelang records one")
    usage: TokenUsage
    status: str = Field(description="`success`, `error`, `unmatched`, `client_disconnected`")
    timestamp: str
    router: str
    version: int | None
    rule: str | None


class RequestMetrics(Answer):
    metrics: list[RequestMetric] = Field(description="newest first")
    count: int


class ModelCounts(Answer):
    total: int
    active: int = Field(description="not drained")
    healthy: int
    degraded: int
    unhealthy: int


class RoutingCounts(Answer):
    totalRules: int
    enabledRules: int = Field(description="every rule of a served router is enabled")


class Performance(Answer):
    requestsLastHour: int | None = Field(description="null without a registry (no history)")
    averageLatency: float | None
    successRate: float | None


class HealthOverview(Answer):
    timestamp: str
    models: ModelCounts
    routing: RoutingCounts
    performance: Performance
    healthyModels: list[str]
    degradedModels: list[str]
    unhealthyModels: list[str]
    drainedModels: list[str]


class TargetHealth(Answer):
    router: str
    target: str
    provider: str
    model: str
    condition: Literal["healthy", "degraded", "unhealthy", "drained"]
    breaker: str | None


class ComponentCheck(Answer):
    status: Literal["up", "degraded", "down", "not_used"]
    detail: dict[str, Any] = {}


class HealthDetailed(Answer):
    status: Literal["healthy", "degraded", "unhealthy"]
    timestamp: str
    service: str
    version: str
    checks: dict[str, ComponentCheck] = Field(description="routers, targets, state, registry")
    targets: list[TargetHealth]


# ---- tenants (docs/tenants.md) ----------------------------------------------------------------------
# The model-router service's shapes, field for field (camelCase), so its clients keep working.

class KeyBody(Body):
    workspace: str = Field(pattern=f"^{TENANT_NAME.pattern}$")
    agent: str | None = Field(None, pattern=f"^{TENANT_NAME.pattern}$")
    expires: str | None = Field(None, description="a duration from now (30d, 12h) or an ISO date or date-time")
    limit: str | None = Field(None, description='the key\'s own limits, as a workspace writes them: "60 requests per'
                                                ' minute, 20k tokens per minute"')
    budget: str | None = Field(None, description='the key\'s own budgets, as a workspace writes them: "10 USD per day"')


class KeyInfo(Answer):
    id: str
    workspace: str
    agent: str | None
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    state: Literal["active", "expired", "revoked"]
    limit: str | None = Field(description="the key's own limits (null: none)")
    budget: str | None = Field(description="the key's own budgets (null: none)")


class KeyCreated(KeyInfo):
    key: str = Field(description="the secret: shown this once, stored only as its sha256")


class KeyList(Answer):
    data: list[KeyInfo]


class QualityRequirements(Body):
    minSuccessRate: float | None = Field(None, ge=0, le=1)
    maxLatency: float | None = Field(None, gt=0, description="milliseconds")


class WorkspaceConfigBody(Body):
    modelRestrictions: list[str] = []
    budgetLimits: dict[Literal["daily", "weekly", "monthly"], float | None] = {}
    qualityRequirements: QualityRequirements = QualityRequirements()
    complianceRequirements: list[str] = []


class PerformanceRequirements(Body):
    maxLatency: float | None = Field(None, gt=0, description="milliseconds")
    minSuccessRate: float | None = Field(None, ge=0, le=1)
    maxCostPerToken: float | None = Field(None, ge=0, description="USD per token")


class AgentPreferencesBody(Body):
    preferredModels: list[str] = []
    fallbackModels: list[str] = []
    requiredCapabilities: list[str] = []
    performanceRequirements: PerformanceRequirements = PerformanceRequirements()


class WorkspaceConfig(Answer):
    router: str
    workspaceId: str
    modelRestrictions: list[str]
    budgetLimits: dict[str, float]
    qualityRequirements: dict[str, float]
    complianceRequirements: list[str]


class AgentPreferences(Answer):
    router: str
    agentType: str
    preferredModels: list[str]
    fallbackModels: list[str]
    requiredCapabilities: list[str]
    performanceRequirements: dict[str, float]


class AgentModels(Answer):
    router: str
    agentType: str
    models: list[dict[str, Any]] = Field(description="the targets the agent may use, selectable now or not")


class PolicyChanged(Answer):
    router: str
    version: int
    created: bool
    deployed: bool
    diff: DiffSummary | None
