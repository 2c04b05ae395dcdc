#!/usr/bin/env python3
"""Local stand-in for the Anthropic Messages API (loopback only), extended for control tests.

Derived from fake-anthropic-api.py. Differences:
  * every request is logged in full (system, messages; tool definitions reduced to names)
    as one JSON line with a wall-clock timestamp, so a test can see exactly what reached
    the model and when;
  * the "model" calls Bash several times in a row: while fewer than STEPS tool_result blocks
    follow the task prompt (the last user text containing "in the shell"), it answers with a
    tool_use `echo step-K | tee -a ran.log` (ran.log in the project dir
    proves which commands really ran); then a final text. STEPS comes from `steps=N` in the prompt, else
    from --steps (default 1). `par=N` in the prompt makes the first answer carry N tool_use
    blocks at once (`echo step-1` .. `echo step-N`), then a final text;
  * a user text that arrives after the task is done (e.g. a Stop-hook continuation) gets a
    short text answer that quotes it, so a test can count continuations;
  * --delay S makes the "model" think S seconds before each answer to a main (Bash-tool)
    request (logged at arrival), so a test can act while a run is still going (default 0).
Usage: fake-anthropic-steps.py PORT LOGFILE [--steps N] [--delay S]
Copied from shared/tools for the control tests (tests/control_claude.rs); PORT 0 picks a free port,
printed as the first line on stdout.
"""
import http.server, json, re, sys, time, uuid

PORT = int(sys.argv[1])
LOG = sys.argv[2]
DEFAULT_STEPS = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 1
DELAY = float(sys.argv[sys.argv.index("--delay") + 1]) if "--delay" in sys.argv else 0.0


def usage(inp, out, cr=0, cw=0):
    h = 100 if cw else 0
    return {"input_tokens": inp, "output_tokens": out,
            "cache_read_input_tokens": cr, "cache_creation_input_tokens": cw,
            "cache_creation": {"ephemeral_5m_input_tokens": cw - h, "ephemeral_1h_input_tokens": h}}


def texts(msg):
    c = msg.get("content")
    if isinstance(c, str):
        return [c]
    return [b.get("text", "") for b in c or [] if isinstance(b, dict) and b.get("type") == "text"]


def n_tool_results(msg):
    c = msg.get("content")
    return sum(1 for b in c if isinstance(b, dict) and b.get("type") == "tool_result") if isinstance(c, list) else 0


def plan(req):
    """Returns (blocks, stop_reason)."""
    # Claude Code 2.1.197 also puts role "system" entries into messages; skip them here.
    msgs = [m for m in req.get("messages", []) if m.get("role") != "system"]
    tools = [t.get("name") for t in req.get("tools", [])]
    if any("use a subagent" in t for m in msgs if m.get("role") == "user" for t in texts(m)) and ("Agent" in tools or "Task" in tools):
        if not any(n_tool_results(m) for m in msgs):
            name = "Agent" if "Agent" in tools else "Task"
            return [{"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": name,
                     "input": {"description": "Run in shell", "prompt": "Run steps=1 in the shell",
                               "subagent_type": "general-purpose"}}], "tool_use"
        return [{"type": "text", "text": "Subagent done."}], "end_turn"
    if "Bash" not in tools:  # side request (title, quota, ...)
        return [{"type": "text", "text": "ok"}], "end_turn"
    task_idx, steps, par, ro = None, DEFAULT_STEPS, 1, False
    for i, m in enumerate(msgs):
        if m.get("role") == "user" and any("in the shell" in t for t in texts(m)):
            task_idx = i
            for t in texts(m):
                mm = re.search(r"steps=(\d+)", t)
                if mm:
                    steps = int(mm.group(1))
                ro = ro or "readonly" in t
                mm = re.search(r"par=(\d+)", t)
                if mm:
                    par = steps = int(mm.group(1))
    if task_idx is None:
        return [{"type": "text", "text": "No task."}], "end_turn"
    done = sum(n_tool_results(m) for m in msgs[task_idx:])
    last = msgs[-1]
    last_is_tool_result = n_tool_results(last) > 0
    if par > 1 and done == 0 and len(msgs) - 1 == task_idx:
        blocks = [{"type": "text", "text": f"Running {par} commands at once."}]
        for k in range(1, par + 1):
            blocks.append({"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": "Bash",
                           "input": {"command": f"echo step-{k}" + ("" if ro else " | tee -a ran.log"),
                                     "description": f"Print step {k}"}})
        return blocks, "tool_use"
    if done < steps and (last_is_tool_result or len(msgs) - 1 == task_idx):
        k = done + 1
        return ([{"type": "text", "text": f"Running step {k}."},
                 {"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": "Bash",
                  "input": {"command": f"echo step-{k} | tee -a ran.log", "description": f"Print step {k}"}}], "tool_use")
    if last_is_tool_result:
        return [{"type": "text", "text": f"Done: ran {done} step(s)."}], "end_turn"
    quoted = " | ".join(texts(last))[:120].replace("\n", " ")
    return [{"type": "text", "text": f"Continuing after user text: {quoted}"}], "end_turn"


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.json({})

    def do_HEAD(self):
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()

    def do_POST(self):
        ln = int(self.headers.get("Content-Length") or 0)
        req = json.loads(self.rfile.read(ln) or b"{}")
        if "count_tokens" in self.path:
            return self.json({"input_tokens": 1234})
        blocks, stop = plan(req)
        rec = {"t": time.time(), "path": self.path, "model": req.get("model"), "stream": req.get("stream"),
               "tools": [t.get("name") for t in req.get("tools", [])], "system": req.get("system"),
               "messages": req.get("messages"), "reply": blocks}
        with open(LOG, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if DELAY and "Bash" in rec["tools"]:
            time.sleep(DELAY)
        u = usage(2100, 64, 1800, 300) if stop == "tool_use" else usage(2300, 21, 2000, 0)
        model = req.get("model", "claude-sonnet-4-5")
        mid = "msg_" + uuid.uuid4().hex[:24]
        if not req.get("stream"):
            return self.json({"id": mid, "type": "message", "role": "assistant", "model": model, "content": blocks,
                              "stop_reason": stop, "stop_sequence": None, "usage": u})
        self.send_response(200)
        self.send_header("request-id", "req_" + uuid.uuid4().hex[:24])
        self.send_header("Content-Type", "text/event-stream"); self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()

        def ev(name, data):
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()); self.wfile.flush()
        ev("message_start", {"type": "message_start", "message": {"id": mid, "type": "message", "role": "assistant",
           "model": model, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**u, "output_tokens": 1}}})
        for i, b in enumerate(blocks):
            if b["type"] == "text":
                ev("content_block_start", {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
                ev("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": b["text"]}})
            else:
                ev("content_block_start", {"type": "content_block_start", "index": i, "content_block": {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}})
                ev("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": json.dumps(b["input"])}})
            ev("content_block_stop", {"type": "content_block_stop", "index": i})
        ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": u["output_tokens"]}})
        ev("message_stop", {"type": "message_stop"})
        self.close_connection = True

    def json(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)

    def log_message(self, *a):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client that hangs up is not news
        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
            super().handle_error(request, client_address)


srv = Server(("127.0.0.1", PORT), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
