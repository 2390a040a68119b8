"""A scripted model server for arun's tests, speaking the OpenAI chat-completions protocol.

    python3 chat_server.py SCRIPT.json

It listens on a free port of 127.0.0.1 and prints `port <N>` on its first line of stdout. Each
POST to /v1/chat/completions is checked for the shape real servers require (JSON body, `model`,
`messages` with `role` and string `content`, the last one from the user, the `Authorization`
header when the script names a key); a request that breaks a rule gets HTTP 400 and the
problem is logged. Answers come from the script in order:

    {"model": "test-model", "api_key": "sk-test", "answers": ["text", ...], "default": "text"}

After the scripted answers, `default` is repeated (or, without one, each request gets 500).
Streaming requests (`"stream": true`, as aider and litellm send) are answered as server-sent
events. Every request is appended to SCRIPT.json.requests as one JSON line:
{"path", "headers", "body", "problems"}.

GET /v1/models lists the model (some clients ask before chatting).
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

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        headers = {k: v for k, v in self.headers.items()}
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
        if isinstance(answer, dict) and "delay" in answer:
            time.sleep(answer["delay"])
            answer = answer.get("text", "")
        usage = {"prompt_tokens": 1000 + index, "completion_tokens": 100, "total_tokens": 1100 + index}
        model = body.get("model", "test-model")
        if body.get("stream"):
            self.stream(answer, model, usage)
            return
        self.reply(200, {
            "id": f"chatcmpl-{index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }],
            "usage": usage,
        })

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
            if with_usage:
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
