"""The router registry (docs/registry.md): versions, deploy and rollback,
request history, and the Router SDK, in a SQLite file or a Postgres database.

- `store.py`: the storage port (`Store`): routers, versions, deployments, the history's rows
- `sqlite.py`, `postgres.py`: the two backends, the only modules that speak a database;
  `backends.py` opens the one a location names (`open_store`)
- `rows.py`: the history's rows; `errors.py`: what a registry operation raises
- `artifacts.py`: what a version holds; compiling a file for a push, and a stored version again
- `history.py`: the request history and its batched background writer
- `sdk.py`: `routelang.Router`, the Mixtrain Router SDK's interface
- `ab.py`: the statistics of A/B reports; `ab_report.py` builds and prints a report
  from the history, `ab_html.py` draws it (`routelang ab`)
"""

from .backends import open_store
from .store import RegistryError, Store, default_location

__all__ = ["RegistryError", "Store", "default_location", "open_store"]
