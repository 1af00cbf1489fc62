"""cluster/gpu.yaml passes Ray's own cluster-config validation, and says what the README says;
cluster/slurm.sbatch starts Ray and the sweep right under a fake SLURM (srun, scontrol)."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
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


def test_weights_are_fetched_on_every_node(raw):
    setup = raw["setup_commands"]
    install = next(i for i, c in enumerate(setup) if "-e ~/jersey-ray" in c)
    fetch = [i for i, c in enumerate(setup) if "jersey_ray.models fetch-weights" in c]
    assert fetch and fetch[0] > install, "fetch-weights runs on every node, after the install"


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


# --- SLURM: cluster/slurm.sbatch with a fake srun/scontrol/hostname, a fake ray and python ----

SLURM = REPO / "cluster" / "slurm.sbatch"
IP = "10.1.2.3"

FAKES = {
    # scontrol show hostnames LIST: the test's node list, one per line
    "scontrol": 'echo "scontrol $*" >> "$CALLS"; printf "%s\\n" $FAKE_NODES\n',
    # srun [options] COMMAND...: logged, then COMMAND runs here
    "srun": """echo "srun $*" >> "$CALLS"
while [[ $# -gt 0 && $1 == -* ]]; do [[ $1 == -w ]] && shift; shift; done
exec "$@"
""",
    "hostname": f'echo "fe80::1 {IP} 172.17.0.1"\n',
    # ray and python: log argv and the auth environment they were started with
    "ray": """echo "ray $* | $RAY_AUTH_MODE $RAY_AUTH_TOKEN" >> "$CALLS"
if [[ $1 == get-auth-token ]]; then
  mkdir -p "$HOME/.ray" && echo tok-123 > "$HOME/.ray/auth_token"
fi
""",
    "python": 'echo "python $* | $RAY_AUTH_MODE $RAY_AUTH_TOKEN" >> "$CALLS"; cat > /dev/null\n',
}


def run_slurm(tmp_path: Path, nodes: list[str], *args: str) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\n" + body)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls.log"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "CALLS": str(calls),
        "FAKE_NODES": " ".join(nodes),
        "SLURM_JOB_NODELIST": "gpu[001-003]" if len(nodes) > 1 else nodes[0],
        "SLURM_JOB_NUM_NODES": str(len(nodes)),
        "SLURM_CPUS_PER_TASK": "8",
        "SLURM_GPUS_PER_TASK": "1",
        "SLURM_SUBMIT_DIR": str(REPO),
        "JERSEY_RAY_PYTHON": str(bin_dir / "python"),
        "JERSEY_RAY_RAY": str(bin_dir / "ray"),
    }
    proc = subprocess.run(
        ["bash", str(SLURM), *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return calls.read_text().splitlines()


def test_slurm_one_node_allocation_starts_the_head_and_runs_the_sweep(tmp_path):
    calls = run_slurm(tmp_path, ["gpu001"], "phaseB", "--quick")
    auth = " | token tok-123"
    started = [c for c in calls if " start " in c]  # in the background: logged at any point
    assert started == [
        f"srun --nodes=1 --ntasks=1 -w gpu001 {tmp_path}/bin/ray start --head "
        f"--node-ip-address={IP} --port=6379 --num-cpus=8 --num-gpus=1 "
        "--include-dashboard=false --disable-usage-stats --block",
        f"ray start --head --node-ip-address={IP} --port=6379 --num-cpus=8 --num-gpus=1 "
        f"--include-dashboard=false --disable-usage-stats --block{auth}",
    ]
    assert [c for c in calls if c not in started] == [
        "scontrol show hostnames gpu001",
        "srun --nodes=1 --ntasks=1 -w gpu001 hostname --ip-address",
        "ray get-auth-token --generate | token ",
        "srun --nodes=1 --ntasks=1 --ntasks-per-node=1 "
        f"{tmp_path}/bin/python -m jersey_ray.models fetch-weights",
        f"python -m jersey_ray.models fetch-weights{auth}",
        f"python - {IP}:6379 1 300{auth}",  # the head is up
        f"python - {IP}:6379 1 300{auth}",  # all (one) nodes are up
        f"python -m jersey_ray.sweep phaseB --quick --address {IP}:6379{auth}",
    ]


def test_slurm_workers_join_the_head_on_every_other_node(tmp_path):
    calls = run_slurm(tmp_path, ["gpu001", "gpu002", "gpu003"], "all")
    workers = [c for c in calls if c.startswith("srun") and "--address=" in c]
    # started in the background: in any order
    assert sorted(c.split(" -w ")[1].split()[0] for c in workers) == ["gpu002", "gpu003"]
    assert all(f"--address={IP}:6379 --num-cpus=8 --num-gpus=1" in c for c in workers)
    assert "srun --nodes=3 --ntasks=3 --ntasks-per-node=1" in "\n".join(calls)  # weights x3
    assert [c for c in calls if c.startswith("python")][-3:] == [
        f"python - {IP}:6379 1 300 | token tok-123",
        f"python - {IP}:6379 3 300 | token tok-123",
        f"python -m jersey_ray.sweep all --address {IP}:6379 | token tok-123",
    ]


def test_slurm_script_passes_only_flags_ray_start_knows():
    ray_bin = Path(sys.executable).parent / "ray"
    known = subprocess.run([ray_bin, "start", "--help"], capture_output=True, text=True).stdout
    used = set(re.findall(r"\$RAY\" start ([^&]*)", SLURM.read_text().replace("\\\n", " ")))
    flags = {f for chunk in used for f in re.findall(r"(--[a-z-]+)", chunk)}
    assert {"--head", "--block", "--address", "--num-gpus"} <= flags
    assert all(f in known for f in flags), flags - {f for f in flags if f in known}


def test_readme_covers_slurm():
    text = (REPO / "cluster" / "README.md").read_text()
    for needed in ("sbatch cluster/slurm.sbatch", "fetch-weights", "RAY_AUTH_MODE=token"):
        assert needed in text, needed
