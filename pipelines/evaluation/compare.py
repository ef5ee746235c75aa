"""`compare_codec_reports`: is one codec better than another on the same held-out clips, or within the noise?

Two `evaluate_codec` reports made on the same clips pair up clip by clip: every metric lists each clip's figure in
dataset order. For each system both reports hold (e.g. "codec k=8") and each metric, the comparison gives both means,
the mean paired difference (new - base), its bootstrap confidence interval (the clips resampled with replacement,
the same resample for both, so what varies from clip to clip, such as how hard a clip is, cancels) and how many
clips got better. A difference whose interval excludes zero is more than the noise of which clips were drawn.

With `by_group`, reports made with the same `by=` column (e.g. `--by voice`) are also compared group by group: the
same rows over each value's clips only, to see where a change helps and where it hurts.

Reports made with `asr=True` also pair the recogniser's words found sentence by sentence (whole sentences are
resampled, and the share is hits over words of the resample, as `metrics.word_recall` counts it), and every report
pairs its steady tones (`steady_tone_fidelity`) tone by tone.

`compare_generation_reports` does the same for what an LM makes through two codecs (or two LMs) with the same seeds:
eval-tts reports pair sentence by sentence (words found, ending in time), eval-music reports caption by caption
(family and tempo right), `--references-only` reports render by render through their codecs; several seeds pool.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .codec_eval import METRICS
from .data import check_count, write_report
from .metrics import tempo_within, word_hits

_BLOCK = 1000  # resamples drawn at once: bounds the index array at 1000 x clips
Report = str | os.PathLike | dict[str, Any]  # a report dict, or the JSON file an eval command wrote


def compare_codec_reports(base: Report, new: Report, systems: Sequence[str] | None = None, resamples: int = 10000,
                          confidence: float = 0.95, seed: int = 0, by_group: bool = False,
                          output: str | os.PathLike | None = None) -> dict[str, Any]:
    """Paired differences, `new` - `base`, of two `evaluate_codec` reports on the same clips.

    Args:
        base, new: reports (dicts, or the JSON files `rvqaudio eval-codec -o` writes) on the same split of the same
            data: same domain, clip count, skipped clips and total duration, or ValueError. The data folders may be
            named differently (a moved dataset); both names are kept in the result.
        systems: the systems to compare, by name (default: every system in both reports, in `base`'s order).
        resamples: bootstrap resamples (10000 gives intervals stable to about 0.001 on 50 clips).
        confidence: the interval's coverage, in (0, 1).
        seed: the resampling seed (the same seed and reports give the same intervals).
        by_group: also compare each value of the column both reports were broken down by (`evaluate_codec(by=...)`,
            the same column and clip labels in both, else ValueError): the result gains `group_column` and
            `group_rows`, the rows over each value's clips, each with its `group`, values in sorted order (words
            found and steady tones are compared over all clips only).
        output: where to write the result as JSON, with a markdown table beside it (`.md`).

    Returns `{base, new, data, split, clips, resamples, confidence, seed, rows, notes, markdown}`, where each row is
    `{system, metric, higher_is_better, n, base, new, difference, low, high, better, worse}`: the means over the `n`
    clips both scored (PESQ is undefined on silence), the mean difference and its interval, and how many of the `n`
    items got better and how many worse (changes within float noise, a relative 1e-6, count as neither).
    Metric "words_found" pairs sentences (with `asr` in both reports); "steady_tones" pairs the 24 tones, under
    system "steady tones". `notes` says what could not be compared.
    """
    base_report, base_name = _load(base, "base")
    new_report, new_name = _load(new, "new")
    _check_paired(base_report, new_report)
    check_count("resamples", resamples)
    _check_confidence(confidence)
    rng = np.random.default_rng(seed)

    base_systems = {s["name"]: s for s in base_report["systems"]}
    new_systems = {s["name"]: s for s in new_report["systems"]}
    shared = [name for name in base_systems if name in new_systems]
    if systems is None:
        names = shared
    else:
        names = list(systems)
        missing = [name for name in names if name not in shared]
        if missing:
            raise ValueError(f"systems {missing} are not in both reports; both have {shared}")
    if not names:
        raise ValueError(f"the reports share no system (base: {list(base_systems)}, new: {list(new_systems)})")

    rows, notes = [], []
    texts = _texts(base_report, new_report)
    if texts is None and "asr" in base_report and "asr" in new_report:
        notes.append("words found not compared: a report's asr section lacks the texts it scored (older versions of "
                     "eval-codec did not store them); make it again")
    for name in names:
        b, n = base_systems[name], new_systems[name]
        rows += _metric_rows(name, b["metrics"], n["metrics"], None, resamples, confidence, rng)
        if texts is not None and "asr" in b and "asr" in n:
            rows.append(_words_found_row(name, texts, b["asr"]["transcripts"], n["asr"]["transcripts"], resamples,
                                         confidence, rng))
    tones = base_report.get("steady_tones"), new_report.get("steady_tones")
    if all(tones) and tones[0]["f0"] == tones[1]["f0"]:
        rows.append(_paired_row("steady tones", "steady_tones", True, tones[0]["fraction"], tones[1]["fraction"],
                                resamples, confidence, rng))
    result = {"base": base_name, "new": new_name, "data": [base_report["data"], new_report["data"]],
              "split": base_report["split"], "clips": base_report["clips"], "resamples": resamples,
              "confidence": confidence, "seed": seed, "rows": rows, "notes": notes}
    if by_group:  # after the overall rows, which therefore come out as they do without by_group
        column, labels = _group_labels(base_report, new_report)
        group_rows = []
        for value in sorted(set(labels)):
            keep = [i for i, label in enumerate(labels) if label == value]
            for name in names:
                group_rows += [{"group": value} | row for row in _metric_rows(
                    name, base_systems[name]["metrics"], new_systems[name]["metrics"], keep, resamples, confidence,
                    rng)]
        result |= {"group_column": column, "group_rows": group_rows}
    result["markdown"] = format_comparison(result)
    write_report(output, result)
    return result


def compare_reports(reports: Sequence[Report], systems: Sequence[str] | None = None,
                    resamples: int = 10000, confidence: float = 0.95, seed: int = 0, by_group: bool = False,
                    output: str | os.PathLike | None = None) -> dict[str, Any]:
    """`reports` as base, new[, base, new, ...]: `compare_codec_reports` for one pair of eval-codec reports, else
    `compare_generation_reports` over the pairs (eval-tts or eval-music reports, one pair per seed)."""
    if len(reports) < 2 or len(reports) % 2:
        raise ValueError(f"give reports in pairs, base then new (one pair per seed for eval-tts or eval-music), got "
                         f"{len(reports)}")
    # Each file is read once: the comparisons below take the reports as read.
    reports = [_Read(*_read(report, "new" if i % 2 else "base")) for i, report in enumerate(reports)]
    if "systems" in reports[0].data:
        if len(reports) != 2:
            raise ValueError(f"eval-codec reports compare one pair (base, new), got {len(reports)} reports")
        return compare_codec_reports(reports[0], reports[1], systems=systems, resamples=resamples,
                                     confidence=confidence, seed=seed, by_group=by_group, output=output)
    if systems is not None or by_group:
        raise ValueError("systems= and by_group= are for eval-codec reports; these are eval-tts or eval-music reports")
    pairs = list(zip(reports[0::2], reports[1::2]))
    return compare_generation_reports(pairs, resamples=resamples, confidence=confidence, seed=seed, output=output)


def compare_generation_reports(pairs: Sequence[tuple[Report, Report]], resamples: int = 10000,
                               confidence: float = 0.95, seed: int = 0,
                               output: str | os.PathLike | None = None) -> dict[str, Any]:
    """Paired differences, new - base, of eval-tts or eval-music reports made with the same seeds and captions.

    Args:
        pairs: `(base, new)` reports (dicts or JSON files), one pair per seed; their items pool. Both reports of a
            pair must hold the same items in the same order (same data, split, max_clips and seed), and every pair
            the same kind: eval-tts, eval-music, or eval-music `--references-only` with `--codec` (its renders
            through that codec).
        resamples, confidence, seed, output: as in `compare_codec_reports`.

    Rows (system "generated", or "through codec" for references-only reports): eval-tts `words_found` (sentences
    resampled whole) and `ended_in_time`; eval-music `family` (the classifier names the requested family) and
    `tempo` (estimate within the report's tolerance of the requested tempo; items without a requested tempo are left
    out, an unmeasured estimate counts as a miss). Returns the same fields as `compare_codec_reports`.
    """
    if not pairs:
        raise ValueError("compare_generation_reports needs at least one (base, new) pair of reports")
    check_count("resamples", resamples)
    _check_confidence(confidence)
    rng = np.random.default_rng(seed)
    loaded = [(_load_generation(b, "base"), _load_generation(n, "new")) for b, n in pairs]
    kinds = {report.kind for pair in loaded for report in pair}
    if len(kinds) != 1:
        raise ValueError(f"the reports mix kinds {sorted(kinds)}; compare reports of one kind")
    kind = kinds.pop()
    base_items, new_items = [], []
    for i, (b, n) in enumerate(loaded):
        if [x["text"] for x in b.items] != [x["text"] for x in n.items]:
            raise ValueError(f"pair {i}: the reports are not on the same items (their texts differ); make both with "
                             "the same --data, --split, --max-clips and --seed")
        base_items += b.items
        new_items += n.items
    system = "through codec" if kind == "music-references" else "generated"
    rows = []
    if kind == "tts":
        texts = [x["text"] for x in base_items]
        rows.append(_words_found_row(system, texts, [x["hyp_generated"] for x in base_items],
                                     [x["hyp_generated"] for x in new_items], resamples, confidence, rng))
        rows.append(_paired_row(system, "ended_in_time", True, [float(x["ended_in_time"]) for x in base_items],
                                [float(x["ended_in_time"]) for x in new_items], resamples, confidence, rng))
    else:
        tolerance = loaded[0][0].tolerance
        for metric, right in (("family", _family_right), ("tempo", lambda x: _tempo_right(x, tolerance))):
            rows.append(_paired_row(system, metric, True, [right(x) for x in base_items],
                                    [right(x) for x in new_items], resamples, confidence, rng))
    result = {"base": ", ".join(b.name for b, _ in loaded), "new": ", ".join(n.name for _, n in loaded),
              "data": kind, "split": f"{kind}, {len(pairs)} report pair(s)", "clips": len(base_items),
              "resamples": resamples, "confidence": confidence, "seed": seed, "rows": rows, "notes": []}
    result["markdown"] = format_comparison(result)
    write_report(output, result)
    return result


def _family_right(item: dict[str, Any]) -> float:
    return float(item["predicted_family"] == item["requested_family"])


def _tempo_right(item: dict[str, Any], tolerance: float) -> float | None:
    requested, estimated = item.get("requested_tempo"), item.get("estimated_tempo")
    if requested is None:
        return None
    return float(estimated is not None and bool(tempo_within(estimated, requested, tolerance)))


class _Items(NamedTuple):
    kind: str  # "tts", "music" or "music-references"
    items: list[dict[str, Any]]
    tolerance: float  # of the tempo (relative), for music
    name: str


def _load_generation(report: Report, which: str) -> _Items:
    """The per-item records of an eval-tts or eval-music report."""
    data, name = _read(report, which)
    if isinstance(data.get("items"), list) and "wer_generated" in data:
        return _Items("tts", data["items"], 0.0, name)
    for key, kind in (("generated", "music"), ("through_codec", "music-references")):
        part = data.get(key)
        if isinstance(part, dict) and isinstance(part.get("items"), list):
            return _Items(kind, part["items"], float(part["tempo"]["tolerance"]), name)
    raise ValueError(f"{which} report {name!r} is not an eval-tts report, an eval-music report, or an eval-music "
                     "--references-only report made with --codec")


def format_comparison(result: dict[str, Any]) -> str:
    """The markdown table of a `compare_codec_reports` result; differences outside the noise in bold."""
    pct = f"{100 * result['confidence']:g}%"
    lines = [f"Paired comparison on {result['clips']} clips of [{result['split']}]: new = {result['new']}, base = "
             f"{result['base']}; {pct} bootstrap intervals over {result['resamples']} resamples (seed "
             f"{result['seed']}), bold where the interval excludes zero", "",
             f"| system | metric | base | new | difference [{pct} interval] | better / worse / n |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    lines += [_format_row(r) for r in result["rows"]]
    if result.get("group_rows"):
        column = result["group_column"]
        lines += ["", f"By {column}:", "",
                  f"| {column} | system | metric | base | new | difference [{pct} interval] | better / worse / n |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['group']} " + _format_row(r) for r in result["group_rows"]]
    if result.get("notes"):
        lines += ["", *result["notes"]]
    return "\n".join(lines) + "\n"


def _format_row(r: dict[str, Any]) -> str:
    if r["n"] == 0:
        return f"| {r['system']} | {r['metric']} | | | no clip scored by both | |"
    arrow = "↑" if r["higher_is_better"] else "↓"
    diff = f"{r['difference']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]"
    if r["low"] > 0 or r["high"] < 0:
        diff = f"**{diff}**"
    return (f"| {r['system']} | {r['metric']} {arrow} | {r['base']:.4f} | {r['new']:.4f} | {diff} | "
            f"{r['better']} / {r['worse']} / {r['n']} |")


def _group_labels(base: dict[str, Any], new: dict[str, Any]) -> tuple[str, list[str]]:
    """The column both reports were broken down by and each scored clip's value of it (ValueError unless they agree)."""
    groups = base.get("groups"), new.get("groups")
    if not all(groups):
        which = [w for w, g in zip(("base", "new"), groups) if not g]
        raise ValueError(f"by_group needs reports broken down by a column (eval-codec --by COLUMN); the "
                         f"{' and '.join(which)} report has none")
    if groups[0]["column"] != groups[1]["column"]:
        raise ValueError(f"the reports are broken down by different columns: {groups[0]['column']!r} in base and "
                         f"{groups[1]['column']!r} in new")
    if groups[0]["labels"] != groups[1]["labels"]:
        raise ValueError(f"the reports' {groups[0]['column']!r} labels differ clip by clip; they are not on the same "
                         "clips")
    return groups[0]["column"], list(groups[0]["labels"])


def _check_confidence(confidence: float) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


class _Read(NamedTuple):
    """A report already read, and its name (what `compare_reports` hands on)."""

    data: dict[str, Any]
    name: str


def _read(report: Report | _Read, which: str) -> tuple[dict[str, Any], str]:
    """A report and how to name it: a dict as it is, or a JSON file's contents."""
    if isinstance(report, _Read):
        return report.data, report.name
    if isinstance(report, dict):
        return report, f"{which} report"
    path = Path(report)
    if not path.is_file():
        raise FileNotFoundError(f"{which} report {str(path)!r} does not exist (write one with `rvqaudio eval-codec "
                                "-o FILE.json`, or eval-tts / eval-music)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{which} report {str(path)!r} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{which} report {str(path)!r} is not a JSON object")
    return data, str(path)


def _load(report: Report, which: str) -> tuple[dict[str, Any], str]:
    data, name = _read(report, which)
    systems = data.get("systems")
    if not isinstance(systems, list) or not all(isinstance(s, dict) and "metrics" in s for s in systems):
        raise ValueError(f"{which} report {name!r} is not an eval-codec report (it needs a 'systems' list with "
                         "per-clip 'metrics')")
    for s in systems:
        for metric, summary in s["metrics"].items():
            if not isinstance(summary, dict) or "values" not in summary:
                raise ValueError(f"{which} report {name!r}: {s.get('name')!r} {metric} has no per-clip 'values' "
                                 "to pair; make the report again with this version of eval-codec")
    return data, name


def _check_paired(base: dict[str, Any], new: dict[str, Any]) -> None:
    """ValueError unless both reports scored the same clips: same split, domain, counts and total duration."""
    for field in ("split", "domain", "clips", "skipped"):
        if base.get(field) != new.get(field):
            raise ValueError(f"the reports are not on the same clips: {field} is {base.get(field)!r} in base and "
                             f"{new.get(field)!r} in new; evaluate both with the same --data, --split and --max-clips")
    seconds = base.get("seconds"), new.get("seconds")
    if not all(isinstance(s, (int, float)) for s in seconds) or not math.isclose(*seconds, rel_tol=1e-6):
        raise ValueError(f"the reports are not on the same clips: they last {seconds[0]!r} s in base and "
                         f"{seconds[1]!r} s in new")


def _texts(base: dict[str, Any], new: dict[str, Any]) -> list[str] | None:
    """The transcripts the recogniser was scored against, when both reports have them and agree."""
    texts = [r.get("asr", {}).get("texts") for r in (base, new)]
    if texts[0] is None or texts[1] is None:
        return None
    if texts[0] != texts[1]:
        raise ValueError("the reports' asr sections score different sentences; they are not on the same clips")
    return texts[0]


def _metric_rows(system: str, base: dict[str, Any], new: dict[str, Any], keep: list[int] | None, resamples: int,
                 confidence: float, rng: np.random.Generator) -> list[dict[str, Any]]:
    """A `_paired_row` per metric of METRICS that both systems' `metrics` hold, over the clips `keep` (None: all)."""
    rows = []
    for metric, (_, higher) in METRICS.items():
        if metric in base and metric in new:
            b, n = base[metric]["values"], new[metric]["values"]
            if keep is not None:
                b, n = [b[i] for i in keep], [n[i] for i in keep]
            rows.append(_paired_row(system, metric, higher, b, n, resamples, confidence, rng))
    return rows


def _paired_row(system: str, metric: str, higher: bool, base: Sequence[float | None], new: Sequence[float | None],
                resamples: int, confidence: float, rng: np.random.Generator) -> dict[str, Any]:
    if len(base) != len(new):
        raise ValueError(f"{system} {metric}: {len(base)} values in base and {len(new)} in new; the reports are not "
                         "on the same clips")
    both = [(b, n) for b, n in zip(base, new) if b is not None and n is not None]
    row = {"system": system, "metric": metric, "higher_is_better": higher, "n": len(both)}
    if not both:
        return row | {"base": None, "new": None, "difference": None, "low": None, "high": None, "better": 0,
                      "worse": 0}
    b, n = np.asarray(both, dtype=np.float64).T
    d = n - b
    low, high = _interval(lambda idx: d[idx].mean(axis=1), len(d), resamples, confidence, rng)
    return row | {"base": float(b.mean()), "new": float(n.mean()), "difference": float(d.mean()), "low": low,
                  "high": high, **_counts(b, n, higher)}


def _words_found_row(system: str, texts: list[str], base: list[str], new: list[str], resamples: int,
                     confidence: float, rng: np.random.Generator) -> dict[str, Any]:
    hits_b, words = np.asarray(word_hits(texts, base), dtype=np.float64).T
    hits_n, _ = np.asarray(word_hits(texts, new), dtype=np.float64).T
    dh = hits_n - hits_b
    low, high = _interval(lambda idx: dh[idx].sum(axis=1) / words[idx].sum(axis=1), len(words), resamples,
                          confidence, rng)
    return {"system": system, "metric": "words_found", "higher_is_better": True, "n": len(texts),
            "base": float(hits_b.sum() / words.sum()), "new": float(hits_n.sum() / words.sum()),
            "difference": float(dh.sum() / words.sum()), "low": low, "high": high, **_counts(hits_b, hits_n, True)}


def _counts(base: np.ndarray, new: np.ndarray, higher: bool) -> dict[str, int]:
    """How many items got better and how many worse; float noise (a relative 1e-6) counts as neither."""
    changed = ~np.isclose(new, base, rtol=1e-6, atol=1e-9)
    up = changed & (new > base)
    down = changed & (new < base)
    return {"better": int((up if higher else down).sum()), "worse": int((down if higher else up).sum())}


def _interval(statistic, n: int, resamples: int, confidence: float,
              rng: np.random.Generator) -> tuple[float, float]:
    """The percentile bootstrap interval of `statistic(index array [R, n])` over `resamples` resamples of n items."""
    values = []
    for start in range(0, resamples, _BLOCK):
        idx = rng.integers(0, n, size=(min(_BLOCK, resamples - start), n))
        values.append(statistic(idx))
    tail = (1 - confidence) / 2
    low, high = np.quantile(np.concatenate(values), [tail, 1 - tail])
    return float(low), float(high)
