"""`layer serve` as a real process, called as apps call it: the official OpenAI SDK, and the
seed's wire format over plain HTTP. One server (on a SQLite ledger, the OpenAI fake behind it)
serves the whole module."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from layer_openai.testing import ROUTE
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from layer_core.testing import FakeServer
from tests.gateway import Serving, openai_fake, write_config

GATES: dict[str, dict[str, Any]] = {
    "default": {"model": "local", "routing_strategy": "single"},
    "art": {"model": "dall-e-3", "routing_strategy": "single", "retries": 0},
    "drafts": {"model": "local", "routing_strategy": "single"},
    "mixed": {"model": "local", "fallback_models": ["dall-e-2"], "allow_overrides": True},
    "secret": {"model": "local", "routing_strategy": "single"},
    "capped": {
        "model": "dall-e-3",
        "routing_strategy": "single",
        "budget": {"amount": "0.05", "period": "daily"},
    },
}


def aio(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """An async test, run on a loop of its own (the SDK's client is async)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


@dataclass
class Gateway:
    serving: Serving
    fake: FakeServer
    ledger: Path
    app_key: str
    limited_key: str
    revoked_key: str
    budget_key: str
    any_key: str

    @property
    def url(self) -> str:
        return self.serving.url

    def client(self, key: str | None = None) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=f"{self.url}/v1", api_key=key or self.app_key, max_retries=0
        )

    def post(self, path: str, body: Any, key: str | None = None) -> httpx.Response:
        token = self.app_key if key is None else key
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.post(f"{self.url}{path}", json=body, headers=headers, timeout=30)

    def provider_calls(self) -> int:
        return len(self.fake.requests_to(ROUTE))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("serve")
    ledger = home / "ledger.sqlite"
    with openai_fake() as fake:
        config = write_config(
            home / "plugins.toml", ledger=f"sqlite:///{ledger}", openai_url=fake.url, gates=GATES
        )
        serving = Serving(config, home)
        app_key = serving.create_key("app", "--gates", "art,drafts,mixed,capped")
        limited = serving.create_key("limited", "--gates", "drafts", "--rpm", "2")
        revoked = serving.create_key("gone", "--gates", "drafts")
        budgeted = serving.create_key("thrifty", "--gates", "art", "--budget", "0.10/daily")
        any_gate = serving.create_key("any", "--gates", "*")
        serving.cli("keys", "revoke", "gone")
        serving.start()
        try:
            yield Gateway(serving, fake, ledger, app_key, limited, revoked, budgeted, any_gate)
        finally:
            # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly
            assert serving.stop() == [-signal.SIGTERM]
            assert "Application shutdown complete" in serving.log()


# --- the official OpenAI SDK -----------------------------------------------------------------


@aio
async def test_the_openai_sdk_generates_through_a_gate(gateway: Gateway) -> None:
    before = gateway.provider_calls()
    async with gateway.client() as client:
        raw = await client.images.with_raw_response.generate(
            model="art",
            prompt="a lighthouse at dawn",
            size="1792x1024",
            quality="hd",
            style="natural",
            response_format="b64_json",
            user="user-7",
        )
    result = raw.parse()
    assert len(result.data) == 1
    image = result.data[0]
    assert image.b64_json is not None
    assert base64.b64decode(image.b64_json).startswith(b"\x89PNG")
    assert image.revised_prompt == "revised: a lighthouse at dawn"
    assert raw.headers["x-layer-model"] == "dall-e-3"
    assert raw.headers["x-layer-provider"] == "openai"
    assert raw.headers["x-layer-deployment"] == "dall-e-3@openai"
    assert raw.headers["x-layer-cost"] == "0.12"  # DALL·E 3 hd at 1792x1024
    assert raw.headers["x-layer-attempts"] == "1"
    assert raw.headers["x-request-id"]
    sent = gateway.fake.requests_to(ROUTE)[before:]
    assert len(sent) == 1
    body = sent[0].json()
    assert (body["model"], body["size"], body["quality"], body["style"]) == (
        "dall-e-3",
        "1792x1024",
        "hd",
        "natural",
    )


@aio
async def test_the_sdk_reads_a_url_image_and_a_gate_slash_model(gateway: Gateway) -> None:
    async with gateway.client() as client:
        result = await client.images.generate(model="mixed/dall-e-2", prompt="a fox", n=2)
    assert len(result.data) == 2
    for image in result.data:
        assert image.url is not None
        assert httpx.get(image.url).content.startswith(b"\x89PNG")


@aio
async def test_bad_input_is_a_bad_request_error_and_reaches_no_provider(gateway: Gateway) -> None:
    before = gateway.provider_calls()
    async with gateway.client() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.images.generate(model="art", prompt="a fox", size="640x480")  # type: ignore[arg-type]
        assert "640x480" in caught.value.message
        assert caught.value.code == "invalid_request"
        with pytest.raises(openai.BadRequestError) as caught:
            await client.images.generate(model="art", prompt="a fox", n=11)
        assert caught.value.param == "n"
        with pytest.raises(openai.BadRequestError):
            await client.images.generate(model="art", prompt="   ")
    assert gateway.provider_calls() == before


@aio
async def test_a_bad_or_revoked_key_is_an_authentication_error(gateway: Gateway) -> None:
    for key in ("lyr_not-a-key-at-all", gateway.revoked_key, "sk-something-else"):
        async with gateway.client(key) as client:
            with pytest.raises(openai.AuthenticationError) as caught:
                await client.images.generate(model="drafts", prompt="a fox")
            assert key not in caught.value.message
            with pytest.raises(openai.AuthenticationError):
                await client.models.list()


@aio
async def test_a_gate_outside_the_key_is_a_permission_denied_error(gateway: Gateway) -> None:
    async with gateway.client() as client:
        with pytest.raises(openai.PermissionDeniedError) as caught:
            await client.images.generate(model="secret", prompt="a fox")
        assert "secret" in caught.value.message
        listed = [model.id async for model in client.models.list()]
    assert listed == ["art", "capped", "drafts", "mixed"]


@aio
async def test_a_key_over_its_rate_is_a_rate_limit_error(gateway: Gateway) -> None:
    """2 requests a minute: of 5 in a row, at most 4 pass (even across a minute boundary)."""
    served, refused = 0, []
    async with gateway.client(gateway.limited_key) as client:
        for _ in range(5):
            try:
                await client.images.generate(model="drafts", prompt="a fox", size="256x256")
            except openai.RateLimitError as exc:
                refused.append(exc)
            else:
                served += 1
    assert refused
    assert served <= 4
    assert int(refused[0].response.headers["retry-after"]) >= 1
    assert refused[0].code == "rate_limited"


def test_the_docs_python_client_runs_against_the_gateway(gateway: Gateway) -> None:
    """docs/gateway.md's OpenAI SDK example (its one `py` block), run as written."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "gateway.md").read_text()
    [block] = re.findall(r"```py\n(.*?)```", page, flags=re.S)
    env = {**os.environ, "LAYER_BASE_URL": f"{gateway.url}/v1", "LAYER_KEY": gateway.any_key}
    done = subprocess.run(
        [sys.executable, "-c", block], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    sized, listed = done.stdout.splitlines()
    assert sized.endswith("base64 characters for $0")
    assert int(sized.split()[0]) > 1000
    assert listed == str(sorted(GATES))


# --- the official OpenAI SDK for Node ----------------------------------------------------------

NODE_CLIENT = Path(__file__).with_name("node") / "openai_client.mjs"
#: the major version of the `openai` npm package the test installs
NODE_OPENAI = "openai@7"
REQUIRE_NODE = os.environ.get("LAYER_REQUIRE_NODE", "").strip() in ("1", "true", "yes")


def _no_node(reason: str) -> None:
    if REQUIRE_NODE:
        pytest.fail(f"{reason}; LAYER_REQUIRE_NODE=1 makes the Node test mandatory")
    pytest.skip(f"{reason} (set LAYER_REQUIRE_NODE=1 to make this a failure)")


@pytest.fixture(scope="module")
def node_openai(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the `openai` npm package installed from the npm registry."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _no_node("node and npm are not installed")
    folder = tmp_path_factory.mktemp("node")
    (folder / "package.json").write_text('{"private": true, "type": "module"}')
    done = subprocess.run(
        [str(npm), "install", "--no-audit", "--no-fund", "--silent", NODE_OPENAI],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        _no_node(f"npm install {NODE_OPENAI} failed: {done.stderr.strip()[-500:]}")
    shutil.copy(NODE_CLIENT, folder / NODE_CLIENT.name)
    return folder


def test_the_openai_npm_package_generates_through_a_gate(
    gateway: Gateway, node_openai: Path
) -> None:
    done = subprocess.run(
        ["node", NODE_CLIENT.name],
        cwd=node_openai,
        env={**os.environ, "LAYER_BASE_URL": f"{gateway.url}/v1", "LAYER_KEY": gateway.app_key},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    generated, refused, listed = (json.loads(line) for line in done.stdout.splitlines())
    assert generated == {
        "images": 1,
        "png": "PNG",
        "revised": "revised: a fox from node",
        "cost": "0.04",
        "model": "dall-e-3",
    }
    assert refused == {"error": "PermissionDeniedError", "denied": True, "status": 403}
    assert listed == {"models": ["art", "capped", "drafts", "mixed"]}


# --- the seed's wire format --------------------------------------------------------------------


def test_the_seed_format_round_trips_every_field(gateway: Gateway) -> None:
    body = {
        "gateId": "drafts",
        "data": {
            "prompt": "a red fox in snow",
            "size": "512x512",
            "quality": "hd",
            "style": "vivid",
            "count": 2,
            "seed": 42,
        },
        "metadata": {"team": "growth", "userId": 7},
    }
    reply = gateway.post("/v3/image", body)
    assert reply.status_code == 200, reply.text
    out = reply.json()
    assert out["id"].startswith("img_")
    assert (out["model"], out["provider"], out["gateId"]) == ("local", "local", "drafts")
    assert out["cost"] == 0
    assert out["latency"] == out["latencyMs"] > 0
    assert out["metadata"] == {"team": "growth", "userId": 7}
    assert out["warnings"] == []
    assert [a["outcome"] for a in out["attempts"]] == ["ok"]
    assert len(out["images"]) == 2
    for image in out["images"]:
        assert {"url", "base64", "revisedPrompt"} <= image.keys()
        assert image["size"] == "512x512"
        assert base64.b64decode(image["base64"]).startswith(b"\x89PNG")
    assert [i["seed"] for i in out["images"]] == [42, 43]
    again = gateway.post("/v3/image", body).json()
    assert [i["base64"] for i in again["images"]] == [i["base64"] for i in out["images"]]


def test_the_seed_format_reaches_the_provider_with_quality_style_and_model(
    gateway: Gateway,
) -> None:
    before = gateway.provider_calls()
    reply = gateway.post(
        "/v3/image",
        {"gateId": "art", "data": {"prompt": "a fox", "quality": "hd", "style": "natural"}},
    )
    assert reply.status_code == 200, reply.text
    out = reply.json()
    assert out["cost"] == 0.08  # DALL·E 3 hd at 1024x1024
    assert out["images"][0]["revisedPrompt"] == "revised: a fox"
    assert out["images"][0]["url"].startswith(gateway.fake.url)
    sent = gateway.fake.requests_to(ROUTE)[before:][0].json()
    assert (sent["quality"], sent["style"]) == ("hd", "natural")

    override = gateway.post(
        "/v3/image", {"gateId": "mixed", "data": {"prompt": "a fox"}, "model": "dall-e-2"}
    )
    assert override.status_code == 200, override.text
    assert override.json()["model"] == "dall-e-2"
    assert override.json()["cost"] == 0.02


def test_seed_errors_have_the_seed_shape_and_status(gateway: Gateway) -> None:
    before = gateway.provider_calls()
    bad = gateway.post("/v3/image", {"gateId": "drafts", "data": {"prompt": "x", "count": 0}})
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_request"
    assert bad.json()["details"]["problems"][0]["field"] == "data.count"
    unknown = gateway.post("/v3/image", {"gateId": "nope", "data": {"prompt": "x"}}, key="")
    assert (unknown.status_code, unknown.json()["error"]) == (401, "missing_key")
    forbidden = gateway.post("/v3/image", {"gateId": "secret", "data": {"prompt": "x"}})
    assert (forbidden.status_code, forbidden.json()["error"]) == (403, "gate_not_allowed")
    assert gateway.provider_calls() == before


def test_a_provider_failure_is_a_503_with_the_attempts(gateway: Gateway) -> None:
    reply = gateway.post("/v3/image", {"gateId": "art", "data": {"prompt": "fail:503 please"}})
    assert reply.status_code == 503, gateway.serving.log()[-3000:]
    error = reply.json()
    assert error["error"] == "providers_failed"
    [attempt] = error["details"]["attempts"]
    assert (attempt["model"], attempt["error"]) == ("dall-e-3", "unavailable")


def test_a_content_refusal_is_a_400(gateway: Gateway) -> None:
    reply = gateway.post("/v3/image", {"gateId": "art", "data": {"prompt": "fail:content x"}})
    assert (reply.status_code, reply.json()["error"]) == (400, "content_rejected")


def test_a_gate_budget_is_a_402(gateway: Gateway) -> None:
    """$0.05 a day at $0.04 an image: one is served, the next refused before any call."""
    first = gateway.post("/v3/image", {"gateId": "capped", "data": {"prompt": "a fox"}})
    assert first.status_code == 200, first.text
    before = gateway.provider_calls()
    second = gateway.post("/v3/image", {"gateId": "capped", "data": {"prompt": "a fox"}})
    assert second.status_code == 402
    assert second.json()["error"] == "budget_exceeded"
    assert second.json()["details"]["amount"] == "0.05"
    assert gateway.provider_calls() == before


def test_a_key_budget_is_a_402(gateway: Gateway) -> None:
    """$0.10 a day for the key at $0.04 an image: two are served, the third refused before any
    call, though its gate has no budget of its own."""
    body = {"gateId": "art", "data": {"prompt": "a fox"}}
    served = [gateway.post("/v3/image", body, key=gateway.budget_key) for _ in range(2)]
    assert [r.status_code for r in served] == [200, 200]
    before = gateway.provider_calls()
    refused = gateway.post("/v3/image", body, key=gateway.budget_key)
    assert refused.status_code == 402
    assert refused.json()["details"] == {
        "key": "thrifty",
        "amount": "0.10",
        "spent": "0.08",
        "resetsAt": refused.json()["details"]["resetsAt"],
    }
    assert gateway.provider_calls() == before


def test_explain_shows_the_plan(gateway: Gateway) -> None:
    reply = gateway.post(
        "/v3/explain", {"gateId": "mixed", "data": {"prompt": "a fox", "size": "256x256"}}
    )
    assert reply.status_code == 200, reply.text
    plan = reply.json()
    # the placeholder comes last, whatever the strategy
    assert [c["model"] for c in plan["candidates"]] == ["dall-e-2", "local"]
    assert plan["candidates"][0]["estimatedCost"] == "0.016"


def test_an_oversized_body_is_refused_unread(gateway: Gateway) -> None:
    prompt = "x" * (2 * 1024 * 1024)
    reply = gateway.post("/v3/image", {"gateId": "drafts", "data": {"prompt": prompt}})
    assert (reply.status_code, reply.json()["error"]) == (413, "body_too_large")


# --- keys, ledger, operations ----------------------------------------------------------------


def test_keys_are_stored_only_as_their_digest(gateway: Gateway) -> None:
    with sqlite3.connect(gateway.ledger) as db:
        rows = db.execute("SELECT * FROM layer_keys").fetchall()
        digests = {r[0] for r in db.execute("SELECT digest FROM layer_keys")}
    dump = json.dumps(rows, default=str)
    for token in (gateway.app_key, gateway.limited_key, gateway.revoked_key, gateway.budget_key):
        assert token not in dump
        assert token[8:] not in dump
        assert hashlib.sha256(token.encode()).hexdigest() in digests
    listed = gateway.serving.cli("keys", "list", "--json").stdout
    assert gateway.app_key not in listed
    names = ["any", "app", "gone", "limited", "thrifty"]
    assert [k["name"] for k in json.loads(listed)] == names


def test_the_ledger_records_each_request_under_its_key(gateway: Gateway) -> None:
    reply = gateway.post("/v3/image", {"gateId": "art", "data": {"prompt": "a fox"}})
    assert reply.status_code == 200
    report = json.loads(
        gateway.serving.cli("costs", "--by", "key", "--by", "gate", "--format", "json").stdout
    )
    rows = {(r["key"], r["gate"]): r for r in report["rows"]}
    assert rows[("app", "art")]["requests"] >= 1
    assert ("limited", "drafts") in rows
    log = gateway.serving.log()
    assert gateway.app_key not in log
    assert '"key":"app"' in log


def test_health_readiness_metrics_and_openapi(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok", "checks": {}}
    ready = httpx.get(f"{gateway.url}/readyz")
    assert ready.json() == {"status": "ok", "checks": {"ledger": "ok"}}
    gateway.post("/v3/image", {"gateId": "art", "data": {"prompt": "a fox"}})
    text = httpx.get(f"{gateway.url}/metrics").text
    # (labels in name order)
    labels = 'deployment="dall-e-3@openai",gate="art",model="dall-e-3",provider="openai"'
    assert f"layer_images_total{{{labels}}}" in text
    assert f"layer_cost_usd_total{{{labels}}}" in text
    assert (
        'layer_attempts_total{deployment="dall-e-3@openai",gate="art",model="dall-e-3",'
        'outcome="unavailable",provider="openai"}'
    ) in text
    assert 'layer_http_request_duration_seconds_bucket{le="0.1",route="/v3/image"}' in text
    assert gateway.app_key not in text
    schema = httpx.get(f"{gateway.url}/openapi.json").json()
    assert {"/v3/image", "/v1/images/generations", "/v1/models", "/v3/explain"} <= set(
        schema["paths"]
    )
    request = schema["components"]["schemas"]["ImageRequest"]
    assert {"gateId", "data", "model", "metadata"} == set(request["properties"])


def test_no_auth_is_refused_off_loopback(gateway: Gateway) -> None:
    done = gateway.serving.cli("serve", "--no-auth", "--host", "0.0.0.0", check=False)
    assert done.returncode == 2
    assert "loopback" in done.stderr


# --- the OpenAPI schema, fuzzed ----------------------------------------------------------------


def test_the_openapi_schema_holds_for_generated_requests(gateway: Gateway) -> None:
    """schemathesis: requests generated from /openapi.json for each operation get no 5xx, and
    every answer is one the schema declares, in the shape it declares (with a key that may use
    every gate). Driven by hand rather than by schemathesis' pytest plugin, whose lazy loader
    does not run under pytest 9."""
    api = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
    headers = {"authorization": f"Bearer {gateway.any_key}"}
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) == 7
    statuses: dict[str, set[int]] = {}

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def conforms(case: Any) -> None:
            reply = case.call_and_validate(headers=headers, checks=checks)
            statuses.setdefault(case.operation.label, set()).add(reply.status_code)

        conforms()
    # generated requests were served, and refused, as the schema says they may be
    assert {200, 400} <= statuses["POST /v3/image"]
    assert {200, 400} <= statuses["POST /v1/images/generations"]
