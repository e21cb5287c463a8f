"""Routers meant for `routelang serve` (`lint --serve`): fields its request
document cannot hold. The document's shape is vocab/request_document.py, the
one the gateway builds."""

from __future__ import annotations

from .. import ir
from ..diagnostics import Diagnostic, Severity
from ..vocab.request_document import never_present
from .context import part_span
from .registry import lint_rule

W = Severity.WARNING

UNSERVABLE_FIELD = lint_rule(
    "RL350", "field-never-served", W, "a condition reads a field the gateway's request document never holds",
    what="With `--serve`: a comparison on a field path that no request `routelang serve` gets can hold: a field "
         "under a value an OpenAI request body never makes an object (`user.id`: `user` is a string), a header "
         "name with capitals (the document's are lower case), a credential header, or a `request.` field the "
         "gateway does not set.",
    why="The field always reads as null, so the comparison is decided before any request arrives; the rule was "
        "written for a request shape the gateway's clients do not send.",
    example='rule pro priority 1 { when user.tier == "pro" route big }   # `user` is a string in OpenAI bodies',
    fix="Read a field the request has: `user` itself, `metadata.tier` (OpenAI's string-valued `metadata`), or "
        "a header (`headers.x-tier`).",
    serving_only=True,
)
STICKY_NEVER_SERVED = lint_rule(
    "RL351", "sticky-key-never-served", W, "a split is sticky by a field the gateway's request document never holds",
    what="With `--serve`: `split sticky by F` where F is a path no request `routelang serve` gets can hold "
         "(as for `field-never-served`).",
    why="A request without the sticky key is drawn at random, so no user ever stays on one side of the split: "
        "with `sticky by user.id`, the OpenAI `user` string makes every request a new draw.",
    example='rule ab priority 1 { split sticky by user.id { 50% a  50% b } }',
    fix="Be sticky by a field OpenAI clients send: `user` (the end-user id), `metadata.session`, or a header.",
    serving_only=True,
)


@UNSERVABLE_FIELD.check
def field_never_served(ctx):
    for rule in ctx.router.rules:
        for cmp in ir.walk_conditions(rule.when):
            reason = never_present(cmp.field)
            if reason is not None:
                yield Diagnostic(UNSERVABLE_FIELD.code, f"`{cmp.field}` is never in a served request: {reason}",
                                 part_span(cmp, "field"), rule=rule.name,
                                 help="read a field an OpenAI request has: a body field, `metadata.KEY`, "
                                      "`headers.NAME` or `request.*`")


@STICKY_NEVER_SERVED.check
def sticky_key_never_served(ctx):
    for rule in ctx.router.rules:
        for strategy in rule.strategy.walk():
            sticky_by = getattr(strategy, "sticky_by", None)
            reason = None if sticky_by is None else never_present(sticky_by)
            if reason is not None:
                yield Diagnostic(STICKY_NEVER_SERVED.code,
                                 f"sticky by `{sticky_by}`, which is never in a served request ({reason}): "
                                 f"every request is drawn at random", strategy.spans.get("sticky_by", strategy.span),
                                 rule=rule.name, help="be sticky by `user` (OpenAI's end-user id), "
                                                      "`metadata.KEY` or `headers.NAME`")
