"""The gallery page: every image shown with what made it, all text escaped, totals that add up.

The browser test opens the page in headless Chromium (the Debian `chromium` package; `.ci/run`
installs it and sets LAYER_REQUIRE_CHROMIUM=1, elsewhere the test skips without it).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from layer_core import Layer, run_batch
from layer_core.cli import cli
from layer_core.gallery import render_gallery, write_gallery
from layer_core.output import ResultLine, latest_results

CONFIG = {
    "ledger": False,
    "gates": {"default": {"model": "local", "routing_strategy": "single"}},
    "plugins": {"local": {"prices": {"local": {"*/*": "0.013"}}}},
}


class Page(HTMLParser):
    """The parts of a gallery page the tests look at: images, totals, the body's marks."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.body: dict[str, str | None] = {}
        self.totals: dict[str, str] = {}
        self.totals_attrs: dict[str, str | None] = {}
        self.scripts = 0
        self.external: list[str] = []
        self._total: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "img":
            self.images.append(found)
        elif tag == "body":
            self.body = found
        elif tag == "script":
            self.scripts += 1
        elif tag == "dl" and found.get("id") == "totals":
            self.totals_attrs = found
        elif tag == "dd" and (found.get("id") or "").startswith("total-"):
            self._total = (found["id"] or "").removeprefix("total-")
        for name in ("src", "href"):
            value = found.get(name) or ""
            if (tag != "img" and value) or re.match(r"^[a-z]+://", value):
                self.external.append(f"{tag} {name}={value}")

    def handle_data(self, data: str) -> None:
        if self._total is not None:
            self.totals[self._total] = data
            self._total = None


def make_folder(out: Path, prompts: list[str], *, count: int = 1) -> list[ResultLine]:
    layer = Layer(CONFIG)
    batch: list[Any] = [
        {"data": {"prompt": p, "size": "256x256", "count": count, "seed": i}}
        for i, p in enumerate(prompts)
    ]
    batch.append({"data": {"prompt": "an invalid one", "size": "3x3"}})
    asyncio.run(run_batch(layer, batch, out, concurrency=4))
    return list(latest_results(out).values())


def test_the_page_escapes_every_text_and_loads_nothing_from_a_network(tmp_path: Path) -> None:
    record = {
        "id": '"><script>alert(1)</script>',
        "status": "ok",
        "prompt": "<img src=x onerror=alert(1)> & \"quotes\" 'too'",
        "gate": "<gate>",
        "files": ['a b&c"<.png'],
        "model": "<model>",
        "cost": "0.04",
        "latency_ms": 12.5,
        "images": [
            {
                "file": 'a b&c"<.png',
                "model": "<model>",
                "size": "256x256",
                "seed": 3,
                "cost": "0.04",
                "revised_prompt": "</figcaption><script>bad()</script>",
            }
        ],
    }
    failed = {
        "id": "f",
        "status": "failed",
        "prompt": "<p>",
        "cost": "0",
        "error": {"type": "AllAttemptsFailed", "message": "<script>x()</script>"},
    }
    html = render_gallery([ResultLine.model_validate(record), ResultLine.model_validate(failed)])
    page = Page(html)

    assert page.scripts == 1  # only the page's own
    assert "<script>alert" not in html
    assert "<script>bad" not in html
    assert "<script>x()" not in html
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &quot;quotes&quot; &#x27;too&#x27;" in html
    assert [img["src"] for img in page.images] == ["a%20b%26c%22%3C.png"]
    assert page.external == []
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp is not None
    assert "default-src &#x27;none&#x27;" in csp.group(1)
    assert "unsafe-inline" not in csp.group(1)


def test_totals_add_up_every_line_of_results(tmp_path: Path) -> None:
    out = tmp_path / "out"
    lines = make_folder(out, ["one", "two", "three"], count=2)
    page = Page(write_gallery(out).read_text())

    assert page.totals == {
        "requests": "4",
        "succeeded": "3",
        "failed": "1",
        "images": "6",
        "cost": "$0.078",
        "latency": page.totals["latency"],
    }
    assert page.totals_attrs["data-cost"] == str(sum(r.cost for r in lines))
    assert sorted(img["src"] or "" for img in page.images) == sorted(
        name for r in lines for name in r.files
    )


# --- in a browser ----------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium(page: Path, profile: Path, *args: str) -> str:
    """Run headless Chromium on `page` with a fresh profile; returns its stdout."""
    if CHROMIUM is None:
        if os.environ.get("LAYER_REQUIRE_CHROMIUM") == "1":
            pytest.fail("chromium is required (LAYER_REQUIRE_CHROMIUM=1) but not installed")
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    done = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_gallery_shows_every_image_in_a_browser(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prompts = [f"<b>spring</b> collection, look {i}" for i in range(11)]
    lines = make_folder(out, prompts)
    index = out / "index.html"

    dom = Page(chromium(index, tmp_path / "profile-1", "--virtual-time-budget=10000", "--dump-dom"))

    files = [name for r in lines for name in r.files]
    assert len(files) == 11
    assert sorted(img["src"] or "" for img in dom.images) == sorted(files)
    assert [img["data-state"] for img in dom.images] == ["loaded"] * 11
    assert dom.body["data-images-loaded"] == "11"
    assert dom.body["data-images-broken"] == "0"
    assert dom.totals["images"] == "11"
    assert dom.totals["requests"] == str(len(lines)) == "12"
    total = sum(r.cost for r in lines)
    assert dom.totals["cost"] == f"${total}" == "$0.143"

    shot = tmp_path / "gallery.png"
    chromium(index, tmp_path / "profile-2", "--window-size=1280,900", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(shot) as image:
        assert image.size == (1280, 900)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None
        assert len(colours) > 200

    # the check would see a missing file: delete one, rebuild, look again
    (out / files[0]).unlink()
    result = CliRunner().invoke(cli, ["gallery", str(out)])
    assert result.exit_code == 0, result.output
    dom = Page(chromium(index, tmp_path / "profile-3", "--virtual-time-budget=10000", "--dump-dom"))
    states = {img["src"]: img["data-state"] for img in dom.images}
    assert states.pop(files[0]) == "broken"
    assert set(states.values()) == {"loaded"}
    assert dom.body["data-images-broken"] == "1"


def test_the_gallery_shows_a_batch_in_input_order(tmp_path: Path) -> None:
    """Lines finish in any order (here the first ones last, and one fails until a rerun), yet
    results.jsonl and the page list them as the input does, after what was there before."""
    from layer_core import GenerationCall, ImageOutput, Provider, ProviderUnavailable
    from layer_core.testing import fake_images, make_spec

    class Slow(Provider):
        name = "slow"
        fail: frozenset[str] = frozenset({"p2"})

        def models(self) -> list[Any]:
            return [make_spec("slow-1", "slow", max_images_per_call=10)]

        async def generate(self, call: GenerationCall) -> list[ImageOutput]:
            await asyncio.sleep(0.3 - 0.05 * int(call.prompt[1:]))  # p0 last, p5 first
            if call.prompt in self.fail:
                raise ProviderUnavailable("not now")
            return fake_images(call)

    slow = Slow()
    layer = Layer(
        {"ledger": False, "gates": {"default": {"model": "slow-1"}}},
        plugins=[slow],
        load_entry_points=False,
    )
    out = tmp_path / "out"
    asyncio.run(run_batch(layer, [{"id": "earlier", "data": {"prompt": "p5"}}], out))
    batch: list[Any] = [{"id": f"line-{i}", "data": {"prompt": f"p{i}"}} for i in range(6)]
    expected = ["earlier", *(f"line-{i}" for i in range(6))]

    asyncio.run(run_batch(layer, batch, out, concurrency=6))
    assert list(latest_results(out)) == expected
    slow.fail = frozenset()
    asyncio.run(run_batch(layer, batch, out, concurrency=6))  # retries line-2 alone
    assert list(latest_results(out)) == expected
    ids = re.findall(r'<article[^>]* data-id="([^"]+)"', (out / "index.html").read_text())
    assert ids == expected
