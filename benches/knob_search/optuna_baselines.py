"""Optuna's samplers (TPE, independent TPE, GP, random) on the knob-search benchmark's objectives.

`tpe` is Optuna's default TPESampler, which since Optuna 5.0 is the multivariate TPE for a single
objective (`multivariate=True`); `tpe_indep` is the independent (univariate) TPE of earlier
versions.

Run by `cargo bench --bench knob_search` with the Python of benches/.venv (made by setup-venv.sh,
Optuna from PyPI); prints one JSON object: the checkpoints (in trial order), and for each
objective, method and seed, the regret after each checkpoint's number of trials. Each study is driven through Optuna's ask/tell interface with
the knobs as the pipeline declares them (a `pow2` knob is its exponent, as one would write it for
Optuna), and gets the same first trial as arun: the starting assignment (the baseline).

    python optuna_baselines.py --seeds 25 --trials 60 --checkpoints 15,30,60

GPSampler needs PyTorch and SciPy in the venv; without them the `gp` method is left out (its
column reads n/a).
"""

import argparse
import json
import math
import sys
import warnings

import optuna

import objectives

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def distributions(knobs):
    out = {}
    for knob in knobs:
        kind = knob["kind"]
        if kind == "float":
            out[knob["name"]] = optuna.distributions.FloatDistribution(
                knob["min"], knob["max"], log=knob.get("scale", "log") == "log"
            )
        elif kind == "int":
            out[knob["name"]] = optuna.distributions.IntDistribution(knob["min"], knob["max"])
        elif kind == "pow2":
            low, high = math.ceil(math.log2(knob["min"])), math.floor(math.log2(knob["max"]))
            out[knob["name"]] = optuna.distributions.IntDistribution(low, high)
        elif kind == "choice":
            out[knob["name"]] = optuna.distributions.CategoricalDistribution(knob["choices"])
    return out


def to_optuna(knobs, params):
    return {
        k["name"]: int(math.log2(params[k["name"]])) if k["kind"] == "pow2" else params[k["name"]]
        for k in knobs
    }


def from_optuna(knobs, params):
    return {
        k["name"]: 2 ** params[k["name"]] if k["kind"] == "pow2" else params[k["name"]]
        for k in knobs
    }


def run(name, method, seed, trials, checkpoints):
    objective = objectives.OBJECTIVES[name]
    knobs = objective["knobs"]
    if method == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed)
    elif method == "tpe_indep":
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=False)
    elif method == "gp":
        sampler = optuna.samplers.GPSampler(seed=seed)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    study.enqueue_trial(to_optuna(knobs, objective["start"]))
    dists = distributions(knobs)
    best = (math.inf, None)  # (observed, true) of the trial a run would keep
    regrets = []
    for t in range(trials):
        trial = study.ask(fixed_distributions=dists)
        value, true = objectives.observe(name, seed, t, from_optuna(knobs, trial.params))
        if value is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, value)
            if value < best[0]:
                best = (value, true)
        if t + 1 in checkpoints:
            regrets.append(best[1] - objective["optimum"])
    return regrets


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=25)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--checkpoints", default="15,30,60")
    parser.add_argument("--methods", default="tpe,tpe_indep,gp,random")
    parser.add_argument("--objectives", default=",".join(objectives.OBJECTIVES))
    args = parser.parse_args()
    methods = args.methods.split(",")
    try:
        import scipy  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        if "gp" in methods:
            print("optuna: no torch/scipy, GPSampler left out", file=sys.stderr, flush=True)
            methods.remove("gp")
    # In trial order, as each run records them; the output says which they are.
    checkpoints = sorted(int(c) for c in args.checkpoints.split(","))
    out = {"optuna": optuna.__version__, "checkpoints": checkpoints, "results": {}}
    for name in args.objectives.split(","):
        for method in methods:
            seeds = range(args.first_seed, args.first_seed + args.seeds)
            runs = [run(name, method, s, args.trials, checkpoints) for s in seeds]
            out["results"].setdefault(name, {})[method] = runs
            print(f"optuna: {name} {method} done", file=sys.stderr, flush=True)
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
