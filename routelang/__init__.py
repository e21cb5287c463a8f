"""routelang: a declarative rules language for routing AI-inference traffic.

    import routelang
    router = routelang.load("routing.route")          # or a Mixtrain JSON config
    result = router.route({"user": {"tier": "premium"}})

`routelang.RoutingEngine` is a drop-in for Mixtrain's. The runtime is imported
on first use, so `import routelang` stays light.
"""

__version__ = "0.1.0"

_RUNTIME_EXPORTS = {
    "load": "engine", "Router": "engine", "RouteResult": "engine", "RoutingEngine": "engine",
    "CompileError": "engine", "ConfigError": "model", "Target": "model", "RuleSpec": "model",
    "RequestError": "operators",
}

__all__ = [  # noqa: RUF022 (grouped: version, then the runtime)
    "__version__", "load", "Router", "RouteResult", "RoutingEngine", "CompileError", "ConfigError", "Target",
    "RuleSpec", "RequestError",
]


def __getattr__(name: str):
    module = _RUNTIME_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'routelang' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"routelang.runtime.{module}"), name)
    globals()[name] = value
    return value
