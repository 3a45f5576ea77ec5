"""Agreement, consensus and disagreements of ``tstcnn annotations agreement`` at the size of a real campaign.

TTStroke-21 holds about 1,000 strokes per hour of 120 fps video. Here each video holds ``--strokes`` strokes of
60 to 240 frames, 60 to 600 frames apart; each annotator after the first marks the same strokes with boundaries
moved by a few frames, misses ``--miss`` of them, gives another class to ``--swap`` of them and adds ``--miss``
of their own. Reported: seconds for :func:`agreement`, :func:`consensus` and :func:`disagreements` (pure Python,
one core), and the figures found, which should be close to the perturbation put in.

    python benchmarks/bench_agreement.py [--annotators 3] [--videos 20] [--strokes 500] [--seed 0]

Prints one line per step, then one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from tstcnn.annotate.agreement import Span, agreement, consensus, disagreements
from tstcnn.taxonomy import TTSTROKE21_CLASSES


def _reference(rng: random.Random, videos: int, strokes: int) -> list[Span]:
    spans = []
    for video in range(videos):
        begin = rng.randint(0, 600)
        for _ in range(strokes):
            length = rng.randint(60, 240)
            spans.append(Span(video, begin, begin + length, rng.choice(TTSTROKE21_CLASSES[:-1])))
            begin += length + rng.randint(60, 600)
    return spans


def _annotator(rng: random.Random, reference: list[Span], miss: float, swap: float, jitter: int) -> list[Span]:
    spans = []
    for s in reference:
        if rng.random() < miss:
            continue
        label = rng.choice(TTSTROKE21_CLASSES[:-1]) if rng.random() < swap else s.label
        begin = max(0, s.begin + rng.randint(-jitter, jitter))
        spans.append(Span(s.video_id, begin, max(begin + 1, s.end + rng.randint(-jitter, jitter)), label))
    extra = rng.sample(reference, int(miss * len(reference)))
    spans += [Span(s.video_id, s.end + 20, s.end + 50, s.label) for s in extra]  # strokes only this one saw
    return spans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotators", type=int, default=3)
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--strokes", type=int, default=500, help="strokes per video")
    parser.add_argument("--miss", type=float, default=0.05)
    parser.add_argument("--swap", type=float, default=0.1)
    parser.add_argument("--jitter", type=int, default=6, help="largest boundary move, frames")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    reference = _reference(rng, args.videos, args.strokes)
    marked = {"a0": reference}
    marked.update({f"a{i}": _annotator(rng, reference, args.miss, args.swap, args.jitter)
                   for i in range(1, args.annotators)})
    total = sum(map(len, marked.values()))
    timings = {}
    start = time.perf_counter()
    result = agreement(marked, TTSTROKE21_CLASSES)
    timings["agreement_s"] = time.perf_counter() - start
    start = time.perf_counter()
    agreed = consensus(marked, TTSTROKE21_CLASSES)
    timings["consensus_s"] = time.perf_counter() - start
    start = time.perf_counter()
    found = disagreements(marked)
    timings["disagreements_s"] = time.perf_counter() - start
    overall = result["overall"]
    print(f"{args.annotators} annotators, {total} strokes on {args.videos} videos")
    for step, seconds in timings.items():
        print(f"{step[:-2]:>14}: {seconds:.2f} s")
    print(f"overall: {overall['matched']} matched, boundaries median {overall['boundary_median_frames']} / p90 "
          f"{overall['boundary_p90_frames']} frames, kappa {overall['kappa']:.3f}; consensus {len(agreed)} strokes "
          f"({sum(s.tie for s in agreed)} ties); {len(found)} disagreements")
    print(json.dumps({"annotators": args.annotators, "strokes": total, **{k: round(v, 3) for k, v in timings.items()},
                      "kappa": overall["kappa"], "consensus": len(agreed), "disagreements": len(found)}))


if __name__ == "__main__":
    main()
