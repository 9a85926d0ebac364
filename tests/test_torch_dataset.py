"""The torch Dataset: reproducible views that do not depend on workers, and that resume exactly."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from tedloc.data import Preprocessing, View, WSOLImageDataset, load_dataset


def test_views_depend_only_on_seed_epoch_index(synthetic_small):
    split = load_dataset(synthetic_small)["train"]
    ds = WSOLImageDataset(split, Preprocessing(32, 40), train=True, seed=1)
    a = [ds[i] for i in range(4)]
    b = next(iter(DataLoader(ds, batch_size=4, num_workers=2)))
    assert torch.equal(torch.stack([x["image"] for x in a]), b["image"])
    assert torch.equal(torch.stack([x["view"] for x in a]), b["view"])
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["view"], a[0]["view"]) or not torch.equal(ds[1]["view"], a[1]["view"])
    ds.set_epoch(0)
    assert torch.equal(ds[0]["image"], a[0]["image"])


def test_eval_dataset(synthetic_small):
    split = load_dataset(synthetic_small)["test"]
    item = WSOLImageDataset(split, Preprocessing(64))[3]
    assert item["image"].shape == (3, 64, 64) and item["label"] == int(split.labels[3])
    assert View.from_tensor(item["view"]) == View((48, 48), (64, 64), (0, 0, 64, 64), False)
