"""cluster/gpu.yaml passes Ray's own cluster-config validation, and says what the README says."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
YAML = REPO / "cluster" / "gpu.yaml"


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(YAML.read_text())


def check(config: dict) -> dict:
    """What `ray up` does before touching AWS: merge the defaults, then validate."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_yaml_passes_rays_schema_check(raw):
    prepared = check(raw)
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] == "head"


def test_a_typo_fails_the_check(raw):
    broken = copy.deepcopy(raw)
    worker = broken["available_node_types"]["gpu_1x_a10g"]
    worker["node_confg"] = worker.pop("node_config")
    with pytest.raises(jsonschema.ValidationError, match="node_confg"):
        check(broken)


def test_an_unknown_head_type_fails_the_check(raw):
    broken = copy.deepcopy(raw)
    broken["head_node_type"] = "head_typo"
    with pytest.raises(ValueError, match="head_node_type"):
        check(broken)


def test_cpu_head_and_spot_gpu_workers(raw):
    types = raw["available_node_types"]
    head = types[raw["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert "InstanceMarketOptions" not in head["node_config"], "the head must be on-demand"
    workers = {k: v for k, v in types.items() if k != raw["head_node_type"]}
    assert len(workers) >= 2
    for name, worker in workers.items():
        assert worker["resources"]["GPU"] >= 1, name
        assert worker["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot", name
        assert worker["node_config"]["IamInstanceProfile"], f"{name} cannot write to S3"
        assert worker["max_workers"] <= raw["max_workers"], name
    assert raw["provider"]["cache_stopped_nodes"] is False


def test_dashboard_listens_on_localhost_only(raw):
    start = " ".join(raw["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start
    assert "0.0.0.0" not in YAML.read_text()


def test_setup_installs_this_package(raw):
    mounts = raw["file_mounts"]
    assert mounts["~/jersey-ray"] == "."
    assert (REPO / mounts["~/jersey-ray"] / "pyproject.toml").is_file()
    setup = raw["setup_commands"]
    assert any(re.search(r"pip install .*\btorch\b", c) for c in setup)
    install = [i for i, c in enumerate(setup) if "pip install" in c and "-e ~/jersey-ray" in c]
    torch = [i for i, c in enumerate(setup) if re.search(r"\btorch\b", c)]
    assert install and torch and torch[0] < install[0], "torch must come before the package"


def test_image_matches_the_installed_ray(raw):
    assert raw["docker"]["image"].split(":")[1].startswith(ray.__version__)


def test_token_auth_reaches_every_node(raw):
    assert raw["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for cmd in raw["head_start_ray_commands"] + raw["worker_start_ray_commands"]:
        if "ray start" in cmd:
            assert "RAY_AUTH_MODE=token" in cmd


def test_readme_covers_the_workflow():
    text = (REPO / "cluster" / "README.md").read_text()
    for needed in (
        "ray up",
        "ray dashboard cluster/gpu.yaml",
        "--storage s3://",
        "--resume",
        "tensorboard",
        "ray down",
        "## Costs",
    ):
        assert needed in text, needed
