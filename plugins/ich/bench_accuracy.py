#!/usr/bin/python3
"""Accuracy benchmark of the ICH plugin on held-out phantoms, through `aihubd analyze` (the whole host path).

    /usr/bin/python3 plugins/ich/bench_accuracy.py [--build build] [--per-type 10] [--size 512]

Generates held-out head CTs with aihub-phantom (seeds from 50000 up: never used by train.py, whose seeds are
1000-1095 and 2000-2035): --per-type studies of each hemorrhage type (sides alternate) and 3 x --per-type without
hemorrhage. Runs each study folder through `aihubd analyze` with a site config that enables only `ich` (its plugin
folder holds ich.so and ich.pt from the build), and prints AUC, sensitivity and specificity at the model's operating
point, the volume error against the truth (relative, per type), the side accuracy, and the p50 per-study wall time
of `aihubd analyze` (process start, plugin load, scan, decode, inference, SR/FHIR/HL7).
"""
import argparse
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common", "python"))
import analyze_bench  # noqa: E402
import ichdata  # noqa: E402
from train import auc  # noqa: E402

LINE = re.compile(r" ich \S+: Intracranial hemorrhage (\w+) p=([0-9.e+-]+) \w+(?: (left|right|bilateral))?"
                  r"(?: \| Volume ([0-9.e+-]+) mL)?")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(here, "..", "..", "build"))
    ap.add_argument("--per-type", type=int, default=10)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--first-seed", type=int, default=50000)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    ws = analyze_bench.Workspace(args.build, "ich", "auto", args.keep)
    phantom = ws.phantom

    cases = []
    seed = args.first_seed
    for t in ichdata.TYPES:
        for i in range(args.per_type):
            cases.append((seed, t, "left" if i % 2 == 0 else "right"))
            seed += 1
    for i in range(3 * args.per_type):
        cases.append((seed, "none", "left"))
        seed += 1

    rows = []
    for seed, t, side in cases:
        inp = ws.path("in")
        shutil.rmtree(inp, ignore_errors=True)
        folder = ichdata.generate(phantom, inp, seed, t, side, args.size)
        truth = ichdata.load_truth(folder)
        os.remove(os.path.join(folder, "truth.json"))  # the hub sees only DICOM
        r = ws.analyze(inp)
        m = LINE.search(r.stdout)
        if not m:
            print(f"seed {seed} {t}: no ich finding (rc {r.returncode}):\n{r.stdout}{r.stderr}", file=sys.stderr)
            sys.exit(1)
        present = m.group(1) == "PRESENT"
        rows.append({"seed": seed, "type": t, "side": side, "label": int(t != "none"), "present": present,
                     "score": float(m.group(2)), "pred_side": m.group(3), "volume": float(m.group(4) or 0),
                     "truth_ml": truth["hemorrhage"]["volume_ml"], "wall": r.wall,
                     "inference": r.inference})
        v = rows[-1]
        print(f"seed {seed} {t:16s} {side:5s} truth {v['truth_ml']:6.1f} mL -> {m.group(1):7s} p={v['score']:.3f} "
              f"{v['pred_side'] or '-':9s} {v['volume']:6.1f} mL  {r.wall:.2f} s", flush=True)

    labels = [r["label"] for r in rows]
    # The finding's confidence is the presence score for both outcomes, so it ranks studies for the AUC.
    scores = [r["score"] for r in rows]
    tp = sum(r["present"] and r["label"] for r in rows)
    tn = sum((not r["present"]) and not r["label"] for r in rows)
    pos = [r for r in rows if r["label"]]
    found = [r for r in pos if r["present"]]
    print("\n== ICH held-out benchmark: %d studies (%d with hemorrhage), %dx%d x 40 slices, seeds %d-%d" %
          (len(rows), len(pos), args.size, args.size, cases[0][0], cases[-1][0]))
    print(f"AUC                      {auc(scores, labels):.3f}")
    print(f"sensitivity              {tp / len(pos):.3f} ({tp}/{len(pos)})")
    print(f"specificity              {tn / (len(rows) - len(pos)):.3f} ({tn}/{len(rows) - len(pos)})")
    if found:
        side_ok = sum(r["pred_side"] == r["side"] for r in found)
        print(f"side correct (found)     {side_ok}/{len(found)}")
        for t in ichdata.TYPES:
            errs = sorted(abs(r["volume"] - r["truth_ml"]) / r["truth_ml"] for r in found if r["type"] == t)
            if errs:
                print(f"volume error {t:16s} median {100 * errs[len(errs) // 2]:5.1f}%  max {100 * errs[-1]:5.1f}%")
        errs = sorted(abs(r["volume"] - r["truth_ml"]) / r["truth_ml"] for r in found)
        print(f"volume error all         median {100 * errs[len(errs) // 2]:5.1f}%  max {100 * errs[-1]:5.1f}%")
    analyze_bench.print_timings(rows, "decode and preprocessing not included")
    ws.close()


if __name__ == "__main__":
    main()
