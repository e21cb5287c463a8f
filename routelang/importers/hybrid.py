"""The hybrid inference router's `config/routing.yaml` (with `config/models.yaml`) -> `.route` file.

    text, notes = import_hybrid(yaml.safe_load(routing), "routing.yaml", models=yaml.safe_load(models))

routing.yaml (the hybrid router's README, "Example Configuration"):

    routing_strategy: fixed
    routing_parameter: {local_fraction: 0.6}
    timeout: 2            # seconds, every call
    health_check: 30      # seconds between GET /health probes; 0 or absent: none
    local_deployment:  [{endpoint: ${LOCAL_BASE_URL:-http://localhost:8000}, models: [m1, m2]}]
    remote_deployment: [{endpoint: ${LLAMA_BASE_URL}, models: [m1]}]

Its decision layer gives the local deployments `local_fraction` of a model's
traffic and the remote ones the rest (shared equally within each side); its
execution layer picks one by those weights and falls back to the model's
other deployments when the call fails. So each model becomes a rule
`when model == "m"`: a split between a local and a remote arm, each arm a
fallback from its own deployment to the others, in the config's order. A
model served on one side only is a fallback over that side's deployments.
`${VAR:-default}` endpoints mean the same in routelang and are kept as
written. models.yaml's format is not part of that README; the importer reads
only its model names (a list of names, of `{name: ...}` objects, or a mapping
keyed by name) to note models that no deployment serves.
"""

from __future__ import annotations

from typing import Any

from .common import (
    ImportNote,
    ImportProblem,
    Rule,
    Strategy,
    Target,
    as_strategy,
    compare,
    listing,
    mapping,
    number,
    simplest,
    unique_name,
    write_file,
)

KEYS_READ = {"routing_strategy", "routing_parameter", "timeout", "health_check", "local_deployment",
             "remote_deployment"}
MIN_TIMEOUT_MS, MIN_HEALTH_INTERVAL_MS = 100, 1000


def looks_like(config: Any) -> bool:
    return isinstance(config, dict) and ("local_deployment" in config or "remote_deployment" in config)


def _model_names(models: Any) -> list[str]:
    if isinstance(models, dict) and "models" in models:
        models = models["models"]
    if isinstance(models, dict):
        return [str(k) for k in models]
    if isinstance(models, list):
        return [str(m.get("name", m.get("id"))) if isinstance(m, dict) else str(m) for m in models]
    return []


def _chain(first: str, everyone: list[str]) -> Any:
    """The execution layer's order: the picked deployment, then the model's others."""
    return simplest(Strategy("fallback", [first] + [n for n in everyone if n != first]))


def import_hybrid(config: Any, source_name: str, models: Any = None) -> tuple[str, list[ImportNote]]:
    """The `.route` text for a hybrid router's routing.yaml, and what it could not say."""
    if not looks_like(config):
        raise ImportProblem("a hybrid routing.yaml has local_deployment and/or remote_deployment")
    notes: list[ImportNote] = []
    for key in config:
        if key not in KEYS_READ:
            notes.append(ImportNote("routing.yaml", f"`{key}` is not carried over (no routing meaning)"))
    strategy = config.get("routing_strategy", "fixed")
    if strategy != "fixed":
        raise ImportProblem(f"routing_strategy {strategy!r}: the hybrid router supports `fixed` only")
    parameters = mapping(config.get("routing_parameter") or {}, "routing_parameter")
    fraction = float(number(parameters.get("local_fraction", 0.5), "routing_parameter.local_fraction"))
    if not 0.0 <= fraction <= 1.0:
        raise ImportProblem(f"local_fraction {fraction} is outside 0..1")
    timeout_ms = round(number(config["timeout"], "timeout") * 1000) if config.get("timeout") is not None else None
    if timeout_ms is not None and timeout_ms < MIN_TIMEOUT_MS:
        notes.append(ImportNote("routing.yaml", f"timeout {config['timeout']}s is below routelang's "
                                                f"{MIN_TIMEOUT_MS}ms; written as {MIN_TIMEOUT_MS}ms"))
        timeout_ms = MIN_TIMEOUT_MS
    interval_ms = round(number(config.get("health_check") or 0, "health_check") * 1000) or None
    if interval_ms is not None and interval_ms < MIN_HEALTH_INTERVAL_MS:
        notes.append(ImportNote("routing.yaml", f"health_check every {config['health_check']}s is below "
                                                f"routelang's 1s; written as 1s"))
        interval_ms = MIN_HEALTH_INTERVAL_MS

    taken: set[str] = set()
    targets: list[Target] = []
    served: dict[str, dict[str, list[str]]] = {}    # model -> side -> target names, in config order
    for side in ("local", "remote"):
        for i, deployment in enumerate(listing(config.get(f"{side}_deployment") or [], f"{side}_deployment")):
            where = f"{side}_deployment[{i}]"
            if not isinstance(deployment, dict) or not isinstance(deployment.get("endpoint"), str):
                raise ImportProblem(f"{where}: a deployment has an endpoint and models")
            for model in listing(deployment.get("models") or [], f"{where}.models"):
                name = unique_name(f"{side}_{model}", taken)
                target = Target(name, "openai", str(model), deployment["endpoint"], timeout_ms=timeout_ms)
                if interval_ms is not None:
                    target.health_path, target.health_interval_ms = "/health", interval_ms
                targets.append(target)
                served.setdefault(str(model), {"local": [], "remote": []})[side].append(name)
    if not served:
        raise ImportProblem("no deployment serves a model")
    if interval_ms is not None:
        notes.append(ImportNote("health_check", "the hybrid router re-weighs deployments by their health; "
                                                "routelang takes a target that fails its probe out of selection"))

    rules = []
    names: set[str] = set()
    for i, (model, sides) in enumerate(served.items()):
        everyone = sides["local"] + sides["remote"]

        arms, weights, labels = [], [], []
        for side, share in (("local", fraction), ("remote", 1.0 - fraction)):
            for name in sides[side]:
                if share > 0:
                    arms.append(_chain(name, everyone))
                    weights.append(share / len(sides[side]))
                    labels.append(side if len(sides[side]) == 1 else None)
        if not arms:  # every deployment of the model is on the side that gets 0%
            arms, weights = [_chain(everyone[0], everyone)], [1.0]
            notes.append(ImportNote(f"model {model!r}", "served only on the side that gets 0% of the traffic; "
                                                        "the hybrid router gives it no weight, routelang routes "
                                                        "it there anyway"))
        weights[-1] = 1.0 - sum(weights[:-1])
        if len(arms) > 1:
            strategy = Strategy("split", arms, weights=weights, labels=labels)
        else:
            strategy = as_strategy(arms[0])
        where = " and ".join(side for side in ("local", "remote") if sides[side])
        rules.append(Rule(unique_name(model, names), 10 * (len(served) - i), strategy,
                          compare(["model"], "==", model), f"{model}: {where}"))
    for model in _model_names(models):
        if model not in served:
            notes.append(ImportNote("models.yaml", f"model {model!r} is registered but no deployment serves it"))
    text = write_file("hybrid_router", "Fixed-ratio routing between local and remote deployments", source_name, notes,
                      targets, rules, "hybrid router")
    return text, notes
