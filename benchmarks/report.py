"""The suite's results as console lines and as a Markdown report (from the dict of ``suite.run``)."""

GROUP_TITLES = {
    "kernel": "Kernels: conv2d 3x3, stride 1, padding 1 (time per call; GFLOP/s = 2*N*C*K*H*W*9 per conv, x3 with backward)",
    "network": "Networks: training steps (forward, backward, SGD step) and inference (eval; PyTorch eager under no_grad, freenet through GoNet.inference())",
    "engine": "Engine overhead: graphs so small that Python per op sets the time",
}


def fmt_s(seconds):
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}"


def fmt_num(x, digits=3):
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def console_row(row, reported=()):
    """One line per workload; ``reported``: frameworks whose absence was already said once."""
    parts = []
    for name, r in row["results"].items():
        g = r.get("gflops")
        parts.append(f"{name} {fmt_s(r['median_s'])} [{fmt_s(r['min_s'])}-{fmt_s(r['max_s'])}]"
                     + (f" {g['median']:.1f} GFLOP/s" if g else ""))
    ratios = "  ".join(f"{k} {v:.2f}" for k, v in row["ratios"].items())
    missing = "; ".join(f"{k}: {v}" for k, v in row["not_measured"].items() if k not in reported)
    line = f"{row['name']:30s} " + " | ".join(parts) + (f"  ->  {ratios}" if ratios else "")
    return line + (f"  (not measured: {missing})" if missing else "")


def _cell(r):
    if r is None:
        return "-"
    return f"{fmt_s(r['median_s'])} ({fmt_s(r['min_s'])} - {fmt_s(r['max_s'])})"


def frameworks_of(data):
    return list(data["frameworks"])


def machine_md(m):
    lines = ["| fact | value |", "|---|---|",
             f"| CPU | {m.get('cpu')} ({'virtual machine' if m.get('hypervisor') else 'bare metal or unknown'}) |",
             f"| cores | {m.get('cores')} logical, {m.get('usable_cores', m.get('cores'))} usable |",
             f"| threads used | {m.get('threads')} for every framework |"]
    if "isa_level" in m:
        lines.append(f"| ISA level | {m['isa_level']}; also {', '.join(m.get('isa_extras') or []) or 'nothing more'} |")
    for lib in m.get("blas", []):
        lines.append(f"| BLAS | {lib.get('internal_api')} {lib.get('version')} ({lib.get('architecture')}, "
                     f"{lib.get('threading_layer')}); freenet pins it to 1 thread and runs blocks on its own pool |")
    if "sgemm" in m:
        s = m["sgemm"]
        for key, label in (("freenet.kernels.matmul", "freenet.kernels.matmul (deterministic blocked GEMM)"),
                           ("numpy", "plain NumPy (BLAS threads = suite threads)")):
            r = s[key]
            lines.append(f"| SGEMM {s['n']}^3, {label} | {r['median_gflops']:.1f} GFLOP/s median "
                         f"({r['min_gflops']:.1f} - {r['max_gflops']:.1f}) |")
    if "bandwidth" in m:
        b = m["bandwidth"]
        lines.append(f"| memory copy bandwidth | {b['median_gbs']:.1f} GB/s median, {b['max_gbs']:.1f} best ({b['note']}) |")
    p = m.get("peak_fp32")
    if p:
        peak = f"{p['gflops']:.1f} GFLOP/s" if p.get("gflops") else "unknown"
        lines.append(f"| theoretical fp32 peak | {peak} = {p['formula']} ({p['vector']}) |")
        lines.append(f"| peak assumptions | {p['assumptions']} |")
        if p.get("gflops") and "sgemm" in m:
            best = max(m["sgemm"]["numpy"]["median_gflops"], m["sgemm"]["freenet.kernels.matmul"]["median_gflops"])
            lines.append(f"| SGEMM / peak | {100 * best / p['gflops']:.0f}% (best median SGEMM above) |")
    lines.append(f"| software | Python {m.get('python')}, NumPy {m.get('numpy')}, Numba {m.get('numba')}; "
                 f"{m.get('platform')} |")
    return "\n".join(lines)


def group_md(data, group):
    rows = [r for r in data["workloads"] if r["group"] == group]
    if not rows:
        return ""
    names = [n for n in frameworks_of(data) if any(n in r["results"] for r in rows)]
    peers = [n for n in names if not n.startswith("freenet")]
    show_gflops = group != "engine"
    head = ["workload"] + [f"{n} median (min - max)" for n in names]
    if show_gflops:
        head += [f"{n} GFLOP/s" for n in names]
    if group == "network":
        head += ["freenet items/s"]
    head += [f"freenet / {n}" for n in peers] + (["best freenet / best torch CPU"] if len(peers) > 1 else [])
    head += ["others' CPU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        res = r["results"]
        cells = [f"`{r['name']}`"] + [_cell(res.get(n)) for n in names]
        if show_gflops:
            cells += [f"{res[n]['gflops']['median']:.1f}" if n in res and "gflops" in res[n] else "-" for n in names]
        if group == "network":
            cells.append(fmt_num(res["freenet"]["items_per_s"]) if "freenet" in res else "-")
        cells += [fmt_ratio(r["ratios"].get(f"freenet/{n}")) for n in peers]
        if len(peers) > 1:
            best, mine = r["best"].get("torch"), r["best"].get("freenet")
            if mine:  # freenet timed in both layouts: the faster of each
                cells.append(f"{fmt_ratio(r['ratios'].get('freenet-best/torch-best'))} ({mine} vs {best})")
            else:
                cells.append(f"{fmt_ratio(r['ratios'].get('freenet/torch-best'))} (vs {best})" if best else "-")
        share = r.get("others_cpu_share")
        runs = f" (best of {r['attempts']} runs)" if r.get("attempts", 1) > 1 else ""
        cells.append("-" if share is None else f"{100 * share:.0f}%{runs}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def probes_md(data):
    if not data.get("probes"):
        return "Not run (`--no-probes`)."
    lines = ["| workload | framework | first step, cold Numba cache | first step, warm cache | import | "
             "next steps (still warming up) | peak RSS (warm run) | RSS after import | peak RSS, cold run | "
             "others' CPU |", "|" + "---|" * 10]
    for p in data["probes"]:
        cold, warm = p["cold"], p["warm"]
        if "error" in warm or "error" in cold:
            lines.append(f"| `{p['workload']}` | {p['framework']} | not measured: {cold.get('error') or warm.get('error')} "
                         "| | | | | | | |")
            continue
        lines.append(f"| `{p['workload']}` | {p['framework']} | {fmt_s(cold['first_step_s'])} | "
                     f"{fmt_s(warm['first_step_s'])} | {fmt_s(warm['import_s'])} | {fmt_s(warm['later_step_s'])} | "
                     f"{warm['rss_peak_mb']:.0f} MB | {warm['rss_import_mb']:.0f} MB | {cold['rss_peak_mb']:.0f} MB | "
                     + ("-" if p.get("others_cpu_share") is None else f"{100 * p['others_cpu_share']:.0f}%") + " |")
    return "\n".join(lines)


def not_measured_md(data):
    if not data["not_measured"]:
        return "Every requested peer was measured."
    return "\n".join(f"- **{name}**: not measured: {why}" for name, why in data["not_measured"].items())


def _spin_md(settings):
    spin = settings.get("gomp_spincount")
    return (f" The frameworks share one OpenMP runtime (PyTorch's libgomp) in this process; its idle "
            f"threads spin {spin} iterations before they sleep (`GOMP_SPINCOUNT`, see "
            "`benchmarks/__init__.py`)." if spin else "")


def markdown(data):
    fws = ", ".join(f"{n} {i.get('version') or ''} ({i['device']}, {i['layout']})".replace("  ", " ")
                    for n, i in data["frameworks"].items())
    s = data["settings"]
    out = [f"# freenet benchmark results{' (quick)' if data.get('quick') else ''}", "",
           f"Command: `{data.get('command') or 'python -m benchmarks'}`, {data['created']}, "
           f"{data.get('seconds', 0) / 60:.1f} minutes.", "", _source_md(data.get("source")), "",
           f"Every figure is the median of {s['repeats']} samples (each sample averages enough calls to last "
           f"at least {s['sample_s']} s) after {s['warmup']} warm-up call(s), with min and max; the frameworks "
           "alternate sample by sample so that machine drift hits all alike. Ratios are freenet time / peer "
           "time: below 1 freenet is faster." + _spin_md(s), "", _load_md(data), "",
           "## Machine", "", machine_md(data["machine"]), "",
           "## Frameworks", "", f"Measured: {fws}.", "", not_measured_md(data), ""]
    for group in ("kernel", "network", "engine"):
        table = group_md(data, group)
        if table:
            out += [f"## {GROUP_TITLES[group]}", "", table, ""]
    out += ["## Costs a user feels: time to the first training step and peak memory", "",
            "Each in a fresh process (`benchmarks/probe.py`): cold = `NUMBA_CACHE_DIR` set to a new empty "
            "folder (every kernel compiles, as on the first run after installing), warm = the same folder "
            "again. Time to first step counts from starting the process (Python start-up and imports "
            "included). Peak RSS is the process's peak resident memory (`VmHWM`) after the steps of the warm run.", "", probes_md(data), ""]
    return "\n".join(out)


def _source_md(src):
    if not src or not src.get("commit"):
        return "Source: not a git checkout."
    mods = src.get("modified_files") or []
    return (f"Source: commit `{src['commit'][:12]}`" + (f", with uncommitted changes in {len(mods)} file(s) of "
            "freenet/ and kernels/ (the measured code is the work tree)." if mods else ", clean work tree."))


def _load_md(data):
    share = data.get("others_cpu_share")
    if share is None:
        return ""
    start, end = data.get("loadavg_start"), data.get("loadavg_end")
    return (f"The machine is shared: other processes used {100 * share:.0f}% of its CPU time during the run "
            f"(load average {start[0]:.1f} at the start, {end[0]:.1f} at the end, on {data['machine'].get('cores')} cores). "
            "The last column of each table, \"others' CPU\", gives that share while the workload was timed: where it "
            "is high, every framework was slowed, and PyTorch's OpenMP threads (which wait for each other at "
            "every op) far more than freenet: compare rows near 0%." + (
                f" Before each workload the suite waited up to {data['settings']['quiet_wait_s']:g} s for the "
                "machine to be quiet (other processes under 10% of it)." if data["settings"].get("quiet_wait_s") else "")
            + (f" Workloads timed while others used more than 25% were timed again (up to "
               f"{data['settings']['retry_contended']} more time(s)) and the quieter run kept."
               if data["settings"].get("retry_contended") else ""))
