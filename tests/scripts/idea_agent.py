"""A scripted research agent for arun's tree-search tests.

train.py holds `IDEAS = "a,b"`: the ideas applied so far. Each call adds one idea to the code it
is given, the first of its list that is not applied and that it has not tried on this same code
before (it remembers in $PLAN.memory, as an agent would from the prompt's "already tried"). A
draft (the prompt says so) takes an idea that no earlier draft took. Each call is logged to
$PLAN.calls with the prompt.
"""

import json
import os
import re
import sys

IDEAS = ["a", "b", "c"] + [f"t{i}" for i in range(1, 40)]


def main():
    prompt = sys.stdin.read()
    plan = os.environ["PLAN"]
    n = int(os.environ["ARUN_EXPERIMENT"])
    task = os.environ["ARUN_TASK"]
    with open(plan + ".calls", "a") as f:
        f.write(json.dumps({"n": n, "task": task, "prompt": prompt}) + "\n")
    if task == "summary":
        print("- try idea d")
        return
    memory_path = plan + ".memory"
    memory = {"tried": {}, "drafts": []}
    if os.path.exists(memory_path):
        with open(memory_path) as f:
            memory = json.load(f)
    with open("train.py") as f:
        source = f.read()
    current = re.search(r'^IDEAS = "(.*)"$', source, re.M).group(1)
    applied = [i for i in current.split(",") if i]
    key = ",".join(sorted(applied))
    tried = memory["tried"].setdefault(key, [])
    draft = "This is a draft" in prompt or "Broaden:" in prompt
    for idea in IDEAS:
        if idea in applied or idea in tried or (draft and idea in memory["drafts"]):
            continue
        break
    tried.append(idea)
    if draft:
        memory["drafts"].append(idea)
    with open(memory_path, "w") as f:
        json.dump(memory, f)
    new = ",".join(applied + [idea])
    with open("train.py", "w") as f:
        f.write(re.sub(r'^IDEAS = ".*"$', f'IDEAS = "{new}"', source, count=1, flags=re.M))
    print(f"DESCRIPTION: add idea {idea}")


if __name__ == "__main__":
    main()
