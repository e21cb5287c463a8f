"""Tenants at run time: keys that give a request its workspace and agent
(keys.py), and the ledger that admits, reserves and settles every request
against its workspace's, agent's and key's budgets and limits (ledger.py).
docs/tenants.md is the reference."""
