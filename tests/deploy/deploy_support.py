"""Readers for the deployment files (Dockerfile, Compose, Kubernetes) and the real CLI and
settings they must agree with."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
import typer.core
import typer.main
import yaml

from store.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
MAKEFILE = REPO / "Makefile"
PYPROJECT = REPO / "pyproject.toml"
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
K8S = DEPLOY / "k8s"
SECRET_EXAMPLE = K8S / "secret.example.yaml"

# ${NAME}, ${NAME:-default}, ${NAME?error}...; `$${` is a literal `${` for the container.
COMPOSE_VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    arguments: str  # the rest of the (joined) line

    def exec_form(self) -> list[str]:
        """The JSON array of CMD, ENTRYPOINT and the like."""
        value = json.loads(self.arguments)
        assert isinstance(value, list), f"{self.keyword} is not in exec (JSON array) form"
        return value


@dataclass
class Stage:
    image: str  # as written, ARGs already substituted
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [step for step in self.instructions if step.keyword == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for step in self.all("ENV"):
            for pair in shlex.split(step.arguments):
                name, _, value = pair.partition("=")
                values[name] = value
        return values


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(stage for stage in self.stages if stage.name == name)

    def arg_default(self, name: str) -> str:
        for stage in self.stages:
            for step in stage.all("ARG"):
                key, _, value = step.arguments.partition("=")
                if key == name and value:
                    return value
        return self.global_args[name]


def read_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, arguments = line.partition(" ")
        step = Instruction(keyword.upper(), arguments.strip())
        if step.keyword == "FROM":
            words = step.arguments.split()
            image = re.sub(r"\$\{(\w+)\}", lambda match: global_args[match[1]], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image, name))
        elif not stages and step.keyword == "ARG":
            key, _, value = step.arguments.partition("=")
            global_args[key] = value
        else:
            stages[-1].instructions.append(step)
    return Dockerfile(global_args, stages)


def _logical_lines(text: str) -> Iterator[str]:
    """Instructions with their continuation lines joined, comments and blanks dropped."""
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        yield pending + stripped
        pending = ""
    if pending:
        yield pending.strip()


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_resources() -> dict[tuple[str, str], dict[str, Any]]:
    """Every resource in deploy/k8s (the secret example included), by (kind, name)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml_documents(path):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def env_example() -> dict[str, str]:
    """NAME=value lines of deploy/.env.example."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"not NAME=value: {line!r}"
            values[name] = value
    return values


def compose_variables(node: Any) -> set[str]:
    """Names of the ${VAR}s in the values of a parsed Compose file (comments are gone)."""
    if isinstance(node, dict):
        return set().union(*(compose_variables(value) for value in node.values()), set())
    if isinstance(node, list):
        return set().union(*(compose_variables(value) for value in node), set())
    if isinstance(node, str):
        return set(COMPOSE_VARIABLE.findall(node))
    return set()


def setting_names() -> set[str]:
    """Environment variable names Settings reads."""
    return {name.upper() for name in Settings.model_fields} | {"DISPATCHBOT_DATA_DIR"}


def parse_cli(args: Sequence[str]) -> typer.Context:
    """Parse `dispatchbot ARGS` as the real command line would, without running it.

    Raises the CLI's usage error for an unknown command or option, a bad value or a missing
    option.
    """
    from bot.cli import app  # the whole app's imports: once per test session

    command = typer.main.get_command(app)
    remaining = list(args)
    path = ["dispatchbot"]
    while isinstance(command, typer.core.TyperGroup):
        assert remaining, f"`{' '.join(path)}` needs a subcommand"
        name, remaining = remaining[0], remaining[1:]
        found = command.get_command(typer.Context(command), name)
        assert found is not None, f"`{' '.join(path)}` has no command {name!r}"
        command = found
        path.append(name)
    return command.make_context(" ".join(path), remaining)


def option_value(args: Sequence[str], option: str) -> str:
    """The value of `--option=value` or `--option value` in an argument list."""
    for index, arg in enumerate(args):
        if arg == option:
            return args[index + 1]
        if arg.startswith(f"{option}="):
            return arg.partition("=")[2]
    raise AssertionError(f"{option} is not given in {list(args)}")
