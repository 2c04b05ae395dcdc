"""Realistic OTLP/HTTP JSON traffic for the console's browser tests and benchmark: GenAI chat and
tool spans (OpenTelemetry GenAI conventions) from several agents and sessions, timestamped now,
plus Claude Code hook events. Only the standard library."""

import json
import random
import threading
import time
import urllib.request

MODELS = [
    ("anthropic", "claude-sonnet-4-5-20250929"),
    ("openai", "gpt-4.1"),
    ("openai", "gpt-4o-mini-2024-07-18"),
    ("anthropic", "claude-haiku-4-5"),
    ("acme", "acme-llm-7"),  # not in the price table: shows up as unpriced
]
TOOLS = ["web_search", "read_file", "run_shell", "query_db"]


def _kv(k, v):
    if isinstance(v, bool):
        return {"key": k, "value": {"boolValue": v}}
    if isinstance(v, int):
        return {"key": k, "value": {"intValue": str(v)}}
    return {"key": k, "value": {"stringValue": str(v)}}


def _hex(rng, n):
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def span(rng, session, agent, now_ns, kind, error=False, unpriced_ok=True):
    start = now_ns - rng.randrange(0, 2_000_000_000)
    end = start + 40_000_000 + rng.randrange(0, 1_500_000_000)
    attrs = [_kv("session.id", session), _kv("gen_ai.agent.name", agent)]
    if kind == "chat":
        provider, model = rng.choice(MODELS if unpriced_ok else MODELS[:-1])
        inp = 300 + rng.randrange(6000)
        attrs += [
            _kv("gen_ai.operation.name", "chat"),
            _kv("gen_ai.provider.name", provider),
            _kv("gen_ai.request.model", model),
            _kv("gen_ai.response.model", model),
            _kv("gen_ai.usage.input_tokens", inp),
            _kv("gen_ai.usage.output_tokens", 20 + rng.randrange(800)),
            _kv("gen_ai.usage.cache_read.input_tokens", inp // 3),
        ]
        name = f"chat {model}"
    else:
        tool = rng.choice(TOOLS)
        attrs += [
            _kv("gen_ai.operation.name", "execute_tool"),
            _kv("gen_ai.tool.name", tool),
            _kv("gen_ai.tool.call.id", "call_" + _hex(rng, 16)),
            _kv("gen_ai.tool.call.arguments", json.dumps({"query": f"{tool} for {session}", "limit": 10})),
            _kv("gen_ai.tool.call.result", "42 rows" if not error else "permission denied"),
        ]
        name = f"execute_tool {tool}"
    return {
        "traceId": _hex(rng, 32),
        "spanId": _hex(rng, 16),
        "name": name,
        "kind": 3 if kind == "chat" else 1,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": attrs,
        "status": {"code": 2, "message": "upstream timeout"} if error else {"code": 1},
    }


def export(groups):
    """groups: {(agent, task): [spans]} -> one ExportTraceServiceRequest (JSON)."""
    rs = []
    for (agent, task), spans in groups.items():
        res = [_kv("service.name", agent)]
        if task:
            res.append(_kv("agent_console.task.id", task))
        rs.append({
            "resource": {"attributes": res},
            "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.genai", "version": "1.0"}, "spans": spans}],
        })
    return {"resourceSpans": rs}


def post(base, path, body, content_type="application/json", timeout=30):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method="POST", headers={"content-type": content_type})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        r.read()
        return r.status


def seed_fleet(base, rng, agents=6, sessions_per_agent=5, spans_per_session=12):
    """A small fleet with recent activity: agents, sessions, tasks, models (one unpriced), errors."""
    now = time.time_ns()
    names = ["planner", "researcher", "coder", "reviewer", "triage", "writer", "tester", "ops"][:agents]
    groups = {}
    sessions = []
    for a in names:
        for i in range(sessions_per_agent):
            sid = f"{a}-{_hex(rng, 8)}"
            task = f"TICKET-{100 + rng.randrange(12)}"
            sessions.append(sid)
            for j in range(spans_per_session):
                kind = "chat" if j % 3 != 2 else "tool"
                groups.setdefault((a, task), []).append(
                    span(rng, sid, a, now - rng.randrange(0, 3600) * 1_000_000_000, kind, error=(rng.random() < 0.05)))
    assert post(base, "/v1/traces", export(groups)) == 200
    return sessions


class Stream:
    """Sends `rate` spans/s (each is 2 live messages: the span and its model or tool call) as
    OTLP/HTTP JSON, in batches every `period` s, until stopped or `seconds` have passed."""

    def __init__(self, base, rate, seconds, period=0.2, agents=12, sessions=120, seed=7):
        self.base, self.rate, self.seconds, self.period = base, rate, seconds, period
        self.rng = random.Random(seed)
        self.agents = [f"agent-{i:02d}" for i in range(agents)]
        self.sessions = [(self.agents[i % agents], f"live-{i:04d}") for i in range(sessions)]
        self.sent = 0
        self.errors = 0
        self.lock = threading.Lock()
        self.stopped = False

    def run(self, senders=4):
        """`senders` threads share the rate: one export waits for its commit, so one sender alone
        cannot keep up when commits take tens of ms."""
        threads = [threading.Thread(target=self._send, args=(i, senders)) for i in range(senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _send(self, k, senders):
        rng = random.Random(self.rng.random() + k)
        period = self.period * senders
        per = max(1, round(self.rate * period / senders))
        t0 = time.monotonic() + k * self.period
        n = 0
        while not self.stopped and time.monotonic() - t0 < self.seconds:
            due = t0 + n * period
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = time.time_ns()
            groups = {}
            for _ in range(per):
                agent, sid = rng.choice(self.sessions)
                kind = "chat" if rng.random() < 0.6 else "tool"
                groups.setdefault((agent, None), []).append(span(rng, sid, agent, now, kind, unpriced_ok=False))
            try:
                post(self.base, "/v1/traces", export(groups))
                with self.lock:
                    self.sent += per
            except Exception:  # noqa: BLE001 - counted; the test compares what arrived
                with self.lock:
                    self.errors += 1
            n += 1

    def stop(self):
        self.stopped = True


def hook(base, event, session_id, **fields):
    body = {
        "session_id": session_id,
        "transcript_path": f"/tmp/{session_id}.jsonl",
        "cwd": "/home/dev/project",
        "hook_event_name": event,
        "permission_mode": "default",
    }
    body.update(fields)
    return post(base, "/hooks/claude", body)
