"""routelang: a declarative rules language for routing AI-inference traffic."""

__version__ = "0.1.0"
