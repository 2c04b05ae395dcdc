#!/usr/bin/env python3
"""Wall time of agent-console-hook per invocation (process start to exit), as Claude Code runs it:
posix_spawn with the hook JSON on stdin, then waitpid. Prints p50/p90/p99/max in ms.

usage: spawn_loop.py BINARY FIXTURE.json [RUNS]   (AGENT_CONSOLE_* taken from the environment)
"""
import os, sys, time

binary, fixture = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
devnull = os.open(os.devnull, os.O_WRONLY)
times = []
for i in range(runs + 20):
    fd = os.open(fixture, os.O_RDONLY)
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(binary, [binary], os.environ,
                         file_actions=[(os.POSIX_SPAWN_DUP2, fd, 0), (os.POSIX_SPAWN_DUP2, devnull, 1)])
    _, status = os.waitpid(pid, 0)
    dt = time.perf_counter_ns() - t0
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    if i >= 20:  # warm-up
        times.append(dt / 1e6)
times.sort()
n = len(times)
pick = lambda q: times[min(n - 1, int(n * q))]
print(f"n={n} p50={pick(0.5):.2f}ms p90={pick(0.9):.2f}ms p99={pick(0.99):.2f}ms max={times[-1]:.2f}ms")
