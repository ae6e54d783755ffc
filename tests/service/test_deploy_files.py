"""The deployment files hold together: compose services, the CI script and the README commands."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_has_every_service_with_health_checks_and_volumes():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    everything = compose["services"]
    # the default services; those of a profile (the Redis Cluster) are checked below
    services = {name: s for name, s in everything.items() if not s.get("profiles")}
    assert set(services) == {"postgres", "redis", "web", "dispatcher", "gateway", "worker", "beat"}
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
        assert service["volumes"], name
    for name in ("web", "dispatcher", "worker", "beat"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://") and env["REDIS_URL"].startswith("redis://")
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # one port for the API and the live dispatcher (planner_app/asgi.py); the dispatcher alone on its own
    assert "uvicorn planner_app.asgi:application" in services["web"]["command"]
    assert "planner_app.asgi:dispatcher_application" in services["dispatcher"]["command"]
    assert "/api/v1/dispatch/health/" in " ".join(services["dispatcher"]["healthcheck"]["test"])
    # the OpenAI front door (docs/gateway.md), on the dispatcher's Redis, with the models it serves mounted
    assert "planner_app.asgi:gateway_application" in services["gateway"]["command"]
    assert services["gateway"]["environment"]["REDIS_URL"].startswith("redis://")
    assert services["gateway"]["environment"]["CHAINPLAN_GATEWAY_CONFIG"].startswith("/gateway/")
    assert "/v1/health" in " ".join(services["gateway"]["healthcheck"]["test"])
    # the dispatcher's state survives a Redis restart only with append-only persistence
    assert "--appendonly" in services["redis"]["command"]
    assert "worker" in services["worker"]["command"] and "planner_app.core.beat" in services["beat"]["command"]
    # re-planning schedules live in the database: beat must read them there
    assert "django_celery_beat.schedulers:DatabaseScheduler" in services["beat"]["command"]
    declared = set(compose["volumes"])
    # named volumes must be declared (a bind mount such as the gateway's ./gateway is a path, not a volume)
    used = {v.split(":")[0] for s in everything.values() for v in s.get("volumes", [])
            if not v.startswith((".", "/"))}
    assert used <= declared


def test_compose_redis_cluster_profile():
    """Profile redis-cluster: six cluster nodes, a one-shot that makes them 3 primaries + 3 replicas, and every
    app on the dispatcher's store able to use it (CHAINPLAN_DISPATCH_REDIS_CLUSTER, docs/dispatcher.md)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    nodes = [f"redis-node-{i}" for i in range(6)]
    for name in nodes:
        node = services[name]
        assert node["profiles"] == ["redis-cluster"], name
        cmd = node["command"]
        assert cmd[cmd.index("--cluster-enabled") + 1] == "yes"
        assert int(cmd[cmd.index("--cluster-node-timeout") + 1]) <= 1500      # fail-over well under 5 s
        assert cmd[cmd.index("--cluster-require-full-coverage") + 1] == "no"  # other shards serve on
        assert node["healthcheck"]["test"] and node["volumes"], name
    create = services["redis-cluster-create"]
    assert create["profiles"] == ["redis-cluster"] and create["restart"] == "no"
    script = " ".join(create["command"])
    assert "--cluster create" in script and "--cluster-replicas 1" in script
    assert {n: {"condition": "service_healthy"} for n in nodes} == create["depends_on"]
    for name in ("web", "dispatcher", "gateway", "worker", "beat"):
        svc = services[name]
        assert "CHAINPLAN_DISPATCH_REDIS_CLUSTER" in svc["environment"], name
        dep = svc["depends_on"]["redis-cluster-create"]
        assert dep == {"condition": "service_completed_successfully", "required": False}, name


def test_compose_config_is_valid_when_docker_compose_exists():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode:
        pytest.skip("docker compose is not installed")
    out = subprocess.run([docker, "compose", "config", "--quiet"], cwd=ROOT, capture_output=True, text=True,
                         env={"DJANGO_SECRET_KEY": "x", "PATH": "/usr/bin:/bin:/usr/local/bin"})
    assert out.returncode == 0, out.stderr


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert ci.rstrip().endswith("exec bash scripts/test.sh")
    assert "bash scripts/test.sh" in readme and "bash scripts/serve.sh" in readme
    for script in ("scripts/serve.sh", "scripts/test.sh", ".ci/run"):
        out = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
        assert out.returncode == 0, (script, out.stderr)
