#!/usr/bin/env python3
"""Scripted stand-ins for the coding-agent CLIs arun has presets for: claude, codex, gemini,
aider and opencode. The test links this file under each tool's name on PATH.

Each stand-in accepts exactly the options of its real tool that arun's preset uses (plus
`--model`, which pipelines add with `args`), fails like the real tool on any other option, reads
the prompt where the real tool reads it, carries out the plan step of tests/scripts/agent.py,
and prints its output in the real tool's format (JSON result, JSON events, or text) with the
cost and tokens the plan step names (`"cost"`, default 0.05 USD; `"tokens"`, default
[1000, 100]). A step with `"fail": "message"` reports a failure the tool's way.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import agent  # noqa: E402


class Parser(argparse.ArgumentParser):
    def error(self, message):
        # The real tools exit non-zero with a usage error too.
        sys.stderr.write(f"error: {message}\n")
        sys.exit(2)


def step():
    return agent.step_of(os.environ["ARUN_EXPERIMENT"])


def usage():
    data = step()
    tokens = data.get("tokens", [1000, 100])
    return data.get("cost", 0.05), tokens[0], tokens[1], data.get("fail")


def claude(argv):
    parser = Parser(prog="claude")
    parser.add_argument("-p", "--print", action="store_true", required=True)
    parser.add_argument("--output-format", choices=["text", "json", "stream-json"], required=True)
    parser.add_argument("--permission-mode", choices=["acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "plan"])
    parser.add_argument("--max-turns", type=int)
    parser.add_argument("--no-session-persistence", action="store_true")
    parser.add_argument("--model")
    args = parser.parse_args(argv)
    assert args.output_format == "json", "the preset asks for JSON"
    prompt = sys.stdin.read()
    lines = agent.act(prompt, "claude")
    cost, tokens_in, tokens_out, fail = usage()
    result = {
        "type": "result",
        "subtype": "error_during_execution" if fail else "success",
        "is_error": bool(fail),
        "duration_ms": 1234,
        "num_turns": 3,
        "result": fail or "\n".join(lines),
        "session_id": "00000000-0000-0000-0000-000000000000",
        "total_cost_usd": cost,
        "usage": {
            "input_tokens": tokens_in // 2,
            "cache_creation_input_tokens": tokens_in - tokens_in // 2,
            "cache_read_input_tokens": 0,
            "output_tokens": tokens_out,
        },
    }
    print(json.dumps(result))
    return 1 if fail else 0


def codex(argv):
    if not argv or argv[0] != "exec":
        sys.stderr.write("error: the stand-in only knows `codex exec`\n")
        return 2
    parser = Parser(prog="codex exec")
    parser.add_argument("--json", action="store_true", required=True)
    parser.add_argument("-s", "--sandbox", choices=["read-only", "workspace-write", "danger-full-access"])
    parser.add_argument("--ephemeral", action="store_true")
    parser.add_argument("--color", choices=["always", "never", "auto"])
    parser.add_argument("-m", "--model")
    parser.add_argument("prompt", nargs="?")
    args = parser.parse_args(argv[1:])
    prompt = sys.stdin.read() if args.prompt in (None, "-") else args.prompt
    print(json.dumps({"type": "thread.started", "thread_id": "thread-1"}), flush=True)
    print(json.dumps({"type": "turn.started"}), flush=True)
    lines = agent.act(prompt, "codex")
    cost, tokens_in, tokens_out, fail = usage()
    if fail:
        print(json.dumps({"type": "error", "message": fail}))
        print(json.dumps({"type": "turn.failed", "error": {"message": fail}}))
        return 1
    item = {"id": "item_1", "type": "agent_message", "text": "\n".join(lines)}
    print(json.dumps({"type": "item.completed", "item": item}))
    print(json.dumps({"type": "turn.completed", "usage": {
        "input_tokens": tokens_in, "cached_input_tokens": 0, "output_tokens": tokens_out}}))
    return 0


def gemini(argv):
    parser = Parser(prog="gemini")
    parser.add_argument("-o", "--output-format", choices=["text", "json", "stream-json"], required=True)
    parser.add_argument("--approval-mode", choices=["default", "auto_edit", "yolo", "plan"])
    parser.add_argument("--skip-trust", action="store_true")
    parser.add_argument("-p", "--prompt", required=True)
    parser.add_argument("-m", "--model")
    args = parser.parse_args(argv)
    # Gemini appends the -p text to what it reads on stdin.
    prompt = sys.stdin.read() + "\n\n" + args.prompt
    sys.stderr.write("Loaded cached credentials.\n")
    sys.stderr.flush()
    lines = agent.act(prompt, "gemini")
    cost, tokens_in, tokens_out, fail = usage()
    output = {
        "response": "" if fail else "\n".join(lines),
        "stats": {"models": {"gemini-2.5-pro": {
            "api": {"totalRequests": 1, "totalErrors": 0, "totalLatencyMs": 900},
            "tokens": {"prompt": tokens_in, "candidates": tokens_out,
                       "total": tokens_in + tokens_out, "cached": 0, "thoughts": 0, "tool": 0},
        }}},
    }
    if fail:
        output["error"] = {"type": "ApiError", "message": fail, "code": 1}
    print(json.dumps(output, indent=2))
    return 1 if fail else 0


def aider(argv):
    parser = Parser(prog="aider")
    parser.add_argument("--message-file", required=True)
    for flag in ("--yes-always", "--no-auto-commits", "--no-dirty-commits", "--no-gitignore",
                 "--no-check-update", "--no-show-model-warnings", "--no-analytics",
                 "--no-pretty", "--no-fancy-input", "--no-restore-chat-history"):
        parser.add_argument(flag, action="store_true")
    parser.add_argument("--map-tokens", type=int)
    parser.add_argument("--chat-history-file")
    parser.add_argument("--input-history-file")
    parser.add_argument("--file", action="append", default=[])
    parser.add_argument("--read", action="append", default=[])
    parser.add_argument("--model")
    args = parser.parse_args(argv)
    for path in args.file + args.read:
        if not os.path.exists(path):
            sys.stderr.write(f"error: {path} does not exist\n")
            return 1
    with open(args.message_file) as f:
        prompt = f.read()
    # Like aider, keep the chat history where the command line says.
    with open(args.chat_history_file, "a") as f:
        f.write(f"#### {prompt[:60]}\n")
    print(f"Aider v0.86.2\nModel: {args.model or 'gpt-4o'} with diff edit format")
    for path in args.file:
        print(f"Added {path} to the chat.")
    lines = agent.act(prompt, "aider")
    cost, tokens_in, tokens_out, fail = usage()
    for line in lines:
        print(line)
    if not fail:
        print(f"Applied edit to {args.file[0]}")
    print(f"Tokens: {tokens_in / 1000:.1f}k sent, {tokens_out} received. "
          f"Cost: ${cost:.4f} message, ${cost:.4f} session.")
    return 1 if fail else 0


def opencode(argv):
    if not argv or argv[0] != "run":
        sys.stderr.write("error: the stand-in only knows `opencode run`\n")
        return 2
    parser = Parser(prog="opencode run")
    parser.add_argument("--format", choices=["default", "json"], required=True)
    parser.add_argument("-m", "--model")
    parser.add_argument("message", nargs="*")
    args = parser.parse_args(argv[1:])
    prompt = sys.stdin.read() + " ".join(args.message)
    print(json.dumps({"type": "step_start", "part": {"type": "step-start"}}), flush=True)
    lines = agent.act(prompt, "opencode")
    cost, tokens_in, tokens_out, fail = usage()
    if fail:
        print(json.dumps({"type": "error", "error": {"name": "APIError", "data": {"message": fail}}}))
        return 1
    print(json.dumps({"type": "text", "part": {"type": "text", "text": "\n".join(lines)}}))
    print(json.dumps({"type": "step_finish", "part": {
        "type": "step-finish", "reason": "stop", "cost": cost,
        "tokens": {"input": tokens_in, "output": tokens_out, "reasoning": 0,
                   "cache": {"read": 0, "write": 0}}}}))
    return 0


TOOLS = {"claude": claude, "codex": codex, "gemini": gemini, "aider": aider, "opencode": opencode}

if __name__ == "__main__":
    sys.exit(TOOLS[os.path.basename(sys.argv[0])](sys.argv[1:]))
