"""The commands the chart runs parse with the real `minmo` command line, in every variant.

A flag the chart passes that `minmo serve` or `minmo autoscale` does not define would crash-loop the pod;
here it fails with argparse's own message. Only the final step (starting the server) is replaced. The
values the commands parse to are then held against the pod spec around them: the drain the orchestrator
promises against its grace period, the Triton preStop wait against its own, the files the autoscaler
reads against the volumes mounted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import helm_python as helm
import pytest

from orchestrator import cli
from orchestrator.routing.pools import check_pools
from services.triton import drain_wait
from tests.helm.chart_render import NAMESPACE, Rendered, load_values, render, variant_files

VARIANTS = variant_files()
IDS = [path.name.removesuffix("-values.yaml") for path in VARIANTS]


def parse_with_minmo(args: list[str], monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    parsed: list[argparse.Namespace] = []

    def record(namespace: argparse.Namespace) -> int:
        parsed.append(namespace)
        return 0

    monkeypatch.setattr(cli, "_serve", record)
    monkeypatch.setattr(cli, "_autoscale", record)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            code = cli.main(args)
    except SystemExit as exc:
        pytest.fail(f"`minmo {' '.join(args)}` is rejected: {stderr.getvalue().strip()} (exit {exc.code})")
    assert code == 0 and parsed, stderr.getvalue()
    return parsed[0]


def assert_routes_to_the_rendered_pools(rendered: Rendered, parsed: argparse.Namespace) -> None:
    """Every model in one pool; each pool's Service is the headless one of its Deployment, port named grpc
    (the router lists that Service's EndpointSlices and dials each ready pod on the `grpc` port)."""
    assert parsed.triton is None, "with pools, --triton is refused"
    check_pools(parsed.triton_pools)
    assert parsed.namespace == NAMESPACE
    deployments = {o["metadata"]["name"] for o in rendered.of_kind("Deployment")}
    for pool in parsed.triton_pools:
        assert pool.service in deployments
        service = rendered.find("Service", pool.service)
        assert service["spec"]["clusterIP"] == "None"
        assert "grpc" in {port["name"] for port in service["spec"]["ports"]}
        assert rendered.find("Deployment", pool.service)["metadata"]["annotations"]["minmo-serve/models"] == ",".join(
            pool.models
        )


def assert_tokenizer_matches_the_weights(rendered: Rendered, parsed: argparse.Namespace, values: dict) -> None:
    """``--tokenizer`` only with real weights, and then the weights volume is mounted where it points."""
    spec = rendered.find("Deployment", "minmo-serve-orchestrator")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    if not values.get("orchestrator", {}).get("tokenizer", {}).get("fromWeights", False):
        assert parsed.tokenizer_dir is None and "/weights" not in mounts
        return
    assert parsed.tokenizer_dir == Path("/weights/backbone")
    assert mounts["/weights"]["readOnly"] is True
    (volume,) = [v for v in spec["volumes"] if v["name"] == mounts["/weights"]["name"]]
    pool_spec = rendered.find("Deployment", parsed.triton_pools[0].service)["spec"]["template"]["spec"]
    (pool_weights,) = [v for v in pool_spec["volumes"] if v["name"] == "weights"]
    assert volume["persistentVolumeClaim"] == pool_weights["persistentVolumeClaim"], "the pools' weights"


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_chart_commands_parse_with_the_minmo_cli(
    chart: helm.Chart, variant: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = render(chart, load_values(variant))
    serve = rendered.find("Deployment", "minmo-serve-orchestrator")["spec"]["template"]["spec"]["containers"][0]
    parsed = parse_with_minmo(serve["args"], monkeypatch)
    assert parsed.port == 50051 and parsed.metrics_port == 9464
    assert parsed.auth == load_values(variant).get("auth", {}).get("mode", "api-keys")
    assert_routes_to_the_rendered_pools(rendered, parsed)
    assert_tokenizer_matches_the_weights(rendered, parsed, load_values(variant))
    assert_the_drain_fits_the_grace_period(rendered, parsed)
    autoscalers = [o for o in rendered.of_kind("Deployment") if o["metadata"]["name"] == "minmo-serve-autoscaler"]
    for autoscaler in autoscalers:
        pod = autoscaler["spec"]["template"]["spec"]
        args = pod["containers"][0]["args"]
        parsed = parse_with_minmo(args, monkeypatch)
        assert parsed.release == "minmo-serve"
        assert parsed.lease_name == "minmo-serve-autoscaler"
        assert parsed.config == Path("/etc/minmo/autoscaler/config.yaml")
        assert "@" not in parsed.redis, "the Redis password must come from a file, not the URL"
        mounted = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        for path in (parsed.redis_password_file, parsed.redis_ca, parsed.heartbeat_file):
            if path is not None:
                assert any(str(path).startswith(directory + "/") for directory in mounted), (path, mounted)
        probe = pod["containers"][0]["livenessProbe"]["exec"]["command"]
        assert probe == ["python", "-m", "orchestrator.autoscaler.heartbeat", str(parsed.heartbeat_file)]
    for pool in (d for d in rendered.of_kind("Deployment") if "-triton-" in d["metadata"]["name"]):
        assert_the_triton_wait_fits_the_grace_period(pool)


def assert_the_drain_fits_the_grace_period(rendered: Rendered, parsed: argparse.Namespace) -> None:
    """SIGTERM comes after the preStop wait; `minmo serve` exits within --drain-seconds; SIGKILL must come later
    still, and the liveness probe must not restart the process in the middle (it tolerates longer than both)."""
    spec = rendered.find("Deployment", "minmo-serve-orchestrator")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + parsed.drain_seconds + 5
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > pre_stop + parsed.drain_seconds


def assert_the_triton_wait_fits_the_grace_period(pool: dict) -> None:
    spec = pool["spec"]["template"]["spec"]
    (server,) = spec["containers"]
    hook = server["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[:3] == ["python3", "-m", "services.triton.drain_wait"]
    waits = drain_wait.build_parser().parse_args(hook[3:])  # the module's own parser: a typo fails here
    metrics_port = next(port["containerPort"] for port in server["ports"] if port["name"] == "metrics")
    assert waits.metrics_url == f"http://127.0.0.1:{metrics_port}/metrics"
    (exit_timeout,) = [int(a.split("=", 1)[1]) for a in server["args"] if a.startswith("--exit-timeout-secs=")]
    assert spec["terminationGracePeriodSeconds"] >= waits.max_seconds + exit_timeout + 5
    assert waits.max_seconds >= waits.min_seconds + waits.quiet_seconds
