"""The `layer` command: image, batch, gallery, explain, models, plugins, gates, costs, check."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from layer_core.errors import ConfigError, InvalidRequest, LayerError
from layer_core.schema import QUALITIES, SIZES, STYLES
from layer_core.script import Interrupted, done, finishing

if TYPE_CHECKING:
    from rich.console import Console

    from layer_core.batch import BatchInput, BatchSummary, FileFormat
    from layer_core.layer import Layer
    from layer_core.ledger import CostReport
    from layer_core.policy import Plan
    from layer_core.schema import ImageResponse

F = TypeVar("F", bound=Callable[..., Any])


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _money(amount: Decimal | float) -> str:
    value = Decimal(str(amount)).normalize()
    return f"${value:f}" if value else "$0"


@contextmanager
def _errors() -> Iterator[None]:
    """LayerErrors become a message and exit status (2 for bad input, 1 otherwise)."""
    try:
        yield
    except (InvalidRequest, ConfigError) as exc:
        _say(_console(stderr=True), "error", str(exc))
        raise SystemExit(2) from None
    except LayerError as exc:
        if os.environ.get("LAYER_RAISE_ERRORS"):
            raise
        _say(_console(stderr=True), "error", str(exc))
        raise SystemExit(1) from None


def _say(console: Console, level: str, message: str) -> None:
    """`level: message`, the level coloured, the message printed verbatim (no markup)."""
    from rich.markup import escape

    colour = {"error": "red", "warning": "yellow"}.get(level, "cyan")
    console.print(f"[{colour}]{level}:[/{colour}] {escape(message)}")


def _layer(ctx: click.Context) -> Layer:
    from layer_core.layer import Layer

    config = ctx.obj.get("config") if ctx.obj else None
    return Layer(config)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="LAYER_CONFIG",
    help="plugins.toml to use (default: $LAYER_CONFIG, ./plugins.toml, user config dir).",
)
@click.version_option(package_name="layer-core", prog_name="layer")
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """Generate images through many AI providers, routed per named gate."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


def _request_options(func: F) -> F:
    options = [
        click.option("-g", "--gate", default="default", show_default=True, help="Gate id."),
        click.option("--size", type=click.Choice(SIZES), help="Image size (WxH)."),
        click.option("--quality", type=click.Choice(QUALITIES)),
        click.option("--style", type=click.Choice(STYLES)),
        click.option("-n", "--count", type=int, default=1, show_default=True),
        click.option("--seed", type=int, help="Seed, for reproducible images."),
        click.option("-m", "--model", help="Override the gate's model (if it allows)."),
        click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Metadata, repeatable."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _metadata(pairs: Sequence[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--meta")
        meta[key] = value
    return meta


def _data(prompt: str, **options: Any) -> dict[str, Any]:
    data = {"prompt": prompt, "count": options["count"]}
    for key in ("size", "quality", "style", "seed"):
        if options.get(key) is not None:
            data[key] = options[key]
    return data


_out_option = click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("images"),
    show_default=True,
    help="Folder for the images, results.jsonl and index.html.",
)


@cli.command()
@click.argument("prompt")
@_request_options
@_out_option
@click.option("--json", "as_json", is_flag=True, help="Print the response as JSON.")
@click.pass_context
def image(ctx: click.Context, /, prompt: str, out: Path, as_json: bool, **options: Any) -> None:
    """Generate images for PROMPT and save them to --out."""
    from layer_core.gallery import write_gallery
    from layer_core.output import save_response

    with _errors():
        layer = _layer(ctx)
        done("no image was saved")  # what a Ctrl-C stops, as the command goes on
        with layer:
            response = layer.image(
                options["gate"],
                _data(prompt, **options),
                options["model"],
                _metadata(options["meta"]),
            )
            done(f"{len(response.images)} image(s) generated, not saved")
        done(f"{len(response.images)} image(s) generated, not all saved in {out}")
        files = save_response(response, out, prompt=prompt)
        done(f"{len(files)} image(s) saved in {out}")
        gallery_page = write_gallery(out)
        finishing()
        if as_json:
            click.echo(
                response.model_dump_json(by_alias=True, exclude={"images": {"__all__": {"base64"}}})
            )
            return
        _print_response(response, files, layer)
        _console().print(f"gallery: {gallery_page}", markup=False)


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_request_options
@_out_option
@click.option(
    "-j",
    "--concurrency",
    type=click.IntRange(1, 256),
    default=8,
    show_default=True,
    help="Requests in flight at once, across every provider.",
)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["auto", "text", "jsonl"]),
    default="auto",
    show_default=True,
    help="text: a prompt per line; jsonl: a request per line (auto: by name or first line).",
)
@click.pass_context
def batch(
    ctx: click.Context, /, file: Path, out: Path, concurrency: int, file_format: str, **options: Any
) -> None:
    """Generate for every line of FILE into --out; rerun the same command to resume.

    FILE holds a prompt per line, or a JSON request per line (`{"id": ..., "gateId": ...,
    "data": {...}, "model": ..., "metadata": {...}}`, every field optional but data.prompt).
    The request flags are defaults for every line. Lines already done in --out (same id, or
    same content when a line has no id) are skipped; failed ones are retried. Ctrl-C stops
    cleanly: every completed line is kept. Exits 1 when any line failed, 130 after Ctrl-C.
    """
    from layer_core.batch import read_batch_file
    from layer_core.errors import GateNotFound

    with _errors():
        layer = _layer(ctx)
        if options["gate"] not in layer.gates():  # a typo would fail every line: say so once
            raise GateNotFound(options["gate"], list(layer.gates()))
        defaults: dict[str, Any] = {
            "gateId": options["gate"],
            "data": {k: v for k, v in _data("", **options).items() if k != "prompt"},
            "metadata": _metadata(options["meta"]),
        }
        if options["model"]:
            defaults["model"] = options["model"]
        requests = read_batch_file(file, defaults, file_format=cast("FileFormat", file_format))
        seen: list[BatchSummary] = []
        try:
            with layer:  # on the layer's own loop: the main thread only waits, so Ctrl-C
                # cancels the batch where it awaits (see `layer_core.layer.run_on`)
                summary = layer._run(_run_batch(layer, requests, out, concurrency, seen))
        except Interrupted:
            if seen and seen[-1].state != "finished":
                _print_summary(seen[-1], out, _console(stderr=True))
            done(_batch_note(seen[-1] if seen else None, out))
            raise
        finishing()
        _print_summary(summary, out, _console())
        if summary.failed:
            raise SystemExit(1)


async def _run_batch(
    layer: Layer,
    requests: list[BatchInput | InvalidRequest],
    out: Path,
    concurrency: int,
    seen: list[BatchSummary],
) -> BatchSummary:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from layer_core.batch import run_batch

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed[/red]"),
        TextColumn("{task.fields[spent]} spent"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=_console(stderr=True),
    )
    tasks: list[Any] = []

    def show(summary: BatchSummary) -> None:
        if not seen:
            seen.append(summary)
            note = f" ({summary.skipped} already done)" if summary.skipped else ""
            tasks.append(
                progress.add_task(f"batch{note}", total=summary.todo, failed=0, spent="$0")
            )
        progress.update(
            tasks[0], completed=summary.done, failed=summary.failed, spent=_money(summary.cost)
        )
        done(_batch_note(summary, out))

    with progress:
        return await run_batch(layer, requests, out, concurrency=concurrency, on_progress=show)


def _batch_note(summary: BatchSummary | None, out: Path) -> str:
    """What an interrupted batch had done (never "finished": the batch did not say so)."""
    if summary is None:
        return "no line was run"
    saved = f"{summary.images} image(s) saved in {out}"
    if summary.state == "finished":  # the Ctrl-C came while the ledger was being written
        return f"every line was done, {saved}"
    return (
        f"{summary.done} of {summary.todo} line(s) done, {saved};"
        " run the same command again to do the rest"
    )


def _print_summary(summary: BatchSummary, out: Path, console: Console) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"batch into {escape(str(out))}: {summary.state}", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    for label, value in (
        ("requests in the file", summary.total),
        ("already done (skipped)", summary.skipped),
        ("succeeded now", summary.ok),
        ("failed", summary.failed),
        ("not reached", summary.todo - summary.done),
        ("images saved", summary.images),
        ("spent", _money(summary.cost)),
        ("time", f"{summary.elapsed:.1f} s"),
    ):
        table.add_row(label, str(value))
    console.print(table)
    if summary.failures:
        failures = Table(title="failed (recorded in results.jsonl; a rerun retries them)")
        for column in ("id", "prompt", "error"):
            failures.add_column(column, overflow="fold")
        for result in summary.failures[:20]:
            error = f"{type(result.error).__name__}: {result.error}"
            failures.add_row(
                escape(result.id), escape((result.prompt or "")[:60]), escape(error[:400])
            )
        console.print(failures)
        if len(summary.failures) > 20:
            console.print(f"... and {len(summary.failures) - 20} more", markup=False)
    console.print(f"results: {out / 'results.jsonl'}\ngallery: {out / 'index.html'}", markup=False)


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def gallery(directory: Path) -> None:
    """Rebuild DIRECTORY/index.html from DIRECTORY/results.jsonl."""
    from layer_core.gallery import write_gallery
    from layer_core.output import RESULTS, latest_results

    if not (directory / RESULTS).is_file():
        _say(_console(stderr=True), "error", f"{directory / RESULTS} does not exist")
        raise SystemExit(2)
    page = write_gallery(directory)
    records = latest_results(directory)
    images = sum(len(r.get("files") or []) for r in records.values())
    _console().print(f"{page}: {len(records)} request(s), {images} image(s)", markup=False)


def _print_response(response: ImageResponse, files: list[Path], layer: Layer) -> None:
    from rich.table import Table

    console = _console()
    table = Table(title=f"{len(files)} image(s) via gate {response.gate_id!r}")
    table.add_column("file", overflow="fold")
    for column in ("model", "size", "seed", "cost"):
        table.add_column(column, justify="right" if column in ("seed", "cost") else "left")
    for path, img in zip(files, response.images, strict=True):
        table.add_row(
            str(path), img.model, img.size or "", str(img.seed or ""), _money(img.cost_exact)
        )
    console.print(table)
    console.print(f"total {_money(response.cost_exact)} in {response.latency:.0f} ms")
    for warning in response.warnings:
        _say(console, "warning", warning)
    fallbacks = [a for a in response.attempts if a.outcome == "error"]
    if fallbacks:
        console.print(
            f"{len(fallbacks)} attempt(s) failed on the way: "
            + ", ".join(f"{a.model} ({a.error})" for a in fallbacks)
        )
    if all(layer.catalog[img.model].placeholder for img in response.images):
        console.print(_placeholder_note(layer), style="cyan")


def _placeholder_note(layer: Layer) -> str:
    missing = [
        (name, why) for name, why in layer.unavailable().items() if why.endswith("is not set")
    ]
    if missing:
        variables = " or ".join(
            f"{why.removesuffix(' is not set')} ({name})" for name, why in missing
        )
        return (
            "These are placeholders from the local provider: no real provider has a key. "
            f"Set {variables} to generate real images."
        )
    real = [n for n, p in layer.providers.items() if not _placeholder_only(layer, n)]
    if not real:
        return (
            "These are placeholders from the local provider: no real provider plugin is installed "
            "(e.g. pip install layer-openai, then set OPENAI_API_KEY)."
        )
    return "These are placeholders from the local provider (the gate fell to it)."


def _placeholder_only(layer: Layer, provider: str) -> bool:
    specs = [s for s in layer.models() if s.provider == provider]
    return bool(specs) and all(s.placeholder for s in specs)


@cli.command()
@click.argument("prompt")
@_request_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.pass_context
def explain(ctx: click.Context, /, prompt: str, as_json: bool, **options: Any) -> None:
    """Show the plan for PROMPT (candidates in order, rejections with reasons); calls no one."""
    with _errors():
        layer = _layer(ctx)
        the_plan = layer.explain(
            options["gate"], _data(prompt, **options), options["model"], _metadata(options["meta"])
        )
        if as_json:
            click.echo(json.dumps(_plan_dict(the_plan), indent=2))
            return
        _print_plan(the_plan, layer)


def _plan_dict(the_plan: Plan) -> dict[str, Any]:
    return {
        "gate": the_plan.gate_id,
        "size": the_plan.size,
        "quality": the_plan.quality,
        "style": the_plan.style,
        "count": the_plan.count,
        "candidates": [
            {
                "model": c.id,
                "provider": c.model.provider,
                "price": str(c.price),
                "estimated_cost": str(c.estimated_cost),
                "warnings": list(c.warnings),
            }
            for c in the_plan.candidates
        ],
        "rejected": [{"model": r.model, "reason": r.reason} for r in the_plan.rejected],
    }


def _print_plan(the_plan: Plan, layer: Layer) -> None:
    from rich.table import Table

    console = _console()
    gate = layer.gates()[the_plan.gate_id]
    console.print(
        f"gate {the_plan.gate_id!r} ({gate.routing_strategy}): {the_plan.count} × {the_plan.size}"
        f", quality {the_plan.quality or '-'}, style {the_plan.style or '-'}",
        markup=False,
    )
    table = Table(title="candidates, in the order they would be tried")
    for column in ("#", "model", "provider", "per image", "estimate", "notes"):
        table.add_column(column)
    for number, c in enumerate(the_plan.candidates, 1):
        table.add_row(
            str(number),
            c.id,
            c.model.provider,
            _money(c.price),
            _money(c.estimated_cost),
            "; ".join(c.warnings),
        )
    console.print(table)
    if not the_plan.candidates:
        console.print("[red]no candidate: this request would fail with NoEligibleModel[/red]")
    if the_plan.rejected:
        console.print("rejected:")
        for r in the_plan.rejected:
            console.print(f"  {r.reason}", markup=False)


@cli.command()
@click.option("--provider", help="Only this provider's models.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models(ctx: click.Context, provider: str | None, as_json: bool) -> None:
    """List the catalogue: sizes, parameters, prices (with their date) and availability."""
    from rich.table import Table

    with _errors():
        layer = _layer(ctx)
    specs = [s for s in layer.models() if provider is None or s.provider == provider]
    unavailable = layer.unavailable()
    if as_json:
        rows = [
            {**s.model_dump(mode="json"), "available": s.provider not in unavailable} for s in specs
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(specs)} model(s)")
    for column in (
        "model",
        "provider",
        "sizes",
        "quality / style",
        "per call",
        "seed",
        "prices (USD/image)",
        "status",
    ):
        table.add_column(column)
    for s in specs:
        prices = "\n".join(f"{k} {_money(v)}" for k, v in s.prices.items())
        prices += f"\n(read {s.price_date.isoformat()})"
        status = unavailable.get(s.provider, "available")
        if s.deprecated:
            status += f"\nretires {s.deprecated.isoformat()}"
        table.add_row(
            s.id,
            s.provider,
            "\n".join(s.sizes),
            f"{'/'.join(s.qualities) or '-'}\n{'/'.join(s.styles) or '-'}",
            str(s.max_images_per_call),
            "yes" if s.supports_seed else "no",
            prices,
            status,
        )
    _console().print(table)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List plugins: distribution, version, status, providers, hooks, and why any failed."""
    from dataclasses import asdict

    from rich.markup import escape
    from rich.table import Table

    with _errors():
        layer = _layer(ctx)
    infos = layer.plugins()
    if as_json:
        click.echo(json.dumps([asdict(i) for i in infos], indent=2))
        return
    table = Table(title="plugins")
    for column in ("plugin", "distribution", "version", "status", "providers", "hooks", "notes"):
        table.add_column(column)
    for info in infos:
        colour = {"ok": "green", "failed": "red", "disabled": "yellow"}[info.status]
        table.add_row(
            info.name,
            info.distribution or "-",
            info.version or "-",
            f"[{colour}]{info.status}[/{colour}]",
            ", ".join(info.providers),
            ", ".join(info.hooks),
            escape(info.error or info.note or ""),
        )
    _console().print(table)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def gates(ctx: click.Context, as_json: bool) -> None:
    """List the configured gates."""
    from rich.table import Table

    with _errors():
        layer = _layer(ctx)
    all_gates = layer.gates()
    if as_json:
        click.echo(
            json.dumps({k: g.model_dump(mode="json") for k, g in all_gates.items()}, indent=2)
        )
        return
    table = Table(title=f"gates (config: {layer.config.source})")
    for column in ("gate", "strategy", "pool", "defaults", "limits"):
        table.add_column(column)
    for gate in all_gates.values():
        defaults = ", ".join(f"{k}={v}" for k, v in gate.defaults.model_dump().items() if v)
        limits = [f"retries {gate.retries}", f"timeout {gate.timeout:g}s"]
        if gate.max_cost_per_image is not None:
            limits.append(f"max {_money(gate.max_cost_per_image)}/image")
        if gate.budget is not None:
            limits.append(f"budget {_money(gate.budget.amount)} {gate.budget.period}")
        table.add_row(
            gate.id, gate.routing_strategy, "\n".join(gate.pool), defaults or "-", "\n".join(limits)
        )
    _console().print(table)


@cli.command()
@click.option(
    "--by",
    multiple=True,
    metavar="DIMENSION",
    help="Group by gate, model, provider, day, status or meta.KEY (a metadata key); repeatable.",
)
@click.option("--since", metavar="WHEN", help="From: an age (30m, 12h, 7d, 2w) or ISO date/time.")
@click.option("--until", metavar="WHEN", help="Up to (not including): same forms as --since.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@click.pass_context
def costs(
    ctx: click.Context, by: tuple[str, ...], since: str | None, until: str | None, fmt: str
) -> None:
    """Spend recorded in the ledger, grouped --by, with exact totals."""
    with _errors():
        layer = _layer(ctx)
        try:
            report = layer.costs(since=since, until=until, by=by)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        finally:
            layer.close()
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    elif fmt == "csv":
        _print_csv(report)
    else:
        _print_costs(report, layer)


def _print_csv(report: CostReport) -> None:
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow([*report.by, "requests", "images", "cost"])
    for row in report.rows:
        writer.writerow(
            [*(v or "" for v in row.group.values()), row.requests, row.images, str(row.cost)]
        )


def _print_costs(report: CostReport, layer: Layer) -> None:
    from rich.markup import escape
    from rich.table import Table

    window = " ".join(
        f"{word} {moment:%Y-%m-%d %H:%M} UTC"
        for word, moment in (("since", report.since), ("until", report.until))
        if moment is not None
    )
    table = Table(title=escape(f"spend {window or 'to date'} ({layer.ledger!r})"))
    for name in report.by:
        table.add_column(name, overflow="fold")
    for column in ("requests", "images", "cost"):
        table.add_column(column, justify="right")
    if report.by:
        for row in report.rows:
            table.add_row(
                *(escape(v) if v is not None else "-" for v in row.group.values()),
                str(row.requests),
                str(row.images),
                _money(row.cost),
            )
        table.add_section()
    label = ["total", *[""] * (len(report.by) - 1)] if report.by else []
    table.add_row(*label, str(report.requests), str(report.images), _money(report.total))
    _console().print(table)


@cli.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def check(ctx: click.Context, config: Path | None) -> None:
    """Validate a config: every gate reachable, declared sizes servable, cost bounds sane."""
    from layer_core.checks import check_layer
    from layer_core.layer import Layer

    with _errors():
        layer = Layer(config or (ctx.obj or {}).get("config"))
    findings = check_layer(layer)
    console = _console()
    for level, message in findings:
        _say(console, level, message)
    errors = sum(1 for level, _ in findings if level == "error")
    console.print(
        f"{layer.config.source}: {len(layer.gates())} gate(s), {errors} error(s), "
        f"{len(findings) - errors} warning(s)",
        markup=False,
    )
    if errors:
        raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `layer` script."""
    cli.main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="layer")
