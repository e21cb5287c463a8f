"""The language's vocabulary, defined once: every operator (`operators`), strategy
(`strategies`) and target setting (`settings`), with every fact each phase needs
about it. The parser, checker, IR, backends, analysis, explain, importer, fmt,
language server and highlighter read these tables instead of restating them.

This package imports nothing else from routelang, so the runtime and the
compiler can both depend on it.
"""
