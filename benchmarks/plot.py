"""PNG charts of the results (matplotlib, the optional extra ``pip install -e ".[plot]"``)."""


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise SystemExit('--plot needs matplotlib: pip install -e ".[plot]"') from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def bench_chart(data, path):
    """freenet / peer time per workload (log scale; below 1 freenet is faster)."""
    plt = _pyplot()
    rows = [r for r in data["workloads"] if r["ratios"]]
    peers = sorted({k for r in rows for k in r["ratios"]})
    fig, ax = plt.subplots(figsize=(10, max(3, 0.28 * len(rows) * max(1, len(peers)) / 2 + 1.5)))
    height = 0.8 / max(1, len(peers))
    for i, peer in enumerate(peers):
        ys = [j + i * height for j in range(len(rows))]
        ax.barh(ys, [r["ratios"].get(peer, 0) or 0 for r in rows], height=height, label=peer)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks([j + 0.4 - height / 2 for j in range(len(rows))], [r["name"] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("freenet time / peer time (median; < 1: freenet faster)")
    ax.set_title(f"freenet vs its CPU peers, {data['machine'].get('cpu')}, {data['threads']} threads")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def gap_chart(gap, path):
    """CPU-days per GPU-day for each network workload and GPU (freenet), measured or estimated."""
    plt = _pyplot()
    rows = [r for r in gap["rows"] if r["group"] == "network"]
    gpus = list(gap["gpus"])
    p = gap["precision"]
    series = [(f"{g} ({p}, estimate)", [r["estimates"][g][p]["freenet_ratio"] for r in rows]) for g in gpus]
    if gap["measured_gpu"]:
        series.insert(0, ("GPU (measured)", [r.get("measured", {}).get("freenet_ratio", 0) for r in rows]))
    fig, ax = plt.subplots(figsize=(10, 1.5 + 0.25 * len(rows) * len(series) / 2))
    height = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        ax.barh([j + i * height for j in range(len(rows))], values, height=height, label=label)
    ax.set_xscale("log")
    ax.set_yticks([j + 0.4 - height / 2 for j in range(len(rows))], [r["workload"] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("days on this CPU with freenet per GPU-day")
    kind = "measured and estimated" if gap["measured_gpu"] else "GPU side ESTIMATED (roofline on published peaks)"
    ax.set_title(f"The CPU-vs-GPU gap per workload ({kind})", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
