"""A method outside tedloc's package, registered the way a plugin would be: the contract tester runs it too.

"toy" trains one 1x1 convolution on top of fixed random features (logits = mean of its class maps),
with the engine, into a run folder; its localizer's map is the predicted class's map.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from tedloc.data import Preprocessing, load_dataset
from tedloc.engine import LossTerm, RunFolder, RunRecord, Schedule, Trainer
from tedloc.methods import Method, NetworkLocalizer, TrainConfig, option, register_method
from tedloc.utils.device import Runtime


@dataclass(kw_only=True)
class ToyConfig(TrainConfig):
    input_size: int = option(32, "side of the square input view")
    epochs: int = 1
    batch_size: int = 8
    lr: float = 0.1
    lr_step: int = 10
    weight_decay: float = 0.0
    selection: str = "last"


class ToyNet(nn.Module):
    def __init__(self, num_classes: int, preprocessing: Preprocessing):
        super().__init__()
        self.features = nn.Conv2d(3, 8, 4, stride=4)
        self.classes = nn.Conv2d(8, num_classes, 1)
        self.preprocessing = preprocessing

    def forward(self, x):
        maps = self.classes(F.relu(self.features(x)))
        return maps.mean(dim=(2, 3)), maps


class ToyLocalizer(NetworkLocalizer):
    map_kind = "class"

    @torch.no_grad()
    def predict(self, images):
        logits, maps = self.model(self.runtime.to_device(images))
        return logits.softmax(1), maps[torch.arange(len(maps)), logits.argmax(1)]


class _Task:
    def __init__(self, model, dataset, config):
        self.model, self.config = model, config
        self.data = model.preprocessing.dataset(dataset["train"], train=True, seed=config.seed)

    def trainable(self):
        return self.model

    def train_dataset(self):
        return self.data

    def make_optimizer(self, module):
        return torch.optim.SGD(module.parameters(), lr=self.config.lr)

    def loss_terms(self, module, batch, epoch):
        logits, _ = module(batch["image"])
        return {"loss": LossTerm(F.cross_entropy(logits, batch["label"], reduction="sum"), len(logits))}

    def validate(self, runtime):
        return {}

    def row(self, train, val):
        return {"train_loss": train["loss"]}


def train_toy(data, out, config: ToyConfig, resume: bool = True, *, runtime: Runtime) -> list[dict]:
    run, dataset = RunFolder(out), load_dataset(data)
    torch.manual_seed(config.seed)
    model = ToyNet(dataset.num_classes, Preprocessing(config.input_size))
    run.start({"config": asdict(config), "data": str(data), "class_names": dataset.class_names, "kind": "toy"},
              runtime)
    history = Trainer(Schedule.of(config), runtime).fit(_Task(model, dataset, config), run, resume=resume)
    run.save_model(model, RunRecord("toy", asdict(config), dataset.class_names, model.preprocessing, threshold=0.5,
                                    selection="last", selected_epoch=len(history), history=history))
    return history


def build_toy(config: ToyConfig, num_classes: int, weights: dict) -> ToyNet:
    return ToyNet(num_classes, Preprocessing(config.input_size))


METHOD = register_method(Method("toy", "a test method", run_kind="toy", config=ToyConfig, train=train_toy,
                                build=build_toy, localizer=ToyLocalizer))
