"""The training engine: one loop for every method (device, precision, torchrun, checkpoints, metrics)."""
from tedloc.engine.checkpoint import load_checkpoint, save_checkpoint
from tedloc.engine.distributed import Distributed
from tedloc.engine.run_folder import RunFolder
from tedloc.engine.run_record import RunRecord
from tedloc.engine.trainer import LossTerm, Schedule, Trainer, TrainingTask

__all__ = ["Trainer", "TrainingTask", "LossTerm", "Schedule", "Distributed", "save_checkpoint", "load_checkpoint",
           "RunFolder", "RunRecord"]

