"""Azure OpenAI: OpenAI's bodies, answers and streams, at Azure's addresses. The
target's model is the deployment's name, its endpoint the resource's URL
(`https://NAME.openai.azure.com`), with `?api-version=...` to pick a version
other than API_VERSION. The key goes in the `api-key` header (the target's
`headers`), which Azure reads instead of `Authorization`."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from routelang.runtime.model import Target

from .openai import OpenAIAdapter

API_VERSION = "2024-10-21"   # the newest generally available version of the data-plane API


@lru_cache(maxsize=1024)
def deployment_url(endpoint: str, deployment: str, path: str) -> str:
    """`{resource}/openai/deployments/{deployment}{path}?api-version=...`, the endpoint's
    own query parameters (its api-version first of all) kept."""
    parts = urlsplit(endpoint)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.setdefault("api-version", API_VERSION)
    base = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, f"{base}/openai/deployments/{quote(deployment, safe='')}{path}",
                       urlencode(query), ""))


class AzureAdapter(OpenAIAdapter):
    def request(self, target: Target, path: str, body: dict, stream: bool) -> tuple[str, dict, dict[str, str]]:
        _url, out, headers = super().request(target, path, body, stream)
        return deployment_url(target.endpoint, target.model_name, path), out, headers
