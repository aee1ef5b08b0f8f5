"""The Kubernetes manifests render, validate offline against the Kubernetes JSON schemas, start the
real CLI's commands, and the OpenWhisk chart values set only keys the chart has.

Rendering uses deploy/kubernetes/render.py itself (what the operator runs), with params.env and
dummy secrets; validation uses the schemas that the pinned `kubernetes-validate` ships (no network).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
CHART_VALUES = Path(__file__).parent / "data" / "openwhisk-values.yaml"
# the oldest Kubernetes the schemas cover and the newest: both must accept every manifest
K8S_VERSIONS = ("1.25.0", "1.37.0")
SECRETS = {"OWTRAIN_JOB_SECRET": "s" * 64, "OWTRAIN_S3_ACCESS_KEY": "access", "OWTRAIN_S3_SECRET_KEY": "secret",
           "WSK_AUTH": "uuid:key", "OWTRAIN_EVAL_SHARD_URL": "https://s3.example/test.tar.gz?X-Amz-Signature=x",
           "OWTRAIN_BRIDGE_TOKEN": "t" * 32}


def load_renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("owtrain_kube_render", KUBE / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RENDER = load_renderer()


def rendered(name: str, **values: str) -> list[dict[str, Any]]:
    text = (KUBE / name).read_text(encoding="utf-8")
    out = RENDER.render(text, {**RENDER.defaults(), **SECRETS, **values})
    assert "${" not in out
    return [doc for doc in yaml.safe_load_all(out) if doc is not None]


def all_objects() -> list[dict[str, Any]]:
    return [doc for name in (*RENDER.MANIFESTS, "secrets.yaml") for doc in rendered(name)]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in all_objects() if d["kind"] == kind}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schema(version: str) -> None:
    objects = all_objects()
    kinds = {d["kind"] for d in objects}
    assert {"Namespace", "Secret", "Service", "StatefulSet", "Deployment", "PodDisruptionBudget",
            "PersistentVolumeClaim"} <= kinds
    for doc in objects:
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any unknown or mistyped field


def test_every_placeholder_has_a_default_or_is_a_secret() -> None:
    used = {m for p in KUBE.glob("*.yaml") for m in RENDER.PLACEHOLDER.findall(p.read_text(encoding="utf-8"))}
    defaults = set(RENDER.defaults())
    assert used - defaults == set(SECRETS), "a new ${NAME} needs a default in params.env (or is a new secret)"
    assert defaults <= used, f"params.env names unused settings: {sorted(defaults - used)}"


def test_a_missing_value_is_refused_by_name() -> None:
    with pytest.raises(SystemExit, match="OWTRAIN_JOB_SECRET"):
        RENDER.render((KUBE / "secrets.yaml").read_text(encoding="utf-8"), RENDER.defaults())


def test_render_command_prints_the_applied_manifests(capsys: pytest.CaptureFixture[str]) -> None:
    assert RENDER.main(["--set", "OWTRAIN_JOB=mnist"]) == 0
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert [d["kind"] for d in docs][:1] == ["Namespace"]
    ps = next(d for d in docs if d["kind"] == "StatefulSet")
    assert "--job=mnist" in ps["spec"]["template"]["spec"]["containers"][0]["args"]


def cli_parser() -> argparse.ArgumentParser:
    """The real `owtrain ps` and `owtrain bridge` parsers (only those providers, so that an unrelated
    provider being edited cannot break this test)."""
    from param_server import cli as ps_cli
    from wsk import cli as wsk_cli

    parser = argparse.ArgumentParser(prog="owtrain")
    sub = parser.add_subparsers(dest="command")
    ps_cli.register(sub)
    wsk_cli.register(sub)
    return parser


def container(obj: dict[str, Any]) -> dict[str, Any]:
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.mark.parametrize(("kind", "name"), [("StatefulSet", "owtrain-ps"), ("Deployment", "owtrain-bridge")])
def test_containers_run_commands_the_real_cli_accepts(kind: str, name: str) -> None:
    c = container(by_kind(kind)[name])
    assert c["image"] == RENDER.defaults()["OWTRAIN_SERVER_IMAGE"]
    # the server image's entry point is `owtrain`, so args are an owtrain command line
    assert 'ENTRYPOINT ["owtrain"]' in (KUBE / "server.Dockerfile").read_text(encoding="utf-8")
    args = cli_parser().parse_args(c["args"])  # SystemExit (exit 2) on any unknown option
    assert callable(args.func)


def test_the_parameter_server_keeps_journal_and_checkpoints_on_per_pod_volumes() -> None:
    sts = by_kind("StatefulSet")["owtrain-ps"]
    spec = sts["spec"]
    assert spec["replicas"] == 1  # the default: one shard, the unsharded server
    assert spec["serviceName"] == "owtrain-ps" and by_kind("Service")["owtrain-ps"]["spec"]["clusterIP"] == "None"
    assert {t["metadata"]["name"] for t in spec["volumeClaimTemplates"]} == {"journal", "checkpoints"}
    c = container(sts)
    args = cli_parser().parse_args(c["args"])
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["checkpoints"] == str(args.checkpoint_dir)
    assert mounts["journal"] == f"{args.checkpoint_dir}/journal"  # the server's default journal folder
    assert str(args.secret_file).startswith(mounts["job-secret"])
    assert {"startupProbe", "readinessProbe", "livenessProbe", "resources"} <= set(c)
    pdb = by_kind("PodDisruptionBudget")["owtrain-ps"]
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]


def test_two_shards_render_two_pods_that_each_serve_their_own_shard() -> None:
    """With OWTRAIN_PS_SHARDS=2 each pod's `--shard` is its ordinal (the pod-index label) of 2, every
    URL names a pod of the headless Service, and the bridge is given the same URLs."""
    from owtrain.ps_urls import parse_urls
    from param_server.cli import _shard

    urls = ",".join(f"http://owtrain-ps-{i}.owtrain-ps.owtrain.svc.cluster.local:8090" for i in range(2))
    docs = rendered("ps.yaml", OWTRAIN_PS_SHARDS="2", OWTRAIN_PS_URLS=urls)
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    assert sts["spec"]["replicas"] == 2
    c = container(sts)
    env = {e["name"]: e for e in c["env"]}
    label = env["OWTRAIN_SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert label == "metadata.labels['apps.kubernetes.io/pod-index']"
    args = cli_parser().parse_args(c["args"])
    for ordinal in range(2):  # what the kubelet's $(OWTRAIN_SHARD_INDEX) expansion gives each pod
        assert _shard(args.shard.replace("$(OWTRAIN_SHARD_INDEX)", str(ordinal))) == (ordinal, 2)
    assert len(parse_urls(args.shard_urls)) == 2
    bridge = container(next(d for d in rendered("bridge.yaml", OWTRAIN_PS_URLS=urls) if d["kind"] == "Deployment"))
    assert f"--ps={urls}" in bridge["args"]
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(sts, version, strict=True)


def test_the_bridge_reads_every_secret_it_needs_from_secrets() -> None:
    bridge = container(by_kind("Deployment")["owtrain-bridge"])
    secrets = by_kind("Secret")
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in bridge["env"] if "valueFrom" in e}
    assert set(refs) == {"OWTRAIN_JOB_SECRET", "OWTRAIN_S3_ACCESS_KEY", "OWTRAIN_S3_SECRET_KEY", "WSK_AUTH",
                         "OWTRAIN_BRIDGE_TOKEN"}
    for ref in refs.values():
        assert ref["key"] in secrets[ref["name"]]["stringData"]
    assert {p["name"] for p in bridge["ports"]} == {"http"}


def leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        out.update(leaves(value, path) if isinstance(value, dict) else {path: value})
    return out


@pytest.mark.parametrize("name", ["mycluster.yaml", "mycluster-gpu.yaml"])
def test_openwhisk_values_set_only_keys_the_chart_has_with_its_types(name: str) -> None:
    chart = leaves(yaml.safe_load(CHART_VALUES.read_text(encoding="utf-8")))
    ours = leaves(yaml.safe_load((KUBE / "openwhisk" / name).read_text(encoding="utf-8")))
    assert ours
    for key, value in ours.items():
        assert key in chart, f"{name}: {key} is not a key of the chart's values.yaml"
        assert type(value) is type(chart[key]), f"{name}: {key} is {value!r}, the chart's default is {chart[key]!r}"


def quantity_mb(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([mg])", text).groups()  # type: ignore[union-attr]
    return int(number) * (1024 if unit == "g" else 1)


def test_values_fit_the_bridge_and_the_actions() -> None:
    values = yaml.safe_load((KUBE / "openwhisk" / "mycluster.yaml").read_text(encoding="utf-8"))
    limits, defaults = values["whisk"]["limits"], RENDER.defaults()
    # the bridge paces itself to its --concurrent / --per-minute: they must not exceed the platform's
    assert int(defaults["OWTRAIN_CONCURRENT"]) <= limits["actionsInvokesConcurrent"]
    assert int(defaults["OWTRAIN_PER_MINUTE"]) <= limits["actionsInvokesPerminute"]
    # ResNet-18's action needs 768 MB (docs/benchmarks.md), LeNet5's 256 MB
    assert quantity_mb(limits["actions"]["memory"]["max"]) >= 768
    assert values["invoker"]["containerFactory"]["impl"] == "kubernetes"
    assert "LogDriverLogStoreProvider" in values["invoker"]["options"]


def test_gpu_pod_template_is_a_valid_pod_with_the_action_container() -> None:
    text = (KUBE / "openwhisk" / "gpu-pod-template.json").read_text(encoding="utf-8").strip()
    assert " " not in text and "\n" not in text  # it travels as one -D option word (docs/deploy-kubernetes.md)
    pod = json.loads(text)
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)
    assert [c["name"] for c in pod["spec"]["containers"]] == ["user-action"]  # the one OpenWhisk fills in
    gpu = yaml.safe_load((KUBE / "openwhisk" / "mycluster-gpu.yaml").read_text(encoding="utf-8"))
    assert "user-pod-node-affinity.key=" in gpu["invoker"]["options"]
