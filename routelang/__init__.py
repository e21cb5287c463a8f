"""routelang: a declarative rules language for routing AI-inference traffic.

    import routelang
    router = routelang.load("routing.route")          # or a Mixtrain JSON config
    result = router.route({"user": {"tier": "premium"}})

`routelang.RoutingEngine` is a drop-in for Mixtrain's. The loader and the
runtime are imported on first use, so `import routelang` stays light.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "load": "loader", "loads": "loader", "RoutingEngine": "loader", "CompileError": "loader",
    "Router": "runtime.engine", "RouteResult": "runtime.engine", "ConfigError": "runtime.model",
    "Target": "runtime.model", "RuleSpec": "runtime.model", "RequestError": "runtime.operators",
}

__all__ = [  # noqa: RUF022 (grouped: version, then the loader and the runtime)
    "__version__", "load", "loads", "Router", "RouteResult", "RoutingEngine", "CompileError", "ConfigError",
    "Target", "RuleSpec", "RequestError",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'routelang' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"routelang.{module}"), name)
    globals()[name] = value
    return value
