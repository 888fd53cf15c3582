"""`layer serve`'s per-request limits, on a server of their own: the generation timeout (504)
and the per-key concurrency cap (429)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.gateway import Serving, openai_fake, write_config


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Serving, str]]:
    home = tmp_path_factory.mktemp("limits")
    with openai_fake() as fake:
        gates = {"art": {"model": "dall-e-3", "routing_strategy": "single", "retries": 0}}
        config = write_config(
            home / "plugins.toml",
            ledger=f"sqlite:///{home / 'ledger.sqlite'}",
            openai_url=fake.url,
            gates=gates,
        )
        serving = Serving(config, home)
        key = serving.create_key("app", "--gates", "art")
        serving.start("--timeout", "0.3", "--key-concurrency", "1")
        try:
            yield serving, key
        finally:
            serving.stop()


def test_a_generation_over_the_timeout_is_a_504(serving: tuple[Serving, str]) -> None:
    server, key = serving
    reply = httpx.post(
        f"{server.url}/v3/image",
        json={"gateId": "art", "data": {"prompt": "slow: a fox"}},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert (reply.status_code, reply.json()["error"]) == (504, "timeout")


def test_a_key_over_its_concurrency_is_a_429(serving: tuple[Serving, str]) -> None:
    server, key = serving

    async def two() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            body = {"gateId": "art", "data": {"prompt": "slow: a fox"}}
            headers = {"authorization": f"Bearer {key}"}
            return list(
                await asyncio.gather(
                    *(client.post(f"{server.url}/v3/image", json=body, headers=headers)
                      for _ in range(2))
                )
            )  # fmt: skip

    statuses = sorted((r.status_code, r.json()["error"]) for r in asyncio.run(two()))
    assert statuses == [(429, "too_many_concurrent_requests"), (504, "timeout")]
