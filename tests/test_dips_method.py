"""DiPS as a method: one ViT pass, the partial cross-entropy, proposals on training views, the pixel seeds of a
step, training that resumes bit for bit, the commands, and bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tedloc.cli import main
from tedloc.data import load_dataset
from tedloc.data.transforms import View
from tedloc.engine import load_checkpoint
from tedloc.errors import TedlocError
from tedloc.methods import get_method, load_model
from tedloc.methods.dips import DiPSTrainConfig, make_proposals, train_dips
from tedloc.methods.dips.train import DecoderStage, build_dips, choose_proposals
from tedloc.models.dips import DiPSNet, partial_cross_entropy, vit_outputs
from tedloc.models.encoders import create_encoder
from tedloc.models.vit_attention import cls_attention_maps
from tedloc.pseudolabels.pixel_seeds import IGNORE
from tedloc.pseudolabels.proposal_cache import ProposalCache
from tedloc.pseudolabels.proposals import Proposal
from tedloc.pseudolabels.views import boxes_on_view
from tedloc.utils.keyed_random import sample_keys
from runtimes import CPU


@pytest.fixture(scope="module")
def inputs(synthetic_small, tmp_path_factory):
    """A ViT and a CNN trained for an epoch, and the ViT's proposals of the train split scored by the CNN."""
    root = tmp_path_factory.mktemp("dips")
    cam = get_method("cam")
    cam.train(synthetic_small, root / "vit", cam.config(arch="tedloc_vit_tiny", input_size=32, epochs=1,
                                                        batch_size=8, lr=0.01), runtime=CPU)
    cam.train(synthetic_small, root / "cnn", cam.config(input_size=48, epochs=1, batch_size=8), runtime=CPU)
    make_proposals(synthetic_small, "train", root / "proposals", root / "cnn", "tedloc_vit_tiny", 32,
                   encoder_run=root / "vit", k=3, runtime=CPU)
    cfg = DiPSTrainConfig(encoder_run=str(root / "vit"), input_size=32, epochs=2, classifier_epochs=2, batch_size=8,
                          lr_step=1, top_k=3, fg_count=10, bg_count=10, lambda_crf=1e-6, crf_scale=0.5)
    return root, cfg


# ----------------------------------------------------------------------------- the network
def test_one_vit_pass_gives_class_tokens_patch_tokens_and_attention():
    from tedloc.models.dips import class_tokens, patch_tokens

    torch.manual_seed(0)
    encoder = create_encoder("tedloc_vit_tiny", img_size=64)
    images = torch.randn(2, 3, 64, 64)
    out = vit_outputs(encoder.model, images, n_blocks=2, attention=True)
    with torch.no_grad():
        torch.testing.assert_close(out.class_tokens, class_tokens(encoder.model, images, 2))
        torch.testing.assert_close(out.patch_tokens, patch_tokens(encoder.model, images, (8, 8)))
        torch.testing.assert_close(out.patch_tokens, encoder(images))
    torch.testing.assert_close(out.attention, cls_attention_maps(encoder.model, images))
    assert out.class_tokens.shape == (2, 384) and out.attention.shape == (2, 6, 8, 8)


@pytest.mark.parametrize("name,size,classes,grid", [("vit_small_patch16_224", 224, 200, 14),
                                                    ("tedloc_vit_tiny", 64, 4, 8)])
def test_network_shapes_for_vit_s16_and_the_offline_vit(name, size, classes, grid):
    torch.manual_seed(0)
    net = DiPSNet(create_encoder(name, img_size=size), classes).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, size, size))
    assert out["logits"].shape == (2, classes) and out["seg"].shape == (2, 2, size, size)
    assert out["fg"].shape == (2, size, size) and 0 <= out["fg"].min() and out["fg"].max() <= 1
    assert net.vit(torch.randn(1, 3, size, size), attention=True).attention.shape[-2:] == (grid, grid)
    # only the heads train
    assert not any(p.requires_grad for p in net.encoder.parameters())


def test_sizes_the_decoder_cannot_cover_and_missing_blocks_are_refused():
    with pytest.raises(TedlocError, match="multiple of the patch"):
        DiPSNet(create_encoder("tedloc_vit_tiny", img_size=60), 3)  # a 7x7 grid covers 56 pixels
    with pytest.raises(TedlocError, match="has 4 blocks"):
        DiPSNet(create_encoder("tedloc_vit_tiny", img_size=64), 3, n_blocks=5)


def test_dips_needs_a_vit_with_a_class_token():
    with pytest.raises(TedlocError, match="DiPS needs a timm ViT with a class token"):
        DiPSNet(create_encoder("tedloc_resnet_tiny", img_size=32), 3)


def test_partial_cross_entropy_on_hand_made_tensors():
    logits = torch.tensor([[[[2.0, 0.0], [0.0, 1.0]], [[0.0, 3.0], [0.0, 0.0]]]])  # (1, 2, 2, 2)
    labels = torch.tensor([[[0, 1], [IGNORE, 0]]])
    total, count = partial_cross_entropy(logits, labels, IGNORE)
    expected = (np.log(1 + np.exp(-2.0)) + np.log(1 + np.exp(-3.0)) + np.log(1 + np.exp(-1.0)))
    assert count.item() == 3 and total.item() == pytest.approx(expected, rel=1e-6)
    empty, none = partial_cross_entropy(logits, torch.full((1, 2, 2), IGNORE), IGNORE)
    assert none.item() == 0 and empty.item() == 0


# ----------------------------------------------------------------------------- proposals on training views
def test_boxes_on_a_view_follow_resize_crop_and_flip():
    identity = View((10, 8), (10, 8), (0, 0, 10, 8))
    mask = boxes_on_view(np.array([[2, 1, 5, 3]]), identity)[0]
    expected = torch.zeros(8, 10, dtype=torch.bool)
    expected[1:4, 2:6] = True
    assert torch.equal(mask, expected)
    view = View((10, 8), (20, 16), (2, 2, 12, 12), flip=True)
    mask = boxes_on_view(np.array([[2, 1, 5, 3], [9, 7, 9, 7]]), view)
    expected = torch.zeros(12, 12, dtype=torch.bool)
    expected[0:6, 2:10] = True  # x [4, 12) -> crop [2, 10) -> flipped [2, 10); y [2, 8) -> [0, 6)
    assert torch.equal(mask[0], expected) and not mask[1].any()  # the second box is cropped away
    assert boxes_on_view(np.array([[0, 0, 9, 7]]), identity, size=(4, 5))[0].all()


def _cache(tmp_path, rows):
    cache = ProposalCache(tmp_path / "cache", [f"im{i}" for i in range(len(rows))], 3, {"encoder": "x"})
    cache.write(list(range(len(rows))), [[Proposal(b, m) for b, m in row] for row in rows],
                [np.linspace(1, 0.5, len(row)) for row in rows])
    return cache


def test_choose_proposals_is_keyed_uniform_over_the_top_k(tmp_path):
    boxes = [((0, 0, 3, 3), 1), ((4, 4, 7, 7), 2), ((0, 4, 3, 7), 0)]
    cache = _cache(tmp_path, [boxes] * 64)
    views = torch.stack([View((8, 8), (8, 8), (0, 0, 8, 8)).to_tensor()] * 64)
    keys = sample_keys(0, 0, torch.arange(64))
    chosen, union, which = choose_proposals(cache, list(range(64)), views, keys, 3, (8, 8))
    assert set(which.tolist()) == {0, 1, 2}  # every proposal is drawn
    for c, m in zip(chosen, which.tolist()):
        box = {1: boxes[0][0], 2: boxes[1][0], 0: boxes[2][0]}[m]
        assert torch.equal(c, boxes_on_view(np.array([box]), View((8, 8), (8, 8), (0, 0, 8, 8)))[0])
    assert union[0].sum() == 48 and union.all(dim=0).sum() == 48
    again = choose_proposals(cache, list(range(64)), views, keys, 3, (8, 8))
    assert torch.equal(again[2], which)  # the same keys draw the same proposals
    _, union1, which1 = choose_proposals(cache, list(range(64)), views, keys, 1, (8, 8))
    assert (which1 == 1).all() and union1[0].sum() == 16  # K = 1: the best one, and only its box is "taken"


def test_the_pixel_seeds_of_a_step(tmp_path):
    """FG seeds (before dilation) inside the chosen box, BG outside every considered box, drawn per sample."""
    torch.manual_seed(0)
    cfg = DiPSTrainConfig(encoder="tedloc_vit_tiny", input_size=32, top_k=2, fg_count=5, bg_count=5, dilation=1)
    net = build_dips(cfg, 4)
    boxes = [((2, 2, 13, 13), 0), ((16, 16, 29, 29), 3)]
    cache = _cache(tmp_path, [boxes] * 8)
    views = torch.stack([View((32, 32), (32, 32), (0, 0, 32, 32)).to_tensor()] * 8)
    batch = {"index": torch.arange(8), "view": views, "label": torch.zeros(8, dtype=torch.long)}
    task = DecoderStage(net, None, cache, None, None, cfg)
    attention = net.vit(torch.randn(8, 3, 32, 32), attention=True).attention
    labels = task.pixel_labels(batch, attention, (32, 32), epoch=0)
    keys = sample_keys(cfg.seed, 0, batch["index"], stream=0x6470)
    chosen, union, _ = choose_proposals(cache, list(range(8)), views, keys, 2, (32, 32))
    assert ((labels == 1) & ~chosen).sum() == 0 and ((labels == 0) & union).sum() == 0
    assert ((labels == 1).flatten(1).sum(1) == 5).all() and ((labels == 0).flatten(1).sum(1) == 5).all()
    assert torch.equal(labels, task.pixel_labels(batch, attention, (32, 32), epoch=0))
    assert not torch.equal(labels, task.pixel_labels(batch, attention, (32, 32), epoch=1))


# ----------------------------------------------------------------------------- training
def test_training_resumes_bit_identically(inputs, synthetic_small, tmp_path):
    root, cfg = inputs
    full = train_dips(synthetic_small, tmp_path / "full", root / "proposals", cfg, runtime=CPU)
    one = DiPSTrainConfig(**{**cfg.__dict__, "epochs": 1})
    train_dips(synthetic_small, tmp_path / "part", root / "proposals", one, runtime=CPU)
    conf = json.loads((tmp_path / "part" / "config.json").read_text())
    conf["config"]["epochs"] = 2
    (tmp_path / "part" / "config.json").write_text(json.dumps(conf))
    train_dips(synthetic_small, tmp_path / "part", root / "proposals", cfg, runtime=CPU)
    a, _, meta = load_checkpoint(tmp_path / "full" / "model")
    b, _, _ = load_checkpoint(tmp_path / "part" / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(full) == 2 and all(np.isfinite(r["loss_seed"]) and r["loss_crf"] < 0 for r in full)
    assert meta["kind"] == "dips" and meta["classifier_epoch"] in (1, 2) and len(meta["classifier_history"]) == 2
    # the ViT is the pretrained one and stays frozen; f_c is stage 1's selected epoch
    vit, _, _ = load_checkpoint(root / "vit" / "model")
    assert torch.equal(a["encoder.model.blocks.0.attn.qkv.weight"], vit["blocks.0.attn.qkv.weight"])
    stage1, _, _ = load_checkpoint(tmp_path / "full" / "classifier" / "checkpoints" / f"epoch_{meta['classifier_epoch']:03d}")
    assert torch.equal(a["classifier.linear.weight"], stage1["linear.weight"])


def test_without_the_crf_loss(inputs, synthetic_small, tmp_path):
    root, cfg = inputs
    history = train_dips(synthetic_small, tmp_path / "run", root / "proposals",
                         DiPSTrainConfig(**{**cfg.__dict__, "lambda_crf": 0.0, "epochs": 1}), runtime=CPU)
    assert history[0]["loss_crf"] is None and history[0]["loss_total"] == history[0]["loss_seed"]


def test_proposals_of_another_encoder_or_map_set_are_refused(inputs, synthetic_small, tmp_path):
    root, cfg = inputs
    with pytest.raises(TedlocError, match=r"proposals were made with other settings \(encoder_source"):
        train_dips(synthetic_small, tmp_path / "a", root / "proposals",
                   DiPSTrainConfig(**{**cfg.__dict__, "encoder_run": None}), runtime=CPU)
    with pytest.raises(TedlocError, match=r"other settings \(heads"):
        train_dips(synthetic_small, tmp_path / "b", root / "proposals",
                   DiPSTrainConfig(**{**cfg.__dict__, "heads": (0, 1)}), runtime=CPU)
    with pytest.raises(TedlocError, match=r"other settings \(min_size"):
        train_dips(synthetic_small, tmp_path / "d", root / "proposals",
                   DiPSTrainConfig(**{**cfg.__dict__, "min_size": 0.75}), runtime=CPU)
    with pytest.raises(TedlocError, match="no proposal cache"):
        train_dips(synthetic_small, tmp_path / "c", tmp_path / "none", cfg, runtime=CPU)


def test_proposals_need_an_encoder_with_attention(inputs, synthetic_small, tmp_path):
    root, _ = inputs
    with pytest.raises(TedlocError, match="a CNN has no attention"):
        make_proposals(synthetic_small, "train", tmp_path / "p", root / "cnn", "tedloc_resnet_tiny", 32, runtime=CPU)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(TedlocError, match="lambda_seed and lambda_crf must be >= 0"):
        DiPSTrainConfig(lambda_crf=-1.0)
    with pytest.raises(TedlocError, match="selection"):
        DiPSTrainConfig(selection="cls")
    with pytest.raises(TedlocError, match="background"):
        DiPSTrainConfig(background="inside")
    with pytest.raises(TedlocError, match="crf_method"):
        DiPSTrainConfig(crf_method="lattice")


def test_commands(inputs, synthetic_small, tmp_path, capsys):
    root, _ = inputs
    assert main(["proposals", "--data", str(synthetic_small), "--out", str(tmp_path / "p"), "--classifier-run",
                 str(root / "cnn"), "--encoder-run", str(root / "vit"), "--input-size", "32", "--k", "2"]) == 0
    out = capsys.readouterr().out
    assert "top 2 proposals of 24 train images" in out and "mIoU of the best" in out
    assert main(["train", "--method", "dips", "--data", str(synthetic_small), "--out", str(tmp_path / "run"),
                 "--proposals", str(tmp_path / "p"), "--encoder-run", str(root / "vit"), "--input-size", "32",
                 "--epochs", "1", "--classifier-epochs", "1", "--batch-size", "8", "--top-k", "2",
                 "--fg-count", "5", "--bg-count", "5", "--crf-scale", "0.5"]) == 0
    assert main(["evaluate", "--run", str(tmp_path / "run"), "--data", str(synthetic_small), "--json",
                 str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["map"] == "fg" and 0 <= metrics["MaxBoxAcc"] <= 100
    split = load_dataset(synthetic_small)["test"]
    assert main(["predict", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "pred"),
                 split.image_path(0).as_posix()]) == 0
    model = load_model(tmp_path / "run", runtime=CPU)
    x = model.preprocessing.eval_input(__import__("PIL.Image").Image.open(split.image_path(0)))[None]
    scores, maps = model.predict(x)
    assert scores.shape == (1, 4) and maps.shape == (1, 32, 32) and not F.relu(-maps).any()


def test_sweep_and_protocol_table_take_dips_runs(inputs, synthetic_small, tmp_path):
    pytest.importorskip("optuna")
    import optuna

    from tedloc.protocol.make_boxes import make_pseudo_boxes

    root, _ = inputs
    boxes = tmp_path / "cam.txt"
    make_pseudo_boxes(synthetic_small, "val", "cam", root / "cnn", boxes, runtime=CPU)
    assert main(["sweep", "--method", "dips", "--data", str(synthetic_small), "--pseudo-boxes", str(boxes),
                 "--out", str(tmp_path / "sweep"), "--trials", "1", "--epochs", "1", "--classifier-epochs", "1",
                 "--batch-size", "8", "--input-size", "32", "--proposals", str(root / "proposals"), "--encoder-run",
                 str(root / "vit"), "--top-k", "3", "--fg-count", "5", "--bg-count", "5", "--crf-scale", "0.5"]) == 0
    study = optuna.load_study(study_name="tedloc-dips", storage=f"sqlite:///{tmp_path / 'sweep' / 'study.db'}")
    (trial,) = study.trials
    assert 0 <= trial.value <= 100 and "lambda_seed" in trial.params
    assert json.loads((tmp_path / "sweep" / "trial_0000" / "model.json").read_text())["kind"] == "dips"
    # the protocol's table compares the trial's epoch checkpoints with GT and with pseudo-boxes
    assert main(["protocol-table", "--runs", str(tmp_path / "sweep" / "trial_0000"), "--data", str(synthetic_small),
                 "--pseudo-boxes", f"cam={boxes}", "--json", str(tmp_path / "table.json")]) == 0
    assert (tmp_path / "table.json").read_text().count("trial_0000") >= 1


def test_an_image_without_proposals_gets_the_whole_image(inputs, synthetic_small, tmp_path):
    """Constant attention (q = k = 0): every map is flat, Otsu finds nothing, the image is its one proposal."""
    from tedloc.pseudolabels.classifier_tools import ClassifierTools
    from tedloc.pseudolabels.proposal_scoring import compute_proposal_cache

    root, _ = inputs
    encoder = create_encoder("tedloc_vit_tiny", img_size=32)
    torch.nn.init.zeros_(encoder.model.blocks[-1].attn.qkv.weight)
    torch.nn.init.zeros_(encoder.model.blocks[-1].attn.qkv.bias)
    split = load_dataset(synthetic_small)["val"]
    tools = ClassifierTools(load_model(root / "cnn", runtime=CPU))
    cache = compute_proposal_cache(encoder.model, encoder.preprocessing, tools, split, tmp_path / "p", {}, k=2)
    for row in range(len(split)):
        (proposal,), scores = cache.get(row)
        w, h = (int(v) for v in split.sizes[row])
        assert proposal.box == (0, 0, w - 1, h - 1) and proposal.map_index == 0 and 0 <= scores[0] <= 1


def test_batched_confidences_equal_one_image_at_a_time(inputs, synthetic_small):
    from tedloc.pseudolabels.classifier_tools import ClassifierTools
    from tedloc.data.images import load_image

    root, _ = inputs
    split = load_dataset(synthetic_small)["val"]
    tools = ClassifierTools(load_model(root / "cnn", runtime=CPU), batch_size=3)
    items = [(load_image(split.image_path(i)), int(split.labels[i]), np.array([[0, 0, 20, 20], [5, 5, 40, 30]][:1 + i % 2]))
             for i in range(5)]
    batched = tools.confidences(items)
    for (image, label, boxes), got in zip(items, batched):
        np.testing.assert_allclose(got, tools.confidence(image, label, boxes), rtol=1e-5, atol=1e-6)
        assert got.shape == (len(boxes),)


def test_bad_proposal_settings_leave_no_cache_behind(inputs, synthetic_small, tmp_path, capsys):
    root, _ = inputs
    args = ["proposals", "--data", str(synthetic_small), "--out", str(tmp_path / "p"), "--classifier-run",
            str(root / "cnn"), "--encoder-run", str(root / "vit"), "--input-size", "32"]
    assert main([*args, "--heads", "0", "9"]) == 2
    assert "has 6 attention heads (0-5); asked for [9]" in capsys.readouterr().err and not (tmp_path / "p").exists()
    assert main([*args, "--blur-sigma", "0"]) == 2
    assert "blur_sigma must be positive" in capsys.readouterr().err
    assert main([*args, "--heads", "--k", "2", "--input-size", "48"]) == 0  # the mean map only; a ViT trained at 32
    cache = ProposalCache(tmp_path / "p")
    assert cache.settings["heads"] == [] and all(p.map_index == 0 for r in range(len(cache)) for p in cache.get(r)[0])


def test_bad_training_settings_fail_before_the_folder_is_claimed(inputs, synthetic_small, tmp_path):
    root, cfg = inputs
    with pytest.raises(TedlocError, match="has 4 blocks"):
        train_dips(synthetic_small, tmp_path / "run", root / "proposals",
                   DiPSTrainConfig(**{**cfg.__dict__, "n_blocks": 5}), runtime=CPU)
    assert not (tmp_path / "run" / "config.json").exists()
    with pytest.raises(TedlocError, match="3 proposals stored per image, top_k 4 asked"):
        train_dips(synthetic_small, tmp_path / "run", root / "proposals", DiPSTrainConfig(**{**cfg.__dict__,
                                                                                            "top_k": 4}), runtime=CPU)


def test_retrained_weights_at_the_same_path_are_another_encoder(inputs, tmp_path):
    import shutil

    from tedloc.methods.dips import encoder_source

    root, _ = inputs
    shutil.copytree(root / "vit", tmp_path / "vit")
    before = encoder_source(tmp_path / "vit")
    assert before.startswith(f"run:{(tmp_path / 'vit').resolve()}@") and before == encoder_source(tmp_path / "vit")
    from safetensors.torch import load_file, save_file

    weights = tmp_path / "vit" / "model.safetensors"
    tensors = load_file(weights)
    tensors["model.blocks.0.attn.qkv.weight"] += 1  # "retrained"
    save_file(tensors, weights)
    assert encoder_source(tmp_path / "vit") != before


# ----------------------------------------------------------------------------- the schedule and the configs
def test_the_classifier_schedule_follows_its_epochs_and_decays_sensibly():
    from tedloc.methods.dips.train import classifier_schedule

    for epochs in (1, 2, 10, 50, 100):
        s = classifier_schedule(DiPSTrainConfig(epochs=epochs))
        final = s.lr * s.lr_gamma ** ((s.epochs - 1) // s.lr_step)
        assert s.epochs == epochs and s.lr == DiPSTrainConfig().classifier_lr
        assert final >= 1e-4 * s.lr and (final < s.lr or epochs <= 4)  # it decays, never to 1e-14
    assert classifier_schedule(DiPSTrainConfig(epochs=50)).lr_step == 17  # x0.1 at epochs 17 and 34
    assert classifier_schedule(DiPSTrainConfig(epochs=10)).lr_step == 4  # as before for 10 epochs or fewer
    s = classifier_schedule(DiPSTrainConfig(epochs=50, classifier_epochs=6, classifier_lr_step=2))
    assert (s.epochs, s.lr_step) == (6, 2)  # both given: taken as they are


def test_config_epochs_and_classifier_epochs_are_both_honoured(inputs, synthetic_small, tmp_path):
    """``--config cub_dips`` (50 epochs): --epochs shortens both stages, --classifier-epochs sets the first."""
    import csv

    root, _ = inputs
    base = ["train", "--config", "cub_dips", "--data", str(synthetic_small), "--proposals", str(root / "proposals"),
            "--encoder", "tedloc_vit_tiny", "--no-pretrained", "--encoder-run", str(root / "vit"),
            "--input-size", "32", "--resize-size", "36", "--batch-size", "8", "--min-size", "0.05",
            "--fg-count", "5", "--bg-count", "5", "--crf-scale", "0.5"]

    def rows(path):
        with open(path) as f:
            return list(csv.DictReader(f))

    assert main([*base, "--out", str(tmp_path / "a"), "--epochs", "1"]) == 0
    assert len(rows(tmp_path / "a" / "classifier" / "metrics.csv")) == 1
    assert len(rows(tmp_path / "a" / "metrics.csv")) == 1
    assert main([*base, "--out", str(tmp_path / "b"), "--epochs", "1", "--classifier-epochs", "3"]) == 0
    stage1 = rows(tmp_path / "b" / "classifier" / "metrics.csv")
    assert len(stage1) == 3 and len(rows(tmp_path / "b" / "metrics.csv")) == 1


def test_the_crf_gain_scales_the_crf_term(tmp_path):
    torch.manual_seed(0)
    cfg = DiPSTrainConfig(encoder="tedloc_vit_tiny", input_size=32, top_k=1, fg_count=5, bg_count=5, crf_scale=0.5)
    net = build_dips(cfg, 4)
    cache = _cache(tmp_path, [[((2, 2, 13, 13), 0)]] * 2)
    views = torch.stack([View((32, 32), (32, 32), (0, 0, 32, 32)).to_tensor()] * 2)
    batch = {"index": torch.arange(2), "view": views, "label": torch.zeros(2, dtype=torch.long),
             "image": torch.randn(2, 3, 32, 32)}
    terms = {gain: DecoderStage(net, None, cache, None, None, DiPSTrainConfig(**{**cfg.__dict__, "crf_gain": gain}))
             .loss_terms(net.decoder, batch, 0)["crf"] for gain in (1.0, 0.5)}
    assert terms[0.5].total.item() == pytest.approx(0.5 * terms[1.0].total.item(), rel=1e-5)
    with pytest.raises(TedlocError, match="crf_gain"):
        DiPSTrainConfig(crf_gain=0.0)


def test_proposals_take_their_settings_from_a_dips_config(inputs, synthetic_small, tmp_path, capsys):
    from tedloc.cli import build_parser
    from tedloc.utils.config_files import read_config_file

    root, _ = inputs
    config = tmp_path / "c.yaml"
    config.write_text("method: dips\nencoder: tedloc_vit_tiny\ninput_size: 32\nheads: [0, 1]\nmin_size: 0.1\n"
                      "top_k: 2\nlr: 0.5\n")
    args = ["proposals", "--config", str(config), "--data", str(synthetic_small), "--classifier-run",
            str(root / "cnn"), "--encoder-run", str(root / "vit")]
    assert main([*args, "--out", str(tmp_path / "p")]) == 0
    cache = ProposalCache(tmp_path / "p")
    assert (cache.k, cache.settings["min_size"], cache.settings["heads"]) == (2, 0.1, [0, 1])
    assert main([*args, "--out", str(tmp_path / "q"), "--k", "1", "--min-size", "0.05"]) == 0  # options override
    cache = ProposalCache(tmp_path / "q")
    assert (cache.k, cache.settings["min_size"]) == (1, 0.05)
    config.write_text("method: tedloc\n")
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    assert "not of DiPS" in capsys.readouterr().err and not (tmp_path / "r").exists()
    for name in ("cub_dips", "ilsvrc_dips", "cub_dips_thesis", "ilsvrc_dips_thesis"):  # the shipped configs
        argv = ["proposals", "--config", name, "--data", "D", "--out", "O", "--classifier-run", "C"]
        parsed = build_parser(argv).parse_args(argv)
        values = read_config_file(name)
        assert (parsed.k, parsed.min_size, parsed.encoder, parsed.pretrained) == (
            values["top_k"], values["min_size"], values["encoder"], True)
