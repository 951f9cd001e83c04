"""deploy/k8s: the manifests render, and agree with the bot, its settings and each other."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import PurePosixPath
from typing import Any

import yaml
from deploy_support import (
    K8S,
    SECRET_EXAMPLE,
    k8s_resources,
    option_value,
    parse_cli,
    read_dockerfile,
    setting_names,
    yaml_documents,
)

from bot.http_server import HEALTH_PATH, METRICS_PATH

Resource = dict[str, Any]


def _bot() -> tuple[Resource, Resource]:
    """The bot's Deployment and its one container."""
    deployment = k8s_resources()[("Deployment", "dispatchbot")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


def _config() -> dict[str, str]:
    return k8s_resources()[("ConfigMap", "dispatchbot-config")]["data"]


def _port_number(container: Resource, port: int | str) -> int:
    """A probe's or Service's port, by number or by the container port's name."""
    for declared in container["ports"]:
        if port in (declared["containerPort"], declared.get("name")):
            return declared["containerPort"]
    raise AssertionError(f"container {container['name']} has no port {port!r}")


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_every_manifest_parses_and_kustomize_renders_the_set() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    # Everything is applied but the secret example, whose values must never be applied as is.
    assert set(kustomization["resources"]) == manifests - {SECRET_EXAMPLE.name}

    expected = set()
    for name in kustomization["resources"]:
        for doc in yaml_documents(K8S / name):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), name
            assert "namespace" not in doc["metadata"], f"{name}: namespace-less resources"
            expected.add((doc["kind"], doc["metadata"]["name"]))
    assert ("Deployment", "dispatchbot") in expected

    kubectl = shutil.which("kubectl")
    if kubectl:
        rendered = subprocess.run(  # noqa: S603 - kubectl, fixed arguments
            [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
        )
        assert rendered.returncode == 0, rendered.stderr
        docs = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
        assert {(doc["kind"], doc["metadata"]["name"]) for doc in docs} == expected
        images = {
            container["image"]
            for doc in docs
            if doc["kind"] in {"Deployment", "Job"}
            for container in doc["spec"]["template"]["spec"]["containers"]
        }
        assert all(":" in image and not image.endswith(":latest") for image in images)


def test_the_bot_deployment_probes_what_the_bot_serves() -> None:
    deployment, container = _bot()
    pod = deployment["spec"]["template"]
    config = _config()

    run = parse_cli(container["args"])
    assert run.info_name == "dispatchbot run"
    assert run.params["mode"] == "http"
    port = run.params["port"]
    assert int(config["BOT_HTTP_PORT"]) == port == _port_number(container, "http")
    assert deployment["spec"]["replicas"] >= 2

    probes = {kind: container[f"{kind}Probe"]["httpGet"] for kind in ("startup", "liveness")}
    probes["readiness"] = container["readinessProbe"]["httpGet"]
    # Traffic follows /healthz: a shared dependency's outage must not take every replica
    # out of the Service, or Slack's deliveries would never reach the bot that keeps them.
    assert probes["startup"]["path"] == probes["liveness"]["path"] == HEALTH_PATH
    assert probes["readiness"]["path"] == HEALTH_PATH
    for probe in probes.values():
        assert _port_number(container, probe["port"]) == port

    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == METRICS_PATH
    assert int(annotations["prometheus.io/port"]) == port

    # Long enough to finish the answers under way after SIGTERM.
    assert pod["spec"]["terminationGracePeriodSeconds"] >= 60
    requests = container["resources"]["requests"]
    assert requests["memory"].endswith("Gi")
    assert float(requests["memory"][:-2]) >= 1
    assert "memory" in container["resources"]["limits"]


def test_the_bot_runs_non_root_on_a_read_only_filesystem() -> None:
    deployment, container = _bot()
    pod_spec = deployment["spec"]["template"]["spec"]
    config = _config()

    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    image_user = read_dockerfile().final.all("USER")[-1].arguments.split(":")[0]
    assert str(pod_spec["securityContext"]["runAsUser"]) == image_user
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]

    volumes = {volume["name"]: volume for volume in pod_spec["volumes"]}
    mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in container["volumeMounts"]}
    # The only writable places: /tmp (torch's compile cache) and the data dir, both per pod.
    for writable in ("/tmp", config["DISPATCHBOT_DATA_DIR"]):
        assert "emptyDir" in mounts[writable], f"{writable} needs an emptyDir"
    # The image's ONNX export under MODELS_DIR/embeddings must not be hidden by a mount.
    embeddings = PurePosixPath(config["MODELS_DIR"]) / "embeddings"
    assert config["MODELS_DIR"] == read_dockerfile().final.env()["MODELS_DIR"]
    for path in mounts:
        assert PurePosixPath(path) not in (embeddings, *embeddings.parents[:-1]), path


def test_service_autoscaler_and_disruption_budget_point_at_the_bot() -> None:
    resources = k8s_resources()
    deployment, container = _bot()
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert _matches(deployment["spec"]["selector"]["matchLabels"], pod_labels)

    service = resources[("Service", "dispatchbot")]
    assert _matches(service["spec"]["selector"], pod_labels)
    for port in service["spec"]["ports"]:
        assert (
            _port_number(container, port["targetPort"])
            == parse_cli(container["args"]).params["port"]
        )

    hpa = resources[("HorizontalPodAutoscaler", "dispatchbot")]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"

    pdb = resources[("PodDisruptionBudget", "dispatchbot")]
    assert _matches(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "drains can proceed"


def test_settings_and_secrets_the_pods_read_exist() -> None:
    resources = k8s_resources()
    secrets = {
        doc["metadata"]["name"]: set(doc["stringData"])
        for doc in yaml_documents(SECRET_EXAMPLE)
        if doc["kind"] == "Secret"
    }
    config_maps = {name for kind, name in resources if kind == "ConfigMap"}

    # Every setting given to the bot is one it reads (a typo would be ignored silently).
    assert set(_config()) <= setting_names(), set(_config()) - setting_names()
    for name in ("dispatchbot-slack", "dispatchbot-backends"):
        assert secrets[name] <= setting_names(), secrets[name] - setting_names()
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"} <= secrets["dispatchbot-slack"]

    checked = 0
    for (kind, name), doc in resources.items():
        if kind not in {"Deployment", "Job", "CronJob"}:
            continue
        for container in _containers(doc):
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, f"{name}: {source}"
                else:
                    assert source["configMapRef"]["name"] in config_maps, f"{name}: {source}"
                checked += 1
            for variable in container.get("env", []):
                reference = variable.get("valueFrom", {}).get("secretKeyRef")
                if reference:
                    assert reference["key"] in secrets[reference["name"]], f"{name}: {reference}"
                    checked += 1
    assert checked >= 8


def _containers(doc: Resource) -> list[Resource]:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]["containers"]


def test_the_migration_and_retention_jobs_run_real_commands() -> None:
    resources = k8s_resources()
    (migrate,) = _containers(resources[("Job", "dispatchbot-migrate")])
    assert parse_cli(migrate["args"]).info_name == "dispatchbot db upgrade"

    cronjob = resources[("CronJob", "dispatchbot-retention")]
    (purge,) = _containers(cronjob)
    parsed = parse_cli(purge["args"])
    assert parsed.info_name == "dispatchbot retention purge"
    assert parsed.params["older_than"] == 365
    minute, hour, *every_day = cronjob["spec"]["schedule"].split()
    assert every_day == ["*", "*", "*"]
    assert minute.isdigit()
    assert hour.isdigit()
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    for doc in (resources[("Job", "dispatchbot-migrate")], cronjob):
        spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
        assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_vllm_example_serves_the_model_and_adapters_the_bot_asks_for() -> None:
    resources = k8s_resources()
    config = _config()
    deployment = resources[("Deployment", "dispatch-llm")]
    pod_spec = deployment["spec"]["template"]["spec"]
    (vllm,) = pod_spec["containers"]
    args = vllm["args"]

    assert vllm["image"].startswith("vllm/vllm-openai:v")
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert int(option_value(args, "--tensor-parallel-size")) >= 1
    assert int(option_value(args, "--max-loras")) >= 1
    assert option_value(args, "--max-lora-rank") == config["VLLM_MAX_LORA_RANK"]
    assert {"--enable-lora", "--enable-prefix-caching"} <= set(args)
    assert option_value(args, "--served-model-name") == config["LLM_MODEL"]
    env = {variable["name"]: variable for variable in vllm["env"]}
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"]["value"] == "True"
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "LLM_API_KEY"

    # LLM_BASE_URL reaches this server through its Service. A Service named "vllm" would
    # set VLLM_PORT in pods, which vLLM takes for its own setting.
    service = resources[("Service", "dispatch-llm")]
    assert service["metadata"]["name"] != "vllm"
    assert _matches(
        service["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"]
    )
    assert pod_spec["enableServiceLinks"] is False
    (port,) = service["spec"]["ports"]
    assert config["LLM_BASE_URL"] == f"http://{service['metadata']['name']}:{port['port']}/v1"
    assert _port_number(vllm, port["targetPort"]) == int(option_value(args, "--port"))

    # One adapters volume, at MODELS_DIR/adapters in the bot and vLLM alike: promotion sends
    # vLLM the path the bot's store recorded.
    adapters = str(PurePosixPath(config["MODELS_DIR"]) / "adapters")
    claim = resources[("PersistentVolumeClaim", "dispatchbot-adapters")]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    _, bot = _bot()
    bot_pod = resources[("Deployment", "dispatchbot")]["spec"]["template"]["spec"]
    for pod, container in ((bot_pod, bot), (pod_spec, vllm)):
        claims = {
            volume["name"]: volume["persistentVolumeClaim"]["claimName"]
            for volume in pod["volumes"]
            if "persistentVolumeClaim" in volume
        }
        mounted = {
            mount["mountPath"]: claims.get(mount["name"]) for mount in container["volumeMounts"]
        }
        assert mounted[adapters] == claim["metadata"]["name"], container["name"]
    assert env["VLLM_LORA_RESOLVER_CACHE_DIR"]["value"] == adapters
