"""The gateway's request document has one definition (vocab/request_document.py):
the gateway builds it from that definition and the analysis reasons with it."""

from __future__ import annotations

import pytest

from routelang.gateway.request import document
from routelang.runtime.operators import lookup
from routelang.vocab import request_document as shape

BODY = {"model": "gpt-4o", "user": "u-1", "metadata": {"team": "ml"}, "stream": True,
        "messages": [{"role": "user", "content": "hello there"}], "request": {"spoofed": 1}}


def test_the_gateway_builds_every_request_field_the_definition_names():
    doc = document(BODY, [("X-Team", "ml"), ("Authorization", "Bearer k")], "/v1/chat/completions")
    assert set(doc[shape.REQUEST]) == set(shape.REQUEST_FIELDS)
    assert doc[shape.HEADERS] == {"x-team": "ml"}
    for copy, source in shape.COPIES.items():
        assert lookup(doc, copy) == lookup(doc, source)


@pytest.mark.parametrize("body", [BODY, {"messages": []}, {"model": None}])
def test_with_copies_gives_what_the_gateway_gives(body):
    doc = document(body, [], "/v1/chat/completions")
    completed = shape.with_copies({k: v for k, v in body.items() if k != shape.REQUEST})
    for copy in shape.COPIES:
        assert lookup(completed, copy) == lookup(doc, copy)


def test_no_path_the_gateway_fills_is_called_never_present():
    doc = document(BODY, [("X-Team", "ml")], "/v1/embeddings")

    def paths(value, prefix=""):
        for key, inner in value.items():
            yield prefix + key
            if isinstance(inner, dict):
                yield from paths(inner, prefix + key + ".")

    for path in paths(doc):
        assert shape.never_present(path) is None, path


@pytest.mark.parametrize("path", ["user.id", "model.name", "messages.0", "metadata.team.name", "headers.X-Team",
                                  "headers.authorization", "headers.x-team.v", "request.user", "request.model.x",
                                  "stream.x", "temperature.x"])
def test_paths_an_openai_request_cannot_hold(path):
    assert shape.never_present(path) is not None
