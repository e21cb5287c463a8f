"""Backends lower the IR to something an engine runs: Mixtrain-schema JSON
(`json`) or a Python module (`python`)."""
