"""The Azure OpenAI adapter: the deployment in the path, `api-version` in the query,
the key in `api-key`; bodies, answers and streams as OpenAI's."""

from __future__ import annotations

import openai
import pytest
from gateway_fakes import chat_answer, chunk

from routelang.gateway.adapters.azure import API_VERSION, deployment_url


def azure_router(endpoint: str, deployment: str = "gpt-4o-prod") -> str:
    return ('router r\nimport std.providers\n'
            f'target prod = azure("{deployment}", "{endpoint}") {{ headers {{ "api-key": "az-key-1" }} }}\n'
            'rule all { route prod }\n')


@pytest.fixture
def azure(upstreams, gateway):
    up = upstreams("azure")
    gw = gateway(azure_router(up.url))
    return up, gw, openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0)


def test_chat_goes_to_the_deployment_with_the_api_version_and_the_api_key(azure):
    up, _gw, client = azure
    up.default = {"body": chat_answer("gpt-4o-2024-08-06", text="from azure", prompt_tokens=9, completion_tokens=3)}
    reply = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content == "from azure"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (9, 3)
    sent = up.received[0]
    assert sent["path"] == "/openai/deployments/gpt-4o-prod/chat/completions"
    assert sent["query"] == f"api-version={API_VERSION}"
    assert sent["headers"]["api-key"] == "az-key-1"
    assert "Authorization" not in sent["headers"]   # the client's key is not passed on
    assert sent["body"] == {"model": "gpt-4o-prod", "messages": [{"role": "user", "content": "Hi"}]}


def test_the_endpoint_picks_the_api_version_and_a_path_prefix(upstreams, gateway):
    up = upstreams("apim")
    gw = gateway(azure_router(up.url + "/gateway/?api-version=2025-01-01-preview", deployment="team a"))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}])
    sent = up.received[0]
    assert sent["path"] == "/gateway/openai/deployments/team a/chat/completions"
    assert sent["query"] == "api-version=2025-01-01-preview"


def test_streams_pass_through_with_azure_content_filter_chunks(azure):
    up, _gw, client = azure
    up.default = {"stream": [
        {"id": "", "object": "", "created": 0, "model": "", "choices": [],
         "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]},
        chunk("gpt-4o", "hel"), chunk("gpt-4o", "lo"), chunk("gpt-4o", finish="stop"),
        {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [],
         "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}}, "[DONE]"]}
    stream = client.chat.completions.create(model="auto", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "Hi"}])
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello"
    assert chunks[-1].usage.completion_tokens == 2
    sent = up.received[0]
    assert sent["path"] == "/openai/deployments/gpt-4o-prod/chat/completions"
    assert sent["body"]["stream"] is True


def test_an_azure_error_goes_back_as_it_is(azure):
    up, _gw, client = azure
    up.default = {"status": 400, "body": {"error": {
        "message": "The response was filtered", "type": None, "param": "prompt", "code": "content_filter"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.code == "content_filter"


def test_deployment_url_keeps_the_endpoints_other_query_parameters():
    assert deployment_url("https://contoso.openai.azure.com/", "d", "/embeddings") == (
        f"https://contoso.openai.azure.com/openai/deployments/d/embeddings?api-version={API_VERSION}")
    assert deployment_url("https://x.example/p?tenant=t&api-version=v1", "d/e", "/completions") == (
        "https://x.example/p/openai/deployments/d%2Fe/completions?tenant=t&api-version=v1")
