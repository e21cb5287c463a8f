"""`routelang serve`: an OpenAI-compatible gateway that executes a router's
decisions against real upstreams. docs/gateway.md is the reference.

    wiring.py     the composition root: builds every part once and hands each what it needs
    app.py        HTTP endpoints (aiohttp), headers, metrics and log per request
    responses.py  answers with the x-routelang headers, and the gateway's errors
    exchange.py   one request as it goes through (what its log line reports)
    routers.py    where routers come from: a config file, or a registry's deployed routers
    recording.py  each request's row in the registry's history (serve --registry)
    request.py    the request document rules see
    plan.py       the one door into the compiler and the runtime
    executor.py   attempts, retries, fallback, streaming, shadows
    adapters/     one module per upstream wire format (openai, anthropic, azure)
    state.py      breakers, statistics, health, drains: the interface replicas would share
    redisstate.py that state shared through Redis (--state redis://)
    tenants.py    tenant keys, restrictions, quality, admission    redisledger.py  their ledger on Redis
    health.py     health-check probes          reload.py   polling for changes
    metrics.py    Prometheus                   logs.py     JSON log lines
    tracing.py    OpenTelemetry spans          proxies.py  egress proxies from the environment
    auth.py       client keys                  server.py   processes and signals
    admin/        the admin API at /api (--admin-keys) and its OpenAPI document
    errors.py     the gateway's own errors, in OpenAI's shape, one code each
"""
