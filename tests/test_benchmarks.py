"""The benchmark suite (benchmarks/): every workload runs, the JSON holds its schema, the arithmetic of
ratios and of the GPU gap is right on known inputs, and a missing peer is reported. No timing asserts."""

import json
import math
from dataclasses import dataclass

import pytest

from benchmarks import costs, gap, machine, report, suite
from benchmarks.__main__ import main as bench_main
from benchmarks.peers import FREENET, FREENET_CL, Framework, expand
from benchmarks.workloads import all_workloads


@dataclass(frozen=True)
class FakePeer(Framework):
    """A peer that does nothing in no time; records which workloads it was asked to build."""

    def build(self, workload):
        BUILT.append(workload.name)
        return lambda: None


BUILT = []
FAKE = FakePeer("fake", "fake")


@pytest.fixture(scope="module")
def tiny_run():
    BUILT.clear()
    data = suite.run(all_workloads("tiny"), [FREENET, FREENET_CL, FAKE], {"jax": "jax is not installed"}, threads=1, repeats=1,
                     warmup=0, sample_s=0.0, probe=False, machine=False, size="tiny", progress=False)
    return json.loads(json.dumps(data))  # as a reader of the JSON file sees it


def test_every_workload_runs_for_freenet_and_a_peer(tiny_run):
    names = list(all_workloads("tiny"))
    assert [r["name"] for r in tiny_run["workloads"]] == names
    assert sorted(BUILT) == sorted(names)
    for row in tiny_run["workloads"]:
        # freenet with channels-last inputs on the conv kernels only
        both = {"freenet", "freenet-cl"} if row["name"].startswith("conv/") else {"freenet"}
        assert set(row["results"]) == both | {"fake"}, row["name"]
        assert row["ratios"]["freenet/fake"] > 0
        assert row["not_measured"]["jax"] == "jax is not installed"


def test_the_json_follows_the_schema(tiny_run):
    assert suite.validate(tiny_run)
    row = next(r for r in tiny_run["workloads"] if r["name"] == "conv/go9-b1/fwd")
    assert row["cost"]["flops"] == 2 * 2 * 3 * 4 * 5 * 5 * 9  # tiny: N=2 C=3 5x5 K=4
    assert set(row["results"]["freenet"]) >= {"median_s", "min_s", "max_s", "samples", "gflops", "items_per_s"}
    broken = json.loads(json.dumps(tiny_run))
    broken["workloads"][0]["results"]["freenet"]["min_s"] = 1e9
    with pytest.raises(ValueError, match="min <= median"):
        suite.validate(broken)
    broken = json.loads(json.dumps(tiny_run))
    del broken["workloads"][0]["not_measured"]["jax"]
    with pytest.raises(ValueError, match="jax neither measured nor reported"):
        suite.validate(dict(broken, frameworks=dict(broken["frameworks"], jax={})))


def test_ratios_are_freenet_over_peer_and_against_the_faster_torch_layout():
    results = {"freenet": {"median_s": 2.0}, "torch": {"median_s": 4.0}, "torch-cl": {"median_s": 1.0}}
    ratios, best = suite.ratios(results)
    assert ratios == {"freenet/torch": 0.5, "freenet/torch-cl": 2.0, "freenet/torch-best": 2.0}
    assert best == {"torch": "torch-cl"}
    assert suite.ratios({"torch": {"median_s": 1.0}}) == ({}, {})
    # freenet in both layouts: the faster of each side, and freenet-cl is no peer
    ratios, best = suite.ratios(dict(results, **{"freenet-cl": {"median_s": 0.5}}))
    assert ratios == {"freenet/torch": 0.5, "freenet/torch-cl": 2.0, "freenet/torch-best": 2.0,
                      "freenet-best/torch-best": 0.5}
    assert best == {"torch": "torch-cl", "freenet": "freenet-cl"}


def test_missing_peers_are_reported_never_dropped(tmp_path, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("jax", "tinygrad") else real(name, *a))
    frameworks, missing = expand(["jax", "tinygrad", "nosuch"])
    assert frameworks == [FREENET, FREENET_CL]
    assert "not installed" in missing["jax"] and "not installed" in missing["tinygrad"]
    assert "unknown peer" in missing["nosuch"]
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    assert bench_main(["--size", "tiny", "--only", "engine/*", "--peers", "jax,tinygrad", "--no-probes",
                       "--no-machine", "--repeats", "1", "--warmup", "0", "--sample-s", "0", "--json", str(out),
                       "--markdown", str(md)]) == 0
    data = json.loads(out.read_text())
    suite.validate(data)
    assert set(data["not_measured"]) == {"jax", "tinygrad"}
    for row in data["workloads"]:
        assert set(row["not_measured"]) == {"jax", "tinygrad", "freenet-cl"}  # (engine: conv kernels only)
    text = md.read_text()
    assert "**jax**: not measured: jax is not installed" in text


def test_roofline_on_known_inputs():
    gpu = {"fp32_tflops": 1.0, "tf32_tflops": 4.0, "bf16_tflops": 8.0, "bandwidth_gbs": 1000.0}
    compute_bound = costs.Cost(flops=1e12, bytes=1e9, kernels=1, launches=[(1e12, 1e9)])
    r = gap.roofline(compute_bound, gpu, "fp32", launch_us=5.0)
    assert r["bound"] == "compute" and math.isclose(r["seconds"], 1.0 + 5e-6)
    assert math.isclose(gap.roofline(compute_bound, gpu, "bf16", 5.0)["seconds"], 0.125 + 5e-6)
    # two kernels: one compute-bound (1 s), one memory-bound (2e12 bytes / 1e12 B/s = 2 s): sum of maxima
    mixed = costs.Cost(flops=1e12, bytes=2e12, kernels=2, launches=[(1e12, 0.0), (0.0, 2e12)])
    r = gap.roofline(mixed, gpu, "fp32", launch_us=0.0)
    assert math.isclose(r["seconds"], 3.0) and r["bound"] == "memory"
    tiny = costs.Cost(flops=1e3, bytes=1e3, kernels=10, launches=[(1e2, 1e2)] * 10)
    r = gap.roofline(tiny, gpu, "fp32", launch_us=5.0)
    assert r["bound"] == "launch" and math.isclose(r["launch_s"], 5e-5)


def test_conv_and_net_costs_count_flops_as_the_workloads_say():
    c = costs.conv_cost(256, 64, 9, 64, backward=False)
    assert c.flops == 2 * 256 * 64 * 64 * 81 * 9 and c.kernels == 1
    assert costs.conv_cost(256, 64, 9, 64, backward=True).flops == 3 * c.flops
    inf = costs.go_net_cost(1, False, board=9, blocks=6, filters=64, value_hidden=64)
    trunk = 2 * 81 * 9 * (18 * 64 + 12 * 64 * 64)
    heads = 2 * 81 * 64 * 3 + 2 * (162 * 82 + 81 * 64 + 64)
    assert inf.flops == trunk + heads
    assert costs.go_net_cost(1, True, board=9, blocks=6, filters=64, value_hidden=64).flops == 3 * inf.flops


def test_char_gpt_cost_counts_its_matmuls_and_parameters():
    from benchmarks import models
    from freenet import nn
    gpt = dict(vocab=11, block=8, embed=16, heads=2, layers=3)
    n, t, c = 2, 2 * 8, 16
    inf = costs.char_gpt_cost(n, False, **gpt)
    # per block: qkv, projection, MLP (2*t*C*12C) and the attention products q k^T, att v (2 * 2*n*block^2*C)
    assert inf.flops == 3 * (24 * t * c * c + 4 * n * 8 * 8 * c) + 2 * t * c * 11
    train = costs.char_gpt_cost(n, True, **gpt)
    assert train.flops == 3 * inf.flops
    assert train.params == inf.params == sum(p.numel() for p in models.char_gpt(nn, **gpt).parameters())


def test_char_gpt_gives_pytorchs_loss_gradients_and_adamw_step_on_the_same_weights():
    """The char-gpt workload builds the same model in both frameworks: with PyTorch's initial weights
    copied into freenet's, the same tokens give the same loss, gradients and AdamW step."""
    torch = pytest.importorskip("torch")
    import numpy as np
    import freenet
    from benchmarks import models
    gpt = dict(vocab=11, block=8, embed=16, heads=2, layers=2)
    torch.manual_seed(0)
    ref = models.char_gpt(torch.nn, **gpt)
    mine = models.char_gpt(freenet.nn, **gpt)
    assert list(mine.state_dict()) == list(ref.state_dict())  # the mask buffers included
    mine.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 11, (3, 8)), rng.integers(0, 11, 3 * 8)
    opts = (torch.optim.AdamW(ref.parameters(), lr=1e-3, weight_decay=0.01),
            freenet.optim.AdamW(mine.parameters(), lr=1e-3, weight_decay=0.01))

    def losses(x, y):
        return (torch.nn.functional.cross_entropy(ref(torch.tensor(x)).view(-1, 11), torch.tensor(y)),
                freenet.nn.functional.cross_entropy(mine(freenet.tensor(x)).view(-1, 11), freenet.tensor(y)))

    theirs, ours = losses(x, y)
    assert math.isclose(ours.item(), theirs.item(), rel_tol=1e-5)
    for opt in opts:
        opt.zero_grad()
    theirs.backward()
    ours.backward()
    grads = dict(mine.named_parameters())
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(grads[name].grad.numpy(), p.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
    for opt in opts:
        opt.step()
    theirs, ours = losses(x, y)
    assert math.isclose(ours.item(), theirs.item(), rel_tol=1e-5)
    theirs, ours = losses(x[:, :5], y.reshape(3, 8)[:, :5].reshape(-1))  # a context shorter than the block
    assert math.isclose(ours.item(), theirs.item(), rel_tol=1e-5)


def _row(name, group, fn_s, torch_s=None, cuda_s=None, train=False):
    results = {"freenet": {"median_s": fn_s}}
    if torch_s:
        results["torch"] = {"median_s": torch_s}
    if cuda_s:
        results["torch-cuda"] = {"median_s": cuda_s}
    return {"name": name, "group": group, "results": results, "meta": {"train": train}}


def test_gap_arithmetic_on_known_inputs():
    gpus = {"launch_overhead_us": {"value": 0.0},
            "gpus": {"G": {"fp32_tflops": 1.0, "tf32_tflops": 2.0, "bf16_tflops": 4.0, "bandwidth_gbs": 1e6,
                           "source": "test"}}}
    data = {"workloads": [_row("w", "network", 10.0, torch_s=5.0, train=True),
                          _row(gap.REF_INFER, "network", 8.0), _row(gap.REF_TRAIN, "network", 64.0, train=True)],
            "size": "full"}
    cost = costs.Cost(flops=2e12, bytes=0.0, kernels=1, launches=[(2e12, 0.0)])
    result = gap.compute(data, gpus, precision="tf32", headline="G", workload_costs={"w": cost})
    assert not result["measured_gpu"] and "ESTIMATE" in result["gpu_note"]
    e = result["rows"][0]["estimates"]["G"]
    assert math.isclose(e["tf32"]["seconds"], 1.0) and math.isclose(e["fp32"]["seconds"], 2.0)
    assert math.isclose(e["tf32"]["freenet_ratio"], 10.0) and math.isclose(e["tf32"]["torch_ratio"], 5.0)
    agz = result["agz"]
    assert agz["evaluations"] == 4.9e6 * 200 * 1600 and agz["trained_positions"] == 700_000 * 2048
    ref = agz["nets"]["6x128"]["cpu"]["freenet"]
    assert math.isclose(ref["seconds_per_eval"], 8.0 / 8) and math.isclose(ref["seconds_per_trained_position"], 64.0 / 64)
    assert math.isclose(ref["total_s"], agz["evaluations"] * 1.0 + agz["trained_positions"] * 1.0)
    big = agz["nets"]["20x256"]["cpu"]["freenet"]
    scale = (costs.go_net_cost(8, False, **gap.AGZ_NETS["20x256"][0]).flops
             / costs.go_net_cost(8, False, **gap.AGZ_NETS["6x128"][0]).flops)
    assert big["extrapolated"] and math.isclose(big["seconds_per_eval"], scale)
    text = gap.markdown(result)
    assert "ESTIMATE" in text and "not a measurement" in text


def test_gap_adds_measured_scaling_and_machines_per_gpu():
    gpus = {"launch_overhead_us": {"value": 0.0},
            "gpus": {"G": {"fp32_tflops": 1.0, "tf32_tflops": 2.0, "bf16_tflops": 4.0, "bandwidth_gbs": 1e6,
                           "source": "test"}}}
    data = {"workloads": [_row("net/mnist-cnn/train-b128", "network", 30.0, train=True)], "size": "full"}
    cost = costs.Cost(flops=2e12, bytes=0.0, kernels=1, launches=[(2e12, 0.0)])  # 1 s at tf32: 30 days per GPU-day
    result = gap.compute(data, gpus, precision="tf32", headline="G",
                         workload_costs={"net/mnist-cnn/train-b128": cost})
    result["scaling"] = {"created": "today", "cpu": "a CPU", "host_cpus": 2, "workloads": {
        "mnist-train": {"unit": "images/s", "throughput": {"1": 100.0, "2": 180.0},
                        "efficiency": {"1": 1.0, "2": 0.9}, "command": "c"}}}
    text = gap.markdown(result)
    assert "| `mnist-train` | images/s | 100.0 | 180.0 | 90% at K = 2 |" in text
    assert "about **33.3 machines**" in text and "PROJECTED" in text  # 30 / 0.9
    assert math.isclose(gap.machines_to_match(30.0, 0.9), 33.333333, rel_tol=1e-6)


def test_gap_reports_a_measured_gpu_as_measured():
    gpus = gap.load_gpus()
    data = {"workloads": [_row("w", "network", 10.0, cuda_s=0.5, train=True)], "size": "full"}
    cost = costs.Cost(flops=1e9, bytes=1e6, kernels=3, launches=[(1e9 / 3, 1e6 / 3)] * 3)
    result = gap.compute(data, gpus, workload_costs={"w": cost})
    assert result["measured_gpu"] and math.isclose(result["rows"][0]["measured"]["freenet_ratio"], 20.0)
    assert "(measured, PyTorch CUDA) is **20.0 days**" in gap.markdown(result)


def test_published_gpu_figures_carry_their_sources():
    gpus = gap.load_gpus()
    assert {"H100 SXM", "H100 PCIe", "H200 SXM", "A100 SXM 80GB", "RTX 4090"} <= set(gpus["gpus"])
    for name, g in gpus["gpus"].items():
        assert g["fp32_tflops"] > 0 and g["tf32_tflops"] > 0 and g["bf16_tflops"] > 0 and g["bandwidth_gbs"] > 0
        assert "http" in g["source"], name
    assert gpus["launch_overhead_us"]["value"] > 0 and gpus["launch_overhead_us"]["source"]


def test_machine_facts_from_cpuinfo():
    text = "model name\t: Some CPU @ 3.00GHz\nflags\t\t: sse2 avx avx2 fma avx512f avx512bw avx512cd avx512dq avx512vl\n"
    model, mhz, flags = machine.cpuinfo(text)
    assert model == "Some CPU @ 3.00GHz" and mhz is None and machine.isa_level(flags) == "x86-64-v4"
    peak = machine.theoretical_peak(2, None, model, flags)
    assert math.isclose(peak["gflops"], 2 * 2 * 16 * 2 * 3.0) and "assumed" in peak["assumptions"]
    assert peak["clock_source"] == "the model string"
    assert machine.isa_level({"sse2"}) == "x86-64"
    assert machine.fp32_lanes({"avx2", "fma"})[0] == 8


def test_probe_measures_first_step_and_memory_in_fresh_processes():
    from benchmarks.probe import probe
    r = probe("engine/tiny-graph", FREENET, threads=1, steps=2, size="tiny")
    for run in ("cold", "warm"):
        assert "error" not in r[run], r[run]
        assert r[run]["first_step_s"] > 0 and r[run]["rss_peak_mb"] >= r[run]["rss_import_mb"] > 0


def test_reports_render(tiny_run):
    text = report.markdown(tiny_run)
    assert "| `net/go9-6x64/train-b256` |" in text and "freenet / fake" in text
    assert "jax" in text
    assert report.console_row(tiny_run["workloads"][0]).startswith("conv/go9-b1/fwd")


def test_charts(tiny_run, tmp_path):
    pytest.importorskip("matplotlib")
    from benchmarks import plot
    plot.bench_chart(tiny_run, tmp_path / "bench.png")
    plot.gap_chart(gap.compute(tiny_run), tmp_path / "gap.png")
    assert (tmp_path / "bench.png").stat().st_size > 1000 and (tmp_path / "gap.png").stat().st_size > 1000


def test_freenet_bench_passes_every_flag_through_and_needs_a_checkout(monkeypatch, tmp_path):
    import freenet
    from freenet import cli
    from freenet.commands import bench
    args = cli._parser().parse_args(["bench", "--quick", "--only", "net/*", "--help"])
    assert args.args == ["--quick", "--only", "net/*", "--help"]
    assert cli._parser().parse_args(["gap", "--results", "r.json"]).args == ["--results", "r.json"]
    assert (bench.suite_root() / "benchmarks" / "__main__.py").is_file()
    monkeypatch.setattr(freenet, "__file__", str(tmp_path / "site-packages" / "freenet" / "__init__.py"))
    with pytest.raises(freenet.FreenetError, match="source checkout"):
        bench.suite_root()


def test_share_of_the_machine_used_by_others(monkeypatch):
    import os
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    # 1 s of wall time on 2 cores; the machine was busy 1.5 CPU-s, of which 0.5 were ours: others 1 of 2
    assert math.isclose(suite.others_share((10.0, 3.0, 100.0), (11.5, 3.5, 101.0)), 0.5)
    assert suite.others_share((None, 0, 0), (None, 1, 1)) is None
    assert suite.others_share((10.0, 3.0, 100.0), (10.0, 4.0, 101.0)) == 0.0  # never below 0


def test_contended_workloads_are_timed_again_and_the_quieter_run_kept(monkeypatch):
    workloads = {n: w for n, w in all_workloads("tiny").items() if n.startswith("engine/")}
    shares = iter([0.9, 0.2, 0.05, 0.5, 0.0])  # first pass: contended, quiet; retry of the first: quieter
    monkeypatch.setattr(suite, "others_share", lambda a, b: next(shares))
    data = suite.run(workloads, [FREENET, FAKE], threads=1, repeats=1, warmup=0, sample_s=0.0, probe=False,
                     machine=False, size="tiny", progress=False, retry_contended=2)
    first, second = data["workloads"]
    assert first["others_cpu_share"] == 0.05 and first["attempts"] == 2
    assert second["others_cpu_share"] == 0.2 and "attempts" not in second
    assert suite.validate(data)


def test_peers_run_with_the_environment_the_process_started_with():
    # freenet sets OMP_WAIT_POLICY=PASSIVE for its own threads when imported; the peers' processes must
    # not inherit that (PyTorch's small ops get several times slower with it).
    import os
    from benchmarks import ORIGINAL_ENV
    from freenet.commands.bench import _initial_environment
    if not os.path.exists("/proc/self/environ"):
        pytest.skip("no /proc")
    with open("/proc/self/environ", "rb") as f:
        started_with = b"OMP_WAIT_POLICY=" in f.read()
    if not started_with:
        assert "OMP_WAIT_POLICY" not in ORIGINAL_ENV and "OMP_WAIT_POLICY" not in _initial_environment()
    assert _initial_environment().get("PATH") == os.environ.get("PATH")


@pytest.mark.parametrize("name", ["go9-6x64", "go19-6x128"])
def test_freenet_go_workloads_run_the_same_architecture_as_the_peers(name):
    """The Go network workloads run freenet's own GoNet (the net `freenet go train` trains): it must
    have the parameters, layer for layer, of the shared ``models.go_net`` the peers run."""
    from benchmarks import models, spec
    from freenet import nn
    from freenet.go.net import new_net
    arch = spec.GO_NETS[name]
    shared = models.go_net(nn, **arch)
    own = new_net(arch["board"], arch["blocks"], arch["filters"], arch.get("value_hidden"))
    assert sorted(tuple(p.shape) for p in shared.parameters()) == sorted(tuple(p.shape) for p in own.parameters())
    assert costs.go_net_cost(2, True, **arch).params == sum(p._data.size for p in own.parameters())


def test_step_profile_script_reports_kernels_and_the_pool(capsys):
    from benchmarks.step_profile import main as profile_main
    profile_main(["mnist", "--threads", "1", "--steps", "1"])
    out = capsys.readouterr().out
    assert "ms per step" in out and "conv2d_forward" in out and "two empty tasks" in out
    from freenet import kernels
    assert kernels.conv2d_forward.__module__ == "freenet.kernels.conv"  # the timers are gone again
