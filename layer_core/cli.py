"""The `layer` command: image, batch, gallery, explain, models, plugins, gates, costs, check,
serve, keys."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeVar, cast

import click

from layer_core.errors import (
    ConfigError,
    GateNotFound,
    InvalidRequest,
    LayerError,
    OverrideNotAllowed,
    UnknownModel,
)
from layer_core.interrupt import Interrupted, done, finishing
from layer_core.money import money
from layer_core.schema import QUALITIES, SIZES, STYLES

if TYPE_CHECKING:
    from rich.console import Console

    from layer_core.batch import BatchInput, BatchSummary, FileFormat
    from layer_core.catalog import ModelSpec
    from layer_core.layer import Layer
    from layer_core.ledger import CostReport
    from layer_core.policy import Plan
    from layer_core.schema import ImageResponse

F = TypeVar("F", bound=Callable[..., Any])


def _console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr): wrapped to the terminal's width on a terminal; written as
    is, no line ever broken, when the output goes to a pipe or a file."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    console.soft_wrap = not console.is_terminal
    return console


class _Column(NamedTuple):
    """A column of `_table`.

    `whole` (ids, sizes, paths, amounts): a value is never cut nor broken across lines; the column
    is as wide as its longest value. Otherwise free text, wrapped at spaces to fit the terminal.
    `styles` colours a value on a terminal (value -> rich style).
    """

    name: str
    whole: bool = True
    right: bool = False
    styles: Mapping[str, str] | None = None


#: A cell: a value, or a list of values (one per line on a terminal, joined by ", " otherwise).
_Cell = str | list[str]

#: Free text wraps between words; a word longer than this may be broken to fit the terminal.
_LONG_WORD = 20


def _table(
    console: Console,
    columns: Sequence[_Column],
    rows: Sequence[Sequence[_Cell]],
    *,
    title: str = "",
    header: bool = True,
    footer: Sequence[_Cell] = (),
) -> None:
    """Print rows: a table on a terminal, plain lines otherwise.

    On a terminal: the title on a line of its own (so a path in it is never broken), then a table
    whose `whole` columns are never cut nor broken and whose free-text columns wrap; the footer
    (e.g. a total) under a rule. A table the terminal is too narrow for is printed wider than it,
    for the terminal to wrap, rather than cut.
    Otherwise (a pipe, a file): the column names, then one line per row and the footer, fields
    separated by tabs; no title, box drawing, colour or wrapping, so grep, cut and awk work.
    """
    from rich import box
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    records = [*rows, *([footer] if footer else [])]
    if not console.is_terminal:
        lines = [[column.name for column in columns]] if header else []
        lines += [
            [cell if isinstance(cell, str) else ", ".join(cell) for cell in r] for r in records
        ]
        for fields in lines:
            click.echo("\t".join(" ".join(field.split()) for field in fields), console.file)
        return

    def joined(cell: _Cell) -> str:
        return cell if isinstance(cell, str) else "\n".join(cell)

    def least_width(i: int, column: _Column) -> int:
        """A whole column's longest line; a free-text column's longest word (up to _LONG_WORD)."""
        values = [column.name] if header else []
        values += [joined(record[i]) for record in records]
        if column.whole:
            return max(
                (cell_len(line) for value in values for line in value.splitlines()), default=0
            )
        longest = max((cell_len(word) for value in values for word in value.split()), default=0)
        return min(longest, _LONG_WORD)

    widths = [least_width(i, column) for i, column in enumerate(columns)]
    needed = sum(widths) + 2 * (len(columns) - 1)  # between columns: a space, a (blank) rule
    table = Table(
        box=box.SIMPLE,
        show_header=header,
        show_footer=bool(footer),
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        width=needed if needed > console.width else None,
    )
    for i, (column, width) in enumerate(zip(columns, widths, strict=True)):
        table.add_column(
            column.name,
            footer=Text(joined(footer[i])) if footer else "",
            justify="right" if column.right else "left",
            no_wrap=column.whole,
            min_width=width,
            overflow="fold",
        )
    for row in rows:
        values = [joined(cell) for cell in row]
        table.add_row(
            *(
                Text(v, style=(c.styles or {}).get(v, ""))
                for c, v in zip(columns, values, strict=True)
            )
        )
    if title:
        console.print(title, markup=False, soft_wrap=True, style="bold")
    console.print(table, crop=False)


# --- errors and exit statuses: one style, one mapping ------------------------------------------

#: The command ran and failed: generation failed (every model failed, no model could serve the
#: request, the budget is spent), the ledger could not be read, a batch line failed.
EXIT_FAILED = 1
#: The command line, the request or the config is wrong (nothing was sent to a provider), or
#: `layer check` found an error in the config.
EXIT_BAD_INPUT = 2
#: Interrupted (Ctrl-C).
EXIT_INTERRUPTED = 130

EXIT_STATUSES = f"""\b
Exit status: 0 done; {EXIT_FAILED} failed (generation failed, a batch line failed,
the ledger could not be read); {EXIT_BAD_INPUT} bad input (a flag, the request or the
config is wrong: nothing was sent to a provider); {EXIT_INTERRUPTED} interrupted (Ctrl-C).
Errors are printed to stderr as "error: ..." with what to do about it."""

#: What is the caller's to fix, so the command exits EXIT_BAD_INPUT.
BAD_INPUT: tuple[type[Exception], ...] = (
    click.UsageError,
    InvalidRequest,
    ConfigError,
    GateNotFound,
    UnknownModel,
    OverrideNotAllowed,
)


def exit_status(exc: BaseException) -> int:
    """The exit status for what ended a command: the one place errors map onto statuses."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_BAD_INPUT if isinstance(exc, BAD_INPUT) else EXIT_FAILED


def _fail(message: str, status: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print `error: message` on stderr and exit with `status`."""
    _say(_console(stderr=True), "error", message)
    raise SystemExit(status)


def _usage_message(exc: click.UsageError) -> str:
    """A command-line mistake, with where to read the flags."""
    message = exc.format_message()
    ctx = exc.ctx or click.get_current_context(silent=True)
    if ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message


@contextmanager
def _errors() -> Iterator[None]:
    """Errors become `error: ...` on stderr and their exit status (`exit_status`).

    LAYER_RAISE_ERRORS=1 lets a failure (not bad input) through with its traceback.
    """
    try:
        yield
    except click.UsageError as exc:
        _fail(_usage_message(exc), EXIT_BAD_INPUT)
    except LayerError as exc:
        status = exit_status(exc)
        if status == EXIT_FAILED and os.environ.get("LAYER_RAISE_ERRORS"):
            raise
        _fail(str(exc), status)


class _Commands(click.Group):
    """The `layer` group: a mistake in a command's flags is reported as every error is."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            _fail(_usage_message(exc), EXIT_BAD_INPUT)


def _say(console: Console, level: str, message: str) -> None:
    """`level: message`, the level coloured, the message printed verbatim (no markup)."""
    from rich.markup import escape

    colour = {"error": "red", "warning": "yellow"}.get(level, "cyan")
    console.print(f"[{colour}]{level}:[/{colour}] {escape(message)}")


def _layer(ctx: click.Context) -> Layer:
    from layer_core.layer import Layer

    config = ctx.obj.get("config") if ctx.obj else None
    return Layer(config)


@click.group(
    "layer",
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_STATUSES,
)
@click.option(
    "-c",
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="LAYER_CONFIG",
    help="plugins.toml to use (default: $LAYER_CONFIG, ./plugins.toml, user config dir).",
)
@click.version_option(
    package_name="layer-core", prog_name="layer", help="Show the version and exit."
)
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """Generate images through many AI providers, routed per named gate."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


def _request_options(func: F) -> F:
    options = [
        click.option(
            "-g", "--gate", default="default", show_default=True, help="Gate to route through."
        ),
        click.option("--size", type=click.Choice(SIZES), help="Image size (WxH)."),
        click.option(
            "--quality", type=click.Choice(QUALITIES), help="Quality, where the model has one."
        ),
        click.option("--style", type=click.Choice(STYLES), help="Style, where the model has one."),
        click.option(
            "-n", "--count", type=int, default=1, show_default=True, help="Images (1 to 10)."
        ),
        click.option("--seed", type=int, help="Seed, for reproducible images."),
        click.option("-m", "--model", help="Override the gate's model (if it allows)."),
        click.option(
            "--meta",
            multiple=True,
            metavar="KEY=VALUE",
            help="Metadata recorded with the request (text); repeatable, one key each.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _metadata(pairs: Sequence[str]) -> dict[str, Any]:
    """`--meta KEY=VALUE` pairs as metadata: values are text, each key given once."""
    meta: dict[str, Any] = {}
    for pair in pairs:
        if _is_json_container(pair):
            raise click.BadParameter(
                f"{pair!r} is JSON; give KEY=VALUE pairs, one --meta each", param_hint="--meta"
            )
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--meta")
        if key in meta:
            raise click.BadParameter(
                f"key {key!r} is given twice; give each key once", param_hint="--meta"
            )
        if _is_json_container(value):
            raise click.BadParameter(
                f"{key}={value}: metadata values must be str, int, float, bool or null, "
                "not a JSON object or list",
                param_hint="--meta",
            )
        meta[key] = value
    return meta


def _is_json_container(text: str) -> bool:
    if not text.lstrip().startswith(("{", "[")):
        return False
    try:
        return isinstance(json.loads(text), (dict, list))
    except ValueError:
        return False


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
        _console().print(f"gallery: {gallery_page}", markup=False, soft_wrap=True)


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
                # cancels the batch where it awaits (see `layer_core.bridge.run_on`)
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
            tasks[0], completed=summary.done, failed=summary.failed, spent=money(summary.cost)
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
    _table(
        console,
        [_Column("", whole=False), _Column("", right=True)],
        [
            [label, str(value)]
            for label, value in (
                ("requests in the file", summary.total),
                ("already done (skipped)", summary.skipped),
                ("succeeded now", summary.ok),
                ("failed", summary.failed),
                ("not reached", summary.todo - summary.done),
                ("images saved", summary.images),
                ("spent", money(summary.cost)),
                ("time", f"{summary.elapsed:.1f} s"),
            )
        ],
        title=f"batch into {out}: {summary.state}",
        header=False,
    )
    if summary.failures:
        _table(
            console,
            [_Column("id"), _Column("prompt", whole=False), _Column("error", whole=False)],
            [
                [
                    result.id,
                    (result.prompt or "")[:60],
                    f"{type(result.error).__name__}: {result.error}"[:400],
                ]
                for result in summary.failures[:20]
            ],
            title="failed (recorded in results.jsonl; a rerun retries them)",
        )
        if len(summary.failures) > 20:
            console.print(f"... and {len(summary.failures) - 20} more", markup=False)
    console.print(
        f"results: {out / 'results.jsonl'}\ngallery: {out / 'index.html'}",
        markup=False,
        soft_wrap=True,
    )


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def gallery(directory: Path) -> None:
    """Rebuild DIRECTORY/index.html from DIRECTORY/results.jsonl."""
    from layer_core.gallery import write_gallery
    from layer_core.output import RESULTS, latest_results

    if not (directory / RESULTS).is_file():
        _fail(
            f"{directory / RESULTS} does not exist: give the --out folder of a "
            "`layer image` or `layer batch` run"
        )
    page = write_gallery(directory)
    lines = latest_results(directory)
    images = sum(len(line.files) for line in lines.values())
    _console().print(
        f"{page}: {len(lines)} request(s), {images} image(s)", markup=False, soft_wrap=True
    )


def _print_response(response: ImageResponse, files: list[Path], layer: Layer) -> None:
    console = _console()
    _table(
        console,
        [
            _Column("file"),
            _Column("model"),
            _Column("size"),
            _Column("seed", right=True),
            _Column("cost", right=True),
        ],
        [
            [str(path), img.model, img.size or "", str(img.seed or ""), money(img.cost_exact)]
            for path, img in zip(files, response.images, strict=True)
        ],
        title=f"{len(files)} image(s) via gate {response.gate_id!r}",
    )
    console.print(f"total {money(response.cost_exact)} in {response.latency:.0f} ms")
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
    disabled = [i for i in layer.plugins() if i.status == "disabled"]
    if not real and disabled:
        names = ", ".join(i.name for i in disabled)
        return (
            "These are placeholders from the local provider: the other provider plugins are "
            f"disabled ({names}: {disabled[0].note})."
        )
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
        if layer.state_store.url != "memory":
            layer.health()  # what the shared store knows, before planning with it
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
                "deployment": c.deployment,
                "price": str(c.price),
                "estimated_cost": str(c.estimated_cost),
                "warnings": list(c.warnings),
                "health": None
                if c.health is None
                else {"state": c.health.state, "reason": c.health.reason},
            }
            for c in the_plan.candidates
        ],
        "rejected": [{"model": r.model, "reason": r.reason} for r in the_plan.rejected],
    }


def _print_plan(the_plan: Plan, layer: Layer) -> None:
    console = _console()
    gate = layer.gates()[the_plan.gate_id]
    console.print(
        f"gate {the_plan.gate_id!r} ({gate.routing_strategy}): {the_plan.count} × {the_plan.size}"
        f", quality {the_plan.quality or '-'}, style {the_plan.style or '-'}",
        markup=False,
    )
    _table(
        console,
        [
            _Column("#", right=True),
            _Column("model"),
            _Column("provider"),
            _Column("per image", right=True),
            _Column("estimate", right=True),
            _Column("notes", whole=False),
        ],
        [
            [
                str(number),
                _deployment_name(layer, c.deployment),
                c.model.provider,
                money(c.price),
                money(c.estimated_cost),
                "; ".join(([c.health.describe()] if c.health is not None else []) + [*c.warnings]),
            ]
            for number, c in enumerate(the_plan.candidates, 1)
        ],
        title="candidates, in the order they would be tried",
    )
    if not the_plan.candidates:
        console.print("[red]no candidate: this request would fail with NoEligibleModel[/red]")
    if the_plan.rejected:
        console.print("rejected:")
        for r in the_plan.rejected:
            console.print(f"  {r.reason}", markup=False)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@click.pass_context
def health(ctx: click.Context, as_json: bool) -> None:
    """Show every deployment's circuit breaker, cooldown, limits and headroom, from the
    configured state store (memory: this process, so all closed; Redis: every process's)."""
    with _errors():
        layer = _layer(ctx)
        found, note = layer.health()
        limits = layer.deployment_limits()
    store = layer.state_store
    where = getattr(store, "safe_url", store.url)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "state": where,
                    "note": note,
                    "deployments": {
                        name: {
                            "state": h.state,
                            "retry_in": round(h.retry_in, 3),
                            "reason": h.reason,
                            "limits": limits[name].describe(),
                            "headroom": h.headroom,
                        }
                        for name, h in found.items()
                    },
                },
                indent=2,
            )
        )
        return
    console = _console()
    _table(
        console,
        [
            _Column("deployment"),
            _Column("state"),
            _Column("for", right=True),
            _Column("limits"),
            _Column("headroom", right=True),
            _Column("why", whole=False),
        ],
        [
            [
                name,
                h.state,
                f"{h.retry_in:.1f}s" if h.retry_in else "-",
                limits[name].describe(),
                "-" if h.headroom is None else str(h.headroom),
                h.reason or "-",
            ]
            for name, h in sorted(found.items())
        ],
        title=f"deployment health (state: {where})",
    )
    if note is not None:
        _say(_console(stderr=True), "warning", note)


@cli.command()
@click.argument("model_id", metavar="[ID]", required=False)
@click.option("--provider", help="Only this provider's models.")
@click.option("--json", "as_json", is_flag=True, help="Print the models as JSON.")
@click.pass_context
def models(ctx: click.Context, model_id: str | None, provider: str | None, as_json: bool) -> None:
    """List the catalogue: each model's provider, price per image and status.

    With ID (a model id or alias): everything about that model, its sizes, qualities, styles,
    images per call, seed support, every price with the date it was read.
    """
    with _errors():
        layer = _layer(ctx)
    if provider is not None and provider not in layer.providers:
        _fail(f"--provider: {_no_such_provider(layer, provider)}")
    if model_id is not None:
        _print_model(layer, model_id, as_json)
        return
    unavailable = layer.unavailable()
    catalog = layer.catalog
    # --provider names a provider (every instance of it) or one instance
    deployments = [
        d for d in catalog.deployments() if provider in (None, d.spec.provider, d.instance)
    ]
    specs = list({d.spec.id: catalog[d.spec.id] for d in deployments}.values())
    if as_json:
        click.echo(json.dumps([_model_json(layer, s, unavailable) for s in specs], indent=2))
        return
    rows: list[list[_Cell]] = [
        [
            catalog.label(d),
            d.spec.provider,
            _price_range(d.spec),
            _model_status(d.spec, unavailable, d.instance),
        ]
        for d in deployments
    ]
    _table(
        _console(),
        [
            _Column("model"),
            _Column("provider"),
            _Column("per image", right=True),
            _Column("status", whole=False),
        ],
        rows,
        title=f"{len(specs)} model(s); `layer models ID` shows one in full",
    )


def _deployment_name(layer: Layer, deployment: str) -> str:
    """A deployment as tables show it: its model's id alone when that model has no other."""
    found = layer.catalog.resolve_deployments(deployment)
    return layer.catalog.label(found[0]) if found else deployment


def _model_json(layer: Layer, spec: ModelSpec, unavailable: Mapping[str, str]) -> dict[str, Any]:
    deployments = [
        {
            "deployment": d.key,
            "instance": d.instance,
            "weight": d.weight,
            "available": d.instance not in unavailable,
            "prices": {key: str(price) for key, price in d.spec.prices.items()},
        }
        for d in layer.catalog.resolve_deployments(spec.id)
    ]
    available = any(d["available"] for d in deployments)
    return {**spec.model_dump(mode="json"), "available": available, "deployments": deployments}


def _model_status(
    spec: ModelSpec, unavailable: Mapping[str, str], instance: str | None = None
) -> list[str]:
    import layer_core.catalog  # the module, not its names: tests put another day in its place

    status = [unavailable.get(instance or spec.provider, "available")]
    if spec.deprecated:
        status.append(layer_core.catalog.retirement(spec.deprecated, layer_core.catalog.today()))
    return status


def _price_range(spec: ModelSpec) -> str:
    low, high = min(spec.prices.values()), max(spec.prices.values())
    return money(low) if low == high else f"{money(low)}-{money(high)}"


def _print_model(layer: Layer, model_id: str, as_json: bool) -> None:
    """`layer models ID`: one row per field of the model's spec, under its JSON name."""
    from layer_core.errors import UnknownModel

    spec = layer.catalog.resolve(model_id)
    if spec is None:
        _fail(str(UnknownModel(model_id, layer.catalog.names(), field="ID")))
    unavailable = layer.unavailable()
    if as_json:
        click.echo(json.dumps(_model_json(layer, spec, unavailable), indent=2))
        return
    rows: list[list[_Cell]] = []
    deployments = layer.catalog.resolve_deployments(spec.id)
    for name, value in spec.model_dump(mode="json").items():
        cell: _Cell
        if name in ("delivered", "deprecated"):
            continue  # shown with the sizes, and in the status
        if name == "sizes":
            cell = [
                f"{s} (delivers {spec.delivered[s]})" if s in spec.delivered else s for s in value
            ]
        elif name == "prices":
            cell = [f"{key} {money(price)}" for key, price in spec.prices.items()]
        elif isinstance(value, list):
            cell = [str(v) for v in value] or "-"
        elif isinstance(value, bool):
            cell = "yes" if value else "no"
        elif isinstance(value, float):
            cell = f"{value:g}"
        else:
            cell = "-" if value in (None, "") else str(value)
        rows.append([name, cell])
        if name == "provider":
            rows.append(["status", _model_status(spec, unavailable)])
            if len(deployments) > 1:
                rows.append(
                    [
                        "deployments",
                        [
                            f"{d.key} (weight {d.weight:g}; "
                            f"{unavailable.get(d.instance, 'available')})"
                            for d in deployments
                        ],
                    ]
                )
    _table(_console(), [_Column("field"), _Column("value", whole=False)], rows, header=False)


def _no_such_provider(layer: Layer, name: str) -> str:
    from layer_core.errors import did_you_mean

    loaded = sorted(layer.providers)
    for info in layer.plugins():
        if info.name == name and info.status != "ok":
            why = info.note if info.status == "disabled" else "`layer plugins` says why"
            return f"provider {name!r} is not loaded: its plugin is {info.status} ({why})"
    hint = did_you_mean(name, loaded)
    return f"no provider named {name!r}; {hint + ' ' if hint else ''}providers: " + (
        ", ".join(loaded) or "none (`layer plugins` says why)"
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the plugins as JSON.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List plugins: distribution, version, status, providers, hooks, and why any failed."""
    from dataclasses import asdict

    with _errors():
        layer = _layer(ctx)
    infos = layer.plugins()
    if as_json:
        click.echo(json.dumps([asdict(i) for i in infos], indent=2))
        return
    console = _console()
    columns = [
        _Column("plugin"),
        _Column("distribution"),
        _Column("version"),
        _Column("status", styles={"ok": "green", "failed": "red", "disabled": "yellow"}),
        _Column("providers"),
        _Column("other hooks"),  # register_providers is what the providers column shows
        _Column("notes", whole=False),
    ]
    rows: list[list[_Cell]] = [
        [
            info.name,
            info.distribution or "-",
            info.version or "-",
            info.status,
            info.providers or "-",
            [h for h in info.hooks if h != "register_providers"] or "-",
            info.error or info.note or "",
        ]
        for info in infos
    ]
    if not console.is_terminal:  # a pipe: the notes are the last field of each line
        _table(console, columns, rows)
        return
    _table(console, columns[:-1], [row[:-1] for row in rows], title="plugins")
    for info, row in zip(infos, rows, strict=True):  # the notes under it, at full width
        if row[-1]:
            console.print(f"{info.name}: {row[-1]}", markup=False)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the gates as JSON.")
@click.pass_context
def gates(ctx: click.Context, as_json: bool) -> None:
    """List the configured gates."""
    with _errors():
        layer = _layer(ctx)
    all_gates = layer.gates()
    if as_json:
        click.echo(
            json.dumps({k: g.model_dump(mode="json") for k, g in all_gates.items()}, indent=2)
        )
        return
    rows: list[list[_Cell]] = []
    for gate in all_gates.values():
        defaults = [f"{k}={v}" for k, v in gate.defaults.model_dump().items() if v]
        last = gate.retries_on(nothing_else=True)
        retries = gate.retries if gate.retries is not None else f"{last} if last"
        limits = [f"retries {retries}", f"timeout {gate.timeout:g}s"]
        if gate.max_cost_per_image is not None:
            limits.append(f"max {money(gate.max_cost_per_image)}/image")
        if gate.budget is not None:
            limits.append(f"budget {money(gate.budget.amount)} {gate.budget.period}")
        rows.append([gate.id, gate.routing_strategy, list(gate.pool), defaults or "-", limits])
    _table(
        _console(),
        [
            _Column("gate"),
            _Column("strategy"),
            _Column("pool"),
            _Column("defaults"),
            _Column("limits", whole=False),
        ],
        rows,
        title=f"gates (config: {layer.config.source})",
    )
    for gate_id in all_gates:
        left_out = layer.left_out(gate_id)
        if left_out:
            from layer_core.layer import left_out_warning

            _say(_console(), "warning", left_out_warning(left_out))


@cli.command()
@click.option(
    "--by",
    multiple=True,
    metavar="DIMENSION",
    help="Group by gate, model, provider, deployment, day, status, key (gateway key) or meta.KEY "
    "(a metadata key); repeatable.",
)
@click.option("--since", metavar="WHEN", help="From: an age (30m, 12h, 7d, 2w) or ISO date/time.")
@click.option("--until", metavar="WHEN", help="Up to (not including): same forms as --since.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="table for people; json and csv carry exact decimal amounts.",
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
    window = " ".join(
        f"{word} {moment:%Y-%m-%d %H:%M} UTC"
        for word, moment in (("since", report.since), ("until", report.until))
        if moment is not None
    )
    rows: list[list[_Cell]] = [
        [
            *(v if v is not None else "-" for v in row.group.values()),
            str(row.requests),
            str(row.images),
            money(row.cost),
        ]
        for row in report.rows
    ]
    label = ["total", *[""] * (len(report.by) - 1)] if report.by else []
    total: list[_Cell] = [*label, str(report.requests), str(report.images), money(report.total)]
    _table(
        _console(),
        [
            *(_Column(name) for name in report.by),
            *(_Column(name, right=True) for name in ("requests", "images", "cost")),
        ],
        rows if report.by else [total],
        title=f"spend {window or 'to date'} ({layer.ledger!r})",
        footer=total if report.by else (),
    )


@cli.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def check(ctx: click.Context, config: Path | None) -> None:
    """Validate a config: every gate reachable, declared sizes servable, cost bounds sane.

    Exits 2 when the config has an error (warnings alone exit 0).
    """
    from layer_core.checks import check_layer
    from layer_core.layer import Layer

    with _errors():
        layer = Layer(config or (ctx.obj or {}).get("config"))
    findings = check_layer(layer)
    console = _console()
    for level, message in findings:
        _say(console, level, message)
    errors = sum(1 for level, _ in findings if level == "error")
    warnings = sum(1 for level, _ in findings if level == "warning")
    own = len(layer.config.gates)
    added = " and the built-in 'default'" if len(layer.gates()) > own else ""
    console.print(
        f"{layer.config.source}: {own} gate(s){added}, {errors} error(s), {warnings} warning(s)",
        markup=False,
    )
    if errors:
        raise SystemExit(EXIT_BAD_INPUT)


# --- the gateway: `layer serve` and its keys ------------------------------------------------


def _server_extra() -> None:
    import importlib.util

    missing = [
        m for m in ("fastapi", "uvicorn", "prometheus_client") if not importlib.util.find_spec(m)
    ]
    if missing:
        _fail(
            f"layer serve needs the server extra ({', '.join(missing)} missing): "
            "pip install 'layer-core[server]'",
            EXIT_FAILED,
        )


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port to listen on.")
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Worker processes (each with its own Layer; they share the ledger).",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve without API keys (every gate to anyone): only on a loopback host.",
)
@click.option(
    "--max-body",
    "max_body",
    type=click.IntRange(1024),
    default=1024 * 1024,
    show_default=True,
    help="Largest request body, in bytes (413 over it).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1),
    default=300.0,
    show_default=True,
    help="Seconds a generation may take before the gateway answers 504.",
)
@click.option(
    "--key-concurrency",
    type=click.IntRange(1),
    default=16,
    show_default=True,
    help="Requests one key may have in flight per process (429 over it).",
)
@click.option(
    "--cors-origin",
    "cors",
    multiple=True,
    metavar="ORIGIN",
    help="Allow browser requests from ORIGIN (repeatable); off unless given.",
)
@click.option(
    "--grace",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="On SIGTERM, seconds to let requests in flight finish.",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="A JSON line per request on stderr.",
)
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    workers: int,
    no_auth: bool,
    max_body: int,
    timeout: float,
    key_concurrency: int,
    cors: tuple[str, ...],
    grace: float,
    access_log: bool,
) -> None:
    """Serve the config's gates over HTTP: the seed's /v3/image and OpenAI's
    /v1/images/generations, with API keys, budgets and Prometheus metrics."""
    _server_extra()
    from layer_core.server import serve as run

    config = (ctx.obj or {}).get("config")
    try:
        run(
            host=host,
            port=port,
            workers=workers,
            config=str(config) if config else None,
            no_auth=no_auth,
            max_body_bytes=max_body,
            timeout=timeout,
            key_concurrency=key_concurrency,
            cors_origins=cors,
            grace=grace,
            access_log=access_log,
        )
    except ValueError as exc:
        _fail(str(exc))


@cli.group(cls=_Commands)
def keys() -> None:
    """API keys for `layer serve`, kept (hashed) in the ledger database."""


def _key_store(ctx: click.Context) -> Any:
    from layer_core.config import load_config
    from layer_core.ledger import Ledger, ledger_url

    with _errors():
        config = load_config((ctx.find_root().obj or {}).get("config"))
        url = ledger_url(config.ledger)
        if url is None:
            raise ConfigError(
                f"{config.source}: keys live in the ledger, which is off (ledger = false)"
            )
        return Ledger.for_url(url)


@keys.command("create")
@click.argument("name")
@click.option("--gates", required=True, metavar="A,B", help="Gates the key may use ('*': all).")
@click.option("--budget", metavar="AMOUNT/PERIOD", help="Spend limit, e.g. 25/monthly, 5/daily.")
@click.option("--rpm", type=click.IntRange(1), help="Requests a minute, across every instance.")
@click.pass_context
def keys_create(
    ctx: click.Context, name: str, gates: str, budget: str | None, rpm: int | None
) -> None:
    """Make a key; it is printed once and stored only as its SHA-256."""
    from layer_core.server.keys import create_key, parse_budget

    ledger = _key_store(ctx)
    try:
        limit = parse_budget(budget) if budget else None
        key, token = create_key(ledger.store(), name, gates.split(","), budget=limit, rpm=rpm)
    except ValueError as exc:
        _fail(str(exc))
    except LayerError as exc:
        _fail(str(exc), EXIT_FAILED)
    finally:
        ledger.close()
    click.echo(token)
    limits = [f"budget {money(key.budget.amount)}/{key.budget.period}"] if key.budget else []
    limits += [f"{key.rpm} requests/minute"] if key.rpm else []
    _say(
        _console(stderr=True),
        "note",
        f"key {key.name!r} for gates {', '.join(key.gates)}"
        + (f" ({', '.join(limits)})" if limits else "")
        + ": keep it now, it is not shown again",
    )


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
@click.pass_context
def keys_list(ctx: click.Context, as_json: bool) -> None:
    """The keys: name, first characters, gates, limits, made, revoked."""
    from layer_core.server.keys import list_keys

    ledger = _key_store(ctx)
    try:
        found = list_keys(ledger.store())
    except Exception as exc:  # noqa: BLE001 - the database's error, without its password
        _fail(str(ledger._unavailable(exc)), EXIT_FAILED)
    finally:
        ledger.close()
    if as_json:
        rows = [
            {
                "name": k.name,
                "prefix": k.prefix,
                "gates": list(k.gates),
                "budget": f"{k.budget.amount}/{k.budget.period}" if k.budget else None,
                "rpm": k.rpm,
                "created": k.created.isoformat(timespec="seconds"),
                "revoked": k.revoked.isoformat(timespec="seconds") if k.revoked else None,
            }
            for k in found
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    _table(
        _console(),
        [_Column(n) for n in ("name", "prefix", "gates", "budget", "rpm", "created", "revoked")],
        [
            [
                k.name,
                k.prefix + "…",
                list(k.gates),
                f"{money(k.budget.amount)}/{k.budget.period}" if k.budget else "-",
                str(k.rpm or "-"),
                f"{k.created:%Y-%m-%d %H:%M}",
                f"{k.revoked:%Y-%m-%d %H:%M}" if k.revoked else "-",
            ]
            for k in found
        ],
        title="API keys",
    )


@keys.command("revoke")
@click.argument("name")
@click.pass_context
def keys_revoke(ctx: click.Context, name: str) -> None:
    """Revoke a key: every instance refuses it from its next request."""
    from datetime import UTC, datetime

    ledger = _key_store(ctx)
    try:
        done_ = ledger.store().revoke_key(name, datetime.now(UTC))
    except Exception as exc:  # noqa: BLE001 - the database's error, without its password
        _fail(str(ledger._unavailable(exc)), EXIT_FAILED)
    finally:
        ledger.close()
    if not done_:
        _fail(f"no live key named {name!r} (`layer keys list` shows them)")
    _say(_console(stderr=True), "note", f"key {name!r} revoked")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `layer` script."""
    cli.main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="layer")
