"""The CPU-vs-GPU gap, per workload, from the suite's measurements.

Where PyTorch sees a CUDA device, the suite times the same workloads on it (framework ``torch-cuda``)
and the gap is a measured ratio. Where it does not, the GPU side is an ESTIMATE, always labelled so,
from the published figures in ``gpus.json`` and this model:

    GPU time of a step = sum over its kernels of max(FLOPs / peak FLOP/s, bytes / memory bandwidth)
                         + number of kernels x launch cost

with the per-kernel FLOPs and bytes of ``costs.py`` and the launch cost of ``gpus.json``. Peak
FLOP/s depends on the precision: fp32 (CUDA cores), tf32 (tensor cores; PyTorch's default for cuDNN
convolutions on Ampere and later) or bf16 (tensor cores, mixed-precision training). The model is a
best case for the GPU's arithmetic (every kernel at peak compute or peak bandwidth), so for compute- or
memory-bound steps the "N CPU-days per GPU-day" it gives is an upper bound of the real gap; for
launch-bound steps (small batches) it rests on the assumed launch cost, which CUDA graphs can beat.
"""

import json
from pathlib import Path

from benchmarks import costs, spec

GPUS_JSON = Path(__file__).with_name("gpus.json")
PRECISIONS = {"fp32": "fp32_tflops", "tf32": "tf32_tflops", "bf16": "bf16_tflops"}
DAY = 86400.0
YEAR = 365.25 * DAY

# An AlphaGo-Zero-style run: self-play games x moves x playouts, one net evaluation per playout.
AGZ_RUN = {
    "games": 4.9e6, "moves_per_game": 200, "playouts_per_move": 1600, "evals_per_playout": 1, "eval_batch": 8,
    "train_steps": 700_000, "train_batch": 2048,
    "source": "D. Silver et al., 'Mastering the game of Go without human knowledge', Nature 550, 354-359 (2017), "
              "20-block run: 4.9 million self-play games, 1,600 MCTS simulations per move, leaf positions "
              "evaluated in mini-batches of 8, 700,000 training steps of 2,048 positions.",
    "assumptions": "200 moves per game is an assumption (the paper gives no mean game length); one net "
                   "evaluation per playout (no cache); 19x19 nets of the same shape as go19-6x128, scaled "
                   "by blocks and filters.",
}
AGZ_NETS = {  # name -> (net, what it stands for); the measured reference is go19-6x128
    "6x64": (spec.SCALED_GO_NETS["go19-6x64"], "a small net"),
    "6x128": (spec.GO_NETS["go19-6x128"], "the suite's go19-6x128 (measured)"),
    "10x128": (spec.SCALED_GO_NETS["go19-10x128"], "a mid-size net"),
    "20x256": (spec.SCALED_GO_NETS["go19-20x256"], "AlphaGo Zero's 20-block net"),
    "40x256": (spec.SCALED_GO_NETS["go19-40x256"], "Leela-Zero-size net (its last, largest nets)"),
}
REF_INFER, REF_TRAIN = "net/go19-6x128/infer-b8", "net/go19-6x128/train-b64"


def load_gpus(path=GPUS_JSON):
    with open(path) as f:
        return json.load(f)


def roofline(cost, gpu, precision="tf32", launch_us=5.0):
    """Estimated seconds of one step on ``gpu`` (a dict of gpus.json) and what bounds it."""
    peak = gpu[PRECISIONS[precision]] * 1e12
    bw = gpu["bandwidth_gbs"] * 1e9
    launches = cost.launches or [(cost.flops, cost.bytes)]
    compute = sum(f / peak for f, _ in launches)
    memory = sum(b / bw for _, b in launches)
    work = sum(max(f / peak, b / bw) for f, b in launches)
    launch = cost.kernels * launch_us * 1e-6
    bound = "launch" if launch > work else ("compute" if compute >= memory else "memory")
    return {"seconds": work + launch, "compute_s": compute, "memory_s": memory, "launch_s": launch, "bound": bound}


def cpu_times(row):
    """(freenet median, fastest PyTorch CPU median or None, its name) of a result row."""
    res = row["results"]
    torch = {n: r["median_s"] for n, r in res.items() if n in ("torch", "torch-cl")}
    best = min(torch, key=torch.get) if torch else None
    return (res["freenet"]["median_s"] if "freenet" in res else None, torch.get(best), best)


def compute(data, gpus=None, precision="tf32", headline="H100 SXM", workload_costs=None):
    """The gap, as a JSON-ready dict, from the suite's result dict ``data``.

    ``workload_costs``: name -> costs.Cost (default: rebuilt from ``workloads.all_workloads``).
    """
    gpus = gpus or load_gpus()
    launch_us = gpus["launch_overhead_us"]["value"]
    if workload_costs is None:
        from benchmarks.workloads import all_workloads
        workload_costs = {n: w.cost for n, w in all_workloads(data.get("size", "full")).items()}
    measured_gpu = any("torch-cuda" in r["results"] for r in data["workloads"])
    rows = []
    for row in data["workloads"]:
        cost = workload_costs.get(row["name"])
        fn_s, torch_s, torch_name = cpu_times(row)
        if cost is None or fn_s is None:
            continue
        entry = {"workload": row["name"], "group": row["group"], "train": bool(row["meta"].get("train")),
                 "freenet_s": fn_s, "torch_cpu_s": torch_s, "torch_cpu_variant": torch_name, "estimates": {}}
        for name, gpu in gpus["gpus"].items():
            est = {p: roofline(cost, gpu, p, launch_us) for p in PRECISIONS}
            entry["estimates"][name] = {p: dict(e, freenet_ratio=fn_s / e["seconds"],
                                                torch_ratio=torch_s / e["seconds"] if torch_s else None)
                                        for p, e in est.items()}
        if "torch-cuda" in row["results"]:
            g = row["results"]["torch-cuda"]["median_s"]
            entry["measured"] = {"gpu_s": g, "freenet_ratio": fn_s / g, "torch_ratio": torch_s / g if torch_s else None}
        rows.append(entry)
    return {"schema": "freenet-gap/1", "measured_gpu": measured_gpu,
            "gpu_note": (f"measured: PyTorch on {data.get('gpu_name') or 'a CUDA device'}" if measured_gpu else
                         "No GPU was measured: PyTorch sees no CUDA device on this machine (or is not installed). "
                         "Every GPU figure here is an ESTIMATE from published peak figures and a roofline model, "
                         "not a measurement."),
            "precision": precision, "headline_gpu": headline, "launch_overhead_us": launch_us,
            "bench": {"command": data.get("command"), "created": data.get("created"), "threads": data.get("threads"),
                      "cpu": data.get("machine", {}).get("cpu"), "quick": data.get("quick")},
            "rows": rows, "agz": agz(data, gpus, precision, launch_us, headline),
            "gpus": {n: {k: v for k, v in g.items()} for n, g in gpus["gpus"].items()}}


def agz(data, gpus, precision, launch_us, headline="H100 SXM", run=AGZ_RUN, nets=AGZ_NETS):
    """An AlphaGo-Zero-style run on this CPU and on each GPU (estimate), for nets from 6x64 to 40x256.

    CPU time per evaluation and per trained position: the measured go19-6x128 rate (effective GFLOP/s
    at batch 8 for inference, at batch 64 for training) applied to each net's FLOPs; exact for 6x128,
    an extrapolation by FLOPs for the others.
    """
    by_name = {r["name"]: r for r in data["workloads"]}
    if REF_INFER not in by_name or REF_TRAIN not in by_name:
        return {"missing": f"needs {REF_INFER} and {REF_TRAIN} in the results"}
    ref_net = spec.GO_NETS["go19-6x128"]
    b_inf, b_train = run["eval_batch"], spec.GO_TRAIN_BATCH["go19-6x128"]
    ref_inf = costs.go_net_cost(b_inf, False, **ref_net).flops
    ref_train = costs.go_net_cost(b_train, True, **ref_net).flops
    evals = run["games"] * run["moves_per_game"] * run["playouts_per_move"] * run["evals_per_playout"]
    positions = run["train_steps"] * run["train_batch"]
    out = {"run": run, "evaluations": evals, "trained_positions": positions, "nets": {}}
    frameworks = {}
    for fw in ("freenet", "torch-best", "torch-cuda"):
        ti, tt = _ref_time(by_name[REF_INFER], fw), _ref_time(by_name[REF_TRAIN], fw)
        if ti and tt:
            frameworks[fw] = (ti, tt)
    for label, (net, what) in nets.items():
        inf = costs.go_net_cost(b_inf, False, **net)
        train_big = costs.go_net_cost(run["train_batch"], True, **net)
        entry = {"what": what, "gflop_per_eval": inf.flops / b_inf / 1e9, "cpu": {}, "gpu_estimate": {}}
        for fw, (ti, tt) in frameworks.items():
            train_scale = costs.go_net_cost(b_train, True, **net).flops / ref_train
            if fw == "torch-cuda":  # measured on a GPU: scale by the model's time ratio between the nets
                g = gpus["gpus"][headline]
                inf_scale = (roofline(inf, g, precision, launch_us)["seconds"]
                             / roofline(costs.go_net_cost(b_inf, False, **ref_net), g, precision, launch_us)["seconds"])
                train_scale = (roofline(costs.go_net_cost(b_train, True, **net), g, precision, launch_us)["seconds"]
                               / roofline(costs.go_net_cost(b_train, True, **ref_net), g, precision, launch_us)["seconds"])
            else:  # on a CPU the effective GFLOP/s is what carries over between nets
                inf_scale = inf.flops / ref_inf
            per_eval, per_pos = ti * inf_scale / b_inf, tt * train_scale / b_train
            total = evals * per_eval + positions * per_pos
            where = entry.setdefault("gpu_measured", {}) if fw == "torch-cuda" else entry["cpu"]
            where[fw] = {"seconds_per_eval": per_eval, "seconds_per_trained_position": per_pos, "total_s": total,
                         "years": total / YEAR, "extrapolated": label != "6x128"}
        for gname, g in gpus["gpus"].items():
            per_eval = roofline(inf, g, precision, launch_us)["seconds"] / b_inf
            per_pos = roofline(train_big, g, precision, launch_us)["seconds"] / run["train_batch"]
            total = evals * per_eval + positions * per_pos
            entry["gpu_estimate"][gname] = {"seconds_per_eval": per_eval, "seconds_per_trained_position": per_pos,
                                            "total_s": total, "days": total / DAY}
        out["nets"][label] = entry
    return out


def _ref_time(row, fw):
    res = row["results"]
    if fw == "torch-best":
        t = [res[n]["median_s"] for n in ("torch", "torch-cl") if n in res]
        return min(t) if t else None
    return res[fw]["median_s"] if fw in res else None


# ---------------------------------------------------------------------------------------------- report

def _days(x):
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _dur(seconds):
    if seconds is None:
        return "-"
    if seconds >= YEAR:
        return f"{seconds / YEAR:,.0f} years" if seconds >= 100 * YEAR else f"{seconds / YEAR:.1f} years"
    if seconds >= DAY:
        return f"{seconds / DAY:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    from benchmarks.report import fmt_s
    return fmt_s(seconds)


def markdown(gap):
    from benchmarks.report import fmt_s
    p, head = gap["precision"], gap["headline_gpu"]
    label = "measured" if gap["measured_gpu"] else "ESTIMATE"
    b = gap["bench"]
    out = ["# The CPU-vs-GPU gap", "",
           f"CPU figures: measured by `{b['command'] or 'python -m benchmarks'}` ({b['created']}) on {b['cpu']} "
           f"with {b['threads']} threads{' (quick run)' if b.get('quick') else ''}; medians.", "",
           f"**GPU figures: {gap['gpu_note']}**", ""]
    if not gap["measured_gpu"]:
        out += ["The estimate's model (`benchmarks/gap.py`): GPU time of a step = sum over its kernels of "
                "max(FLOPs / peak FLOP/s, bytes / memory bandwidth) + kernels x "
                f"{gap['launch_overhead_us']:g} us launch cost, with the FLOPs, bytes and kernels of each workload "
                "counted from its shapes (`benchmarks/costs.py`) and published peaks (`benchmarks/gpus.json`, "
                "sources below). It assumes the GPU runs every kernel at its peak compute or bandwidth, a best case "
                "for the GPU's arithmetic, so where a row is compute- or memory-bound the real gap is smaller. "
                "Where it is launch-bound (small batches), the assumed launch cost decides: CUDA graphs or fused "
                "kernels can launch faster, so there the real gap could be larger. Precision: "
                f"**{p}** unless a column says otherwise.", ""]
    train_rows = [r for r in gap["rows"] if r["train"]]
    out += [f"## One GPU-day of training is how many days on this CPU ({label})", ""]
    for r in train_rows:
        e = r["estimates"][head][p]
        if "measured" in r:
            m = r["measured"]
            out.append(f"- `{r['workload']}`: one GPU-day (measured, PyTorch CUDA) is **{_days(m['freenet_ratio'])} days** "
                       f"on this CPU with freenet ({_days(m['torch_ratio'])} with PyTorch CPU).")
        out.append(f"- `{r['workload']}`: one {head}-day ({p}, estimate) is **{_days(e['freenet_ratio'])} days** on "
                   f"this CPU with freenet ({_days(e['torch_ratio'])} with PyTorch CPU); estimated GPU step "
                   f"{fmt_s(e['seconds'])} ({e['bound']}-bound), CPU step {fmt_s(r['freenet_s'])} freenet, "
                   f"{fmt_s(r['torch_cpu_s'])} PyTorch ({r['torch_cpu_variant']}).")
    out += ["", f"CPU-days per GPU-day, every GPU, {p} (freenet / PyTorch CPU), estimate:", ""]
    gnames = list(gap["gpus"])
    out += ["| workload | freenet CPU step | PyTorch CPU step | " + " | ".join(gnames) + " |",
            "|" + "---|" * (3 + len(gnames))]
    for r in gap["rows"]:
        if r["group"] != "network":
            continue
        cells = [f"`{r['workload']}`", fmt_s(r["freenet_s"]), fmt_s(r["torch_cpu_s"])]
        cells += [f"{_days(r['estimates'][g][p]['freenet_ratio'])} / {_days(r['estimates'][g][p]['torch_ratio'])}"
                  for g in gnames]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", f"## Every workload on the {head} (estimate: GPU time and CPU/GPU ratio per precision)", "",
            "| workload | freenet CPU | " + " | ".join(f"{head} {q} (bound) | CPU/GPU {q}" for q in PRECISIONS) + " |",
            "|" + "---|" * (2 + 2 * len(PRECISIONS))]
    for r in gap["rows"]:
        cells = [f"`{r['workload']}`", fmt_s(r["freenet_s"])]
        for q in PRECISIONS:
            e = r["estimates"][head][q]
            cells += [f"{fmt_s(e['seconds'])} ({e['bound']})", _days(e["freenet_ratio"])]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", *agz_md(gap), *scaling_md(gap), "", "## Published GPU figures used", "",
            "| GPU | fp32 TFLOPS | TF32 tensor TFLOPS | BF16 tensor TFLOPS | memory GB/s | source |", "|---|---|---|---|---|---|"]
    for n, g in gap["gpus"].items():
        out.append(f"| {n} | {g['fp32_tflops']:g} | {g['tf32_tflops']:g} | {g['bf16_tflops']:g} | {g['bandwidth_gbs']:g} "
                   f"| {g['source']} |")
    out += ["", "Tensor-core figures are dense (the datasheets' figures with sparsity halved). Launch cost: "
            f"{gap['launch_overhead_us']:g} us per kernel (an assumption, see `gpus.json`)."]
    return "\n".join(out)


def machines_to_match(days_per_gpu_day, efficiency):
    """Machines like this one, each adding ``efficiency`` of its own speed, that do one GPU-day in a day."""
    return days_per_gpu_day / efficiency


def scaling_md(gap):
    """The measured MPI scaling (``benchmarks.scaling``) and, from it, machines per GPU (projected)."""
    from benchmarks import scaling

    data = gap.get("scaling")
    if not data:
        return []
    head, p = gap["headline_gpu"], gap["precision"]
    out = ["", *scaling.markdown(data), "",
           f"How many of these machines (all their cores each) match one {head} ({p}, estimate), if every added "
           "machine keeps the efficiency measured above between processes of one host (PROJECTED: a network "
           "between machines can only lower it):", ""]
    # the gap row of each scaling workload: self-play is batched net inference
    row_of = {"mnist-train": "net/mnist-cnn/train-b128", "go9-selfplay": "net/go9-6x64/infer-b64"}
    for name, w in data["workloads"].items():
        k = max(w["efficiency"], key=int)
        r = next((r for r in gap["rows"] if r["workload"] == row_of.get(name)), None)
        if r is None:
            continue
        days = r["estimates"][head][p]["freenet_ratio"]
        out.append(f"- `{r['workload']}` ({name}: {100 * w['efficiency'][k]:.0f}% at K = {k}): one {head}-day is "
                   f"{_days(days)} days here, so about **{_days(machines_to_match(days, w['efficiency'][k]))} "
                   "machines** like this one.")
    return out


def agz_md(gap):
    a = gap["agz"]
    if "missing" in a:
        return ["## An AlphaGo-Zero-style run", "", f"Not computed: {a['missing']}."]
    run, head, p = a["run"], gap["headline_gpu"], gap["precision"]
    gnames = list(gap["gpus"])
    out = ["## An AlphaGo-Zero-style run, and a Leela-Zero-size net", "",
           f"{run['games']:,.0f} games x {run['moves_per_game']} moves x {run['playouts_per_move']} playouts x "
           f"{run['evals_per_playout']} net evaluation = {a['evaluations']:.3g} evaluations (batches of "
           f"{run['eval_batch']}), plus {run['train_steps']:,} training steps of {run['train_batch']} positions. "
           f"Source: {run['source']} Assumptions: {run['assumptions']}", "",
           "CPU: the measured go19-6x128 rate of freenet and of the faster PyTorch CPU layout (effective GFLOP/s at "
           "batch 8 for inference and batch 64 for training), applied to each net's FLOPs: measured for 6x128, "
           f"extrapolated by FLOPs for the other nets. GPU: the roofline estimate ({p}) at batch "
           f"{run['eval_batch']} and {run['train_batch']}, one GPU.", "",
           "| net | GFLOP per evaluation | this CPU, freenet | this CPU, PyTorch | "
           + " | ".join(f"one {g} (estimate)" for g in gnames) + f" | CPU-days per {head}-day, freenet (PyTorch) |",
           "|" + "---|" * (5 + len(gnames))]
    for label, e in a["nets"].items():
        fn_, to = e["cpu"].get("freenet"), e["cpu"].get("torch-best")
        gpu = e["gpu_estimate"][head]["total_s"]
        ratio = f"{_days(fn_['total_s'] / gpu)} ({_days(to['total_s'] / gpu) if to else '-'})" if fn_ else "-"
        cells = [f"{label} ({e['what']})", f"{e['gflop_per_eval']:.2f}",
                 _dur(fn_["total_s"]) if fn_ else "-", _dur(to["total_s"]) if to else "-"]
        cells += [_dur(e["gpu_estimate"][g]["total_s"]) for g in gnames] + [ratio]
        out.append("| " + " | ".join(cells) + " |")
        measured = e.get("gpu_measured", {}).get("torch-cuda")
        if measured:
            out.append(f"| {label}, GPU measured (PyTorch CUDA, scaled from 6x128 by the model) | | | | "
                       + " | " * (len(gnames) - 1) + f"{_dur(measured['total_s'])} | "
                       + (f"{_days(fn_['total_s'] / measured['total_s'])}" if fn_ else "-") + " |")
    out += ["", "AlphaGo Zero itself ran self-play on many machines at once; the table is the same work on one "
            "CPU like this one and on one GPU."]
    return out
