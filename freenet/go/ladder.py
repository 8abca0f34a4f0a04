"""The strength ladder of a training run: each evaluated net plays fixed opponents (GNU Go levels, an
earlier net of the run), and the results become win rates with 95% Wilson intervals and Elo ratings
against the CPU-hours the run had spent to make that net (``freenet go ladder``).

``RUN/ladder.json`` (written atomically after each opponent, so a crash loses at most one match and a
new call plays only what is missing)::

    {"format": "freenet.go.ladder/1",
     "entries": [{"generation": 12, "net": "net-0012.safetensors", "cpu_hours": 1.5, "opponent": "gnugo-1",
                  "games": 20, "wins": 7, "draws": 0, "no_result": 0, "winrate": 0.35,
                  "wilson95": [0.18, 0.57], "seconds": 812.0}, ...],
     "anchor": "gnugo-1",
     "elo": [{"player": "net-0012", "generation": 12, "cpu_hours": 1.5, "elo": -107.5, "bound": null}, ...]}

``games`` counts the decided games (a game with no result, an engine failure on both sides, is left
out and counted in ``no_result``); ``winrate`` is (wins + draws / 2) / games.

Opponents: ``gnugo-L`` is GNU Go at level L (Chinese rules), ``net-0006`` the run's
``net-0006.safetensors`` (searching with the same playouts as the evaluated net), ``previous`` the
latest earlier net that has ladder entries or a net file in the run folder (a run trained with
``--ladder-every K`` keeps the files of every K-th generation only). Colours alternate, komi 7.5, the run's board
size; a third GNU Go decides the score when the two engines disagree (freenet's Tromp-Taylor count
when GNU Go is not installed; GNU Go opponents are then skipped).

CPU-hours of a generation (when the caller does not pass them): ``cpu_seconds`` of the run's
``state.json`` if it has that key, else its ``seconds`` (the wall time of self-play and training) x 1,
that is one core assumed busy; a run trained with ``--threads 2`` may have used up to twice that.
For a generation older than ``state.json``'s, the CPU-hours of its existing ladder entries are reused,
else they are estimated as the latest figure x generation / latest generation and the entries say
``"cpu_hours_estimated": true``.

Elo: see ``elo``.
"""

import json
import math
import os
import re
import shlex
import shutil
import sys
import time

import numpy as np

from freenet.errors import FreenetError
from freenet.go.train import read_json
from freenet.serialize import atomic_write

FORMAT = "freenet.go.ladder/1"
LADDER_FILE = "ladder.json"
KOMI = 7.5
DEFAULT_OPPONENTS = ("gnugo-1", "gnugo-10", "previous")
ELO_SCALE = 400.0
ELO_LIMIT = 5000.0  # the search range for a group's offset; a bound never gets near it
_NET_NAME = re.compile(r"^net-(\d+)$")
_GNUGO_NAME = re.compile(r"^gnugo-(\d+)$")
_ENTRY_KEYS = {"generation": int, "net": str, "cpu_hours": (int, float), "opponent": str, "games": int,
               "wins": int, "draws": int}


# -- the run folder --------------------------------------------------------------------------------------

def net_file(generation):
    return f"net-{generation:04d}.safetensors"


def net_player(generation):
    return f"net-{generation:04d}"


def find_gnugo():
    """The GNU Go binary (on the PATH, else Debian's /usr/games/gnugo), or None."""
    return shutil.which("gnugo") or shutil.which("/usr/games/gnugo")


def _check_run(run_dir):
    if not os.path.isdir(run_dir):
        raise FreenetError(f"no run folder {run_dir}")


def run_size(run_dir):
    """The run's board size from its config.json (9 without one)."""
    config = read_json(os.path.join(run_dir, "config.json")) or {}
    size = config.get("size", 9)
    if not isinstance(size, int):
        raise FreenetError(f"{os.path.join(run_dir, 'config.json')}: size is {size!r}, not an integer")
    return size


def generations(run_dir):
    """The generations with a net-XXXX.safetensors in the run folder, ascending."""
    _check_run(run_dir)
    found = []
    for name in os.listdir(run_dir):
        m = re.fullmatch(r"net-(\d+)\.safetensors", name)
        if m:
            found.append(int(m.group(1)))
    return sorted(found)


def latest_generation(run_dir):
    found = generations(run_dir)
    if not found:
        raise FreenetError(f"{run_dir} has no net-XXXX.safetensors (no generation finished yet)")
    return found[-1]


def read_ladder(run_dir):
    """The entries of RUN/ladder.json ([] without one); a corrupt file is an error naming it."""
    path = os.path.join(run_dir, LADDER_FILE)
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise FreenetError(f"{path} is corrupt or unreadable ({e}); repair or delete it") from None
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise FreenetError(f"{path} is corrupt: no list of entries; repair or delete it")
    for i, e in enumerate(entries):
        bad = not isinstance(e, dict) or any(
            not isinstance(e.get(k), t) or isinstance(e.get(k), bool) for k, t in _ENTRY_KEYS.items())
        if bad or e["games"] < 0 or not 0 <= e["wins"] + e["draws"] <= e["games"]:
            raise FreenetError(f"{path} is corrupt: entry {i} is not a ladder result; repair or delete it")
    return entries


def write_ladder(run_dir, entries):
    """Writes the entries and the Elo ratings they give to RUN/ladder.json, atomically."""
    ratings = elo(entries)
    data = {"format": FORMAT, "entries": entries, "anchor": elo_anchor(entries), "elo": _rating_list(entries, ratings)}
    atomic_write(os.path.join(run_dir, LADDER_FILE), (json.dumps(data, indent=2) + "\n").encode())


def _rating_list(entries, ratings):
    cpu = {e["net"]: e["cpu_hours"] for e in entries}
    out = []
    for player in sorted(ratings, key=_player_order):
        row = {"player": player}
        m = _NET_NAME.match(player)
        if m and player + ".safetensors" in cpu:
            row.update(generation=int(m.group(1)), cpu_hours=cpu[player + ".safetensors"])
        row.update(ratings[player])
        out.append(row)
    return out


def _player_order(player):
    g = _GNUGO_NAME.match(player)
    n = _NET_NAME.match(player)
    return (0, int(g.group(1)), "") if g else (1, int(n.group(1)), "") if n else (2, 0, player)


def cpu_hours_of(run_dir, generation, entries=(), log=print):
    """(CPU-hours spent up to ``generation``, whether that is an estimate), as the module docstring says."""
    state_path = os.path.join(run_dir, "state.json")
    state = read_json(state_path)
    latest = None
    if isinstance(state, dict):
        latest = state.get("generation", state.get("chunk"))
        seconds = state.get("cpu_seconds", state.get("seconds"))
    if latest == generation and isinstance(seconds, (int, float)):
        return seconds / 3600.0, False
    for e in entries:
        if e["generation"] == generation:
            return e["cpu_hours"], bool(e.get("cpu_hours_estimated", False))
    if isinstance(latest, int) and latest > generation and isinstance(seconds, (int, float)):
        hours = seconds / 3600.0 * generation / latest
        log(f"generation {generation}: CPU-hours estimated as {hours:.3f} ({state_path} holds generation {latest})")
        return hours, True
    raise FreenetError(f"{state_path} does not tell the CPU-hours of generation {generation}"
                       + ("" if state is not None else " (no such file)"))


# -- playing ----------------------------------------------------------------------------------------------

def _resolve(opponent, generation, entries, run_dir):
    """The opponent's ladder name ('gnugo-L' or 'net-XXXX'), or None for 'previous' without an earlier net."""
    opponent = opponent.strip()
    if opponent == "previous":
        earlier = [e["generation"] for e in entries if e["generation"] < generation]
        earlier += [g for g in generations(run_dir) if g < generation]
        return net_player(max(earlier)) if earlier else None
    m = _GNUGO_NAME.match(opponent)
    if m:
        return f"gnugo-{int(m.group(1))}"
    m = _NET_NAME.match(opponent.removesuffix(".safetensors"))
    if m:
        return net_player(int(m.group(1)))
    raise FreenetError(f"unknown ladder opponent {opponent!r} (gnugo-LEVEL, net-XXXX or previous)")


def _freenet_command(path, playouts):
    return f"{shlex.quote(sys.executable)} -m freenet go gtp --model {shlex.quote(path)} --playouts {playouts} " \
           "--seed {seed}"


def evaluate(run_dir, generation, opponents=DEFAULT_OPPONENTS, games=20, playouts=200, seed=0, cpu_hours=None,
             gnugo=None, timeout=600.0, log=print):
    """Plays the run's net of ``generation`` against each opponent (names, or one comma-separated string)
    not yet on its ladder, writing ladder.json after each; returns the new entries. Game k of a match
    uses seed + k (GNU Go's ``--seed`` and freenet's search seed). ``cpu_hours``: the run's cost up to
    this generation (read from state.json when None). ``gnugo``: the GNU Go binary (default: found on
    the PATH or /usr/games). ``log``: None for quiet."""
    from freenet.go.match import run_match, wilson

    say = log or (lambda text: None)
    _check_run(run_dir)
    if not isinstance(generation, int) or generation < 1:
        raise FreenetError(f"generation must be a positive integer, not {generation!r}")
    net_path = os.path.join(run_dir, net_file(generation))
    if not os.path.isfile(net_path):
        raise FreenetError(f"no net for generation {generation}: {net_path} does not exist")
    size = run_size(run_dir)
    entries = read_ladder(run_dir)
    estimated = False
    gnugo = gnugo or find_gnugo()
    referee = f"{shlex.quote(gnugo)} --mode gtp --chinese-rules" if gnugo else None
    me = _freenet_command(net_path, playouts)
    if isinstance(opponents, str):
        opponents = [o for o in opponents.split(",") if o.strip()]
    added = []
    for requested in opponents:
        opponent = _resolve(requested, generation, entries, run_dir)
        if opponent is None:
            say(f"generation {generation}: no earlier ladder net to play ('previous' skipped)")
            continue
        if any(e["generation"] == generation and e["opponent"] == opponent for e in entries):
            continue
        level = _GNUGO_NAME.match(opponent)
        if level:
            if not gnugo:
                say(f"generation {generation}: GNU Go is not installed; {opponent} skipped")
                continue
            other = f"{shlex.quote(gnugo)} --mode gtp --level {int(level.group(1))} --chinese-rules --seed {{seed}}"
        else:
            other_path = os.path.join(run_dir, opponent + ".safetensors")
            if opponent == net_player(generation):
                raise FreenetError(f"generation {generation} cannot be its own ladder opponent")
            if not os.path.isfile(other_path):
                raise FreenetError(f"no net for opponent {opponent}: {other_path} does not exist")
            other = _freenet_command(other_path, playouts)
        if cpu_hours is None:
            cpu_hours, estimated = cpu_hours_of(run_dir, generation, entries, say)
        start = time.perf_counter()
        summary = run_match(me, other, games, size=size, komi=KOMI, referee_command=referee, seed=seed,
                            timeout=timeout, log=log, names=(net_player(generation), opponent))
        seconds = time.perf_counter() - start
        decided = summary.games - summary.no_result
        score = summary.wins[0] + summary.draws / 2
        lo, hi = wilson(score, decided)
        entry = {"generation": generation, "net": net_file(generation), "cpu_hours": cpu_hours,
                 "opponent": opponent, "games": decided, "wins": summary.wins[0], "draws": summary.draws,
                 "no_result": summary.no_result, "winrate": score / decided if decided else None,
                 "wilson95": [lo, hi], "seconds": round(seconds, 1)}
        if estimated:
            entry["cpu_hours_estimated"] = True
        entries.append(entry)
        added.append(entry)
        write_ladder(run_dir, entries)
        rate = f"{entry['winrate']:.3f}" if decided else "-"
        say(f"generation {generation} vs {opponent}: {summary.wins[0]} wins, {summary.draws} draws of {decided} "
            f"games, win rate {rate} [{lo:.3f}, {hi:.3f}] (Wilson 95%) in {seconds:.0f} s")
    return added


# -- Elo ----------------------------------------------------------------------------------------------------

def elo_anchor(entries):
    """The player rated 0: GNU Go level 1 if it played, else the lowest GNU Go level that played, else the
    earliest net; None without games."""
    players = {p for e in entries if e["games"] for p in (e["net"].removesuffix(".safetensors"), e["opponent"])}
    if not players:
        return None
    return "gnugo-1" if "gnugo-1" in players else min(players, key=_player_order)


def _expected(diff):
    """P(win) of a player rated ``diff`` Elo above its opponent."""
    return 1.0 / (1.0 + 10.0 ** (-diff / ELO_SCALE))


def elo(entries, anchor=None):
    """Elo ratings of every player in the entries: {player: {"elo": x, "bound": b}}.

    Maximum likelihood over all games with P(A beats B) = 1 / (1 + 10^(-(Ra - Rb)/400)), draws as half a
    win, ``anchor`` (default ``elo_anchor``) at 0. Where the likelihood has no maximum, because a group
    of players won (or lost) every game against the others, the ratings inside each group are fitted
    by Newton's method on its own games, and the group is placed against the players already rated so
    that its expected score equals the 95% Wilson lower end of its perfect score (upper end of its
    zero): ``bound`` is then "lower" (the rating is at least this) or "upper" (at most this), a group
    fitted against bounded players inherits their kind ("approximate" when the kinds mix), and an
    exact maximum-likelihood rating has ``bound`` None. Players without games linking them to the
    anchor get ``elo`` None. Deterministic: no randomness, fixed iteration counts.
    """
    from freenet.go.match import wilson

    players = sorted({p for e in entries if e["games"] for p in (e["net"].removesuffix(".safetensors"),
                                                                 e["opponent"])}, key=_player_order)
    if not players:
        return {}
    anchor = anchor or elo_anchor(entries)
    if anchor not in players:
        raise FreenetError(f"Elo anchor {anchor!r} has played no games")
    index = {p: i for i, p in enumerate(players)}
    k = len(players)
    n = np.zeros((k, k))  # decided games between i and j
    s = np.zeros((k, k))  # i's score against j (wins + draws / 2)
    for e in entries:
        if not e["games"]:
            continue
        a, b = index[e["net"].removesuffix(".safetensors")], index[e["opponent"]]
        score = e["wins"] + e["draws"] / 2
        n[a, b] += e["games"]
        n[b, a] += e["games"]
        s[a, b] += score
        s[b, a] += e["games"] - score
    groups = _strong_components(s > 0)
    group_of = {i: g for g, members in enumerate(groups) for i in members}
    rating = np.full(k, np.nan)
    bound = [None] * k
    home = group_of[index[anchor]]
    rating[groups[home]] = _fit_group(groups[home], index[anchor], n, s)
    placed = set(groups[home])
    pending = [g for g in range(len(groups)) if g != home]
    while pending:
        linked = [g for g in pending if n[np.ix_(groups[g], sorted(placed))].sum() > 0]
        if not linked:
            break
        g = linked[0]
        members = groups[g]
        local = _fit_group(members, members[0], n, s)
        cross = sorted(placed)
        games_total = n[np.ix_(members, cross)].sum()
        score_total = s[np.ix_(members, cross)].sum()
        kinds = {bound[j] for j in cross if n[members][:, j].sum() > 0} - {None}
        if score_total >= games_total:
            target, own = games_total * wilson(games_total, games_total)[0], "lower"
        elif score_total <= 0:
            target, own = games_total * wilson(0, games_total)[1], "upper"
        else:
            target, own = score_total, None
        kinds |= {own} - {None}
        rating[members] = local + _solve_offset(local, members, cross, rating, n, target)
        for i in members:
            bound[i] = None if not kinds else next(iter(kinds)) if len(kinds) == 1 else "approximate"
        placed.update(members)
        pending.remove(g)
    return {p: {"elo": None if np.isnan(rating[i]) else float(rating[i]), "bound": bound[i]}
            for p, i in index.items()}


def _strong_components(beats):
    """The strongly connected groups of the graph 'i scored against j', each sorted, in a fixed order."""
    k = len(beats)
    reach = beats | np.eye(k, dtype=bool)
    for m in range(k):  # Warshall's transitive closure
        reach |= reach[:, m:m + 1] & reach[m:m + 1, :]
    mutual = reach & reach.T
    groups, seen = [], set()
    for i in range(k):
        if i not in seen:
            members = [int(j) for j in np.flatnonzero(mutual[i])]
            seen.update(members)
            groups.append(members)
    return groups


def _fit_group(members, reference, n, s, iterations=100):
    """Maximum-likelihood ratings of a strongly connected group on its own games, ``reference`` at 0
    (Newton's method on the concave log-likelihood, steps capped at 400 Elo)."""
    m = len(members)
    r = np.zeros(m)
    if m == 1:
        return r
    nn, ss = n[np.ix_(members, members)], s[np.ix_(members, members)]
    free = [i for i in range(m) if members[i] != reference]
    c = math.log(10) / ELO_SCALE
    for _ in range(iterations):
        p = _expected(r[:, None] - r[None, :])
        gradient = c * (ss - nn * p).sum(1)
        w = c * c * nn * p * (1 - p)
        hessian = w - np.diag(w.sum(1))
        step = np.linalg.solve(-hessian[np.ix_(free, free)], gradient[free])
        largest = np.abs(step).max()
        if largest > ELO_SCALE:
            step *= ELO_SCALE / largest
        r[free] += step
        if largest < 1e-9:
            break
    return r - r[members.index(reference)]


def _solve_offset(local, members, cross, rating, n, target, iterations=200):
    """The shift of a group's ratings at which its expected score against the rated players is ``target``
    (bisection: the expected score grows with the shift)."""
    games = n[np.ix_(members, cross)]
    lo, hi = -ELO_LIMIT, ELO_LIMIT
    for _ in range(iterations):
        mid = (lo + hi) / 2
        expected = (games * _expected(local[:, None] + mid - rating[cross][None, :])).sum()
        if expected < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# -- reports ------------------------------------------------------------------------------------------------

def _columns(entries):
    """Table and chart columns: GNU Go levels ascending, then 'earlier net' for net opponents."""
    levels = sorted({e["opponent"] for e in entries if _GNUGO_NAME.match(e["opponent"])}, key=_player_order)
    nets = any(_NET_NAME.match(e["opponent"]) for e in entries)
    return levels + (["earlier net"] if nets else [])


def _column_of(opponent):
    return "earlier net" if _NET_NAME.match(opponent) else opponent


def format_elo(rating):
    if rating is None or rating["elo"] is None:
        return "-"
    sign = {"lower": ">= ", "upper": "<= ", "approximate": "~ "}.get(rating["bound"], "")
    return f"{sign}{rating['elo']:.0f}"


def table(run_dir):
    """The ladder as a Markdown table: one row per net, wins/games and the Wilson interval per opponent,
    and its Elo (GNU Go level 1 = 0 unless the ladder says another anchor)."""
    _check_run(run_dir)
    entries = read_ladder(run_dir)
    if not entries:
        raise FreenetError(f"{os.path.join(run_dir, LADDER_FILE)} holds no results yet")
    columns = _columns(entries)
    ratings = elo(entries)
    anchor = elo_anchor(entries)
    lines = ["| generation | CPU-hours | " + " | ".join(columns) + f" | Elo ({anchor} = 0) |",
             "|---" * (len(columns) + 3) + "|"]
    for generation in sorted({e["generation"] for e in entries}):
        mine = [e for e in entries if e["generation"] == generation]
        cells = []
        for column in columns:
            found = [e for e in mine if _column_of(e["opponent"]) == column]
            cells.append("; ".join(_cell(e, column == "earlier net") for e in found) or "-")
        hours = f"{mine[0]['cpu_hours']:.2f}" + (" (est.)" if mine[0].get("cpu_hours_estimated") else "")
        lines.append(f"| {generation} | {hours} | " + " | ".join(cells)
                     + f" | {format_elo(ratings.get(net_player(generation)))} |")
    lines.append("")
    lines.append("Cells: the net's wins (draws count half) / decided games, 95% Wilson interval of its win "
                 "rate. Elo: maximum likelihood over all games; >= and <= are 95% bounds where nets won or "
                 "lost every game against the others, ~ an approximate rating fitted against such bounds.")
    return "\n".join(lines) + "\n"


def _interval(entry):
    """The Wilson 95% interval of an entry's win rate, from its counts (the stored one is for readers)."""
    from freenet.go.match import wilson

    return wilson(entry["wins"] + entry["draws"] / 2, entry["games"])


def _cell(entry, name_opponent):
    score = entry["wins"] + entry["draws"] / 2
    lo, hi = _interval(entry)
    text = f"{score:g}/{entry['games']} [{lo:.2f}, {hi:.2f}]"
    return f"{text} vs {entry['opponent']}" if name_opponent else text


def require_matplotlib():
    """matplotlib (the optional extra ``plot``), or a FreenetError saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise FreenetError("plotting needs matplotlib: pip install matplotlib") from None
    return matplotlib


def plot(run_dir, path=None):
    """A PNG of the ladder: win rate per opponent (Wilson 95% error bars) and Elo against CPU-hours.
    Writes ``path`` (default RUN/ladder.png) and returns it. Needs the optional matplotlib."""
    matplotlib = require_matplotlib()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _check_run(run_dir)
    entries = read_ladder(run_dir)
    if not entries:
        raise FreenetError(f"{os.path.join(run_dir, LADDER_FILE)} holds no results yet")
    path = path or os.path.join(run_dir, "ladder.png")
    ratings = elo(entries)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for column in _columns(entries):
        rows = sorted((e for e in entries if _column_of(e["opponent"]) == column and e["games"]),
                      key=lambda e: e["cpu_hours"])
        if not rows:
            continue
        x = [e["cpu_hours"] for e in rows]
        y = [(e["wins"] + e["draws"] / 2) / e["games"] for e in rows]
        intervals = [_interval(e) for e in rows]
        err = [[rate - lo for rate, (lo, _) in zip(y, intervals)], [hi - rate for rate, (_, hi) in zip(y, intervals)]]
        left.errorbar(x, y, yerr=err, marker="o", capsize=3, label=f"vs {column}")
    left.axhline(0.5, color="grey", lw=0.8, ls=":")
    left.set(xlabel="CPU-hours of training", ylabel="win rate (95% Wilson interval)", ylim=(-0.02, 1.02),
             title="Win rate per opponent")
    left.legend()
    nets = sorted({e["generation"]: e["cpu_hours"] for e in entries}.items())
    markers = {None: "o", "lower": "^", "upper": "v", "approximate": "s"}
    points = [(hours, ratings.get(net_player(g))) for g, hours in nets]
    points = [(h, r) for h, r in points if r and r["elo"] is not None]
    right.plot([h for h, _ in points], [r["elo"] for _, r in points], color="C0", lw=1)
    for kind, marker in markers.items():
        chosen = [(h, r["elo"]) for h, r in points if r["bound"] == kind]
        if chosen:
            label = {None: "maximum likelihood", "lower": "lower bound (won every game)",
                     "upper": "upper bound (lost every game)", "approximate": "approximate"}[kind]
            right.scatter(*zip(*chosen), marker=marker, color="C0", label=label, zorder=3)
    right.set(xlabel="CPU-hours of training", ylabel=f"Elo ({elo_anchor(entries)} = 0)", title="Elo")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
