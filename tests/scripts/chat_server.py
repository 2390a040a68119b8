"""A scripted model server for arun's tests, speaking the OpenAI chat-completions protocol.

    python3 chat_server.py SCRIPT.json

It listens on a free port of 127.0.0.1 and prints `port <N>` on its first line of stdout. Each
POST to /v1/chat/completions is checked for the shape real servers require (JSON body, `model`,
`messages` with `role` and string `content`, the last one from the user, the `Authorization`
header when the script names a key); a request that breaks a rule gets HTTP 400 and the
problem is logged. Answers come from the script in order:

    {"model": "test-model", "api_key": "sk-test", "answers": ["text", ...], "default": "text"}

After the scripted answers, `default` is repeated (or, without one, each request gets 500).
An answer may also be an object: `{"text": TEXT, "delay": SECONDS}` answers late;
`{"text": TEXT, "together": N}` answers once N such requests have arrived (or after 10
seconds), and appends `met` or `alone` to SCRIPT.json.together: a client that sends them one
after the other leaves the first one waiting alone;
`{"status": 401, "error": TEXT, "echo_authorization": true}` answers with that HTTP status and
an error body whose message ends with the request's Authorization header (as some servers
echo the key they were sent); `{"text": TEXT, "usage": USAGE}` reports USAGE instead of the
default token counts, `null` for none at all. A script-level `"usage"` does the same for every
answer.
Streaming requests (`"stream": true`, as aider and litellm send) are answered as server-sent
events. Every request is appended to SCRIPT.json.requests as one JSON line:
{"path", "headers", "body", "problems"}.

GET /v1/models lists the model (some clients ask before chatting).

POST /v1/messages speaks Anthropic's Messages protocol (streamed), for Claude Code pointed here
with ANTHROPIC_BASE_URL. Its answers follow the conversation instead of a list, with the
script's `"claude": {"file": ABSOLUTE PATH, "old": TEXT, "new": TEXT, "description": TEXT}`:
to a new prompt it calls the Read tool on the file, after the Read result the Edit tool
(old -> new), after the Edit result it answers `DESCRIPTION: <description>`. A summary prompt
gets two `- ` ideas; a request without tools (Claude Code's side requests) gets a short text.

POST /v1/responses speaks OpenAI's Responses protocol (streamed), for Codex CLI given this
server as its model provider. With the script's `"codex": {"command": SHELL COMMAND,
"description": TEXT}`: to a new prompt it calls the `exec_command` tool with the command, after
the tool's output it answers `DESCRIPTION: <description>`; a summary prompt gets two ideas.
"""

import http.server
import json
import sys
import threading
import time


def problems_of(body, headers, script):
    problems = []
    key = script.get("api_key")
    if key and headers.get("Authorization") != f"Bearer {key}":
        problems.append("missing or wrong Authorization header")
    if not isinstance(body, dict):
        return problems + ["the body is not a JSON object"]
    if body.get("model") != script.get("model", body.get("model")):
        problems.append(f"model is {body.get('model')!r}, not {script.get('model')!r}")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return problems + ["messages is not a non-empty list"]
    for i, message in enumerate(messages):
        if message.get("role") not in ("system", "user", "assistant"):
            problems.append(f"messages[{i}].role is {message.get('role')!r}")
        content = message.get("content")
        if isinstance(content, list):  # content parts, as some clients send
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str):
            problems.append(f"messages[{i}].content is not text")
    if messages[-1].get("role") != "user":
        problems.append("the last message is not from the user")
    temperature = body.get("temperature")
    if temperature is not None and not isinstance(temperature, (int, float)):
        problems.append("temperature is not a number")
    return problems


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    script = {}
    script_path = ""
    lock = threading.Lock()
    served = 0
    waiting = threading.Condition()
    waiters = 0

    def log_message(self, *args):
        pass

    def reply(self, status, payload, content_type="application/json"):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            model = self.script.get("model", "test-model")
            self.reply(200, {"object": "list", "data": [{"id": model, "object": "model"}]})
        else:
            self.reply(404, {"error": {"message": f"no route {self.path}"}})

    def wait_together(self, count):
        """Holds this request until `count` have arrived (at most 10 s), and notes which."""
        with Handler.waiting:
            Handler.waiters += 1
            Handler.waiting.notify_all()
            met = Handler.waiting.wait_for(lambda: Handler.waiters >= count, timeout=10)
        with self.lock:
            with open(self.script_path + ".together", "a") as f:
                f.write("met\n" if met else "alone\n")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        headers = {k: v for k, v in self.headers.items()}
        if self.path.split("?")[0].rstrip("/").endswith("/messages") and "claude" in self.script:
            self.anthropic(body, headers)
            return
        if self.path.split("?")[0].rstrip("/").endswith("/responses") and "codex" in self.script:
            self.openai_responses(body, headers)
            return
        problems = []
        if not self.path.rstrip("/").endswith("/chat/completions"):
            problems.append(f"POST to {self.path}, not /v1/chat/completions")
        if "application/json" not in (self.headers.get("Content-Type") or ""):
            problems.append("Content-Type is not application/json")
        problems += problems_of(body, self.headers, self.script)
        with self.lock:
            with open(self.script_path + ".requests", "a") as f:
                entry = {"path": self.path, "headers": headers, "body": body, "problems": problems}
                f.write(json.dumps(entry) + "\n")
            index = Handler.served
            if not problems:
                Handler.served += 1
        if problems:
            self.reply(400, {"error": {"message": "; ".join(problems), "type": "invalid_request_error"}})
            return
        answers = self.script.get("answers", [])
        if index < len(answers):
            answer = answers[index]
        elif "default" in self.script:
            answer = self.script["default"]
        else:
            self.reply(500, {"error": {"message": "the script has no more answers"}})
            return
        usage = {"prompt_tokens": 1000 + index, "completion_tokens": 100, "total_tokens": 1100 + index}
        usage = self.script.get("usage", usage)
        if isinstance(answer, dict):
            time.sleep(answer.get("delay", 0))
            if "together" in answer:
                self.wait_together(answer["together"])
            if "status" in answer:
                message = answer.get("error", "scripted error")
                if answer.get("echo_authorization"):
                    message += f" (Authorization: {self.headers.get('Authorization')})"
                self.reply(answer["status"], {"error": {"message": message}})
                return
            usage = answer.get("usage", usage)
            answer = answer.get("text", "")
        model = body.get("model", "test-model")
        if body.get("stream"):
            self.stream(answer, model, usage)
            return
        completion = {
            "id": f"chatcmpl-{index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }],
        }
        if usage is not None:
            completion["usage"] = usage
        self.reply(200, completion)

    def anthropic(self, body, headers):
        problems = []
        if self.headers.get("x-api-key") != self.script.get("api_key", self.headers.get("x-api-key")):
            problems.append("missing or wrong x-api-key header")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            problems.append("the body has no messages list")
        with self.lock:
            with open(self.script_path + ".requests", "a") as f:
                entry = {"path": self.path, "headers": headers, "body": body, "problems": problems}
                f.write(json.dumps(entry) + "\n")
        if problems:
            self.reply(400, {"type": "error", "error": {"type": "invalid_request_error",
                                                        "message": "; ".join(problems)}})
            return
        claude = self.script["claude"]
        last = body["messages"][-1]
        content = last.get("content")
        parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
        results = [p for p in parts if isinstance(p, dict) and p.get("type") == "tool_result"]
        text = "".join(p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text")
        if not body.get("tools"):
            block = {"type": "text", "text": "Research loop"}
        elif results:
            tool_ids = {}
            for message in body["messages"]:
                for part in message.get("content") if isinstance(message.get("content"), list) else []:
                    if isinstance(part, dict) and part.get("type") == "tool_use":
                        tool_ids[part["id"]] = part["name"]
            called = tool_ids.get(results[-1].get("tool_use_id"))
            if called == "Read":
                block = {"type": "tool_use", "id": "toolu_edit", "name": "Edit", "input": {
                    "file_path": claude["file"], "old_string": claude["old"],
                    "new_string": claude["new"], "replace_all": False}}
            else:
                block = {"type": "text", "text": f"Done.\nDESCRIPTION: {claude['description']}"}
        elif "most promising experiments to try next" in text:
            block = {"type": "text", "text": "- try a warmup\n- try cosine decay"}
        else:
            block = {"type": "tool_use", "id": "toolu_read", "name": "Read",
                     "input": {"file_path": claude["file"]}}
        self.anthropic_stream(block, body.get("model", "claude"), bool(body.get("stream")))

    def openai_responses(self, body, headers):
        problems = []
        key = self.script.get("api_key")
        if key and self.headers.get("Authorization") != f"Bearer {key}":
            problems.append("missing or wrong Authorization header")
        if not isinstance(body, dict) or not isinstance(body.get("input"), list):
            problems.append("the body has no input list")
        with self.lock:
            with open(self.script_path + ".requests", "a") as f:
                entry = {"path": self.path, "headers": headers, "body": body, "problems": problems}
                f.write(json.dumps(entry) + "\n")
        if problems:
            self.reply(400, {"error": {"message": "; ".join(problems), "type": "invalid_request_error"}})
            return
        codex = self.script["codex"]
        items = body["input"]
        texts = [part.get("text", "") for item in items if item.get("type") == "message"
                 for part in (item.get("content") or []) if isinstance(part, dict)]
        if any(item.get("type") == "function_call_output" for item in items):
            item = {"type": "message", "role": "assistant", "id": "msg_done", "content": [
                {"type": "output_text", "text": f"Done.\nDESCRIPTION: {codex['description']}",
                 "annotations": []}]}
        elif texts and "most promising experiments to try next" in texts[-1]:
            item = {"type": "message", "role": "assistant", "id": "msg_ideas", "content": [
                {"type": "output_text", "text": "- try a warmup\n- try cosine decay", "annotations": []}]}
        else:
            item = {"type": "function_call", "id": "fc_1", "call_id": "call_1",
                    "name": "exec_command", "arguments": json.dumps({"cmd": codex["command"]})}
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()

        def event(kind, data):
            data["type"] = kind
            self.wfile.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())

        response = {"id": "resp_1", "object": "response", "created_at": int(time.time()),
                    "status": "in_progress", "model": body.get("model"), "output": []}
        event("response.created", {"response": response})
        event("response.output_item.added", {"output_index": 0, "item": item})
        event("response.output_item.done", {"output_index": 0, "item": item})
        done = dict(response, status="completed", output=[item], usage={
            "input_tokens": 1000, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 1050})
        event("response.completed", {"response": done})
        self.wfile.flush()
        self.close_connection = True

    def anthropic_stream(self, block, model, stream):
        stop = "tool_use" if block["type"] == "tool_use" else "end_turn"
        usage = {"input_tokens": 1000, "output_tokens": 50}
        if not stream:
            self.reply(200, {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                             "content": [block], "stop_reason": stop, "stop_sequence": None,
                             "usage": usage})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()

        def event(kind, data):
            data["type"] = kind
            self.wfile.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())

        event("message_start", {"message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1}}})
        if block["type"] == "text":
            event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": block["text"]}})
        else:
            start = dict(block, input={})
            event("content_block_start", {"index": 0, "content_block": start})
            event("content_block_delta", {"index": 0, "delta": {
                "type": "input_json_delta", "partial_json": json.dumps(block["input"])}})
        event("content_block_stop", {"index": 0})
        event("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                "usage": {"output_tokens": usage["output_tokens"]}})
        event("message_stop", {})
        self.wfile.flush()
        self.close_connection = True

    def stream(self, answer, model, usage):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()

        def event(delta, finish=None, with_usage=False):
            chunk = {
                "id": "chatcmpl-stream",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if with_usage and usage is not None:
                chunk["usage"] = usage
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())

        event({"role": "assistant", "content": ""})
        for start in range(0, len(answer), 64):
            event({"content": answer[start:start + 64]})
        event({}, finish="stop", with_usage=True)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def main():
    Handler.script_path = sys.argv[1]
    with open(Handler.script_path) as f:
        Handler.script = json.load(f)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
