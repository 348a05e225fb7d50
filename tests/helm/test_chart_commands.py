"""The commands the chart runs parse with the real `minmo` command line, in every variant.

A flag the chart passes that `minmo serve` or `minmo autoscale` does not define would crash-loop the pod;
here it fails with argparse's own message. Only the final step (starting the server) is replaced.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import helm_python as helm
import pytest

from orchestrator import cli
from tests.helm.chart_render import load_values, render, variant_files

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


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_chart_commands_parse_with_the_minmo_cli(
    chart: helm.Chart, variant: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = render(chart, load_values(variant))
    serve = rendered.find("Deployment", "minmo-serve-orchestrator")["spec"]["template"]["spec"]["containers"][0]
    parsed = parse_with_minmo(serve["args"], monkeypatch)
    assert parsed.port == 50051 and parsed.metrics_port == 9464
    assert parsed.auth == load_values(variant).get("auth", {}).get("mode", "api-keys")
    autoscalers = [o for o in rendered.of_kind("Deployment") if o["metadata"]["name"] == "minmo-serve-autoscaler"]
    for autoscaler in autoscalers:
        args = autoscaler["spec"]["template"]["spec"]["containers"][0]["args"]
        parsed = parse_with_minmo(args, monkeypatch)
        assert parsed.release == "minmo-serve"
        assert parsed.lease_name == "minmo-serve-autoscaler"
        assert parsed.config == Path("/etc/minmo/autoscaler/config.yaml")
