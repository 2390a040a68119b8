"""Read-only part of the example: the fixed evaluation. Do not modify.

The "model" is its hyperparameters; its loss is a known function of them, with the optimum at
LEARNING_RATE = 0.03, DEPTH = 6, WARMUP_RATIO = 0.1, where val_loss = 1.0. Noise depends only on
ARUN_SEED, so the same code and seed give the same number.
"""

import math
import os
import random

OPTIMUM = {"LEARNING_RATE": 0.03, "DEPTH": 6, "WARMUP_RATIO": 0.1}
NOISE = 0.002


def evaluate(learning_rate, depth, warmup_ratio):
    """The validation loss of a run with these hyperparameters."""
    if not math.isfinite(learning_rate) or learning_rate <= 0:
        return float("nan")
    loss = 1.0
    loss += 0.5 * (math.log10(learning_rate) - math.log10(OPTIMUM["LEARNING_RATE"])) ** 2
    loss += 0.01 * (depth - OPTIMUM["DEPTH"]) ** 2
    loss += 0.4 * (warmup_ratio - OPTIMUM["WARMUP_RATIO"]) ** 2
    seed = int(os.environ.get("ARUN_SEED", "42"))
    return loss + random.Random(seed).gauss(0.0, NOISE)
