"""deploy/k8s/learn-cronjob.yaml runs a real `dispatchbot learn`, one at a time, on a GPU,
writing adapters where vLLM and the bot read them and training the model vLLM serves."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from deploy_support import REPO, k8s_resources, option_value, parse_cli

from serving.training import Method


def _learn() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    cronjob = k8s_resources()[("CronJob", "dispatchbot-learn")]
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return cronjob, pod, container


def test_the_learn_cronjob_runs_one_real_learn_at_a_time() -> None:
    cronjob, pod, container = _learn()

    parsed = parse_cli(container["args"])
    assert parsed.info_name == "dispatchbot learn"
    assert parsed.params["method"] is Method.SFT
    assert parsed.params["as_json"] is True
    assert parsed.params["dry_run"] is False
    # Relative paths resolve in the image's copy of examples/.
    assert container["workingDir"].startswith("/")
    assert str(parsed.params["questions"]).startswith("examples/")

    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    minute, hour, *every_day = cronjob["spec"]["schedule"].split()
    assert every_day == ["*", "*", "*"]
    assert minute.isdigit()
    assert hour.isdigit()
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"]["nvidia.com/gpu"] >= 1


def test_learn_trains_the_served_model_and_writes_adapters_where_vllm_reads_them() -> None:
    resources = k8s_resources()
    _, pod, container = _learn()
    config = resources[("ConfigMap", "dispatchbot-config")]["data"]
    (vllm,) = resources[("Deployment", "dispatch-llm")]["spec"]["template"]["spec"]["containers"]

    # vLLM loads an adapter only onto the exact model it was trained from.
    assert option_value(container["args"], "--base") == option_value(vllm["args"], "--model")

    claims = {
        volume["name"]: volume["persistentVolumeClaim"]["claimName"]
        for volume in pod["volumes"]
        if "persistentVolumeClaim" in volume
    }
    mounted = {mount["mountPath"]: claims.get(mount["name"]) for mount in container["volumeMounts"]}
    adapters = str(PurePosixPath(config["MODELS_DIR"]) / "adapters")
    assert mounted[adapters] == "dispatchbot-adapters"
    assert mounted[config["DISPATCHBOT_DATA_DIR"]] is None  # scratch: the export of one run
    assert "/tmp" in mounted


def test_the_operations_guide_gives_a_cron_line_for_learn() -> None:
    guide = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    (cron,) = [line for line in guide.splitlines() if re.match(r"\d+ \d+ \* \* \* ", line)]
    command = re.search(r"/dispatchbot (learn [^>]*)", cron).group(1).split()  # type: ignore[union-attr]

    assert parse_cli(command).info_name == "dispatchbot learn"
