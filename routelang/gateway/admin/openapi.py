"""The admin API's OpenAPI 3.1 document (GET /api/openapi.json), built from
the endpoint table; the schemas are generated from the same pydantic models
that validate the bodies and serialise the answers."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ... import __version__
from ..responses import JSON
from . import analytics, registry
from .endpoints import ENDPOINTS, PARAMETERS, QUERY, Endpoint
from .models import ErrorBody


def _operation_id(e: Endpoint) -> str:
    return e.handler.__name__.rstrip("_")


def openapi() -> dict:
    """OpenAPI 3.1 for ENDPOINTS, the schemas generated from the same pydantic models."""
    bodies = [(e.body, "validation") for e in ENDPOINTS if e.body is not None]
    answers = [(m, "serialization") for m in {e.answer for e in ENDPOINTS} | {ErrorBody}]
    keys, top = models_json_schema(bodies + answers, ref_template="#/components/schemas/{model}")
    schemas = top.get("$defs", {})

    def ref(model: type[BaseModel], mode: str) -> dict:
        return keys[(model, mode)]

    def error(description: str) -> dict:
        return {"description": description, "content": {JSON: {"schema": ref(ErrorBody, "serialization")}}}

    paths: dict[str, dict] = {}
    for e in ENDPOINTS:
        path = e.full_path
        op: dict[str, Any] = {"operationId": _operation_id(e), "summary": e.summary, "security": [{"adminKey": []}]}
        params = [{"name": p, "in": "path", "required": True, "schema": PARAMETERS[p]}
                  for p in re.findall(r"\{([a-z]+)\}", e.path)]
        params += [{"name": q, "in": "query", "required": False, "schema": QUERY[q]} for q in e.query]
        if params:
            op["parameters"] = params
        if e.body is not None:
            op["requestBody"] = {"required": True, "content": {JSON: {"schema": ref(e.body, "validation")}}}
        responses = {str(e.status): {"description": "done", "content": {JSON: {"schema": ref(e.answer,
                                                                                            "serialization")}}}}
        if e.handler is registry.push:  # identical content: the existing version, 200
            responses["200"] = responses["201"]
        described = {400: "bad parameters or body", 401: "no admin key, or an unknown key",
                     403: "a client key, not an admin key", 404: "no such router, version, request or target",
                     409: "the registry's state does not allow it (no registry, not deployed, nothing to roll "
                          "back to)", 413: "the body is too large", 422: "the router does not check clean",
                     503: "the registry cannot be used now (locked past the busy timeout, unreadable)"}
        for status in (400, 401, 403, *e.errors, 503):
            responses[str(status)] = error(described[status])
        if e.handler is analytics.health_detailed:   # unhealthy: the same answer, 503
            responses["503"] = {"description": "unhealthy: no target can be selected, or no router is served",
                                "content": {JSON: {"schema": ref(e.answer, "serialization")}}}
        op["responses"] = responses
        paths.setdefault(path, {})[e.method.lower()] = op
    paths["/api/openapi.json"] = {"get": {"operationId": "openapi", "summary": "This document", "security": [],
                                          "responses": {"200": {"description": "OpenAPI 3.1",
                                                                "content": {JSON: {"schema": {"type": "object"}}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "routelang admin API", "version": __version__,
                 "description": "The registry and the gateway's targets over HTTP (docs/registry.md)."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"adminKey": {"type": "http", "scheme": "bearer",
                                                        "description": "a key of --admin-keys"}}},
    }
