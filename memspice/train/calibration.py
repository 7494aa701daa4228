"""Calibration in the loop: a trimmed chip learns its neurons' threshold codes with its network running on it.

A trimmed chip (:mod:`memspice.hardware.chip`, "Trims") sets each neuron's threshold DAC from the
neuron's own offset; what the trims leave (the spread of on-conductances and of the repolarizing
switch, leakage, rest levels passed on through the buffers) still shifts the output layer's
first-spike race. :func:`calibrate` fits one integer per neuron, added to its DAC code
(``Chip.calibration``), by gradient descent on the readout's loss over labelled samples, with the
chip in the loop (the torch solver on that chip) and the synapses as programmed; the DAC's
rounding passes the gradient straight through. After each pass the rounded codes are scored on
the calibration samples, and the chip keeps the best codes seen, the factory's (all 0) included:
calibration never leaves a chip worse on what it was calibrated on. The network's weights do not
change: the same trained network serves every chip, and only the chip's codes are its own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from memspice.defaults import EVAL_BATCH_SIZE
from memspice.errors import ConfigError
from memspice.hardware import Chip
from memspice.solver.monitor import SolutionMonitor
from memspice.train.loop import Trained, evaluate

#: Passes over the calibration samples (``--calibrate-epochs``).
EPOCHS = 4
#: Adam's step at the start, in DAC codes; cosine-annealed to 0 over the calibration.
LEARNING_RATE = 1.0
#: Calibration samples per step.
BATCH_SIZE = 64


def calibrated_layers(layers: Sequence[int] | None, n_layers: int) -> list[int]:
    """``layers`` (from 1; None: all ``n_layers``) sorted, once each; one clear error for layers a
    network of ``n_layers`` layers does not have."""
    fitted = sorted(set(range(1, n_layers + 1) if layers is None else layers))
    if not fitted or not set(fitted) <= set(range(1, n_layers + 1)):
        raise ConfigError(f"calibration layers must be among the network's layers 1..{n_layers}; got "
                          f"{fitted if fitted else 'none'}")
    return fitted


def calibrate(trained: Trained, chip: Chip, x: np.ndarray, y: np.ndarray, epochs: int = EPOCHS,
              lr: float = LEARNING_RATE, batch_size: int = BATCH_SIZE, monitor: SolutionMonitor | None = None,
              progress: bool = False, layers: Sequence[int] | None = None) -> dict:
    """Fit ``chip``'s calibration codes (:meth:`Chip.set_calibration`) for ``trained`` on the
    labelled samples ``x`` (``(N, n_in)``, e.g. training images, never the test set) and ``y``
    (``(N,)``): ``epochs`` passes in an order drawn from the chip's seed, batches of
    ``batch_size``, Adam from ``lr`` codes per step, cosine-annealed; the best pass's codes are
    kept (module docstring). Leaves the chip calibrated (integer codes) and returns ``samples``,
    ``epochs``, ``accuracy`` (on the calibration samples: as trimmed, then after each pass),
    ``kept_pass`` (0: the factory codes), ``codes_changed`` (neurons whose code moved),
    ``largest_code`` and ``seconds``. ``monitor`` observes every solution (a new one if None).
    ``layers``: the layers (from 1) whose codes are fitted, the others' left at 0 (None: every
    layer); on a chip that trims its switches a layer whose codes are fitted runs outside the
    fused solver kernels, so fitting the output layer's alone is several times faster."""
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ConfigError(f"calibration epochs must be an integer >= 1; got {epochs!r}")
    if len(x) < 1 or len(x) != len(y):
        raise ConfigError(f"calibration needs labelled samples; got {len(x)} samples and {len(y)} labels")
    model = trained.model
    fitted = calibrated_layers(layers, len(model.sizes) - 1)
    model.check_chip(chip)
    steps = chip.dac_steps  # a clear error for a chip without threshold trims, before any work
    started = time.perf_counter()
    monitor = monitor or SolutionMonitor(context=f"calibration of a '{chip.spec.name}' chip")
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    codes = [torch.zeros(n, dtype=torch.float64, device=device, requires_grad=k in fitted)
             for k, n in enumerate(model.sizes[1:], start=1)]
    chip.set_calibration(codes)
    optimizer = torch.optim.Adam([c for c in codes if c.requires_grad], lr=lr)
    n_batches = -(-len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * n_batches)
    frozen = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)  # the network is the same on every chip: only the codes learn

    def score(candidate: list[torch.Tensor]) -> float:
        """Accuracy on the calibration samples with ``candidate`` codes (integers) set."""
        chip.set_calibration(candidate)
        try:
            return evaluate(model, trained.readout, trained.encoder, x, y, trained.config.n_steps, EVAL_BATCH_SIZE,
                            dtype, monitor=monitor, chip=chip)["acc"]
        finally:
            chip.set_calibration(codes)

    kept = [torch.zeros_like(c, device="cpu") for c in codes]
    accuracies = [score(kept)]
    kept_pass = 0
    try:
        for epoch in tqdm(range(epochs), desc=f"calibrating chip {chip.seed}", unit="pass", leave=False,
                          disable=not progress):
            order = np.random.default_rng([chip.seed, epoch]).permutation(len(x))
            for start in range(0, len(x), batch_size):
                index = torch.as_tensor(order[start:start + batch_size])
                xb = torch.as_tensor(x[index.numpy()], dtype=dtype, device=device)
                yb = torch.as_tensor(y[index.numpy()], device=device)
                solution = model(trained.encode(xb, index), chip=chip, samples=index)
                monitor.observe(solution)
                loss = trained.readout.loss(solution.v[-1], yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
            # integers a DAC can be set to (beyond ±2·steps a code only sits at the DAC's end)
            rounded = [c.detach().cpu().round().clamp(-2 * steps, 2 * steps) for c in codes]
            accuracies.append(score(rounded))
            if accuracies[-1] > accuracies[kept_pass]:
                kept, kept_pass = rounded, epoch + 1
    finally:
        for p, grad in zip(model.parameters(), frozen):
            p.requires_grad_(grad)
        chip.set_calibration(kept)
    final = [c.abs() for c in chip.calibration]
    return {"samples": len(x), "epochs": epochs, "accuracy": accuracies, "kept_pass": kept_pass,
            "codes_changed": int(sum((c > 0).sum().item() for c in final)),
            "largest_code": int(max(c.max().item() for c in final)), "seconds": time.perf_counter() - started}
