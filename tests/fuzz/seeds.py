#!/usr/bin/env python3
"""Writes the seed corpus (corpus/<target>/) from the repository's captured fixtures
(tests/fixtures/: OTLP protobuf exports of Claude Code and agent frameworks, Claude Code hook
payloads) and the hand-written seeds in seed-src/ (OTLP/JSON in the shapes SDKs send, SQL that
Grafana, psql and drivers send plus hostile queries of issue 10). The first byte of a seed is the
target's selector (signal, options or mode) where the target has one. Run from tests/fuzz."""
import pathlib

here = pathlib.Path(__file__).resolve().parent
fixtures = here.parent / "fixtures"
corpus = here / "corpus"


def write(target, name, selector, body):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes((bytes([selector]) if selector is not None else b"") + body)


for i, p in enumerate(sorted(fixtures.rglob("*.pb"))):
    sel = 1 if p.name.startswith("logs") else 2 if p.name.startswith("metrics") else 0
    write("otlp_protobuf", f"{i:03}-{p.parent.name}-{p.name}", sel, p.read_bytes())
for sel, name in [(0, "traces.json"), (1, "logs.json"), (2, "metrics.json")]:
    write("otlp_json", name, sel, (here / "seed-src" / name).read_bytes())
for i, p in enumerate(sorted((fixtures / "claude-code" / "hooks").glob("*.json"))):
    write("hook", p.name, (i * 37) & 0x3F, p.read_bytes())
sql = [l for l in (here / "seed-src" / "sql.txt").read_text().splitlines() if l.strip()]
for i, line in enumerate(sql):
    write("pgwire_sql", f"{i:03}.sql", None, line.encode())
    write("sql_vet", f"{i:03}.sql", 0, line.encode())
# The sandbox scanner's JSON, in the shape json_serialize_sql writes.
write("sql_vet", "ast-select.json", 1, (here / "seed-src" / "ast-select.json").read_bytes())
print("seeds written under", corpus)
