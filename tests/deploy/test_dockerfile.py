"""The bot image: pinned, small, non-root, and built from the same package set as `make`."""

from __future__ import annotations

import re
import tomllib
from pathlib import PurePosixPath

from deploy_support import (
    DOCKERIGNORE,
    MAKEFILE,
    PYPROJECT,
    REPO,
    Dockerfile,
    Instruction,
    parse_cli,
    read_dockerfile,
)

from bot.http_server import HEALTH_PATH

# python:3.11.<patch>-slim-bookworm: a patch release, the slim variant, a named Debian.
PINNED_PYTHON = re.compile(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _runs(dockerfile: Dockerfile, stage: str) -> list[str]:
    return [step.arguments for step in dockerfile.stage(stage).all("RUN")]


def test_the_image_is_pinned_multi_stage_and_runs_as_a_non_root_user() -> None:
    dockerfile = read_dockerfile()

    assert len(dockerfile.stages) >= 2, "a builder stage and a runtime stage"
    for stage in dockerfile.stages:
        assert PINNED_PYTHON.fullmatch(stage.image), f"unpinned base image {stage.image}"
    runtime = dockerfile.final
    copied_from_builder = [
        step.arguments for step in runtime.all("COPY") if step.arguments.startswith("--from=")
    ]
    assert any(" /opt/venv /opt/venv" in step for step in copied_from_builder), (
        "the runtime stage takes the builder's virtualenv, not the build tools"
    )
    assert all("pip install" not in step.arguments for step in runtime.all("RUN"))

    users = runtime.all("USER")
    assert users, "the runtime stage must set USER"
    user = users[-1].arguments.split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "a numeric uid, so Kubernetes' runAsNonRoot can verify it"


def test_the_image_installs_what_make_installs_without_the_dev_extras() -> None:
    dockerfile = read_dockerfile()
    makefile = MAKEFILE.read_text()
    (make_torch,) = re.findall(r"pip install \S* ?torch==(\S+)", makefile)
    assert dockerfile.arg_default("TORCH_VERSION") == make_torch, "one torch version everywhere"
    assert "-e '.[dev]'" in makefile  # what the image leaves out: tests and tools

    runs = _runs(dockerfile, "builder")
    torch_step = next(index for index, run in enumerate(runs) if "torch==" in run)
    project_step = next(
        index for index, run in enumerate(runs) if re.search(r"pip install \.(\s|$)", run)
    )
    assert torch_step < project_step, "torch first, so pip keeps the CPU build"
    assert '"torch==${TORCH_VERSION}"' in runs[torch_step]
    assert f"--index-url {TORCH_CPU_INDEX}" in runs[torch_step]
    assert TORCH_CPU_INDEX not in runs[project_step], "only torch comes from PyTorch's index"
    for run in runs:
        assert "[dev]" not in run
        assert "pip install -e" not in run

    # `pip install .` sees the packages pyproject.toml names and the files it reads.
    project = tomllib.loads(PYPROJECT.read_text())
    packages = {
        pattern.rstrip("*")
        for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = {
        PurePosixPath(path).name
        for step in dockerfile.stage("builder").all("COPY")
        for path in step.arguments.split()[:-1]
    }
    assert packages | {"pyproject.toml", project["project"]["readme"]} <= copied
    assert all((REPO / name).exists() for name in packages)


def test_the_embedding_model_is_exported_at_build_time_where_the_bot_looks() -> None:
    dockerfile = read_dockerfile()
    runtime_env = dockerfile.final.env()
    models_dir = runtime_env["MODELS_DIR"]

    export = next(run for run in _runs(dockerfile, "builder") if "load_embedder_for" in run)
    assert f"MODELS_DIR={models_dir} " in export, "exported where the runtime looks for it"
    assert any(
        step.arguments == f"--from=builder {models_dir}/embeddings {models_dir}/embeddings"
        for step in dockerfile.final.all("COPY")
    )
    # The data dir is an emptyDir in Kubernetes: the export must not lie under it.
    data_dir = PurePosixPath(runtime_env["DISPATCHBOT_DATA_DIR"])
    assert data_dir == PurePosixPath("/var/lib/dispatchbot")
    assert data_dir not in PurePosixPath(models_dir).parents
    assert runtime_env["LOG_FORMAT"] == "json"


def test_the_image_runs_the_bot_in_http_mode_and_checks_its_health() -> None:
    dockerfile = read_dockerfile()
    runtime = dockerfile.final
    project = tomllib.loads(PYPROJECT.read_text())

    (entrypoint,) = runtime.all("ENTRYPOINT")
    assert entrypoint.exec_form() == ["dispatchbot"]
    assert "dispatchbot" in project["project"]["scripts"]
    (cmd,) = runtime.all("CMD")
    parsed = parse_cli(cmd.exec_form())
    assert parsed.info_name == "dispatchbot run"
    assert parsed.params["mode"] == "http"
    (expose,) = runtime.all("EXPOSE")
    assert int(expose.arguments) == parsed.params["port"] == 3000

    (healthcheck,) = runtime.all("HEALTHCHECK")
    probe = Instruction("CMD", healthcheck.arguments.split(" CMD ", 1)[1]).exec_form()
    assert probe[0] == "python", "slim images have no curl"
    assert f"http://127.0.0.1:{parsed.params['port']}{HEALTH_PATH}" in probe[-1]


def test_local_state_and_secrets_stay_out_of_the_build_context() -> None:
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".git", ".venv*", "var", "bench/results", ".env", "deploy/.env"} <= ignored
