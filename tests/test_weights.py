"""Pretrained backbone weights: state dict files, the torchvision/timm caches, downloads through
their own mechanisms (faked here: no test touches the network), the offline one-line errors,
and ``python -m jersey_ray.models fetch-weights``."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from jersey_ray.models import WeightsError, build_model
from jersey_ray.models.__main__ import main as models_main
from jersey_ray.models.backbones import downloading

R18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
LITE0_REPO = "timm/efficientnet_lite0.ra_in1k"


def _torchvision_resnet18_state(seed: int) -> dict[str, torch.Tensor]:
    from torchvision.models import resnet18

    torch.manual_seed(seed)
    return resnet18().state_dict()  # the full classifier state dict, with fc


@pytest.fixture
def downloads(tmp_path, monkeypatch) -> list[str]:
    """Empty torch hub and Hugging Face caches, online mode, and a network that fails loudly:
    each test installs its own fake. Returns the URLs and repos a download was asked for."""
    import huggingface_hub.constants
    import timm.models._hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    asked: list[str] = []

    def no_network(url, *args, **kwargs):
        asked.append(url)
        raise AssertionError(f"a test tried the network: {url}")

    def no_hub(repo_id, *args, **kwargs):
        asked.append(repo_id)
        raise AssertionError(f"a test tried the Hugging Face hub: {repo_id}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", no_hub)
    return asked


def hub_file(tmp_path: Path, url: str) -> Path:
    return tmp_path / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[1]


def fake_download(monkeypatch, asked: list[str], state: dict | None = None, error=None) -> None:
    """torch.hub's downloader replaced: it writes ``state`` where torch.hub asked, or raises."""

    def download(url, dst, hash_prefix=None, progress=True):
        asked.append(url)
        if error is not None:
            raise error
        torch.save(state, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)


# --- state dict files ------------------------------------------------------------------------


def test_pretrained_from_a_state_dict_file(tmp_path):
    state = _torchvision_resnet18_state(7)
    full = tmp_path / "resnet18_full.pth"
    torch.save(state, full)
    m = build_model("basic_r18", pretrained=str(full))
    loaded = m.backbone.state_dict()
    assert set(loaded) == {k for k in state if not k.startswith("fc.")}
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    bare = tmp_path / "backbone.pt"  # a bare backbone state dict works for sequence models too
    torch.save(loaded, bare)
    seq = build_model("attn_ugru_hc", pretrained=str(bare))
    assert torch.equal(seq.backbone.conv1.weight, state["conv1.weight"])
    torch.manual_seed(0)
    assert not torch.equal(build_model("attn_ugru_hc").backbone.conv1.weight, state["conv1.weight"])


def test_pretrained_file_errors_name_the_file(tmp_path):
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "extra.bias": torch.zeros(2)}, wrong)
    with pytest.raises(WeightsError, match=r"wrong\.pth.*missing keys.*unexpected keys"):
        build_model("seq_ugru_fs", pretrained=str(wrong))
    shape = tmp_path / "shape.pth"
    state = _torchvision_resnet18_state(0)
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    torch.save(state, shape)
    with pytest.raises(WeightsError, match=r"shape\.pth.*do not fit resnet18"):
        build_model("basic_r18", pretrained=str(shape))
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(WeightsError, match=r"junk\.pth: cannot read"):
        build_model("basic_r18", pretrained=str(junk))
    with pytest.raises(WeightsError, match=r"nowhere\.pth: weights file not found"):
        build_model("basic_r18", pretrained=str(tmp_path / "nowhere.pth"))


# --- the caches, read only (what a trial does) -----------------------------------------------


def test_imagenet_weights_come_from_the_torch_hub_cache(tmp_path, downloads):
    path = hub_file(tmp_path, R18_URL)
    with pytest.raises(WeightsError) as err:
        build_model("seq_bgru_mp", pretrained="imagenet")
    message = str(err.value)
    assert str(path) in message and "--pretrained none" in message
    assert R18_URL in message and "fetch-weights" in message and "\n" not in message
    for model_id in ("basic_effb0", "basic_mv3l", "basic_mv3s", "basic_sv2"):
        with pytest.raises(WeightsError, match=f"{tmp_path}.*--pretrained none"):
            build_model(model_id, pretrained="imagenet")
    assert downloads == [], "outside downloading() nothing is downloaded"
    path.parent.mkdir(parents=True)
    state = _torchvision_resnet18_state(5)
    torch.save(state, path)
    m = build_model("seq_bgru_mp", pretrained="imagenet")
    assert torch.equal(m.backbone.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_lite0_imagenet_weights_never_touch_the_network(tmp_path, downloads):
    import timm

    with pytest.raises(WeightsError, match=r"efficientnet_lite0.*--pretrained none"):
        build_model("basic_effl0", pretrained="imagenet")
    assert downloads == []
    torch.manual_seed(2)
    state = timm.create_model("efficientnet_lite0").state_dict()  # with its classifier
    path = tmp_path / "torch" / "hub" / "checkpoints" / "efficientnet_lite0_ra-37913777.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    m = build_model("basic_effl0", pretrained="imagenet")
    assert torch.equal(m.backbone.conv_stem.weight, state["conv_stem.weight"])


# --- downloads (the driver's preflight and fetch-weights) ------------------------------------


def test_fetch_weights_downloads_into_the_torch_hub_cache(tmp_path, monkeypatch, downloads, capsys):
    state = _torchvision_resnet18_state(3)
    fake_download(monkeypatch, downloads, state)
    assert models_main(["fetch-weights", "basic_r18", "seq_bgru_mp"]) == 0
    path = hub_file(tmp_path, R18_URL)
    assert downloads == [R18_URL], "one download: the second model found it in the cache"
    out = capsys.readouterr().out
    assert str(path) in out and "resnet18" in out
    # the trial that follows reads the cache, never the network
    fake_download(monkeypatch, downloads, error=AssertionError("downloaded twice"))
    m = build_model("seq_bgru_mp", pretrained="imagenet")
    assert torch.equal(m.backbone.conv1.weight, state["conv1.weight"])


def test_downloading_yields_each_backbone_file(tmp_path, monkeypatch, downloads):
    fake_download(monkeypatch, downloads, _torchvision_resnet18_state(4))
    with downloading() as fetched:
        build_model("attn_bgru_luong", pretrained="imagenet")
        build_model("basic_r18", pretrained="none")
    assert fetched == {"resnet18": hub_file(tmp_path, R18_URL)}
    with pytest.raises(WeightsError, match="fetch-weights"):
        build_model("basic_sv2", pretrained="imagenet")  # the block is closed again


def test_offline_download_is_a_one_line_error(tmp_path, monkeypatch, downloads, capsys):
    reason = urllib.error.URLError("[Errno -2] Name or service not known")
    fake_download(monkeypatch, downloads, error=reason)
    assert models_main(["fetch-weights", "basic_r18"]) == 2
    err = capsys.readouterr().err.strip()
    path = hub_file(tmp_path, R18_URL)
    assert len(err.splitlines()) == 1 and err.startswith("error: cannot download")
    assert R18_URL in err and str(path) in err and "URLError" in err
    assert "--pretrained none" in err
    assert not path.exists()


def test_hf_hub_offline_skips_the_download(tmp_path, monkeypatch, downloads):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    for model_id, url in (("basic_r18", R18_URL), ("basic_effl0", "efficientnet_lite0_ra")):
        with downloading(), pytest.raises(WeightsError) as err:
            build_model(model_id, pretrained="imagenet")
        assert "HF_HUB_OFFLINE" in str(err.value) and url in str(err.value)
    assert LITE0_REPO in str(err.value)
    assert downloads == []


def test_lite0_download_goes_through_timm_into_the_hf_cache(tmp_path, monkeypatch, downloads):
    import timm
    import timm.models._hub
    from safetensors.torch import save_file

    torch.manual_seed(6)
    state = timm.create_model("efficientnet_lite0").state_dict()

    def hf_hub_download(repo_id, filename, revision=None, cache_dir=None, **kwargs):
        """What huggingface_hub does on success: a snapshot file and the ref naming it."""
        downloads.append(f"{repo_id}/{filename}")
        repo = tmp_path / "hf" / f"models--{repo_id.replace('/', '--')}"
        commit = "0" * 40
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        target = repo / "snapshots" / commit / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(target))
        return str(target)

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", hf_hub_download)
    with downloading() as fetched:
        build_model("basic_effl0", pretrained="imagenet")
    assert downloads == [f"{LITE0_REPO}/model.safetensors"]
    assert fetched["efficientnet_lite0"].is_relative_to(tmp_path / "hf")
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", None)  # a trial: cache only
    m = build_model("basic_effl0", pretrained="imagenet")
    assert torch.equal(m.backbone.conv_stem.weight, state["conv_stem.weight"])


def test_fetch_weights_refuses_unknown_ids_before_any_download(downloads, capsys):
    assert models_main(["fetch-weights", "basic_r18", "nope"]) == 2
    assert "unknown model id 'nope'" in capsys.readouterr().err
    assert downloads == []
