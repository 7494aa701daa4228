"""Schedules of a training run as functions of the optimizer step (so a resumed run follows the
same schedule as an uninterrupted one): the learning rate and the annealed neuron threshold."""

from __future__ import annotations

import math

from memspice.train.config import TrainConfig

#: The cosine decay ends at this fraction of the initial learning rate.
LR_FLOOR = 0.05


def learning_rates(config: TrainConfig, step: int, steps_per_epoch: int) -> tuple[float, ...]:
    """The learning rate of each of the optimizer's parameter groups at ``step``: ``config.lr``
    (one group), or ``config.layer_lr`` (one group per crossbar), each decayed by a cosine from
    its value to ``LR_FLOOR`` of it over the run, or, with ``config.lr_restart_epochs``, over every
    cycle of that many epochs (warm restarts, SGDR: Loshchilov & Hutter, ICLR 2017)."""
    cycle = (config.lr_restart_epochs or config.epochs) * steps_per_epoch
    phase = (step % cycle) / cycle if config.lr_restart_epochs else min(step / max(cycle, 1), 1.0)
    factor = LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * phase))
    return tuple(lr * factor for lr in (config.layer_lr or (config.lr,)))


def annealed_threshold(config: TrainConfig, step: int, steps_per_epoch: int, device_value: float) -> float | None:
    """The M1 threshold ``th1`` (V) at ``step``: from ``config.anneal_threshold`` up to
    ``device_value`` linearly over ``config.anneal_epochs`` epochs; ``None`` once it has
    arrived, or without annealing (the device's own value applies). Lower thresholds let spikes
    through several layers early in training (threshold annealing: Eshraghian & Lu, 'The
    fine line between dead neurons and sparsity in binarized spiking neural networks', 2022)."""
    if config.anneal_threshold is None:
        return None
    progress = step / (config.anneal_epochs * steps_per_epoch)
    if progress >= 1:
        return None
    return config.anneal_threshold + (device_value - config.anneal_threshold) * progress
