"""routelang: a declarative rules language for routing AI-inference traffic.

    import routelang
    router = routelang.load("routing.route")          # or a Mixtrain JSON config
    result = router.route({"user": {"tier": "premium"}})

`routelang.RoutingEngine` is a drop-in for Mixtrain's. `load` gives a
`LoadedRouter` (the runtime's class); `routelang.Router("name")` is the
Router SDK over the registry (docs/registry.md). Everything is imported on
first use, so `import routelang` stays light.
"""

__version__ = "0.1.0"

# name -> (module, its name there)
_EXPORTS = {
    "load": ("loader", "load"), "loads": ("loader", "loads"), "RoutingEngine": ("loader", "RoutingEngine"),
    "CompileError": ("loader", "CompileError"),
    "LoadedRouter": ("runtime.engine", "Router"), "RouteResult": ("runtime.engine", "RouteResult"),
    "ConfigError": ("runtime.model", "ConfigError"), "Target": ("runtime.model", "Target"),
    "RuleSpec": ("runtime.model", "RuleSpec"), "RequestError": ("runtime.operators", "RequestError"),
    "Router": ("registry.sdk", "Router"), "RegistryError": ("registry.store", "RegistryError"),
}

__all__ = [  # noqa: RUF022 (grouped: version, the loader and the runtime, the registry)
    "__version__", "load", "loads", "LoadedRouter", "RouteResult", "RoutingEngine", "CompileError", "ConfigError",
    "Target", "RuleSpec", "RequestError", "Router", "RegistryError",
]


def __getattr__(name: str):
    where = _EXPORTS.get(name)
    if where is None:
        raise AttributeError(f"module 'routelang' has no attribute {name!r}")
    from importlib import import_module

    module, attribute = where
    value = getattr(import_module(f"routelang.{module}"), attribute)
    globals()[name] = value
    return value
