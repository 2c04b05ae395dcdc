#!/usr/bin/env python3
"""The web console in a real browser (Debian's Chromium + chromedriver, driven by Selenium),
against the release binary on free ports with the captured fixtures and fresh GenAI traffic.

Checks: every page at 1280x800 and at phone width shows real data (screenshots saved), with no
console error and no request to another origin; a hook event sent over HTTP appears without a
reload; the live stream dropped twice mid-traffic resumes with Last-Event-ID with no duplicate
and no hole; a collector restart shows the unreachable state, then recovers; adding a price
re-prices an unpriced model; 1,000 live messages/s for 30 s keep the page painting (frame rate
measured in the page and reported). Prints `console_browser: N passed, M failed`.

`--bench` instead seeds 10,000 sessions of 1,000 agents and one session of 10,000 events and
reports first paint of the fleet, sessions and session pages and the frame rate at 1,000
messages/s (the numbers in BENCHMARKS.md)."""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import console_python_data as data  # noqa: E402

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# Routes of APIs that other issues add (control plane, tasks, alerts): the console probes them
# and shows "not available" on a 404, which Chromium logs as a failed resource load.
OPTIONAL_ROUTES = ("/api/tasks", "/api/alerts", "/commands", "/api/approvals")

results = []
ONLY = os.environ.get("CONSOLE_BROWSER_ONLY")  # development: run only the checks whose name contains this


def check(name, fn):
    if ONLY and ONLY not in name:
        return
    t0 = time.monotonic()
    try:
        detail = fn()
        results.append((name, True))
        print(f"ok   {name}{' (' + detail + ')' if detail else ''} [{time.monotonic() - t0:.1f}s]", flush=True)
    except Exception as e:  # noqa: BLE001 - report every failure and go on
        results.append((name, False))
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    def __init__(self, binary, data_dir, port, console_dir=None, extra=()):
        self.binary, self.data_dir, self.port = binary, data_dir, port
        self.extra = (["--console-dir", console_dir] if console_dir else []) + list(extra)
        self.base = f"http://127.0.0.1:{port}"
        self.proc = None
        self.log = open(os.path.join(os.path.dirname(data_dir), f"server-{port}.log"), "ab")

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data-dir", self.data_dir, "--grpc-addr", "127.0.0.1:0",
             "--http-addr", f"127.0.0.1:{self.port}", "--pg-addr", "127.0.0.1:0", "--log", "warn", *self.extra],
            stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not become healthy")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def get_json(base, path):
    with urllib.request.urlopen(base + path, timeout=30) as r:
        return json.load(r)


def driver(width=1280, height=800, mobile=False):
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
              "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--hide-scrollbars", f"--user-data-dir={tempfile.mkdtemp(prefix='console-chromium-')}",
              f"--window-size={width},{height}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
    return d


def wait_ready(d, page, timeout=20):
    WebDriverWait(d, timeout).until(
        lambda x: x.find_elements(By.CSS_SELECTOR, f"[data-page='{page}'][data-ready]"))


def console_errors(d):
    bad = []
    for e in d.get_log("browser"):
        if e["level"] != "SEVERE":
            continue
        msg = e["message"]
        if "404" in msg and any(r in msg for r in OPTIONAL_ROUTES):
            continue
        bad.append(msg)
    return bad


def outside_requests(d, base):
    urls = []
    for e in d.get_log("performance"):
        m = json.loads(e["message"])["message"]
        if m.get("method") == "Network.requestWillBeSent":
            urls.append(m["params"]["request"]["url"])
    # Only network schemes count (the browser's own chrome:// start page is not the console's).
    net = [u for u in urls if u.split(":", 1)[0] in ("http", "https", "ws", "wss", "ftp")]
    return [u for u in net if not u.startswith(base + "/")], len(net)


def js(d, script):
    return d.execute_script("return " + script)


def run_tests(args):
    rng = random.Random(14)
    work = tempfile.mkdtemp(prefix="console-browser-")
    srv = Server(args.bin, os.path.join(work, "db"), free_port(), args.console_dir)
    srv.start()
    base = srv.base
    shots = args.shots
    os.makedirs(shots, exist_ok=True)
    d = None
    try:
        for f in ("claude-code/otlp/logs-1.pb", "claude-code/otlp/logs-2.pb", "claude-code/otlp/metrics-1.pb",
                  "langchain-openinference/traces-1.pb"):
            with open(os.path.join(args.fixtures, f), "rb") as fh:
                assert data.post(base, "/", fh.read(), "application/x-protobuf") == 200, f
        hooks_dir = os.path.join(args.fixtures, "claude-code/hooks")
        for f in sorted(os.listdir(hooks_dir)):
            with open(os.path.join(hooks_dir, f), "rb") as fh:
                assert data.post(base, "/hooks/claude", fh.read()) == 200, f
        sessions = data.seed_fleet(base, rng)
        # One session still running, with a prompt from a Claude Code hook.
        data.hook(base, "UserPromptSubmit", sessions[0], prompt="Summarise yesterday's incidents and open a ticket")
        claude_session = "f140c7f4-628d-4454-b78d-f488814a62f0"
        pages = [
            ("fleet", "/", "[data-agent]", 6),
            ("sessions", "/sessions", "[data-session]", 20),
            ("session", "/sessions/" + sessions[0], "[data-type]", 8),
            ("session-claude-code", "/sessions/" + claude_session, "[data-type]", 5),
            ("cost", "/cost?range=30d&group=agent", ".unpriced-item", 1),
            ("tasks", "/tasks", "[data-testid=not-available], [data-column]", 1),
            ("alerts", "/alerts", "[data-testid=not-available], [data-testid=firing]", 1),
        ]
        for width, height, mobile, suffix in ((1280, 800, False, ""), (390, 844, True, "-phone")):
            d = driver(width, height, mobile)
            for name, path, selector, minimum in pages:
                page = name.split("-")[0]

                def one(name=name, path=path, selector=selector, minimum=minimum, page=page, suffix=suffix):
                    steps = [time.monotonic()]
                    d.get(base + path)
                    wait_ready(d, page)
                    steps.append(time.monotonic())
                    WebDriverWait(d, 10).until(lambda x: len(x.find_elements(By.CSS_SELECTOR, selector)) >= minimum)
                    if page == "cost":
                        WebDriverWait(d, 10).until(lambda x: x.find_elements(By.CSS_SELECTOR, ".chart canvas"))
                    if page == "session":
                        # Select a tool call: the screenshot shows its input and output whole.
                        d.find_element(By.CSS_SELECTOR, "[data-type=tool_call]").click()
                        WebDriverWait(d, 10).until(lambda x: x.find_elements(By.CSS_SELECTOR, "[data-testid=item-detail]"))
                    time.sleep(0.3)
                    steps.append(time.monotonic())
                    shot = os.path.join(shots, f"{name}{suffix}.png")
                    d.save_screenshot(shot)
                    steps.append(time.monotonic())
                    errs = console_errors(d)
                    assert not errs, f"console errors: {errs}"
                    outside, total = outside_requests(d, base)
                    assert not outside, f"requests to another origin: {outside}"
                    steps.append(time.monotonic())
                    n = len(d.find_elements(By.CSS_SELECTOR, selector))
                    slow = " ".join(f"{b - a:.1f}" for a, b in zip(steps, steps[1:]))
                    return f"{n} rows, {total} requests, screenshot {shot}" + (f", steps {slow} s" if steps[-1] - steps[0] > 5 else "")
                check(f"page {name}{suffix}", one)
            if suffix:
                d.quit()
                d = None
            else:
                desktop = d
        d = desktop

        def pricing():
            d.get(base + "/cost?range=30d")
            wait_ready(d, "cost")
            form = WebDriverWait(d, 10).until(lambda x: x.find_element(By.CSS_SELECTOR, "form[data-model='acme-llm-7']"))
            inputs = form.find_elements(By.TAG_NAME, "input")
            for el, v in zip(inputs, ("1.5", "6", "0.15", "")):
                el.send_keys(v)
            form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            WebDriverWait(d, 20).until(lambda x: not x.find_elements(By.CSS_SELECTOR, "form[data-model='acme-llm-7']"))
            left = get_json(base, "/api/cost/unpriced")["models"]
            assert all(m["model"] != "acme-llm-7" for m in left), left
            return "acme-llm-7 priced from the page, gone from /api/cost/unpriced"
        check("add a price for an unpriced model", pricing)

        def live_update():
            d.get(base + "/sessions")
            wait_ready(d, "sessions")
            origin = js(d, "performance.timeOrigin")
            sid = "live-check-" + format(rng.getrandbits(32), "08x")
            assert data.hook(base, "UserPromptSubmit", sid, prompt="a live update") == 200
            WebDriverWait(d, 15).until(lambda x: x.find_elements(By.CSS_SELECTOR, f"[data-session='{sid}']"))
            assert js(d, "performance.timeOrigin") == origin, "the page reloaded"
            return f"{sid} appeared without a reload"
        check("live update: a hook event appears without reload", live_update)

        def controls():
            # A session of the real `agent-console-hook` binary: pause, inject and kill clicked in
            # the page reach the hook's next decision, and each command shows its delivery state
            # and its audit trail.
            sid = "ctl-" + format(rng.getrandbits(32), "08x")
            env = dict(os.environ, AGENT_CONSOLE_ENDPOINT=base, AGENT_CONSOLE_SPOOL_DIR=os.path.join(work, "spool"),
                       HOME=work, AGENT_CONSOLE_HOOK_HOLD_SECS="120")
            env.pop("AGENT_CONSOLE_TOKEN", None)

            def run_hook(event, **fields):
                body = {"session_id": sid, "transcript_path": f"/tmp/{sid}.jsonl", "cwd": "/home/dev/project",
                        "hook_event_name": event, "permission_mode": "default"}
                body.update(fields)
                r = subprocess.run([args.hook_bin], input=json.dumps(body).encode(), env=env,
                                   capture_output=True, timeout=90)
                assert r.returncode == 0, f"hook {event} exited {r.returncode}: {r.stderr!r}"
                return r.stdout.decode()

            run_hook("SessionStart", source="startup")
            run_hook("UserPromptSubmit", prompt="clean up the build directory")
            assert data.post(base, "/api/flush", {}) == 200
            d.get(base + "/sessions/" + sid)
            wait_ready(d, "session")

            def button(kind):
                return WebDriverWait(d, 20).until(
                    lambda x: next((b for b in x.find_elements(By.CSS_SELECTOR, f"button[data-action={kind}]")
                                    if b.is_enabled()), None))

            def command_state(kind, states):
                # Read in the page (the list re-renders: element handles go stale).
                query = f"(document.querySelector('li.cmd[data-kind={kind}]') || {{dataset: {{}}}}).dataset.state"

                def ok(x):
                    return js(x, query) in states
                try:
                    WebDriverWait(d, 20).until(ok)
                except Exception:
                    d.save_screenshot(os.path.join(shots, "session-controls-failed.png"))
                    rows = js(d, "[...document.querySelectorAll('li.cmd')].map((r) => [r.dataset.kind, r.dataset.state])")
                    raise AssertionError(f"{kind} never reached {states}: commands shown {rows}") from None
                return js(d, query)

            tool = {"tool_name": "Bash", "tool_input": {"command": "rm -rf build"}}
            # Pause: the next PreToolUse is held until resume is clicked.
            button("pause").click()
            command_state("pause", ("accepted", "delivered", "observed"))  # committed before the agent's next hook
            held = {}
            t = threading.Thread(target=lambda: held.update(out=run_hook("PreToolUse", tool_use_id="toolu_c1", **tool)))
            t.start()
            paused = command_state("pause", ("delivered", "observed"))
            time.sleep(0.5)
            assert t.is_alive(), f"the hook was not held by the pause: {held}"
            button("resume").click()
            t.join(timeout=60)
            assert not t.is_alive(), "the held hook did not return after resume"
            assert "deny" not in held["out"], f"resumed tool call was not allowed: {held['out']!r}"
            # Inject: the text reaches the agent as additional context at its next hook.
            msg = "operator: skip the cache directory " + format(rng.getrandbits(16), "04x")
            box = d.find_element(By.CSS_SELECTOR, "input[aria-label=message]")
            box.send_keys(msg)
            button("inject").click()
            command_state("inject", ("accepted", "delivered", "observed"))
            out = run_hook("PostToolUse", tool_use_id="toolu_c1", tool_response={"stdout": "", "exit_code": 0}, **tool)
            assert msg in out, f"injected text not in the hook's answer: {out!r}"
            injected = command_state("inject", ("delivered", "observed"))
            # Kill: the next tool call is denied.
            button("kill").click()
            WebDriverWait(d, 10).until(lambda x: x.switch_to.alert).accept()
            command_state("kill", ("accepted", "delivered", "observed"))
            out = run_hook("PreToolUse", tool_use_id="toolu_c2", **tool)
            assert '"deny"' in out, f"killed session's tool call was not denied: {out!r}"
            killed = command_state("kill", ("delivered", "observed"))
            WebDriverWait(d, 20).until(lambda x: js(x, "document.querySelectorAll('[data-testid=audit] li').length") >= 8)
            shot = os.path.join(shots, "session-controls.png")
            d.save_screenshot(shot)
            assert not console_errors(d)
            return f"pause {paused} (hook held until resume), inject {injected}, kill {killed}; screenshot {shot}"
        check("controls: pause, inject and kill reach a real agent-console-hook", controls)

        def task_card():
            # A task card moved by hand (the state override) changes the task's state over the API.
            title = "Rotate the staging credentials " + format(rng.getrandbits(16), "04x")
            req = urllib.request.Request(base + "/api/tasks", data=json.dumps({"title": title, "labels": ["ops"]}).encode(),
                                         method="POST", headers={"content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                created = json.load(r)
            tid = created.get("task_id") or created.get("id") or (created.get("task") or {}).get("task_id")
            assert tid, created
            d.get(base + "/tasks")
            wait_ready(d, "tasks")
            card = f"[data-task='{tid}']"
            WebDriverWait(d, 15).until(lambda x: x.find_elements(By.CSS_SELECTOR, card))
            before = js(d, f"document.querySelector(\"{card}\").dataset.state")
            assert before == "inbox", f"a new task with no agent is in the inbox, not {before}"
            sel = d.find_element(By.CSS_SELECTOR, f"{card} select[data-action=move]")
            from selenium.webdriver.support.ui import Select
            Select(sel).select_by_visible_text("complete")  # Preact sets option values as properties
            WebDriverWait(d, 15).until(lambda x: js(x, f"(document.querySelector(\"{card}\") || {{dataset: {{}}}}).dataset.state") == "complete")
            t = get_json(base, f"/api/tasks/{tid}")
            t = t.get("task", t)
            assert t.get("state") == "complete", t
            shot = os.path.join(shots, "tasks-board.png")
            d.save_screenshot(shot)
            assert not console_errors(d)
            return f"{tid} moved inbox -> complete from the board; the API says complete; screenshot {shot}"
        check("tasks: a card moved by hand changes the task's state over the API", task_card)

        def waiting():
            # A permission prompt (Claude Code `Notification` hook) shows as waiting for a human.
            sid = "waiting-check-" + format(rng.getrandbits(32), "08x")
            assert data.hook(base, "UserPromptSubmit", sid, prompt="deploy the hotfix") == 200
            assert data.hook(base, "Notification", sid, message="Claude needs your permission to use Bash",
                             notification_type="permission_prompt") == 200
            assert data.post(base, "/api/flush", {}) == 200
            d.get(base + "/sessions/" + sid)
            wait_ready(d, "session")
            WebDriverWait(d, 15).until(lambda x: x.find_elements(By.CSS_SELECTOR, "[data-flag=waiting]"))
            assert not console_errors(d)
            return f"{sid} shows 'waiting for a human'"
        check("session flags: a permission prompt shows as waiting for a human", waiting)

        def alerts():
            # A budget rule over a Claude Code session (http hooks, so it can be paused): a priced
            # model call crosses it, the page shows the alert firing with a link to the session,
            # and its one-click action pauses the session through the control plane.
            rule = "console-budget-" + format(rng.getrandbits(16), "04x")
            assert data.post(base, "/api/alerts/rules", {"name": rule, "kind": "budget", "scope": "session",
                                                         "threshold": 0.000001, "tiers": [1.0]}) in (200, 201)
            sid = "alert-check-" + format(rng.getrandbits(32), "08x")
            assert data.hook(base, "UserPromptSubmit", sid, prompt="spend a little") == 200
            now = time.time_ns()
            spans = [data.span(rng, sid, "claude-code", now, "chat", unpriced_ok=False)]
            assert data.post(base, "/v1/traces", data.export({("claude-code", None): spans})) == 200
            assert data.post(base, "/api/flush", {}) == 200
            d.get(base + "/alerts")
            wait_ready(d, "alerts")
            row = f"[data-testid=firing-t] tr[data-state=firing]"
            WebDriverWait(d, 20).until(lambda x: any(
                sid in (a.get_attribute("href") or "") for a in x.find_elements(By.CSS_SELECTOR, f"{row} a[data-testid=alert-session]")))
            btn = WebDriverWait(d, 10).until(lambda x: next(
                (b for r in x.find_elements(By.CSS_SELECTOR, row)
                 if sid in r.get_attribute("innerHTML") for b in r.find_elements(By.CSS_SELECTOR, "button[data-action=alert-pause]")),
                None))
            shot = os.path.join(shots, "alerts-firing.png")
            d.save_screenshot(shot)
            btn.click()
            WebDriverWait(d, 15).until(lambda x: x.find_elements(By.CSS_SELECTOR, "[data-testid=alert-action-result]"))
            cmds = get_json(base, f"/api/sessions/{sid}/commands")["commands"]
            assert any(c["kind"] == "pause" for c in cmds), cmds
            assert not console_errors(d)
            return f"{rule} fired for {sid}; pause issued from the page ({cmds[-1]['status']}); screenshot {shot}"
        check("alerts: a firing budget alert links to its session and its action pauses it", alerts)

        def resume():
            d.get(base + "/")
            wait_ready(d, "fleet")
            WebDriverWait(d, 10).until(lambda x: js(x, "document.querySelector('[data-testid=conn]').dataset.state") == "live")
            js(d, "window.__console.trackIds() || true")
            gaps_before = js(d, "window.__console.gaps")
            s = data.Stream(base, rate=150, seconds=6, seed=3)
            t = threading.Thread(target=s.run)
            t.start()
            for _ in range(2):
                time.sleep(2)
                js(d, "window.__console.dropStream() || true")
            t.join()
            # Wait until everything sent reached the page: each span is 2 messages (+ session changes).
            target = 2 * s.sent
            WebDriverWait(d, 30).until(lambda x: js(x, "window.__console.ids.size") >= target)
            time.sleep(1)
            ids = js(d, "(() => { const a = [...window.__console.ids]; return [a.length, Math.min(...a), Math.max(...a)]; })()")
            dup = js(d, "window.__console.duplicates")
            rec = js(d, "window.__console.reconnects")
            assert dup == 0, f"{dup} duplicates"
            assert rec >= 2, f"only {rec} reconnects"
            # Ids follow ingest log positions (increasing, not contiguous): a hole shows as a
            # `gap` message, which the collector sends on resume for anything it cannot replay.
            gaps = js(d, "window.__console.gaps") - gaps_before
            assert gaps == 0, f"{gaps} gaps on resume (ids {ids})"
            return f"{ids[0]} messages over {rec} reconnects, no gap, 0 duplicates"
        check("stream dropped twice: resumed with Last-Event-ID, no duplicate, no hole", resume)

        def down_state():
            d.get(base + "/")
            wait_ready(d, "fleet")
            WebDriverWait(d, 10).until(lambda x: js(x, "document.querySelector('[data-testid=conn]').dataset.state") == "live")
            js(d, "window.__console.trackIds() || true")
            srv.stop()
            WebDriverWait(d, 20).until(
                lambda x: js(x, "document.querySelector('[data-testid=conn]').dataset.state") in ("reconnecting", "unreachable"))
            time.sleep(2.5)
            shot = os.path.join(shots, "collector-down.png")
            d.save_screenshot(shot)
            text = d.find_element(By.CSS_SELECTOR, "[data-testid=conn]").text
            assert "reconnecting" in text.lower() or "unreachable" in text.lower(), text
            srv.start()
            WebDriverWait(d, 30).until(lambda x: js(x, "document.querySelector('[data-testid=conn]').dataset.state") == "live")
            sid = "after-restart-" + format(rng.getrandbits(32), "08x")
            assert data.hook(base, "UserPromptSubmit", sid, prompt="after a restart") == 200
            d.find_element(By.CSS_SELECTOR, "a[data-nav=sessions]").click()
            WebDriverWait(d, 15).until(lambda x: x.find_elements(By.CSS_SELECTOR, f"[data-session='{sid}']"))
            assert js(d, "window.__console.duplicates") == 0
            console_errors(d)  # the failed loads while down are expected; drain them
            return f"down state shown ({text!r}, {shot}); live again after the restart"
        check("collector down: clear state, then recovers", down_state)

        def load():
            d.get(base + "/")
            wait_ready(d, "fleet")
            WebDriverWait(d, 10).until(lambda x: js(x, "document.querySelector('[data-testid=conn]').dataset.state") == "live")
            r = measure(d, base, seconds=args.load_seconds, rate=500)
            assert r["min_slice_frames"] > 0, f"the page stopped painting for 5 s: {r}"
            assert r["flushed_all"], f"messages left unfolded: {r}"
            assert not console_errors(d)
            return (f"{r['msgs_per_s']:.0f} messages/s for {r['seconds']:.0f} s: {r['fps']:.1f} frames/s, max frame gap "
                    f"{r['max_gap_ms']:.0f} ms, {r['long_tasks']} long tasks ({r['long_task_ms']:.0f} ms)")
        check(f"1,000 messages/s for {args.load_seconds} s: the page keeps painting", load)

        def streamed_not_committed():
            # A collector whose DuckDB commit lags (only after ten minutes): a session is streamed
            # from the ingest log but not yet in /api/sessions when the page loads. The page asks
            # the stream for a snapshot, and the collector replays what came after its committed
            # position, so the session is on the page anyway.
            lagging = Server(args.bin, os.path.join(work, "db-lag"), free_port(), args.console_dir,
                             extra=["--commit-max-delay-ms", "600000"])
            lagging.start()
            try:
                sid = "uncommitted-" + format(rng.getrandbits(32), "08x")
                assert data.hook(lagging.base, "UserPromptSubmit", sid, prompt="streamed before its commit") == 200
                listed = get_json(lagging.base, "/api/sessions")
                assert all(s.get("session_id") != sid for s in listed.get("sessions", listed.get("rows", []))), \
                    "already committed: the check would show nothing"
                d.get(lagging.base + "/sessions")
                wait_ready(d, "sessions")
                WebDriverWait(d, 15).until(lambda x: x.find_elements(By.CSS_SELECTOR, f"[data-session='{sid}']"))
                assert not console_errors(d)
                return f"{sid} shown from the stream's snapshot and replay, not yet in /api/sessions"
            finally:
                lagging.stop()
        check("a session streamed but not yet committed is on a page loaded after it", streamed_not_committed)

        def read_token():
            guarded = Server(args.bin, os.path.join(work, "db-token"), free_port(), args.console_dir,
                             extra=["--read-token", "s3cret-read"])
            guarded.start()
            try:
                sid = "token-check-" + format(rng.getrandbits(32), "08x")
                assert data.hook(guarded.base, "UserPromptSubmit", sid, prompt="behind a read token") == 200
                # Committed before the page loads: the page reads it from /api/sessions (a live
                # `session` message published before the page subscribed is not replayed to it).
                assert data.post(guarded.base, "/api/flush", {}) == 200
                d.get(guarded.base + "/sessions")
                form = WebDriverWait(d, 15).until(lambda x: x.find_element(By.CSS_SELECTOR, "[data-testid=login] form"))
                d.find_element(By.CSS_SELECTOR, "[data-testid=read-token]").send_keys("s3cret-read")
                form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
                WebDriverWait(d, 15).until(lambda x: x.find_elements(By.CSS_SELECTOR, f"[data-session='{sid}']"))
                WebDriverWait(d, 15).until(lambda x: js(x, "document.querySelector('[data-testid=conn]').dataset.state") == "live")
                sid2 = sid + "-live"
                assert data.hook(guarded.base, "UserPromptSubmit", sid2, prompt="live, with the token") == 200
                WebDriverWait(d, 15).until(lambda x: x.find_elements(By.CSS_SELECTOR, f"[data-session='{sid2}']"))
                stored = js(d, "sessionStorage.getItem('agent-console.read-token')")
                assert stored == "s3cret-read", stored
                console_errors(d)  # the 401s before signing in are expected
                return "login form, then data and the live stream with the bearer token"
            finally:
                guarded.stop()
        check("read token: the console asks for it and uses it", read_token)
    finally:
        if d:
            d.quit()
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


def measure(d, base, seconds, rate):
    """Send `rate` spans/s (2 messages each) for `seconds`; frame rate and delivery in the page."""
    js(d, "window.__console.reset() || true")
    r0 = js(d, "window.__console.received")
    s = data.Stream(base, rate=rate, seconds=seconds, seed=11)
    t = threading.Thread(target=s.run)
    t0 = time.monotonic()
    t.start()
    slices = []
    last = js(d, "window.__console.frames")
    while t.is_alive():
        time.sleep(5)
        now = js(d, "window.__console.frames")
        slices.append(now - last)
        last = now
    t.join()
    elapsed = time.monotonic() - t0
    frames = js(d, "window.__console.frames")
    received = js(d, "window.__console.received") - r0
    time.sleep(1)
    flushed_all = js(d, "window.__console.queued") == 0
    return {
        "seconds": elapsed,
        "fps": frames / elapsed,
        "msgs_per_s": received / elapsed,
        "sent_spans": s.sent,
        "max_gap_ms": js(d, "window.__console.maxFrameGapMs"),
        "long_tasks": js(d, "window.__console.longTasks"),
        "long_task_ms": js(d, "window.__console.longTaskMs"),
        "min_slice_frames": min(slices) if slices else 0,
        "flushed_all": flushed_all,
    }


def bench(args):
    rng = random.Random(99)
    work = tempfile.mkdtemp(prefix="console-bench-")
    srv = Server(args.bin, os.path.join(work, "db"), free_port(), args.console_dir)
    srv.start()
    base = srv.base
    try:
        t0 = time.monotonic()
        now = time.time_ns()
        groups, n = {}, 0
        for i in range(10_000):
            agent = f"agent-{i % 1000:04d}"
            sid = f"s-{i:05d}"
            for kind in ("chat", "tool"):
                groups.setdefault((agent, f"T-{i % 300}"), []).append(
                    data.span(rng, sid, agent, now - rng.randrange(0, 6 * 3600) * 1_000_000_000, kind))
                n += 1
            if n >= 2000:
                assert data.post(base, "/v1/traces", data.export(groups), timeout=120) == 200
                groups, n = {}, 0
        if groups:
            data.post(base, "/v1/traces", data.export(groups), timeout=120)
        big = "big-session"
        for k in range(5):
            spans = [data.span(rng, big, "agent-0000", now - (10_000 - k * 2000 - j) * 100_000_000,
                               "chat" if j % 10 < 7 else "tool") for j in range(2000)]
            assert data.post(base, "/v1/traces", data.export({("agent-0000", "T-big"): spans}), timeout=120) == 200
        assert data.post(base, "/api/flush", {}, timeout=300) == 200  # acknowledged -> queryable
        print(f"seeded 10,000 sessions of 1,000 agents and a 10,000-event session in {time.monotonic() - t0:.1f} s", flush=True)
        for path in ("/api/agents?limit=1000", "/api/sessions?limit=200", f"/api/sessions/{big}",
                     f"/api/sessions/{big}/timeline?limit=500"):
            times = []
            for _ in range(5):
                t = time.monotonic()
                get_json(base, path)
                times.append((time.monotonic() - t) * 1000)
            print(f"api {path}: median {statistics.median(times):.0f} ms (min {min(times):.0f}, max {max(times):.0f})", flush=True)
        for page, path in (("fleet", "/"), ("sessions", "/sessions"), ("session", f"/sessions/{big}")):
            painted = []
            for _ in range(args.runs):
                d = driver()
                try:
                    d.get(base + path)
                    wait_ready(d, page, 60)
                    WebDriverWait(d, 30).until(lambda x: js(x, f"window.__console.painted['{page}']") is not None)
                    painted.append(js(d, f"window.__console.painted['{page}']"))
                    rows = js(d, "document.querySelector('.win') ? document.querySelector('.win').dataset.rows : 0")
                    nodes = js(d, "document.getElementsByTagName('*').length")
                finally:
                    d.quit()
            print(f"first paint {page} ({path}): median {statistics.median(painted):.0f} ms over {len(painted)} cold loads "
                  f"(min {min(painted):.0f}, max {max(painted):.0f}); {rows} rows in the list, {nodes} DOM nodes", flush=True)
        for page, path in (("fleet", "/"), ("sessions", "/sessions")):
            d = driver()
            try:
                d.get(base + path)
                wait_ready(d, page, 60)
                r = measure(d, base, seconds=30, rate=500)
            finally:
                d.quit()
            print(f"live {page}: {r['msgs_per_s']:.0f} messages/s for {r['seconds']:.0f} s -> {r['fps']:.1f} frames/s, "
                  f"max frame gap {r['max_gap_ms']:.0f} ms, {r['long_tasks']} long tasks ({r['long_task_ms']:.0f} ms)", flush=True)
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--fixtures", default="tests/fixtures")
    p.add_argument("--hook-bin", help="the agent-console-hook binary (default: next to --bin)")
    p.add_argument("--shots", default="console-shots")
    p.add_argument("--load-seconds", type=int, default=30)
    p.add_argument("--bench", action="store_true")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--console-dir", help="development: serve the UI from this directory (default: the embedded copy)")
    a = p.parse_args()
    a.hook_bin = a.hook_bin or os.path.join(os.path.dirname(os.path.abspath(a.bin)), "agent-console-hook")
    if a.bench:
        bench(a)
        return 0
    run_tests(a)
    passed = sum(1 for _, ok in results if ok)
    failed = len(results) - passed
    print(f"console_browser: {passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
