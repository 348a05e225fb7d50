"""``--triton-pool``, ``--namespace`` and ``--tokenizer``: parsing, the model-coverage rule, and the errors
``minmo serve`` stops with before it listens (nothing here needs Triton or Redis to answer)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis.asyncio

from orchestrator import cli
from orchestrator.routing.pools import PoolSpec, PoolSpecError, check_pools, parse_pool
from orchestrator.server.contracts import ServeSettings
from orchestrator.server.routing_config import RoutingConfigError, build_routing
from orchestrator.server.tokenizer_config import TokenizerConfigError, load_serving_tokenizer
from orchestrator.triton.client import TritonModels

ALL = "encoder,backbone,duplex,speech_lm,vocoder"


def test_a_static_pool_lists_its_models_and_pods() -> None:
    spec = parse_pool(f"all={ALL}@10.0.0.1:8001+triton-b:8001+[::1]:8001")
    assert spec == PoolSpec(
        "all",
        ("encoder", "backbone", "duplex", "speech_lm", "vocoder"),
        ("10.0.0.1:8001", "triton-b:8001", "[::1]:8001"),
    )


def test_a_kubernetes_pool_names_its_service() -> None:
    assert parse_pool("speak=speech_lm,vocoder@k8s:demo-triton-speak") == PoolSpec(
        "speak", ("speech_lm", "vocoder"), service="demo-triton-speak"
    )


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("all", "expected NAME=MODEL"),
        (f"all={ALL}", "expected NAME=MODEL"),
        (f"All={ALL}@h:1", "pool name 'All'"),
        ("all=encoder,tts@h:1", "unknown model(s) 'tts'"),
        ("all=encoder,encoder@h:1", "listed twice"),
        ("all=encoder@h", "'h' is not host:port"),
        ("all=encoder@h:1+h:1", "an address is listed twice"),
        ("all=encoder@k8s:Bad_Name", "is not a Service name"),
    ],
)
def test_a_malformed_pool_says_what_is_wrong(value: str, says: str) -> None:
    with pytest.raises(PoolSpecError) as caught:
        parse_pool(value)
    assert says in str(caught.value)


def test_every_model_is_in_exactly_one_pool() -> None:
    listen = parse_pool("listen=encoder,backbone,duplex@h:1")
    speak = parse_pool("speak=speech_lm,vocoder@h:2")
    assert check_pools([listen, speak]) == {
        "encoder": "listen",
        "backbone": "listen",
        "duplex": "listen",
        "speech_lm": "speak",
        "vocoder": "speak",
    }
    with pytest.raises(PoolSpecError, match="no pool serves speech_lm, vocoder"):
        check_pools([listen])
    with pytest.raises(PoolSpecError, match="model 'duplex' is in pools 'listen' and 'speak'"):
        check_pools([listen, parse_pool("speak=duplex,speech_lm,vocoder@h:2")])
    with pytest.raises(PoolSpecError, match=r"pool name.* listen given more than once"):
        check_pools([listen, parse_pool("listen=speech_lm,vocoder@h:2")])


def test_serve_refuses_a_bad_pool_flag_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["serve", "--triton-pool", "all=encoder,tts@h:1"])
    assert caught.value.code == 2
    assert "unknown model(s) 'tts'" in capsys.readouterr().err


def test_serve_refuses_pools_that_leave_a_model_out(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--port=0", "--triton-pool", "all=encoder,backbone@127.0.0.1:1"]) == 1
    assert "no pool serves duplex, speech_lm, vocoder" in capsys.readouterr().err


def test_serve_refuses_triton_and_pools_together(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--triton", "127.0.0.1:1", "--triton-pool", f"all={ALL}@127.0.0.1:1"]) == 2
    assert "not both" in capsys.readouterr().err


def _route(settings: ServeSettings) -> object:
    client = redis.asyncio.Redis()  # never connected: building routing does no I/O
    return build_routing(settings, client, TritonModels, session_ttl_seconds=60)


def test_no_pools_means_no_routing() -> None:
    assert _route(ServeSettings()) is None


def test_kubernetes_targets_need_a_namespace_and_a_cluster() -> None:
    pools = (parse_pool(f"all={ALL}@k8s:demo-triton-all"),)
    if Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").exists():
        pytest.skip("running inside a pod: the namespace comes from its ServiceAccount")
    with pytest.raises(RoutingConfigError, match="pass --namespace"):
        _route(ServeSettings(triton_pools=pools))
    with pytest.raises(RoutingConfigError, match="need to run in a Kubernetes pod"):
        _route(ServeSettings(triton_pools=pools, namespace="minmo"))


def test_static_and_kubernetes_targets_do_not_mix() -> None:
    pools = (
        parse_pool("listen=encoder,backbone,duplex@k8s:demo-triton-listen"),
        parse_pool("speak=speech_lm,vocoder@h:1"),
    )
    with pytest.raises(RoutingConfigError, match="for every pool or for none"):
        _route(ServeSettings(triton_pools=pools, namespace="minmo"))


def test_tokenizer_flag_needs_a_tokenizer_json(tmp_path: Path) -> None:
    assert load_serving_tokenizer(None) is None
    with pytest.raises(TokenizerConfigError, match=r"no tokenizer\.json there"):
        load_serving_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerConfigError, match=re.escape(str(tmp_path))):
        load_serving_tokenizer(tmp_path)
