"""Numbers from raw samples, and the people's side: markdown table, claims, plot."""

import os
import platform
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

REFERENCE = (
    "Reference figures measured elsewhere (not on this machine): stock way ~4,300 deliveries/s, p99 ~600 ms; "
    "PubSub layer ~5,600/s; seed design on FastAPI ~43,000/s sequential, ~33,000/s gather; "
    "websockets.broadcast ceiling ~71,000/s."
)


# Per phase


def _pct(values, q):
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def phase_stats(collects, sent, n_live, acks=None):
    """Merge the load processes' samples of one phase.

    sent: {index: send ns} of the messages of this phase; n_live: devices
    expected to receive each of them.
    """
    idx = np.concatenate([np.frombuffer(c["idx"], dtype=np.int64) for c in collects]) if collects else np.zeros(0, np.int64)
    lat = np.concatenate([np.frombuffer(c["lat"], dtype=np.int64) for c in collects]) if collects else np.zeros(0, np.int64)
    keys = np.fromiter(sent.keys(), dtype=np.int64, count=len(sent))
    mask = np.isin(idx, keys)
    lat_ms = lat[mask] / 1000.0
    deliveries = int(mask.sum())
    expected = n_live * len(sent)

    merged = {}
    for c in collects:
        for k, (count, first, last) in c["per_msg"].items():
            if k in sent:
                m = merged.get(k)
                if m is None:
                    merged[k] = [count, first, last]
                else:
                    m[0] += count
                    m[1] = min(m[1], first)
                    m[2] = max(m[2], last)
    # Receipt after the sender's ack (the message stored and published): the fan-out alone.
    post_ack_ms = None
    if acks:
        ack_of = np.array([acks.get(int(i), -1) for i in idx[mask]], dtype=np.int64) if deliveries else np.zeros(0, np.int64)
        send_of = np.array([sent[int(i)] for i in idx[mask]], dtype=np.int64) if deliveries else np.zeros(0, np.int64)
        have = ack_of >= 0
        post_ack_ms = (send_of[have] + lat[mask][have] * 1000 - ack_of[have]) / 1e6
    fanout_ms, rates, completion = [], [], []
    incomplete = 0
    for k, s in sent.items():
        m = merged.get(k)
        if m is None or m[0] < n_live:
            incomplete += 1
            continue
        dt = (m[2] - s) / 1e6
        fanout_ms.append(dt)
        rates.append(m[0] / (dt / 1000.0) if dt > 0 else float("inf"))
        completion.append((s, dt))
    out = {
        "deliveries": deliveries,
        "expected": expected,
        "lost": max(0, expected - deliveries),
        "extra": max(0, deliveries - expected),
        "late_from_earlier": int((~mask).sum()),
        "incomplete_messages": incomplete,
        "n_live": n_live,
        "latency_ms": {"p50": _pct(lat_ms, 50), "p90": _pct(lat_ms, 90), "p99": _pct(lat_ms, 99), "max": round(float(lat_ms.max()), 3) if len(lat_ms) else None},
        "fanout_ms": {"p50": _pct(fanout_ms, 50), "p90": _pct(fanout_ms, 90), "max": round(max(fanout_ms), 3) if fanout_ms else None},
        "after_ack_ms": None if post_ack_ms is None else {"p50": _pct(post_ack_ms, 50), "p99": _pct(post_ack_ms, 99)},
        "deliveries_per_s": round(statistics.median(rates), 1) if rates else None,
        "disorder": sum(c["disorder"] for c in collects),
        "client_cpu_s": round(sum(c["cpu"] for c in collects), 3),
        "unexpected_closes": _codes(c["unexpected_closes"] for c in collects),
    }
    if merged:
        first_send = min(sent.values())
        last_arrival = max(m[2] for m in merged.values())
        span = (last_arrival - first_send) / 1e9
        out["span_s"] = round(span, 3)
        out["deliveries_per_s_overall"] = round(deliveries / span, 1) if span > 0 else None
    if len(completion) >= 3:
        t = np.array([(s - completion[0][0]) / 1e9 for s, _ in completion])
        y = np.array([d for _, d in completion])
        if t[-1] > 0:
            out["lag_growth_ms_per_s"] = round(float(np.polyfit(t, y, 1)[0]), 2)
        n = max(1, len(y) // 5)
        out["fanout_ms_first_fifth"] = round(float(np.median(y[:n])), 3)
        out["fanout_ms_last_fifth"] = round(float(np.median(y[-n:])), 3)
    return out


def _codes(lists):
    codes = {}
    for items in lists:
        for _, code, _, _ in items:
            codes[str(code)] = codes.get(str(code), 0) + 1
    return codes


def _totals(info):
    calls = sum(v["calls"] for k, v in info.items() if k.startswith("cmdstat_") and k != "cmdstat_info")
    return np.array([calls, info.get("total_net_input_bytes", 0), info.get("total_net_output_bytes", 0)], dtype=float)


def _commands(info):
    return {k[8:]: v["calls"] for k, v in info.items() if k.startswith("cmdstat_") and k != "cmdstat_info"}


def redis_per_message(a, b, c, d, idle_dt, dt, messages):
    """Per-message Redis commands and bytes, less the INFO calls' own traffic and the idle background.

    a, b: two INFO snapshots back to back (their difference is one INFO's
    own footprint); c after `idle_dt` s of idle; d after the messages (`dt` s).
    """
    overhead = _totals(b) - _totals(a)
    idle_rate = (_totals(c) - _totals(b) - overhead) / idle_dt if idle_dt > 0 else 0 * overhead
    raw = _totals(d) - _totals(c) - overhead
    per = (raw - idle_rate * dt) / max(messages, 1)
    cmds_c, cmds_d, cmds_b = _commands(c), _commands(d), _commands(b)
    breakdown = {}
    for name in cmds_d:
        delta = cmds_d[name] - cmds_c.get(name, 0)
        idle = (cmds_c.get(name, 0) - cmds_b.get(name, 0)) / idle_dt * dt if idle_dt > 0 else 0
        value = (delta - idle) / max(messages, 1)
        if abs(value) >= 0.05:
            breakdown[name] = round(value, 2)
    return {
        "commands_per_message": round(float(per[0]), 2),
        "bytes_in_per_message": round(float(per[1]), 1),
        "bytes_out_per_message": round(float(per[2]), 1),
        "bytes_per_message": round(float(per[1] + per[2]), 1),
        "commands_breakdown": breakdown,
        "idle_commands_per_s": round(float(idle_rate[0]), 2),
        "idle_bytes_per_s": round(float(idle_rate[1] + idle_rate[2]), 1),
    }


def one_line(rec):
    """A progress line for a finished phase."""
    s, name = rec["scenario"], rec["comparator"]
    if s == "burst" or s == "rate":
        lat = rec["latency_ms"]
        rate = rec.get("deliveries_per_s") if s == "burst" else rec.get("deliveries_per_s_overall")
        return (
            f"  {s:5} {name:11} N={rec['n']:<5} r{rec['round']}  {_n(rate)} deliveries/s  p50 {_n(lat['p50'])} ms  "
            f"p99 {_n(lat['p99'])} ms  lost {rec['lost']}  worker CPU {rec['worker_cpu_s']:.1f}s  client CPU {rec['client_cpu_s']:.1f}s"
        )
    if s == "stall":
        return (
            f"  stall {name:11} N={rec['n']:<5} r{rec['round']}  F={rec['fraction']:.0%}  healthy p99 {_n(rec['latency_ms']['p99'])} ms  "
            f"dropped {rec['stalled_dropped']}/{rec['stalled']} (max {_n(rec['stalled_drop_s_max'])} s)  "
            f"server 4008 {rec.get('server_closed_slow')}  RSS +{rec['rss_growth_mb']} MB  lost {rec['lost']}"
        )
    if s == "redis":
        return (
            f"  redis {name:11} members={rec['n']:<5} {rec['commands_per_message']} commands/msg  "
            f"{_n(rec['bytes_per_message'])} bytes/msg  {rec['commands_breakdown']}"
        )
    return f"  {s} {name} {rec.get('n')}"


def _n(value, digits=None):
    if value is None:
        return "–"
    if isinstance(value, float) and value != value:
        return "–"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1):
        return f"{int(value):,}"
    if digits is not None:
        return f"{value:,.{digits}f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


# Medians over rounds


def _get(rec, path):
    value = rec
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def medians(records, scenario, paths, key=("comparator", "n")):
    groups = defaultdict(list)
    for rec in records:
        if rec.get("scenario") == scenario:
            groups[tuple(rec.get(k) for k in key)].append(rec)
    out = {}
    for group, recs in groups.items():
        row = {"rounds": len(recs)}
        for path in paths:
            values = [v for v in (_get(r, path) for r in recs) if isinstance(v, (int, float)) and v is not None]
            row[path] = statistics.median(values) if values else None
        out[group] = row
    return out


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def _x(value):
    return "–" if value is None else f"{value:.2f}×"


def machine_line(opts):
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, Linux {platform.release()}"


def build_markdown(records, opts, skipped=(), elapsed=None):
    comps = []
    for rec in records:
        if rec.get("comparator") and rec["comparator"] not in comps and rec.get("scenario") != "error":
            comps.append(rec["comparator"])
    labels = {r["comparator"]: r.get("label", r["comparator"]) for r in records if r.get("label")}
    lines = []
    mode = "quick" if getattr(opts, "quick", False) else "full"
    lines.append(f"# Fan-out benchmark ({mode} run)")
    lines.append("")
    first = next((r for r in records if r.get("server")), {})
    lines.append(
        f"Machine: {machine_line(opts)}. Workers: {first.get('workers', '?')} × {first.get('server', '?')} "
        f"(the ceiling: 1 process). Load processes: {first.get('clients', '?')}. Devices per user: {getattr(opts, 'devices_per_user', '?')}. "
        f"Sent via: {getattr(opts, 'send_via', '?')}; body {getattr(opts, 'body_chars', '?')} characters. "
        f"Medians over {getattr(opts, 'rounds', '?')} round(s), comparators interleaved in each round."
        + (f" Wall time {elapsed / 60:.1f} min." if elapsed else "")
    )
    lines.append("")
    lines.append("Comparators: " + "; ".join(f"`{c}` = {labels.get(c, c)}" for c in comps) + ".")
    lines.append("")

    # Burst
    paths = [
        "deliveries_per_s", "latency_ms.p50", "latency_ms.p99", "fanout_ms.p50", "lost", "worker_cpu_s", "client_cpu_s",
        "wall_s", "worker_hwm_mb", "disorder", "ack_ms.p50", "after_ack_ms.p99",
    ]
    burst = medians(records, "burst", paths)
    if burst:
        lines.append("## Burst: one message at a time, the next once every device has it")
        lines.append("")
        lines.append(
            "deliveries/s = devices reached ÷ time from send to the last device's receipt (median over messages, then over rounds). "
            "CPU columns are cores busy during the phase (CPU seconds ÷ wall seconds): a client near 1 core per load process means client-bound figures."
        )
        lines.append("")
        lines.append(
            "Send → ack is the sender's own round trip (the message stored and published); after ack p99 is receipt minus the sender's ack: the fan-out alone."
        )
        lines.append("")
        lines.append("| N | comparator | deliveries/s | × stock | p50 ms | p99 ms | p99 ÷ stock | fan-out p50 ms | send → ack p50 ms | after ack p99 ms | lost | disorder | worker CPU | client CPU | peak RSS MB |")
        lines.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in sorted({k[1] for k in burst}):
            stock = burst.get(("stock", n), {})
            for c in comps:
                row = burst.get((c, n))
                if not row:
                    continue
                wall = row["wall_s"] or 0
                lines.append(
                    f"| {n} | {c} | {_n(row['deliveries_per_s'])} | {_x(_ratio(row['deliveries_per_s'], stock.get('deliveries_per_s')))} | "
                    f"{_n(row['latency_ms.p50'])} | {_n(row['latency_ms.p99'])} | {_x(_ratio(row['latency_ms.p99'], stock.get('latency_ms.p99')))} | "
                    f"{_n(row['fanout_ms.p50'])} | {_n(row['ack_ms.p50'])} | {_n(row['after_ack_ms.p99'])} | {_n(row['lost'])} | {_n(row['disorder'])} | "
                    f"{_n(row['worker_cpu_s'] / wall if wall else None)} | {_n(row['client_cpu_s'] / wall if wall else None)} | {_n(row['worker_hwm_mb'])} |"
                )
        lines.append("")

    # Rate
    paths = [
        "offered_deliveries_per_s", "deliveries_per_s_overall", "latency_ms.p50", "latency_ms.p99", "lag_growth_ms_per_s",
        "fanout_ms_first_fifth", "fanout_ms_last_fifth", "lost", "worker_cpu_s", "client_cpu_s", "wall_s", "rate",
    ]
    rate = medians(records, "rate", paths)
    if rate:
        first_rate = next((r for r in records if r.get("scenario") == "rate"), {})
        lines.append(f"## Rate: {_n(first_rate.get('rate'))} messages/s for {_n(first_rate.get('seconds'))} s")
        lines.append("")
        lines.append("Lag growth: slope of each message's fan-out completion time against its send time (0 = keeping up).")
        lines.append("")
        lines.append("| N | comparator | offered/s | delivered/s | p50 ms | p99 ms | completion first→last fifth ms | lag growth ms/s | lost | worker CPU | client CPU |")
        lines.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in sorted({k[1] for k in rate}):
            for c in comps:
                row = rate.get((c, n))
                if not row:
                    continue
                wall = row["wall_s"] or 0
                lines.append(
                    f"| {n} | {c} | {_n(row['offered_deliveries_per_s'])} | {_n(row['deliveries_per_s_overall'])} | {_n(row['latency_ms.p50'])} | "
                    f"{_n(row['latency_ms.p99'])} | {_n(row['fanout_ms_first_fifth'])} → {_n(row['fanout_ms_last_fifth'])} | "
                    f"{_n(row['lag_growth_ms_per_s'])} | {_n(row['lost'])} | {_n(row['worker_cpu_s'] / wall if wall else None)} | "
                    f"{_n(row['client_cpu_s'] / wall if wall else None)} |"
                )
        lines.append("")

    # Idle
    idle = medians(records, "idle", ["worker_rss_mb_empty", "worker_rss_mb_idle", "kb_per_device", "connect_s", "connected"])
    if idle:
        lines.append("## Idle: memory per connected device (all workers' RSS, idle N devices − empty, ÷ N)")
        lines.append("")
        lines.append("| N | comparator | empty MB | with N idle MB | KB per device | connect s |")
        lines.append("|---:|---|---:|---:|---:|---:|")
        for n in sorted({k[1] for k in idle}):
            for c in comps:
                row = idle.get((c, n))
                if row:
                    lines.append(
                        f"| {n} | {c} | {_n(row['worker_rss_mb_empty'])} | {_n(row['worker_rss_mb_idle'])} | {_n(row['kb_per_device'])} | {_n(row['connect_s'])} |"
                    )
        lines.append("")

    # Stall
    stall = _stall_rows(records)
    if stall:
        first_stall = next((r for r in records if r.get("scenario") == "stall" and r.get("fraction")), {})
        lines.append(
            f"## Stall: {_n(first_stall.get('rate'))} messages/s of {first_stall.get('body_chars')} characters to N={first_stall.get('n')}; "
            f"after {first_stall.get('stall_after_s')} s, {first_stall.get('fraction', 0):.0%} of the devices stop reading for {_n(first_stall.get('seconds'))} s"
        )
        lines.append("")
        lines.append(
            "Healthy p99: latency of the devices that kept reading, for messages sent after the stall began (the no-stall run: same window). "
            "Dropped: stalled sockets the server let go (TCP left ESTABLISHED), time from the stall. 4008: the product's own closed_slow counter."
        )
        lines.append("")
        lines.append("| comparator | healthy p99 no stall ms | healthy p99 stall ms | ratio | dropped | drop time max s | 4008 (server) | codes seen after resuming | RSS growth MB | lost (healthy) |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")
        for c in comps:
            row = stall.get(c)
            if row:
                lines.append(
                    f"| {c} | {_n(row['p99_0'])} | {_n(row['p99'])} | {_x(_ratio(row['p99'], row['p99_0']))} | {row['dropped']} | "
                    f"{_n(row['drop_max'])} | {_n(row['closed_slow'])} | {row['codes']} | {_n(row['rss_growth'])} | {_n(row['lost'])} |"
                )
        lines.append("")

    # Redis
    redis = medians(records, "redis", ["commands_per_message", "bytes_per_message"])
    if redis:
        lines.append("## Redis per message (INFO commandstats and total_net_input/output_bytes deltas, idle background subtracted)")
        lines.append("")
        lines.append("| comparator | connected members | commands | bytes | commands ÷ smallest room | bytes ÷ smallest room | main commands |")
        lines.append("|---|---:|---:|---:|---:|---:|---|")
        breakdown = {(r["comparator"], r["n"]): r.get("commands_breakdown") for r in records if r.get("scenario") == "redis"}
        for c in comps:
            sizes = sorted(n for (cc, n) in redis if cc == c)
            if not sizes:
                continue
            base = redis[(c, sizes[0])]
            for n in sizes:
                row = redis[(c, n)]
                top = sorted((breakdown.get((c, n)) or {}).items(), key=lambda kv: -kv[1])[:4]
                lines.append(
                    f"| {c} | {n} | {_n(row['commands_per_message'])} | {_n(row['bytes_per_message'])} | "
                    f"{_x(_ratio(row['commands_per_message'], base['commands_per_message']))} | {_x(_ratio(row['bytes_per_message'], base['bytes_per_message']))} | "
                    f"{', '.join(f'{k} {v:g}' for k, v in top)} |"
                )
        lines.append("")

    claims = check_claims(records, opts, burst, stall, redis, idle)
    lines.append("## Claims checked by this run")
    lines.append("")
    if getattr(opts, "quick", False):
        lines.append("Quick run: small N and short windows, so these only show the harness works; the targets are for the full run.")
        lines.append("")
    for claim in claims:
        lines.append(f"- {claim}")
    lines.append("")
    errors = [r for r in records if r.get("scenario") == "error"]
    if errors or skipped:
        lines.append("## Not measured")
        lines.append("")
        for r in errors:
            lines.append(f"- {r['kind']} {r['comparator']} n={r.get('n')} round {r.get('round')}: failed: {r['error']}")
        if skipped:
            lines.append(f"- {len(skipped)} runs skipped: the time budget was spent")
        lines.append("")
    lines.append(REFERENCE)
    return "\n".join(lines) + "\n", claims


def _stall_rows(records):
    by = defaultdict(lambda: {"base": [], "stall": []})
    for r in records:
        if r.get("scenario") == "stall":
            by[r["comparator"]]["stall" if r.get("fraction") else "base"].append(r)
    rows = {}
    for c, d in by.items():
        def med(recs, path):
            values = [v for v in (_get(r, path) for r in recs) if isinstance(v, (int, float))]
            return statistics.median(values) if values else None

        stall = d["stall"]
        codes = defaultdict(int)
        for r in stall:
            for k, v in (r.get("stalled_close_codes") or {}).items():
                codes[k] += v
        rows[c] = {
            "p99_0": med(d["base"], "latency_ms.p99"),
            "p99": med(stall, "latency_ms.p99"),
            "dropped": "/".join(str(x) for x in (sum(r["stalled_dropped"] for r in stall), sum(r["stalled"] for r in stall))) if stall else "–",
            "dropped_all": all(r["stalled_dropped"] == r["stalled"] for r in stall) if stall else None,
            "drop_max": max((r["stalled_drop_s_max"] for r in stall if r.get("stalled_drop_s_max") is not None), default=None),
            "closed_slow": med(stall, "server_closed_slow"),
            "closed_slow_all": all((r.get("server_closed_slow") or 0) >= r["stalled"] for r in stall) if stall else None,
            "codes": ", ".join(f"{k}×{v}" for k, v in sorted(codes.items())) or "–",
            "rss_growth": med(stall, "rss_growth_mb"),
            "lost": med(stall, "lost"),
            "stalled": sum(r["stalled"] for r in stall),
        }
    return rows


def _verdict(ok):
    return "PASS" if ok else ("FAIL" if ok is not None else "n/a ")


def check_claims(records, opts, burst, stall, redis, idle):
    claims = []
    want = getattr(opts, "claim_n", 2000)
    ns = sorted({k[1] for k in burst})
    n = want if want in ns else (ns[-1] if ns else None)
    note = "" if n == want else f" (N={want} not measured; checked at N={n})"
    if n is not None:
        p = burst.get(("project", n), {})
        s = burst.get(("stock", n), {})
        ceil = burst.get(("ceiling", n), {})
        r = _ratio(p.get("deliveries_per_s"), s.get("deliveries_per_s"))
        claims.append(
            f"{_verdict(r >= 8 if r is not None else None)} deliveries/s at N={n}: project {_n(p.get('deliveries_per_s'))} = {_x(r)} stock {_n(s.get('deliveries_per_s'))} (target ≥ 8×){note}"
        )
        r = _ratio(p.get("deliveries_per_s"), ceil.get("deliveries_per_s"))
        claims.append(
            f"{_verdict(r >= 0.6 if r is not None else None)} deliveries/s at N={n}: project = {_x(r)} the ceiling {_n(ceil.get('deliveries_per_s'))} (target ≥ 0.6×){note}"
        )
        r = _ratio(p.get("latency_ms.p99"), s.get("latency_ms.p99"))
        claims.append(
            f"{_verdict(r <= 1 / 8 if r is not None else None)} p99 latency at N={n}: project {_n(p.get('latency_ms.p99'))} ms = "
            f"{'–' if r is None else f'1/{1 / r:.1f}' if r > 0 else '0'} of stock {_n(s.get('latency_ms.p99'))} ms (target ≤ 1/8){note}"
        )
        lost = [rec.get("lost", 0) for rec in records if rec.get("comparator") == "project" and rec.get("scenario") in ("burst", "rate")]
        if lost:
            claims.append(f"{_verdict(sum(lost) == 0)} project lost deliveries in burst and rate runs: {sum(lost)} (target 0)")
        cpu = [(rec["client_cpu_s"] / rec["wall_s"]) for rec in records if rec.get("scenario") == "burst" and rec.get("n") == n and rec.get("wall_s")]
        clients = next((rec.get("clients") for rec in records if rec.get("clients")), 1)
        if cpu and max(cpu) > 0.8 * clients:
            claims.append(f"note: at N={n} the load clients used up to {max(cpu):.2f} cores of {clients} process(es): some figures are client-bound")
    st = stall.get("project")
    if st:
        r = _ratio(st["p99"], st["p99_0"])
        claims.append(
            f"{_verdict(r <= 1.25 if r is not None else None)} stall: healthy devices' p99 with {getattr(opts, 'stall_fraction', 0.1):.0%} stalled = {_x(r)} the no-stall run "
            f"({_n(st['p99'])} vs {_n(st['p99_0'])} ms; target ≤ 1.25×)"
        )
        ok = st["dropped_all"] and st["closed_slow_all"] and st["drop_max"] is not None and st["drop_max"] <= 10
        claims.append(
            f"{_verdict(ok)} stall: every stalled device closed with 4008 within 10 s: server closed_slow {_n(st['closed_slow'])} of {st['stalled']}, "
            f"sockets dropped {st['dropped']}, last after {_n(st['drop_max'])} s"
        )
        lost = st["lost"]
        claims.append(f"{_verdict(lost == 0 if lost is not None else None)} stall: deliveries lost by healthy devices: {_n(lost)} (target 0)")
        g = st["rss_growth"]
        claims.append(f"{_verdict(g < 50 if g is not None else None)} stall: worker RSS growth {_n(g)} MB (target < 50 MB)")
    sizes = sorted(k[1] for k in redis if k[0] == "project")
    if sizes:
        small = sizes[0]
        big = 1000 if 1000 in sizes else sizes[-1]
        a, b = redis[("project", small)], redis[("project", big)]
        same = a["commands_per_message"] is not None and round(a["commands_per_message"]) == round(b["commands_per_message"])
        claims.append(
            f"{_verdict(same)} redis: commands per message at {small} vs {big} members: {_n(a['commands_per_message'])} vs {_n(b['commands_per_message'])} (target: the same)"
        )
        r = _ratio(b["bytes_per_message"], a["bytes_per_message"])
        claims.append(
            f"{_verdict(r <= 4 if r is not None else None)} redis: bytes per message at {big} members = {_x(r)} at {small} "
            f"({_n(b['bytes_per_message'])} vs {_n(a['bytes_per_message'])}; target ≤ 4×)"
        )
    ins = sorted(k[1] for k in idle if k[0] == "project")
    if ins:
        m = want if want in ins else ins[-1]
        kb = idle[("project", m)]["kb_per_device"]
        claims.append(f"{_verdict(kb <= 30 if kb is not None else None)} idle: {_n(kb)} KB per connected device above the empty workers at N={m} (target ≤ 30 KB)")
    return claims


# Plot


COLORS = {
    "project": "#d62728", "stock": "#1f77b4", "pubsub": "#17becf", "per-user": "#9467bd",
    "seed-seq": "#2ca02c", "seed-gather": "#bcbd22", "ceiling": "#000000",
}


def plot(records, path, title=""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    burst = medians(records, "burst", ["deliveries_per_s", "latency_ms.p50", "latency_ms.p99"])
    if not burst:
        return None
    comps = []
    for rec in records:
        if rec.get("scenario") == "burst" and rec["comparator"] not in comps:
            comps.append(rec["comparator"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.2))
    for c in comps:
        ns = sorted(n for (cc, n) in burst if cc == c)
        color = COLORS.get(c)
        p99 = [burst[(c, n)]["latency_ms.p99"] for n in ns]
        p50 = [burst[(c, n)]["latency_ms.p50"] for n in ns]
        dps = [burst[(c, n)]["deliveries_per_s"] for n in ns]
        ax1.plot(ns, p99, "o-", color=color, label=f"{c} p99")
        ax1.plot(ns, p50, "--", color=color, alpha=0.6, label=f"{c} p50")
        ax2.plot(ns, dps, "o-", color=color, label=c)
    ax1.set_title("Latency, send → receipt (burst)")
    ax1.set_xlabel("connected devices N")
    ax1.set_ylabel("ms (log)")
    ax1.set_yscale("log")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=7, ncol=2)
    ax2.set_title("Deliveries per second (burst)")
    ax2.set_xlabel("connected devices N")
    ax2.set_ylabel("deliveries/s (log)")
    ax2.set_yscale("log")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    all_ns = sorted({n for (_, n) in burst})
    plain = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")
    for ax in (ax1, ax2):
        if len(all_ns) > 1 and all_ns[-1] / all_ns[0] >= 4:
            ax.set_xscale("log")
        ax.set_xticks(all_ns)
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(NullFormatter())
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_all(records, opts, out_dir, skipped=(), elapsed=None):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text, claims = build_markdown(records, opts, skipped, elapsed)
    quick = getattr(opts, "quick", False)
    (out_dir / ("latest-quick.md" if quick else "latest.md")).write_text(text)
    first = next((r for r in records if r.get("server")), {})
    title = (
        f"{machine_line(opts)} — {first.get('workers', '?')} × {first.get('server', '?')} workers, "
        f"{first.get('clients', '?')} load processes, medians of {getattr(opts, 'rounds', '?')} round(s)"
    )
    try:
        plot(records, out_dir / ("fanout-quick.png" if quick else "fanout.png"), title)
    except Exception as exc:  # noqa: BLE001 - the table matters more than the picture
        text += f"\n(plot failed: {exc})\n"
    failed = any(c.startswith("FAIL") for c in claims) or any(r.get("scenario") == "error" for r in records)
    return text, failed
