"""``freenet go ...``: Go nets (rules, search, self-play, training, GTP, matches, Leela Zero weights)."""

import argparse
import json
import os
import sys

from freenet.commands.common import check_folder, check_output, positive_int, write_file_output, write_output

FORMATTER = argparse.ArgumentDefaultsHelpFormatter


def board_size(text):
    value = int(text)
    if not 5 <= value <= 19:
        raise argparse.ArgumentTypeError(f"must be from 5 to 19, got {value}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def set_threads(n):
    """freenet's thread count for a ``freenet go`` command (kernels/parallel.py makes OpenMP wait passively)."""
    import freenet as fn
    fn.set_num_threads(n)


def register(commands):
    go = commands.add_parser("go", help="Go nets: self-play, training, GTP engine, matches",
                             description="Train small Go nets on a plain CPU, play them through GTP, measure "
                                         "their strength. See docs/go.md.")
    sub = go.add_subparsers(dest="go_command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("init", help="write a net with fresh weights", formatter_class=FORMATTER,
                       description="Write a residual policy/value net with fresh (seeded) weights.")
    p.add_argument("--size", type=board_size, default=9, help="board size")
    p.add_argument("--blocks", type=non_negative_int, default=6, help="residual blocks")
    p.add_argument("--filters", type=positive_int, default=64, help="filters per convolution")
    p.add_argument("--value-hidden", type=positive_int, default=None,
                   help="units of the value head's hidden layer (default 256 on 19x19, else 64)")
    p.add_argument("--seed", type=int, default=0, help="seed for the weights")
    p.add_argument("--out", metavar="FILE", required=True, help="where to write the net (safetensors)")
    p.set_defaults(run=run_init)

    p = sub.add_parser("gtp", help="a GTP engine on stdin/stdout", formatter_class=FORMATTER,
                       description="Speak GTP version 2 on stdin/stdout (with Leela Zero's heatmap and "
                                   "lz-analyze). Without --model the engine plays from a plain search "
                                   "(uniform priors, random playouts).")
    p.add_argument("--model", metavar="FILE", help="a net written by init, train or import-lz")
    p.add_argument("--playouts", type=positive_int, default=400, help="search playouts per move")
    p.add_argument("--size", type=board_size, default=None, help="board size (default: the net's, else 19)")
    p.add_argument("--komi", type=float, default=7.5, help="komi until the controller sets one")
    p.add_argument("--resign", type=float, default=0.05, help="resign below this winrate (0: never)")
    p.add_argument("--batch", type=positive_int, default=8, help="leaves evaluated together (virtual loss)")
    p.add_argument("--seed", type=int, default=0, help="seed for the search's randomness")
    p.add_argument("--threads", type=positive_int, default=1, help="threads for the net")
    p.add_argument("--gtp-version", metavar="TEXT", help="answer GTP 'version' with TEXT instead of freenet's "
                   "version (Lizzie warns unless it reads a Leela Zero version such as 0.17)")
    p.set_defaults(run=run_gtp)

    register_more(sub)


def register_more(sub):
    """selfplay, train, bench, match, export-lz, export-onnx, import-lz, ladder."""
    register_training(sub)
    register_bench(sub)

    p = sub.add_parser("match", help="play GTP engines against each other", formatter_class=FORMATTER,
                       description="Play GTP engines against each other with alternating colours and report "
                                   "the first engine's wins with a 95% confidence interval. '{seed}' in an "
                                   "engine command becomes a seed that changes every game (the engine is then "
                                   "restarted per game). Example: --black 'freenet go gtp --model net.safetensors "
                                   "--seed {seed}' --white '/usr/games/gnugo --mode gtp --level 1'.")
    p.add_argument("--black", metavar="CMD", required=True, help="engine A (Black in odd-numbered games)")
    p.add_argument("--white", metavar="CMD", required=True, help="engine B (White in odd-numbered games)")
    p.add_argument("--games", type=positive_int, default=2, help="games to play")
    p.add_argument("--size", type=board_size, default=9, help="board size")
    p.add_argument("--komi", type=float, default=7.5, help="komi")
    p.add_argument("--sgf-dir", metavar="DIR", help="write each game as an SGF file here")
    p.add_argument("--referee", metavar="CMD", help="engine whose final_score decides when the two disagree "
                   "(default: freenet's Tromp-Taylor count)")
    p.add_argument("--seed", type=int, default=0, help="first seed for '{seed}' (game k gets seed + k)")
    p.add_argument("--max-moves", type=positive_int, default=None, help="end and score a game after this many "
                   "moves (default 3 x size x size)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds an engine may take for one command")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(run=run_match)

    p = sub.add_parser("export-lz", help="write a net in Leela Zero's v1 weight format",
                       formatter_class=FORMATTER,
                       description="Write a freenet Go net as a Leela Zero v1 text weight file (batch-norm "
                                   "scale and offset folded in). Leela Zero itself loads 19x19 nets with a "
                                   "256-unit value layer. A name ending in .gz is gzipped.")
    p.add_argument("model", metavar="MODEL", help="a freenet Go net (safetensors)")
    p.add_argument("out", metavar="OUT", help="the Leela Zero weight file to write")
    p.set_defaults(run=run_export_lz)

    p = sub.add_parser("export-onnx", help="write a net as an ONNX model (for onnxruntime and other runtimes)",
                       formatter_class=FORMATTER,
                       description="Write a freenet Go net as an ONNX model (opset 17), traced in eval mode: input "
                                   "'input' (batch, 18, N, N) float32 planes, any batch size; outputs 'policy' "
                                   "(batch, N*N+1) logits and 'value' (batch,), plus 'ownership' (batch, N*N) and "
                                   "'score' (batch,) when the net has those heads. Needs the onnx package "
                                   "(pip install \"freenet[onnx]\").")
    p.add_argument("model", metavar="MODEL", help="a freenet Go net (safetensors)")
    p.add_argument("out", metavar="OUT", help="the ONNX file to write")
    p.set_defaults(run=run_export_onnx)

    p = sub.add_parser("import-lz", help="read a Leela Zero v1 weight file into a freenet net",
                       formatter_class=FORMATTER,
                       description="Read a Leela Zero v1 weight file (plain or gzipped text) and write it as a "
                                   "freenet Go net (safetensors).")
    p.add_argument("weights", metavar="WEIGHTS", help="the Leela Zero weight file")
    p.add_argument("out", metavar="OUT", help="the freenet net to write")
    p.set_defaults(run=run_import_lz)

    p = sub.add_parser("ladder", help="measure a training run's nets against fixed opponents (win rates, Elo)",
                       formatter_class=FORMATTER,
                       description="Play a net of a training run (RUN/net-XXXX.safetensors) against GNU Go levels "
                                   "and earlier nets of the run, with alternating colours, komi 7.5 and a GNU Go "
                                   "referee, and record wins, 95% Wilson intervals, the CPU-hours the run had "
                                   "spent and maximum-likelihood Elo ratings (GNU Go level 1 = 0) in "
                                   "RUN/ladder.json. Matches already in it are not played again, so the command "
                                   "resumes after an interruption. GNU Go opponents are skipped when GNU Go is "
                                   "not installed. See freenet/go/ladder.py.")
    p.add_argument("--dir", metavar="RUN", required=True, help="the run folder (freenet go train --dir)")
    p.add_argument("--generation", type=positive_int, default=argparse.SUPPRESS, help="the generation whose "
                   "net plays (default: the latest)")
    p.add_argument("--opponents", default="gnugo-1,gnugo-10,previous", help="comma-separated: gnugo-LEVEL, "
                   "net-XXXX (a net of the run) or previous (the latest earlier net on the ladder or in the run "
                   "folder); '' plays "
                   "none (for --table or --plot alone)")
    p.add_argument("--games", type=positive_int, default=20, help="games against each opponent")
    p.add_argument("--playouts", type=positive_int, default=200, help="search playouts per move of the nets")
    p.add_argument("--seed", type=int, default=0, help="first seed (game k of a match gets seed + k)")
    p.add_argument("--plot", metavar="FILE", help="also write a PNG chart of the ladder (needs matplotlib)")
    p.add_argument("--table", action="store_true", help="also print the ladder as a Markdown table")
    p.set_defaults(run=run_ladder)


def register_bench(sub):
    p = sub.add_parser("bench", help="measure rules, net and search speed (and Leela Zero's)",
                       formatter_class=FORMATTER,
                       description="Measure moves per second of the rules, net evaluations per second at the "
                                   "given batch sizes, search playouts per second, and with --leelaz Leela Zero's "
                                   "own CPU path (leelaz --benchmark --cpu-only) on the same net (19x19 only).")
    p.add_argument("--size", type=board_size, default=9, help="board size")
    p.add_argument("--blocks", type=non_negative_int, default=6, help="residual blocks")
    p.add_argument("--filters", type=positive_int, default=64, help="filters")
    p.add_argument("--batches", default="1,16", help="batch sizes to time, comma-separated")
    p.add_argument("--threads", type=positive_int, default=1, help="threads for freenet and leelaz")
    p.add_argument("--leelaz", metavar="PATH", help="leelaz binary to compare with (19x19 nets)")
    p.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement")
    p.add_argument("--train-batch", type=non_negative_int, default=256, help="also time SGD steps at this batch "
                   "(0: do not)")
    p.set_defaults(run=run_bench)


def register_training(sub):
    """selfplay and train (freenet.go.selfplay, freenet.go.train)."""
    p = sub.add_parser("selfplay", help="play self-play games and store them", formatter_class=FORMATTER,
                       description="Let a net play itself, many games at once (their leaves share each net "
                                   "call), and store positions, search probabilities and results in a compressed "
                                   "NumPy file (and SGF files with --sgf-dir). Without --model a net with random "
                                   "weights (--seed) plays, as in the first generation of a run.")
    p.add_argument("--model", metavar="FILE", help="the net to play with")
    p.add_argument("--size", type=board_size, default=None, help="board size without --model (default 9)")
    p.add_argument("--games", type=positive_int, default=16, help="games to play")
    p.add_argument("--out", metavar="FILE", required=True, help="the .npz file to write")
    p.add_argument("--sgf-dir", metavar="DIR", help="also write each game as SGF here")
    _selfplay_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed (same seed and net: same games)")
    p.add_argument("--threads", type=positive_int, default=1, help="threads for the net")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_selfplay)

    p = sub.add_parser("train", help="train a net: the AlphaGo Zero loop, or supervised on SGF games",
                       formatter_class=FORMATTER,
                       description="Train a net in a run folder. Without --sgf: the AlphaGo Zero loop (self-play "
                                   "with the latest net, SGD on policy cross-entropy + value MSE over a replay "
                                   "window, checkpoint) for --generations generations. With --sgf DIR: supervised "
                                   "training on the SGF games under DIR for --generations chunks of --steps steps. "
                                   "Run it again with the same folder and settings to resume after an "
                                   "interruption, or with a larger --generations to go on; the result is the "
                                   "same as an uninterrupted run. The latest net is RUN/net.safetensors.")
    p.add_argument("--dir", metavar="RUN", required=True, help="the run folder")
    p.add_argument("--generations", type=positive_int, default=10, help="generations (or chunks with --sgf) "
                   "to reach")
    p.add_argument("--sgf", metavar="DIR", help="train on the SGF games under DIR instead of self-play")
    p.add_argument("--size", type=board_size, default=9, help="board size")
    p.add_argument("--blocks", type=non_negative_int, default=6, help="residual blocks")
    p.add_argument("--filters", type=positive_int, default=64, help="filters per convolution")
    p.add_argument("--seed", type=int, default=0, help="seed for the weights, self-play and sampling")
    p.add_argument("--games", type=positive_int, default=64, help="self-play games per generation")
    p.add_argument("--window", type=positive_int, default=500, help="games in the replay window")
    p.add_argument("--steps", type=positive_int, default=100, help="SGD steps per generation (or chunk)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="positions per SGD step")
    p.add_argument("--lr", type=float, default=0.02, help="learning rate (SGD, Nesterov momentum 0.9)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="L2 weight decay")
    p.add_argument("--ownership", action="store_true", help="an ownership head, trained on the final area "
                   "(KataGo's auxiliary target; also what decides dead stones in GTP)")
    p.add_argument("--score", action="store_true", help="a score head, trained on the final margin")
    p.add_argument("--pooling", action="store_true", help="global pooling in every third residual block")
    p.add_argument("--value-q-weight", type=float, default=0.0, help="value target: this share of the "
                   "search's value, the rest the game's result")
    p.add_argument("--shards", type=positive_int, default=1, help="play each generation's games in this many "
                   "independent parts, which MPI processes (mpiexec -n K, K <= shards) share out; the run "
                   "depends on --shards, not on K")
    p.add_argument("--cpu-hours", type=float, default=None, help="stop before a generation once the run has "
                   "used this much CPU time (self-play and training, all threads)")
    p.add_argument("--ladder-every", type=non_negative_int, default=0, help="every K generations, play the "
                   "net against --ladder-opponents (freenet go ladder); 0: never")
    p.add_argument("--ladder-opponents", default="gnugo-1,gnugo-10,previous", help="opponents of the ladder")
    p.add_argument("--ladder-games", type=positive_int, default=20, help="games per ladder opponent")
    p.add_argument("--ladder-playouts", type=positive_int, default=200, help="playouts per move in ladder games")
    _selfplay_options(p)
    p.add_argument("--save-sgf", action="store_true", help="also write the self-play games as SGF")
    p.add_argument("--threads", type=positive_int, default=1, help="threads for the net")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--license", metavar="SPDX", help="licence of the trained weights (default: GPL-3.0-or-later)")
    p.add_argument("--data-license", metavar="SPDX", help="licence of the SGF games of --sgf, as you know it")
    p.add_argument("--no-source", action="store_true", help="do not embed the training program in the net file")
    p.set_defaults(run=run_train)


def _selfplay_options(p):
    p.add_argument("--komi", type=float, default=7.5, help="komi")
    p.add_argument("--playouts", type=positive_int, default=200, help="root visits of a (full) search per move; "
                   "the visits kept from the previous move's search count")
    p.add_argument("--cheap-playouts", type=positive_int, default=None, help="playout cap randomization: "
                   "moves without a full search get this many visits, no noise, and are not trained on")
    p.add_argument("--full-fraction", type=float, default=0.25, help="with --cheap-playouts: the share of "
                   "moves with a full search")
    p.add_argument("--forced-playouts", action="store_true", help="forced playouts at the root of full "
                   "searches, taken out of the policy target (KataGo)")
    p.add_argument("--parallel", type=positive_int, default=128, help="games played at once")
    p.add_argument("--batch", type=positive_int, default=128, help="positions per net call")
    p.add_argument("--resign", type=float, default=0.05, help="resign below this winrate (0: never); "
                   "20%% of the games never resign")


def run_init(args):
    from freenet.go.net import new_net, save_net

    check_output(args.out, "net (--out)")
    net = new_net(args.size, args.blocks, args.filters, args.value_hidden, seed=args.seed)
    out = write_output(args.out, "net", lambda path: save_net(net, path))
    print(f"{args.size}x{args.size} net, {args.blocks} blocks x {args.filters} filters, seed {args.seed}: {out}")
    return 0 if out == args.out else 1


def run_gtp(args):
    from freenet.go.gtp import Engine
    from freenet.go.net import load_net

    set_threads(args.threads)
    net = load_net(args.model) if args.model else None
    engine = Engine(net, playouts=args.playouts, size=args.size, komi=args.komi, seed=args.seed,
                    resign=args.resign, batch=args.batch)
    if args.gtp_version:
        engine.version = args.gtp_version
    return engine.run(sys.stdin)


def run_match(args):
    import json
    import math

    from freenet.go.match import run_match as match

    if args.json:
        check_output(args.json, "results (--json)")
    if args.sgf_dir:
        check_folder(args.sgf_dir, "SGF files (--sgf-dir)")
    summary = match(args.black, args.white, args.games, size=args.size, komi=args.komi, sgf_dir=args.sgf_dir,
                    referee_command=args.referee, seed=args.seed, max_moves=args.max_moves, timeout=args.timeout)
    print(summary.report())
    if args.json:
        lo, hi = summary.interval()
        data = {"engines": list(summary.names), "games": summary.games, "wins": summary.wins,
                "draws": summary.draws, "no_result": summary.no_result, "a_wins_as_black_white": summary.as_black,
                "a_win_rate_interval95": [lo, hi], "size": args.size, "komi": args.komi,
                "games_list": [{"black": r.black, "white": r.white,
                                "winner": {1: "B", 2: "W", 0: "draw", None: None}[r.winner],
                                "score": None if r.score is None or math.isinf(r.score) else r.score,
                                "reason": r.reason, "scored_by": r.scored_by, "moves": len(r.moves),
                                "engine_scores": list(r.engine_scores), "referee_score": r.referee_score}
                               for r in summary.results]}
        text = json.dumps(data, indent=2) + "\n"
        return 0 if write_file_output(args.json, "results", text.encode()) == args.json else 1
    return 0


def run_export_lz(args):
    from freenet.go.lz_weights import export_lz
    from freenet.go.net import load_net

    check_output(args.out, "weight file")
    net = load_net(args.model)
    notes = []

    def write(path):
        notes.append(_atomically(path, lambda tmp: export_lz(net, tmp)))
    out = write_output(args.out, "weight file", write)
    if notes[-1]:
        print(notes[-1], file=sys.stderr)
    print(f"wrote {out}")
    return 0 if out == args.out else 1


def _atomically(path, write):
    """``write(tmp)`` to a temporary file beside ``path`` (with its extension, which may choose a format), then
    renamed over it: ``path`` holds the old file or all of the new one, never a truncated one (a full disk).
    Returns what ``write`` returns."""
    import glob
    import secrets

    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{secrets.token_hex(6)}.tmp-{name}")
    try:
        result = write(tmp)
        os.replace(tmp, path)
    except BaseException:
        for leftover in glob.glob(glob.escape(tmp) + "*"):  # the writer's own temporary files too
            os.remove(leftover)
        raise
    return result


def run_export_onnx(args):
    import numpy as np

    from freenet import onnx
    from freenet.go import features
    from freenet.go.net import load_net

    check_output(args.out, "ONNX file")
    net = load_net(args.model)
    c = net.config
    planes = np.zeros((2, features.PLANES, c.size, c.size), np.float32)
    model = onnx.export(net, planes, None, output_names=None if c.aux_heads else ("policy", "value"))
    out = write_file_output(args.out, "ONNX file", model.SerializeToString())
    heads = ["policy", "value"] + [name for name in ("ownership", "score") if getattr(c, name)]
    print(f"{c.size}x{c.size} net, {c.blocks} blocks x {c.filters} filters, outputs {', '.join(heads)}: {out}")
    return 0 if out == args.out else 1


def run_import_lz(args):
    from freenet.go.lz_weights import import_lz
    from freenet.go.net import save_net

    check_output(args.out, "net")
    net = import_lz(args.weights)
    c = net.config
    out = write_output(args.out, "net", lambda path: save_net(
        net, path, extra={"freenet.go.source": os.path.basename(args.weights)}))
    print(f"{c.size}x{c.size} net, {c.blocks} blocks x {c.filters} filters: {out}")
    return 0 if out == args.out else 1


def _selfplay_config(args, size):
    from freenet.errors import FreenetError
    from freenet.go.selfplay import SelfPlayConfig

    if not 0 < args.full_fraction <= 1:
        raise FreenetError(f"--full-fraction must be in (0, 1], not {args.full_fraction}")
    return SelfPlayConfig(size=size, komi=args.komi, playouts=args.playouts, cheap_playouts=args.cheap_playouts,
                          full_fraction=args.full_fraction, forced_playouts=args.forced_playouts, batch=args.batch,
                          parallel=args.parallel, resign=args.resign)


def run_selfplay(args):
    import time

    import numpy as np

    import freenet as fn
    from freenet.go.net import Evaluator, load_net, new_net
    from freenet.go.selfplay import play_games, save_games
    from freenet.go.sgf import result_string, write_sgf

    check_output(args.out, "games (--out)")
    if args.sgf_dir:
        check_folder(args.sgf_dir, "SGF files (--sgf-dir)")
    set_threads(args.threads)
    if args.model:
        net = load_net(args.model)
        if args.size is not None and args.size != net.config.size:
            raise fn.FreenetError(f"the net plays {net.config.size}x{net.config.size}, not --size {args.size}")
    else:
        net = new_net(args.size or 9, seed=args.seed)  # generation 0 of a run: random weights
    size = net.config.size
    evaluator = Evaluator(net, symmetry_mode="random", rng=np.random.default_rng([args.seed, 3]))
    start = time.perf_counter()
    records = play_games(evaluator, args.games, _selfplay_config(args, size), seed=args.seed,
                         progress=not args.quiet)
    seconds = time.perf_counter() - start
    out = write_output(args.out, "games", lambda path: _atomically(path, lambda tmp: save_games(tmp, records)))
    if args.sgf_dir:
        os.makedirs(args.sgf_dir, exist_ok=True)
        name = os.path.basename(args.model) if args.model else f"random net (seed {args.seed})"
        for i, r in enumerate(records):
            write_sgf(os.path.join(args.sgf_dir, f"game-{i + 1:04d}.sgf"), r.size, r.komi, r.moves,
                      result_string(r.winner, r.score, r.resigned), name, name)
    moves = sum(len(r.moves) for r in records)
    black = sum(r.winner == 1 for r in records)
    print(f"{len(records)} games ({black} won by Black), {moves} positions in {seconds:.1f} s "
          f"({3600 * len(records) / seconds:.0f} games/hour, {evaluator.positions / seconds:.0f} net "
          f"evaluations/s); {out}")
    return 0 if out == args.out else 1


def run_train(args):
    from freenet import distributed, provenance
    from freenet.errors import FreenetError
    from freenet.go.train import TrainConfig, selfplay_loop, supervised_loop

    check_folder(args.dir, "run folder (--dir)")
    set_threads(args.threads)
    main = distributed.world().main  # under MPI, the first process keeps the run folder and prints
    notice = provenance.training_notice()
    if notice and main:
        print(notice)
    sp = _selfplay_config(args, args.size).as_dict()
    config = TrainConfig(size=args.size, blocks=args.blocks, filters=args.filters, seed=args.seed,
                         games_per_generation=args.games, window=args.window, steps_per_generation=args.steps,
                         batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                         selfplay={k: v for k, v in sp.items() if k != "size"}, sgf=args.save_sgf,
                         ownership=args.ownership, score=args.score, pooling=args.pooling,
                         value_q_weight=args.value_q_weight, shards=args.shards)
    if not 0 <= args.value_q_weight <= 1:
        raise FreenetError(f"--value-q-weight must be in [0, 1], not {args.value_q_weight}")
    if args.sgf and (args.shards > 1 or distributed.world().size > 1):
        raise FreenetError("--sgf (supervised training) runs on one process, without --shards")
    if args.sgf:
        config.selfplay, config.sgf, config.games_per_generation, config.window = {}, False, 0, 0
        supervised_loop(args.dir, config, args.sgf, args.generations, progress=not args.quiet, log=_log_line)
    else:
        ladder = None
        if args.ladder_every:
            ladder = {"every": args.ladder_every, "opponents": [o for o in args.ladder_opponents.split(",") if o],
                      "games": args.ladder_games, "playouts": args.ladder_playouts}
        selfplay_loop(args.dir, config, args.generations, progress=not args.quiet, log=_log_line, ladder=ladder,
                      cpu_hours=args.cpu_hours)
    if not main:
        return 0
    path = os.path.join(args.dir, "net.safetensors")
    _write_provenance(path, config, args)
    print(f"latest net: {path} (with its provenance record; see freenet inspect)")
    return 0


def _log_line(message):
    """A line of a long run's log, flushed at once: the log is often a file (``>> log.txt``), read while the run
    goes on, and a killed run must not take its last lines with it."""
    print(message, flush=True)


def _write_provenance(path, config, args):
    """Rewrites the run's latest net with the provenance record and, unless --no-source, freenet's source."""
    import freenet as fn
    from freenet import provenance
    from freenet.recipes import go as recipe_module

    state_json = _read_state(args.dir)
    reached = state_json.get("chunk" if args.sgf else "generation", args.generations)  # --cpu-hours may stop sooner
    recipe = recipe_module.recipe_of(config, reached, args.sgf, args.data_license)
    net_metadata = {k: v for k, v in fn.load_metadata(path).items() if k == "freenet.go"}
    state = fn.load(path)
    record = provenance.make_record(
        recipe="go", params=recipe.as_dict(), architecture={"recipe": "go", "description": recipe_module.ARCHITECTURE,
                                                            "net": json.loads(net_metadata["freenet.go"])},
        data=recipe_module.data_identity(recipe), metrics=state_json, license=args.license or recipe_module.LICENSE,
        state_dict=state)
    provenance.save_model(path, state, record, None if args.no_source else provenance.source_archive(),
                          metadata=net_metadata)


def _read_state(run_dir):
    with open(os.path.join(run_dir, "state.json")) as f:
        return json.load(f)


def run_bench(args):
    from freenet.go import bench
    from freenet.go.net import new_net

    set_threads(args.threads)
    python_rate, playout_rate = bench.rules_speed(args.size, seconds=args.seconds)
    print(f"rules {args.size}x{args.size}: {python_rate:,.0f} moves/s through Board (legal_mask + play), "
          f"{playout_rate:,.0f} moves/s in compiled random playouts")
    net = new_net(args.size, args.blocks, args.filters)
    name = f"{args.size}x{args.size} {args.blocks}x{args.filters}"
    for b in [int(x) for x in args.batches.split(",") if x.strip()]:
        print(f"net {name}, batch {b}: {bench.net_speed(net, b, args.seconds):,.0f} evaluations/s "
              f"({args.threads} thread{'s' if args.threads > 1 else ''})")
    for b in (1, 16):
        print(f"search {name}, {b} leaves per net call: {bench.search_speed(net, b):,.0f} playouts/s")
    if args.train_batch:
        print(f"training {name}, batch {args.train_batch}: "
              f"{bench.train_speed(net, args.train_batch):,.0f} positions/s")
    if args.leelaz:
        print(f"leelaz --cpu-only -t {args.threads} on the same net: "
              f"{bench.leelaz_speed(net, args.leelaz, args.threads):,.0f} nodes/s (its benchmark)")
    return 0


def run_ladder(args):
    from freenet.go import ladder

    if args.plot:
        ladder.require_matplotlib()  # before hours of games, not after
        check_output(args.plot, "chart (--plot)")
    generation = getattr(args, "generation", None) or ladder.latest_generation(args.dir)
    opponents = [o for o in args.opponents.split(",") if o.strip()]
    ladder.evaluate(args.dir, generation, opponents, games=args.games, playouts=args.playouts, seed=args.seed)
    if args.table:
        print(ladder.table(args.dir), end="")
    if args.plot:
        print(f"wrote {ladder.plot(args.dir, args.plot)}")
    return 0
