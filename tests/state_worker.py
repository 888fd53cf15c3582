"""A separate app process for the state store's cross-process tests.

    python -m tests.state_worker FAKE_URL REDIS_URL PREFIX N

Builds a `Layer` whose openai provider points at the fake OpenAI API at FAKE_URL (dall-e-3 only,
60 images per minute), with its state in Redis, and sends N one-image requests; prints one JSON
line: how many were served, and the outcomes of the attempts of those that were not.
"""

from __future__ import annotations

import json
import sys

import layer_openai
from layer_openai.testing import KEY

from layer_core import AllAttemptsFailed, Layer


def main(fake_url: str, redis_url: str, prefix: str, n: int) -> None:
    layer = Layer(
        {
            "ledger": False,
            "state": redis_url,
            "state_prefix": prefix,
            "state_timeout": 2.0,  # a loaded test machine is slow, not Redis down
            "plugins": {
                "openai": {
                    "base_url": f"{fake_url}/v1",
                    "response_format": "b64_json",
                    "images_per_minute": 60,
                }
            },
            "gates": {"g": {"model": "dall-e-3", "routing_strategy": "single"}},
        },
        plugins=[layer_openai],
        load_entry_points=False,
        environ={"OPENAI_API_KEY": KEY},
    )
    served = 0
    refused: list[str] = []
    with layer:
        for _ in range(n):
            try:
                layer.image("g", {"prompt": "a heron"})
                served += 1
            except AllAttemptsFailed as failed:
                refused.extend(a.outcome for a in failed.attempts)
    print(json.dumps({"served": served, "refused": refused}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
