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


OPTIMIZERS_BY_RATE = {
    # base loss, best learning rate (with the `xavier` init)
    "adamw": (3.06, 1e-3),
    "lion": (3.04, 1e-4),
    "sgdm": (3.12, 3e-2),
    "adafactor": (3.05, 3e-3),
}
INITS = {
    # loss offset, shift of the best log10 learning rate
    "normal": (0.03, -0.3),
    "xavier": (0.01, 0.0),
    "scaled": (0.00, 0.3),
}
SECOND_MOMENT = {
    # optimizers with a second moment: the best beta2
    "adamw": 0.95,
    "adafactor": 0.99,
}


def optimizer_init(p):
    """Optimizer (4) and initialisation (3) choices; the best learning rate depends on both, beta2
    matters only to the two optimizers with a second moment (each its own best), label smoothing
    is a weak knob of its own; sgdm with the `normal` init above its best rate, and lion above 2.5
    times its best rate, diverge."""
    optimizer, init = p["OPTIMIZER"].strip('"'), p["INIT"].strip('"')
    base, lr_best = OPTIMIZERS_BY_RATE[optimizer]
    offset, shift = INITS[init]
    x = math.log10(p["LR"]) - (math.log10(lr_best) + shift)
    if optimizer == "lion" and x > 0.4:
        return None
    if optimizer == "sgdm" and init == "normal" and x > 0.0:
        return None
    loss = base + offset + 0.25 * x * x
    if optimizer in SECOND_MOMENT:
        loss += 8.0 * (p["BETA2"] - SECOND_MOMENT[optimizer]) ** 2
    loss += 0.2 * (p["LABEL_SMOOTHING"] - 0.1) ** 2
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


# Held-out objectives: written before any retuning of the search (issue 18) and never used to
# choose its defaults; the bench reports them in their own table. Do not edit them to improve the
# numbers.

SCHEDULES = {
    # base loss, learning-rate multiplier of the best rate, best warmup steps
    "cosine": (0.00, 1.0, 400),
    "linear": (0.01, 0.6, 200),
    "constant": (0.04, 0.3, 1200),
}
NORMS = {
    # base loss, learning-rate multiplier, best dropout
    "layernorm": (0.02, 1.0, 0.1),
    "rmsnorm": (0.00, 2.0, 0.05),
    "none": (0.09, 0.25, 0.25),
}


def mixed_interact(p):
    """Schedule and normalisation (3 x 3 choices) with a learning rate whose best value depends on
    both, a warmup whose best value depends on the schedule, a dropout whose best value depends on
    the normalisation, and one pairing that interacts badly (constant schedule without a norm
    diverges at high rates)."""
    schedule, norm = p["SCHEDULE"].strip('"'), p["NORM"].strip('"')
    s_base, s_mult, warmup_best = SCHEDULES[schedule]
    n_base, n_mult, dropout_best = NORMS[norm]
    lr_best = 1e-3 * s_mult * n_mult
    x = math.log10(p["LR"] / lr_best)
    if norm == "none" and x > 0.3:
        return None
    loss = 3.0 + s_base + n_base + 0.3 * x * x
    loss += 0.05 * (math.log1p(p["WARMUP_STEPS"]) - math.log1p(warmup_best)) ** 2
    loss += 0.6 * (p["DROPOUT"] - dropout_best) ** 2
    if schedule == "linear" and norm == "rmsnorm":
        loss -= 0.03
    return loss


def integer_heavy(p):
    """Layers, heads, head size (pow2), batch size (pow2) and gradient accumulation (ints): a loss
    in the model size and the tokens seen, heads that must be neither too few nor too many for the
    width, and an effective batch size (batch x accumulation) with its own best value."""
    layers, heads, head_dim = p["N_LAYERS"], p["N_HEADS"], p["HEAD_DIM"]
    batch, accum = p["BATCH_SIZE"], p["GRAD_ACCUM"]
    width = heads * head_dim
    params = 12.0 * layers * width * width
    steps = 2e5 / accum
    tokens = steps * batch * accum * 512
    loss = 1.8 + 300.0 / params**0.3 + 2e3 / tokens**0.3
    loss += 0.01 * (math.log2(head_dim) - 6.0) ** 2
    loss += 0.02 * (math.log2(width / layers) - 5.5) ** 2
    loss += 0.01 * (math.log2(batch * accum) - 8.0) ** 2
    if layers * width * batch > 2**21 * 3:
        return None
    return loss


def noisy_plateau(p):
    """A wide plateau with a shallow dip away from the centre of the ranges, noise as large as the
    dip; two of the four knobs barely matter."""
    a, b = math.log10(p["LR"]), p["BETA2"]
    c, d = p["CLIP"], p["EPS_EXP"]
    dip = math.exp(-(((a + 2.3) / 0.35) ** 2) - ((b - 0.95) / 0.04) ** 2)
    loss = 1.0 - 0.08 * dip
    loss += 0.005 * (c - 1.0) ** 2 + 0.002 * (d + 8.0) ** 2 / 4.0
    return loss


def high_dim(p):
    """Ten knobs: three that matter a lot and interact (a log learning rate whose best value moves
    with the batch size and the weight decay), three that matter a little, three that do not
    matter at all, and one choice."""
    lr, batch, decay = p["LR"], p["BATCH_SIZE"], p["WEIGHT_DECAY"]
    lr_best = 1e-3 * math.sqrt(batch / 64.0) * (1.0 + 5.0 * decay)
    x = math.log10(lr / lr_best)
    loss = 2.5 + 0.5 * x * x + 0.3 * (decay - 0.08) ** 2 / 0.01
    loss += 0.02 * (math.log2(batch) - 7.0) ** 2
    loss += 0.03 * (p["BETA1"] - 0.9) ** 2 / 0.01
    loss += 0.02 * (p["DROPOUT"] - 0.1) ** 2 / 0.01
    loss += 0.01 * (p["WARMUP"] - 0.05) ** 2 / 0.01
    loss += {'"adamw"': 0.0, '"lion"': 0.02, '"sgd"': 0.08}[p["OPTIMIZER"]]
    # SEED_OFFSET, LOG_EVERY and GRAD_NOISE do not change the loss at all.
    return loss


def crash_region(p):
    """A learning rate and a batch size whose best pair lies next to a region of divergence
    (too high a rate for too small a batch, or too little warmup), and a weight decay."""
    lr, batch, warmup, decay = p["LR"], p["BATCH_SIZE"], p["WARMUP_RATIO"], p["WEIGHT_DECAY"]
    stable = 4e-3 * math.sqrt(batch / 32.0) * (1.0 + 3.0 * warmup)
    if lr > stable:
        return None
    x = math.log10(lr / (0.8 * stable))
    loss = 2.2 + 0.4 * x * x + 0.1 * (math.log2(batch) - 7.0) ** 2 / 4.0
    loss += 0.5 * warmup * warmup
    loss += 0.03 * math.log10(decay / 0.03) ** 2
    return loss


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
    "optimizer_init": {
        "function": optimizer_init,
        "knobs": [
            {"name": "OPTIMIZER", "kind": "choice",
             "choices": ['"adamw"', '"lion"', '"sgdm"', '"adafactor"']},
            {"name": "INIT", "kind": "choice", "choices": ['"normal"', '"xavier"', '"scaled"']},
            {"name": "LR", "kind": "float", "scale": "log", "min": 1e-5, "max": 1.0},
            {"name": "BETA2", "kind": "float", "scale": "linear", "min": 0.9, "max": 0.999},
            {"name": "LABEL_SMOOTHING", "kind": "float", "scale": "linear", "min": 0.0, "max": 0.3},
        ],
        "start": {"OPTIMIZER": '"adamw"', "INIT": '"normal"', "LR": 1e-3, "BETA2": 0.999,
                  "LABEL_SMOOTHING": 0.0},
        "noise": 0.01,
        "optimum": 3.04,  # lion with the scaled init, every numeric knob at its best
    },
    "mixed_interact": {
        "function": mixed_interact,
        "set": "held-out",
        "knobs": [
            {"name": "SCHEDULE", "kind": "choice",
             "choices": ['"cosine"', '"linear"', '"constant"']},
            {"name": "NORM", "kind": "choice",
             "choices": ['"layernorm"', '"rmsnorm"', '"none"']},
            {"name": "LR", "kind": "float", "scale": "log", "min": 1e-5, "max": 1e-1},
            {"name": "WARMUP_STEPS", "kind": "int", "min": 0, "max": 3000},
            {"name": "DROPOUT", "kind": "float", "scale": "linear", "min": 0.0, "max": 0.5},
        ],
        "start": {"SCHEDULE": '"cosine"', "NORM": '"layernorm"', "LR": 3e-4,
                  "WARMUP_STEPS": 1000, "DROPOUT": 0.0},
        "noise": 0.02,
        "optimum": None,  # by search below
    },
    "integer_heavy": {
        "function": integer_heavy,
        "set": "held-out",
        "knobs": [
            {"name": "N_LAYERS", "kind": "int", "min": 1, "max": 24},
            {"name": "N_HEADS", "kind": "int", "min": 1, "max": 16},
            {"name": "HEAD_DIM", "kind": "pow2", "min": 16, "max": 256},
            {"name": "BATCH_SIZE", "kind": "pow2", "min": 4, "max": 512},
            {"name": "GRAD_ACCUM", "kind": "int", "min": 1, "max": 8},
        ],
        "start": {"N_LAYERS": 4, "N_HEADS": 4, "HEAD_DIM": 32, "BATCH_SIZE": 16, "GRAD_ACCUM": 1},
        "noise": 0.005,
        "optimum": None,  # by enumeration below
    },
    "noisy_plateau": {
        "function": noisy_plateau,
        "set": "held-out",
        "knobs": [
            {"name": "LR", "kind": "float", "scale": "log", "min": 1e-5, "max": 1.0},
            {"name": "BETA2", "kind": "float", "scale": "linear", "min": 0.8, "max": 0.999},
            {"name": "CLIP", "kind": "float", "scale": "linear", "min": 0.1, "max": 5.0},
            {"name": "EPS_EXP", "kind": "int", "min": -12, "max": -4},
        ],
        "start": {"LR": 1e-3, "BETA2": 0.99, "CLIP": 1.0, "EPS_EXP": -8},
        "noise": 0.04,
        "optimum": None,  # by search below
    },
    "high_dim": {
        "function": high_dim,
        "set": "held-out",
        "knobs": [
            {"name": "LR", "kind": "float", "scale": "log", "min": 1e-5, "max": 1e-1},
            {"name": "BATCH_SIZE", "kind": "pow2", "min": 8, "max": 1024},
            {"name": "WEIGHT_DECAY", "kind": "float", "scale": "linear", "min": 0.0, "max": 0.3},
            {"name": "BETA1", "kind": "float", "scale": "linear", "min": 0.5, "max": 0.99},
            {"name": "DROPOUT", "kind": "float", "scale": "linear", "min": 0.0, "max": 0.5},
            {"name": "WARMUP", "kind": "float", "scale": "linear", "min": 0.0, "max": 0.3},
            {"name": "OPTIMIZER", "kind": "choice", "choices": ['"adamw"', '"lion"', '"sgd"']},
            {"name": "SEED_OFFSET", "kind": "int", "min": 0, "max": 100},
            {"name": "LOG_EVERY", "kind": "int", "min": 1, "max": 500},
            {"name": "GRAD_NOISE", "kind": "float", "scale": "linear", "min": 0.0, "max": 1.0},
        ],
        "start": {"LR": 1e-4, "BATCH_SIZE": 32, "WEIGHT_DECAY": 0.0, "BETA1": 0.9,
                  "DROPOUT": 0.0, "WARMUP": 0.0, "OPTIMIZER": '"adamw"', "SEED_OFFSET": 0,
                  "LOG_EVERY": 100, "GRAD_NOISE": 0.0},
        "noise": 0.01,
        "optimum": None,  # analytic, below
    },
    "crash_region": {
        "function": crash_region,
        "set": "held-out",
        "knobs": [
            {"name": "LR", "kind": "float", "scale": "log", "min": 1e-5, "max": 1.0},
            {"name": "BATCH_SIZE", "kind": "pow2", "min": 8, "max": 1024},
            {"name": "WARMUP_RATIO", "kind": "float", "scale": "linear", "min": 0.0, "max": 0.5},
            {"name": "WEIGHT_DECAY", "kind": "float", "scale": "log", "min": 1e-4, "max": 1.0},
        ],
        "start": {"LR": 1e-3, "BATCH_SIZE": 32, "WARMUP_RATIO": 0.0, "WEIGHT_DECAY": 0.1},
        "noise": 0.01,
        "optimum": None,  # by search below
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


def _grid_optimum(name, grids):
    """The least true value over a grid of every knob (a fine one for floats)."""
    import itertools

    function = OBJECTIVES[name]["function"]
    best = math.inf
    for values in itertools.product(*grids.values()):
        value = function(dict(zip(grids.keys(), values)))
        if value is not None:
            best = min(best, value)
    return best


def _log_grid(low, high, n):
    return [low * (high / low) ** (i / (n - 1)) for i in range(n)]


def _lin_grid(low, high, n):
    return [low + (high - low) * i / (n - 1) for i in range(n)]


OBJECTIVES["mixed_interact"]["optimum"] = 3.0 + 0.01 - 0.03  # linear + rmsnorm at their best
OBJECTIVES["integer_heavy"]["optimum"] = _grid_optimum(
    "integer_heavy",
    {
        "N_LAYERS": range(1, 25),
        "N_HEADS": range(1, 17),
        "HEAD_DIM": [2**e for e in range(4, 9)],
        "BATCH_SIZE": [2**e for e in range(2, 10)],
        "GRAD_ACCUM": range(1, 9),
    },
)
OBJECTIVES["noisy_plateau"]["optimum"] = _grid_optimum(
    "noisy_plateau",
    {
        "LR": _log_grid(10**-2.8, 10**-1.8, 201),
        "BETA2": _lin_grid(0.9, 0.999, 199),
        "CLIP": [1.0],
        "EPS_EXP": [-8],
    },
)
OBJECTIVES["high_dim"]["optimum"] = 2.5 + 0.02 * 0.0  # every term at its best (batch 128)
OBJECTIVES["crash_region"]["optimum"] = _grid_optimum(
    "crash_region",
    {
        "LR": _log_grid(1e-5, 1.0, 1201),
        "BATCH_SIZE": [2**e for e in range(3, 11)],
        "WARMUP_RATIO": _lin_grid(0.0, 0.5, 101),
        "WEIGHT_DECAY": [0.03],
    },
)


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
