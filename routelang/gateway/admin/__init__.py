"""The admin API: an aiohttp sub-application at /api, mounted only when
`routelang serve` is given `--admin-keys FILE` (docs/registry.md#the-admin-api).

    app.py        the sub-application: admin keys, routing the table, errors
    endpoints.py  the table: one row per endpoint (method, path, handler, models, error statuses)
    models.py     the pydantic models of the bodies and the answers
    openapi.py    GET /api/openapi.json, built from the table and the models
    common.py     what the handlers share: their Context, AdminError, body parsing, lookups
    worker.py     the registry worker thread (its own connection to the registry)
    registry.py   routers, versions, push, deploy, rollback, rules, export, import
    history.py    the request history
    decisions.py  POST /api/route and /api/routing/test
    targets.py    drain, undrain, pushed health
    tenants.py    tenant keys; the model-router service's workspace and agent endpoints
    analytics.py  the service's analytics (from the history) and health endpoints; /health/detailed,
                  the one endpoint at the gateway's root

Registry work runs in the worker thread; routing decisions and target state
run on the event loop, where the gateway's `State` lives.
"""
