"""A scripted coding agent for arun's tests.

It reads the plan (JSON, path in $PLAN) and applies the step for $ARUN_EXPERIMENT: set
constants in train.py, misbehave as asked, print a DESCRIPTION line. Each call is logged to
$PLAN.calls as one JSON line, with the prompt it was given on stdin; `answered <n>` goes to
$PLAN.answered when its answer is ready.
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


def step_of(n):
    """The plan's step for experiment `n`."""
    with open(os.environ["PLAN"]) as f:
        plan = json.load(f)
    return plan.get(n, {"LR": round(0.1 / (int(n) + 1), 6)})


def act(prompt, tool="agent"):
    """Logs the call, carries out the plan's step for $ARUN_EXPERIMENT and returns the lines
    the agent says. Exits like a failing agent when the step says so."""
    plan_path = os.environ["PLAN"]
    n = os.environ["ARUN_EXPERIMENT"]
    task = os.environ["ARUN_TASK"]
    with open(plan_path + ".calls", "a") as f:
        call = {"n": int(n), "task": task, "prompt": prompt, "tool": tool, "argv": sys.argv[1:]}
        f.write(json.dumps(call) + "\n")
    if task == "summary":
        return ["- try a smaller learning rate", "- try a larger batch"]
    step = step_of(n)
    for command in step.get("run", []):
        # Anything else a real agent might do in the repository, as a shell command.
        subprocess.run(command, shell=True, check=True)
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
    with open(plan_path + ".answered", "a") as f:
        # The answer is ready: what arun gets from here on is paid for.
        f.write(f"answered {n}\n")
    return ["thinking about the change", f"DESCRIPTION: {description}"]


def main():
    for line in act(sys.stdin.read()):
        print(line)


if __name__ == "__main__":
    main()
