"""The editable part of the example: hyperparameters and a "training" loop."""

import os
import time

from prepare import evaluate

# Hyperparameters
LEARNING_RATE = 0.001  # step size of the optimizer
DEPTH = 2  # number of layers
WARMUP_RATIO = 0.3  # fraction of the budget spent warming up


def main():
    budget = float(os.environ.get("ARUN_BUDGET_SECONDS", "10"))
    start = time.time()
    steps = 5
    for step in range(steps):
        time.sleep(min(budget, 1.0) / steps)
        print(f"step {step:03d} | lr {LEARNING_RATE:g} | depth {DEPTH}", flush=True)
    val_loss = evaluate(LEARNING_RATE, DEPTH, WARMUP_RATIO)
    if val_loss != val_loss:
        print("FAIL")
        raise SystemExit(1)
    print("---")
    print(f"val_loss:         {val_loss:.6f}")
    print(f"training_seconds: {time.time() - start:.1f}")
    print(f"peak_mem_mb:      {100.0 * DEPTH:.1f}")


if __name__ == "__main__":
    main()
