"""A scripted coding agent for arun's tests.

It reads the plan (JSON, path in $PLAN) and applies the step for $ARUN_EXPERIMENT: set
constants in train.py, misbehave as asked, print a DESCRIPTION line. Each call is logged to
$PLAN.calls as one JSON line, with the prompt it was given on stdin.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

GIT = ["git", "-c", "user.name=agent", "-c", "user.email=agent@example.com"]


def set_constant(source, name, value):
    literal = json.dumps(value) if isinstance(value, str) else repr(value)
    return re.sub(rf"^{name} = .*$", f"{name} = {literal}", source, count=1, flags=re.M)


def kill_arun_once(marker):
    if os.path.exists(marker):
        return
    open(marker, "w").close()
    with open(f"/proc/{os.getppid()}/stat") as f:
        arun = int(f.read().rsplit(")", 1)[1].split()[1])
    os.kill(arun, signal.SIGKILL)
    time.sleep(0.5)


def main():
    plan_path = os.environ["PLAN"]
    with open(plan_path) as f:
        plan = json.load(f)
    n = os.environ["ARUN_EXPERIMENT"]
    task = os.environ["ARUN_TASK"]
    prompt = sys.stdin.read()
    with open(plan_path + ".calls", "a") as f:
        f.write(json.dumps({"n": int(n), "task": task, "prompt": prompt}) + "\n")
    if task == "summary":
        print("- try a smaller learning rate\n- try a larger batch")
        return
    step = plan.get(n, {"LR": round(0.1 / (int(n) + 1), 6)})
    if step.get("kill-arun-once"):
        kill_arun_once(plan_path + f".killed-{n}")
    if "sleep" in step:
        time.sleep(step["sleep"])
    if "exit" in step:
        print("agent error: something went wrong", file=sys.stderr)
        sys.exit(step["exit"])
    if not step.get("nothing"):
        with open("train.py") as f:
            source = f.read()
        for name in ("LR", "MODE", "MEM_MB"):
            if name in step:
                source = set_constant(source, name, step[name])
        with open("train.py", "w") as f:
            f.write(source)
    for extra in step.get("also", []):
        if extra == "edit-read-only":
            with open("prepare.py", "a") as f:
                f.write("SEQ_LEN = 4096\n")
        elif extra == "edit-outside":
            with open("README.md", "a") as f:
                f.write("notes from the agent\n")
            os.makedirs("notes", exist_ok=True)
            with open("notes/idea.txt", "w") as f:
                f.write("an idea\n")
        elif extra == "git-commit":
            subprocess.run(GIT + ["commit", "-qam", "agent commit"], check=True)
        elif extra == "git-checkout":
            subprocess.run(GIT + ["checkout", "-q", "-b", "agent-branch"], check=True)
        elif extra == "add-lines":
            with open("train.py", "a") as f:
                f.write("".join(f"# note {i}\n" for i in range(30)))
        elif extra == "remove-padding":
            with open("train.py") as f:
                kept = [line for line in f if not line.startswith("# padding")]
            with open("train.py", "w") as f:
                f.write("".join(kept))
        elif extra == "delete-run-files":
            subprocess.run(["rm", "-rf", ".arun", "results.tsv"], check=True)
    description = step.get("description")
    if description is None:
        parts = [f"{k} {step[k]}" for k in ("LR", "MODE", "MEM_MB") if k in step]
        description = "set " + ", ".join(parts) if parts else "no change"
    print("thinking about the change")
    print(f"DESCRIPTION: {description}")


if __name__ == "__main__":
    main()
