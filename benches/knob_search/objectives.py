"""Objective functions of the knob-search benchmark, written once for every method.

The Rust bench (`cargo bench --bench knob_search`) asks `python3 objectives.py serve` for values
of arun's suggestions; `optuna_baselines.py` imports this module to run Optuna's TPE and random
search on the very same functions. Each function takes the knobs as a pipeline declares them and
returns a loss to minimise, or None for a crash (a diverged or out-of-memory run).

Noise is Gaussian, drawn from (objective, seed, trial number) alone: every method sees the same
noise on its n-th trial of a given seed. Regret is judged on the noise-free value of the trial a
run would keep, the one with the best observed (noisy) value.

Standard library only, so that `python3` runs it anywhere.
"""

import json
import math
import random
import sys


def lr_valley(p):
    """A narrow valley in log learning rate whose centre moves with warmup (more warmup lets a
    larger rate train), a weak pull towards it from afar, divergence (a crash) above it."""
    lr, warmup, decay = p["LR"], p["WARMUP_RATIO"], p["WEIGHT_DECAY"]
    lr_best = 3e-3 * (1.0 + 4.0 * warmup)
    x = math.log10(lr / lr_best)
    if x > 0.6:
        return None
    return (
        2.0
        + 1.2 * (1.0 - math.exp(-((x / 0.25) ** 2)))
        + 0.15 * x * x
        + 0.8 * (warmup - 0.1) ** 2
        + 0.03 * (math.log10(decay / 0.05)) ** 2
    )


def depth_width(p):
    """Depth and width of a transformer trained for a fixed compute budget (a Chinchilla-style
    loss in parameters and tokens), an aspect-ratio preference, a batch size whose best value
    grows with the model, and out-of-memory crashes for large activations."""
    depth, width, batch = p["DEPTH"], p["WIDTH"], p["BATCH_SIZE"]
    if depth * width * batch > 2**22:
        return None
    params = 12.0 * depth * width * width
    tokens = 3e17 / (6.0 * params)
    loss = 1.69 + 406.4 / params**0.34 + 410.7 / tokens**0.28
    loss += 0.02 * (math.log2(width / depth) - 6.0) ** 2
    batch_best = 64.0 * (params / 1e8) ** 0.3
    loss += 0.015 * (math.log2(batch / batch_best)) ** 2
    return loss


OPTIMIZERS = {
    # base loss, best learning rate, best weight decay
    "adamw": (3.10, 3e-3, 0.1),
    "muon": (3.02, 2e-2, 0.01),
    "lion": (3.08, 3e-4, 0.3),
    "sgd": (3.30, 0.1, 1e-3),
}
ACTIVATIONS = {"relu": 0.05, "gelu": 0.015, "relu2": 0.0, "silu": 0.01}


def categorical(p):
    """Optimizer and activation (choices) with a learning rate whose best value depends on the
    optimizer, a weight decay likewise, and one bad pairing (sgd with relu2)."""
    optimizer, activation = p["OPTIMIZER"].strip('"'), p["ACTIVATION"].strip('"')
    base, lr_best, decay_best = OPTIMIZERS[optimizer]
    x = math.log10(p["LR"] / lr_best)
    if x > 0.7:
        return None
    loss = base + ACTIVATIONS[activation] + 0.35 * x * x
    loss += 0.04 * math.log10(p["WEIGHT_DECAY"] / decay_best) ** 2
    if optimizer == "sgd" and activation == "relu2":
        loss += 0.15
    return loss


def branin(p):
    """Branin-Hoo on [-5, 10] x [0, 15]; three global minima of 0.397887."""
    x1, x2 = p["X1"], p["X2"]
    a, b, c = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi
    r, s, t = 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x2 - b * x1 * x1 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


HARTMANN_A = [
    [10, 3, 17, 3.5, 1.7, 8],
    [0.05, 10, 17, 0.1, 8, 14],
    [3, 3.5, 1.7, 10, 17, 8],
    [17, 8, 0.05, 10, 0.1, 14],
]
HARTMANN_P = [
    [1312, 1696, 5569, 124, 8283, 5886],
    [2329, 4135, 8307, 3736, 1004, 9991],
    [2348, 1451, 3522, 2883, 3047, 6650],
    [4047, 8828, 8732, 5743, 1091, 381],
]
HARTMANN_ALPHA = [1.0, 1.2, 3.0, 3.2]


def hartmann6(p):
    """Hartmann-6 on [0, 1]^6; global minimum -3.32237."""
    x = [p[f"X{i + 1}"] for i in range(6)]
    total = 0.0
    for alpha, a, q in zip(HARTMANN_ALPHA, HARTMANN_A, HARTMANN_P):
        inner = sum(a[j] * (x[j] - q[j] * 1e-4) ** 2 for j in range(6))
        total -= alpha * math.exp(-inner)
    return total


def floats(names, low, high, scale="linear"):
    return [{"name": n, "kind": "float", "scale": scale, "min": low, "max": high} for n in names]


OBJECTIVES = {
    "lr_valley": {
        "function": lr_valley,
        "knobs": [
            {"name": "LR", "kind": "float", "scale": "log", "min": 1e-5, "max": 1.0},
            {"name": "WARMUP_RATIO", "kind": "float", "scale": "linear", "min": 0.0, "max": 0.5},
            {"name": "WEIGHT_DECAY", "kind": "float", "scale": "log", "min": 1e-4, "max": 1.0},
        ],
        "start": {"LR": 1e-3, "WARMUP_RATIO": 0.0, "WEIGHT_DECAY": 0.1},
        "noise": 0.01,
        "optimum": 2.0,
    },
    "depth_width": {
        "function": depth_width,
        "knobs": [
            {"name": "DEPTH", "kind": "int", "min": 2, "max": 32},
            {"name": "WIDTH", "kind": "pow2", "min": 64, "max": 4096},
            {"name": "BATCH_SIZE", "kind": "pow2", "min": 8, "max": 1024},
        ],
        "start": {"DEPTH": 4, "WIDTH": 256, "BATCH_SIZE": 32},
        "noise": 0.005,
        "optimum": None,  # found by enumeration below
    },
    "categorical": {
        "function": categorical,
        "knobs": [
            {"name": "OPTIMIZER", "kind": "choice",
             "choices": ['"adamw"', '"muon"', '"lion"', '"sgd"']},
            {"name": "ACTIVATION", "kind": "choice",
             "choices": ['"relu"', '"gelu"', '"relu2"', '"silu"']},
            {"name": "LR", "kind": "float", "scale": "log", "min": 1e-5, "max": 1.0},
            {"name": "WEIGHT_DECAY", "kind": "float", "scale": "log", "min": 1e-4, "max": 1.0},
        ],
        "start": {"OPTIMIZER": '"adamw"', "ACTIVATION": '"gelu"', "LR": 1e-3, "WEIGHT_DECAY": 0.1},
        "noise": 0.01,
        "optimum": 3.02,
    },
    "branin": {
        "function": branin,
        "knobs": [
            {"name": "X1", "kind": "float", "scale": "linear", "min": -5.0, "max": 10.0},
            {"name": "X2", "kind": "float", "scale": "linear", "min": 0.0, "max": 15.0},
        ],
        "start": {"X1": 2.5, "X2": 7.5},
        "noise": 0.1,
        "optimum": 0.397887,
    },
    "hartmann6": {
        "function": hartmann6,
        "knobs": floats([f"X{i + 1}" for i in range(6)], 0.0, 1.0),
        "start": {f"X{i + 1}": 0.5 for i in range(6)},
        "noise": 0.05,
        "optimum": -3.32237,
    },
}


def _depth_width_optimum():
    best = math.inf
    for depth in range(2, 33):
        for w in range(6, 13):
            for b in range(3, 11):
                value = depth_width({"DEPTH": depth, "WIDTH": 2**w, "BATCH_SIZE": 2**b})
                if value is not None:
                    best = min(best, value)
    return best


OBJECTIVES["depth_width"]["optimum"] = _depth_width_optimum()


def observe(name, seed, trial, params):
    """(noisy value, true value) of trial number `trial` of run `seed`; (None, None) for a crash."""
    objective = OBJECTIVES[name]
    true = objective["function"](params)
    if true is None:
        return None, None
    noise = random.Random(f"{name}:{seed}:{trial}").gauss(0.0, objective["noise"])
    return true + noise, true


def describe():
    return [
        {k: v for k, v in dict(objective, name=name).items() if k != "function"}
        for name, objective in OBJECTIVES.items()
    ]


def serve():
    """One JSON request per line on stdin, one JSON answer per line on stdout."""
    for line in sys.stdin:
        request = json.loads(line)
        value, true = observe(request["objective"], request["seed"], request["trial"], request["params"])
        print(json.dumps({"value": value, "true": true}), flush=True)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "describe"
    if command == "serve":
        serve()
    else:
        print(json.dumps(describe(), indent=1))
