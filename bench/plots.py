"""The report's figures (matplotlib, Agg backend), one PNG per section."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
    return plt


GUARD_MODES = (
    ("new", "new shape", "#4c72b0"),
    ("learning", "learning (once per shape)", "#8172b2"),
    ("learned", "learned shape", "#55a868"),
    ("off", "learning off", "#937860"),
)


def guard(data: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 3.4))
    groups = [
        (f"{'sqlglotc' if row['sqlglotc'] else 'pure Python'}\n{policy}", row[policy]["modes"])
        for row in data["builds"]
        for policy in ("simple", "masked")
    ]
    width = 0.8 / len(GUARD_MODES)
    for n, (mode, label, color) in enumerate(GUARD_MODES):
        xs = [i - 0.4 + width * (n + 0.5) for i in range(len(groups))]
        ax.bar(
            xs, [m[mode]["cpu_us"]["median"] / 1000 for _, m in groups], width=width, color=color, label=label
        )
        ax.scatter(
            xs,
            [m[mode]["cpu_us"]["p99"] / 1000 for _, m in groups],
            color="#c44e52",
            marker="_",
            s=80,
            label="p99" if n == 0 else None,
        )
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="target < 1 ms")
    ax.set_xticks(range(len(groups)), [name for name, _ in groups])
    ax.set_ylabel("CPU ms per call")
    ax.set_title("Guard cost per call (whole gate: analyse, decide, rewrite, re-validate, audit)", fontsize=9)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


E2E_COLORS = ("#4c72b0", "#dd8452", "#8172b2", "#55a868")


def e2e(rows: list[dict[str, Any]], path: Path) -> None:
    plt = _pyplot()
    paths = sorted({(r["transport"], r["upstream"]) for r in rows}, key=lambda p: (p[1], p[0]))
    fig, axes = plt.subplots(len(paths), 1, figsize=(7.5, 2.4 * len(paths) + 0.6), squeeze=False)
    for ax, (transport, upstream) in zip(axes[:, 0], paths, strict=True):
        group = [r for r in rows if r["transport"] == transport and r["upstream"] == upstream]
        labels = list(dict.fromkeys(r["label"] for r in group))
        workloads = list(dict.fromkeys(r["workload"] for r in group))
        height = 0.8 / max(1, len(workloads))
        for n, workload in enumerate(workloads):
            values = {r["label"]: r for r in group if r["workload"] == workload}
            shown = [i for i, label in enumerate(labels) if label in values]
            offset = -0.4 + height * (n + 0.5)
            ax.barh(
                [i + offset for i in shown],
                [values[labels[i]]["median"] for i in shown],
                height=height,
                color=E2E_COLORS[n % len(E2E_COLORS)],
                label=workload,
            )
            ax.scatter(
                [values[labels[i]]["p99"] for i in shown],
                [i + offset for i in shown],
                marker="|",
                color="#c44e52",
                s=40,
            )
        ax.set_yticks(range(len(labels)), labels)
        ax.invert_yaxis()
        ax.set_title(f"{transport} front, upstream {upstream} (bars: median; ticks: p99)", fontsize=9)
        ax.set_xlabel("ms per tools/call")
    axes[0, 0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def throughput(data: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    for label, rows in data["results"].items():
        xs = [r["clients"] for r in rows]
        left.plot(xs, [r["calls_per_s"] for r in rows], marker="o", label=label)
        right.plot(xs, [r["latency_ms"]["p99"] for r in rows], marker="o", label=label)
    for ax, title in ((left, "calls/s"), (right, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(data["levels"], [str(n) for n in data["levels"]])
        ax.set_xlabel("concurrent HTTP clients")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def scale(data: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(10.5, 3.2))
    rules = data["rules"]
    a.plot(
        [r["rules"] for r in rules], [r["decide_us"]["median"] for r in rules], marker="o", label="indexed"
    )
    a.plot(
        [r["rules"] for r in rules],
        [r["unindexed_decide_us"]["median"] for r in rules],
        marker="o",
        label="unindexed worst case",
    )
    a.axhline(200, color="grey", linestyle="--", linewidth=1, label="target at 100 rules")
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("rules")
    a.set_title("policy decision, median µs")
    a.legend(fontsize=7)
    per_call = data["catalog_per_call"]
    b.plot(
        [r["tables"] for r in per_call],
        [r["cpu_us"]["median"] for r in per_call],
        marker="o",
        color="#4c72b0",
        label="gate CPU per call (µs)",
    )
    b.set_ylim(bottom=0)
    b.set_ylabel("µs per call")
    loads = data["catalog_load"]
    twin = b.twinx()
    twin.plot(
        [r["tables"] for r in loads],
        [r["load_ms"] for r in loads],
        marker="s",
        color="#dd8452",
        label="catalog load from a database (ms)",
    )
    twin.set_ylim(bottom=0)
    twin.set_ylabel("ms to load")
    b.set_xscale("log")
    b.set_xlabel("tables in catalog")
    b.set_title("catalog size")
    lines = b.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    b.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="lower right")
    rs = data["result_size"]
    names = ["1,000 rows", f"{rs['rows']:,} rows"]
    for who, color, off in (("proxy", "#4c72b0", -0.2), ("server", "#55a868", 0.2)):
        peaks = [rs[t]["peak_mib"][who] or 0 for t in ("small", "big")]
        c.bar([i + off for i in range(2)], peaks, width=0.4, color=color, label=f"{who} peak RSS")
    c.set_xticks(range(2), names)
    top = max((rs[t]["peak_mib"][w] or 0) for t in ("small", "big") for w in ("proxy", "server"))
    c.set_ylim(0, top * 1.35)
    c.set_ylabel("MiB")
    c.set_title(f"capped query (row cap {rs['cap']})")
    c.legend(fontsize=7, loc="upper center", ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def soak(data: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3))
    samples = data["rss_mib"]
    for who in ("proxy", "server"):
        ax.plot([s["calls"] for s in samples], [s[who] for s in samples], marker=".", label=who)
    ax.set_xlabel("calls after warm-up")
    ax.set_ylabel("RSS MiB")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Soak: {data['calls']:,} calls through the proxy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
