"""`index.html` for an output folder: every image with what made it and what it cost.

The page is built from `results.jsonl` alone and is self-contained: images by relative path,
inline CSS and script, and a Content-Security-Policy that lets it load nothing from a network.
Every text on it comes from user input or providers, so all of it is escaped.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from decimal import Decimal
from html import escape
from pathlib import Path
from urllib.parse import quote

from layer_core.money import money, plain
from layer_core.output import ResultLine, latest_results

INDEX = "index.html"

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f4f5;color:#18181b}
header{padding:16px 24px;background:#18181b;color:#fafafa}
header h1{margin:0 0 6px;font-size:20px}
#totals{display:flex;flex-wrap:wrap;gap:4px 24px;margin:0}
#totals div{display:flex;gap:6px}#totals dt{opacity:.7}#totals dd{margin:0;font-weight:600}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:16px;padding:24px}
article{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;overflow:hidden}
article.failed{border:2px solid #dc2626}
figure{margin:0}img{display:block;width:100%;height:auto;background:#e4e4e7}
img.broken{min-height:120px;outline:3px dashed #dc2626}
.info{padding:10px 12px}.prompt{font-weight:600;margin:0 0 6px;white-space:pre-wrap}
.revised{font-style:italic;margin:0 0 6px;white-space:pre-wrap;color:#3f3f46}
dl.meta{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;margin:0;font-size:12px}
dl.meta dt{color:#71717a}dl.meta dd{margin:0;overflow-wrap:anywhere}
.error{color:#b91c1c;white-space:pre-wrap;font-size:12px;margin:0}
""".strip()

# Marks each image loaded or broken once the page has loaded, so a missing file stands out
# (and a headless browser can check the page).
_SCRIPT = """
addEventListener("load", () => {
  let loaded = 0, broken = 0;
  for (const img of document.images) {
    const ok = img.complete && img.naturalWidth > 0;
    img.dataset.state = ok ? "loaded" : "broken";
    if (ok) { loaded++; } else { broken++; img.classList.add("broken"); }
  }
  document.body.dataset.imagesLoaded = loaded;
  document.body.dataset.imagesBroken = broken;
});
""".strip()


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


_CSP = (
    "default-src 'none'; img-src 'self' file: data:; "
    f"style-src {_csp_hash(_STYLE)}; script-src {_csp_hash(_SCRIPT)}"
)


def write_gallery(out: Path) -> Path:
    """Write `out/index.html` from `out/results.jsonl` (replacing any earlier one) and return it."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / INDEX
    scratch = target.with_name(f".{INDEX}.tmp")
    scratch.write_text(render_gallery(list(latest_results(out).values())), encoding="utf-8")
    scratch.replace(target)
    return target


def render_gallery(lines: Sequence[ResultLine], *, title: str = "layer gallery") -> str:
    """The page for `lines` (of results.jsonl, the latest per id)."""
    ok = [line for line in lines if line.ok]
    images = sum(len(line.images) for line in ok)
    cost = sum((line.cost for line in lines), Decimal(0))
    latency = sum(line.latency_ms for line in lines)
    totals = [
        ("requests", "requests", str(len(lines))),
        ("succeeded", "succeeded", str(len(ok))),
        ("failed", "failed", str(len(lines) - len(ok))),
        ("images", "images", str(images)),
        ("cost", "cost", money(cost)),
        ("latency", "latency (sum)", f"{latency / 1000:.1f} s"),
    ]
    items = "".join(_total(*total) for total in totals)
    cards = "\n".join(_card(line) for line in lines)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{escape(_CSP)}">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{escape(title)}</title>
<style>{_STYLE}</style>
</head><body>
<header><h1>{escape(title)}</h1>
<dl id="totals" data-requests="{len(lines)}" data-images="{images}" data-cost="{plain(cost)}">
{items}</dl></header>
<main>
{cards}
</main>
<script>{_SCRIPT}</script>
</body></html>
"""


def _total(key: str, label: str, value: str) -> str:
    return f'<div><dt>{escape(label)}</dt><dd id="total-{key}">{escape(value)}</dd></div>'


def _card(line: ResultLine) -> str:
    prompt = line.prompt or ""
    if not line.ok:
        error = line.error
        kind, message = (error.type, error.message) if error else ("error", "")
        return (
            f'<article class="failed" data-id="{escape(line.id)}">'
            f'<div class="info"><p class="prompt">{escape(prompt)}</p>'
            f'<p class="error">{escape(f"{kind}: {message}")}</p>'
            + _meta({"id": line.id, "cost": money(line.cost)})
            + "</div></article>"
        )
    figures = []
    for image in line.images:
        revised = image.revised_prompt
        figures.append(
            f'<figure><img src="{escape(quote(image.file, safe=""))}" '
            f'alt="{escape(prompt)}" title="{escape(image.file)}">'
            '<figcaption class="info">'
            + (f'<p class="revised">{escape(revised)}</p>' if revised else "")
            + _meta(
                {
                    "model": image.model,
                    "size": image.size,
                    "seed": image.seed,
                    "cost": money(image.cost),
                }
            )
            + "</figcaption></figure>"
        )
    return (
        f'<article data-id="{escape(line.id)}">'
        f'<div class="info"><p class="prompt">{escape(prompt)}</p>'
        + _meta(
            {
                "gate": line.gate,
                "latency": f"{line.latency_ms:.0f} ms",
                "total": money(line.cost) if len(line.images) > 1 else None,
                "id": line.id,
            }
        )
        + "</div>"
        + "".join(figures)
        + "</article>"
    )


def _meta(fields: dict[str, object]) -> str:
    rows = "".join(
        f"<dt>{escape(key)}</dt><dd>{escape(str(value))}</dd>"
        for key, value in fields.items()
        if value is not None and value != ""
    )
    return f'<dl class="meta">{rows}</dl>'
