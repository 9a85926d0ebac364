"""OpenAI's CLIP release file (a TorchScript archive, what CLIP-ES loads) given as a local file: the CLIP tower and the
text encoder build it with QuickGELU, as OpenAI trained it, and with its own weights. The file is made here: a tiny
CLIP's state dict in a scripted module, the form of OpenAI's archives (open_clip reads the state dict back)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

TINY = dict(embed_dim=32, vision_cfg=dict(image_size=32, layers=2, width=64, patch_size=16, head_width=64),
            text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=2))  # OpenAI: 64-d heads


class _StateDictArchive(nn.Module):
    """A module whose state dict is ``state`` (buffers under the same dotted names), scriptable."""

    def __init__(self, state: dict[str, torch.Tensor]):
        super().__init__()
        for key, value in state.items():
            module, *path, leaf = [self, *key.split(".")]
            for part in path:
                if not hasattr(module, part):
                    module.add_module(part, nn.Module())
                module = getattr(module, part)
            module.register_buffer(leaf, value.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _openai_file(tmp_path):
    import open_clip

    torch.manual_seed(3)
    model = open_clip.model.CLIP(**TINY, quick_gelu=True).eval()
    model.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})  # OpenAI's files are fp16
    path = tmp_path / "ViT-tiny.pt"
    torch.jit.script(_StateDictArchive(model.state_dict())).save(str(path))
    return model, path


@pytest.mark.filterwarnings("ignore:`torch.jit")
def test_openai_release_file_is_built_with_quick_gelu_and_its_weights(tmp_path):
    import open_clip

    from tedloc.models.clip_vit import ClipSpec, create_open_clip
    from tedloc.text import create_text_encoder

    reference, path = _openai_file(tmp_path)
    model = create_open_clip(ClipSpec("ViT-B-16", str(path)))
    assert isinstance(model.visual.transformer.resblocks[0].mlp.gelu, open_clip.transformer.QuickGELU)
    assert isinstance(model.transformer.resblocks[0].mlp.gelu, open_clip.transformer.QuickGELU)
    torch.testing.assert_close(model.visual.conv1.weight, reference.visual.conv1.weight)
    tokens = open_clip.get_tokenizer("ViT-B-16")(["a photo of a dog"])
    with torch.no_grad():
        expected = torch.nn.functional.normalize(reference.encode_text(tokens).double(), dim=-1)
    embedding = create_text_encoder(f"open_clip:ViT-B-16@{path}")(["a photo of a dog"])
    torch.testing.assert_close(torch.from_numpy(embedding), expected, rtol=1e-5, atol=1e-6)
