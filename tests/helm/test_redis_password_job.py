"""The bundled Redis's password: made once in the cluster by a hook Job, never by a render.

The module the Job runs (orchestrator/deploy/redis_password.py) is run here for real against
FakeKubernetesApiServer (a FAKE API server: no cluster runs here; it validates bodies like one), with the
exact arguments the rendered Job passes.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import helm_python as helm
import pytest
from kubernetes import client

from orchestrator.autoscaler.kube import bounded_api_client
from orchestrator.deploy.redis_password import SecretError, ensure_secret, main
from tests.helm.chart_render import Rendered, render
from tests.integration.fake_kube_api import FakeKubernetesApiServer

NS = "voice"


@pytest.fixture(scope="module")
def rendered(chart: helm.Chart) -> Rendered:
    return render(chart)


@pytest.fixture
def api() -> Iterator[FakeKubernetesApiServer]:
    with FakeKubernetesApiServer(NS).running() as server:
        yield server


def job_arguments(rendered: Rendered) -> list[str]:
    job = rendered.find("Job", "minmo-serve-redis-password")
    command: list[str] = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "orchestrator.deploy.redis_password"]
    return command[3:]


def core(api: FakeKubernetesApiServer) -> client.CoreV1Api:
    return client.CoreV1Api(bounded_api_client(api.configuration()))


def run_job(api: FakeKubernetesApiServer, rendered: Rendered, monkeypatch: pytest.MonkeyPatch) -> int:
    """The Job's own command line, against the fake API server instead of the in-cluster one."""
    monkeypatch.setattr("kubernetes.config.load_incluster_config", lambda: None)
    monkeypatch.setattr(client.Configuration, "get_default_copy", staticmethod(api.configuration))
    return main(job_arguments(rendered))


def test_the_job_creates_the_secret_the_pods_read_once_and_never_changes_it(
    api: FakeKubernetesApiServer, rendered: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_job(api, rendered, monkeypatch) == 0
    secret = api.objects[("secrets", "minmo-serve-redis-password")]
    password = base64.b64decode(secret["data"]["redis-password"]).decode()
    assert len(password) == 48 and all(c in "0123456789abcdef" for c in password)
    assert secret["metadata"]["labels"]["app.kubernetes.io/instance"] == "minmo-serve"
    # The pods read that Secret under that key.
    redis = rendered.find("StatefulSet", "minmo-serve-redis")["spec"]["template"]["spec"]["containers"][0]
    refs = {(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"]) for e in redis["env"]}
    assert refs == {("minmo-serve-redis-password", "redis-password")}
    # Every later install or upgrade runs the hook again: the password stays.
    assert run_job(api, rendered, monkeypatch) == 0
    assert run_job(api, rendered, monkeypatch) == 0
    assert (
        base64.b64decode(api.objects[("secrets", "minmo-serve-redis-password")]["data"]["redis-password"]).decode()
        == password
    )
    assert [r.method for r in api.requests if "/secrets" in r.path] == ["GET", "POST", "GET", "GET"]


def test_a_secret_someone_else_made_is_kept_as_it_is(api: FakeKubernetesApiServer) -> None:
    api.put(
        "secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "r"}, "data": {"redis-password": "b3Vycw=="}},
    )
    assert ensure_secret(core(api), NS, "r", "redis-password", {}, timeout=5) == "kept"
    assert api.objects[("secrets", "r")]["data"] == {"redis-password": "b3Vycw=="}
    assert api.writes() == []


def test_a_secret_without_the_key_is_refused_with_what_to_do(api: FakeKubernetesApiServer) -> None:
    api.put("secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "r"}, "data": {"other": "eA=="}})
    with pytest.raises(SecretError, match=r"exists without the key 'redis-password'.*delete the Secret"):
        ensure_secret(core(api), NS, "r", "redis-password", {}, timeout=5)


def test_the_job_runs_before_everything_else_and_is_cleaned_up(rendered: Rendered) -> None:
    objects = [o for o in rendered.objects if o["metadata"]["name"] == "minmo-serve-redis-password"]
    assert {o["kind"] for o in objects} == {"ServiceAccount", "Role", "RoleBinding", "Job"}
    for obj in objects:
        annotations = obj["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    weights = {o["kind"]: int(o["metadata"]["annotations"]["helm.sh/hook-weight"]) for o in objects}
    assert weights["Job"] > max(weights["ServiceAccount"], weights["Role"], weights["RoleBinding"])
    job = next(o for o in objects if o["kind"] == "Job")["spec"]
    assert job["backoffLimit"] >= 1 and job["activeDeadlineSeconds"] <= 300


def test_no_job_when_the_password_comes_from_an_existing_secret_or_redis_is_external(chart: helm.Chart) -> None:
    existing = render(chart, {"redis": {"bundled": {"existingSecret": "mine"}}})
    external = render(
        chart, {"redis": {"bundled": {"enabled": False}, "external": {"url": "rediss://r.example:6380/0"}}}
    )
    for variant in (existing, external):
        assert not [o for o in variant.objects if o["metadata"]["name"] == "minmo-serve-redis-password"]
    redis = existing.find("StatefulSet", "minmo-serve-redis")["spec"]["template"]["spec"]["containers"][0]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in redis["env"]} == {"mine"}
