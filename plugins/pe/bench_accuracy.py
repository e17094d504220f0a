#!/usr/bin/python3
"""Accuracy benchmark of the PE plugin on held-out CTPA phantoms, through `aihubd analyze` (the whole host path).

    /usr/bin/python3 plugins/pe/bench_accuracy.py [--build build] [--per-branch 4] [--negatives 24] \
        [--size 512] [--slices 200]

Generates held-out CTPAs with aihub-phantom (seeds from 60000 up: never used by train.py, whose seeds are
3000-3079 and 4000-4023): --per-branch studies with an embolus in each of the 8 named branches and --negatives
without. Runs each study folder through `aihubd analyze` with a site config that enables only `pe` (its plugin
folder holds pe.so and pe.pt from the build), and prints AUC, sensitivity and specificity at the model's operating
point, the clot volume error and the clot burden error against the truth (burden truth = clot / (clot + contrast
lumen) voxels of the label mask), side and most-proximal-branch accuracy, and the p50 of the model inference
time (plugin log) and of the whole `aihubd analyze` process per study.
"""
import argparse
import os
import re
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common", "python"))
import analyze_bench  # noqa: E402
import pedata  # noqa: E402
from train import auc  # noqa: E402

SITE = re.compile(r"pe: score [0-9.]+, site ([a-z ]+),")
LINE = re.compile(r" pe \S+: Pulmonary embolism (\w+) p=([0-9.e+-]+) \w+(?: (left|right|bilateral))?"
                  r"(?: \| Volume ([0-9.e+-]+) mL)?(?: \| Pulmonary arterial clot burden ([0-9.e+-]+) %)?")
EXPECTED_SITE = {"main": "main pulmonary artery", "right": "right pulmonary artery",
                 "left": "left pulmonary artery"}


def expected_site(branch):
    if branch in EXPECTED_SITE:
        return EXPECTED_SITE[branch]
    return ("right" if branch.startswith("right_") else "left") + " lobar pulmonary artery"


def median_max(values):
    v = sorted(values)
    return 100 * v[len(v) // 2], 100 * v[-1]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(here, "..", "..", "build"))
    ap.add_argument("--per-branch", type=int, default=4)
    ap.add_argument("--negatives", type=int, default=24)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--slices", type=int, default=200)
    ap.add_argument("--first-seed", type=int, default=60000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    ws = analyze_bench.Workspace(args.build, "pe", args.device, args.keep)
    phantom = ws.phantom

    cases = []
    seed = args.first_seed
    for i in range(args.per_branch):
        for b in pedata.BRANCHES:
            cases.append((seed, b))
            seed += 1
    for i in range(args.negatives):
        cases.append((seed, None))
        seed += 1

    rows = []
    for seed, branch in cases:
        inp = ws.path("in")
        shutil.rmtree(inp, ignore_errors=True)
        os.makedirs(inp)
        mask_path = ws.path("mask.raw")
        folder = pedata.generate(phantom, inp, seed, branch, args.size, args.slices, mask_path)
        truth = pedata.load_truth(folder)
        mask = pedata.read_mask(mask_path)
        clot_vox, lumen_vox = int((mask == 1).sum()), int((mask == 2).sum())
        os.remove(os.path.join(folder, "truth.json"))  # the hub sees only DICOM
        r = ws.analyze(inp)
        m = LINE.search(r.stdout)
        if not m:
            print(f"seed {seed} {branch}: no pe finding (rc {r.returncode}):\n{r.stdout}{r.stderr}", file=sys.stderr)
            sys.exit(1)
        logs = r.text
        site = SITE.findall(logs)
        e = truth["embolus"]
        rows.append({"seed": seed, "branch": branch, "label": int(branch is not None), "present": m.group(1) ==
                     "PRESENT", "score": float(m.group(2)), "pred_side": m.group(3),
                     "volume": float(m.group(4) or 0), "burden": float(m.group(5) or 0),
                     "site": site[-1] if site else None, "side": e["side"] if branch else None,
                     "truth_ml": e["volume_ml"] if branch else 0.0,
                     "truth_burden": 100.0 * clot_vox / max(1, clot_vox + lumen_vox), "wall": r.wall,
                     "inference": r.inference})
        v = rows[-1]
        print(f"seed {seed} {branch or 'none':18s} truth {v['truth_ml']:6.2f} mL {v['truth_burden']:5.2f} % -> "
              f"{m.group(1):7s} p={v['score']:.3f} {v['pred_side'] or '-':9s} {v['volume']:6.2f} mL "
              f"{v['burden']:5.2f} %  {v['site'] or '-':28s} {r.wall:.2f} s", flush=True)

    labels = [r["label"] for r in rows]
    scores = [r["score"] for r in rows]  # the finding's confidence is the presence score for both outcomes
    tp = sum(r["present"] and r["label"] for r in rows)
    tn = sum((not r["present"]) and not r["label"] for r in rows)
    pos = [r for r in rows if r["label"]]
    found = [r for r in pos if r["present"]]
    print("\n== PE held-out benchmark: %d studies (%d with an embolus), %dx%d x %d slices, seeds %d-%d" %
          (len(rows), len(pos), args.size, args.size, args.slices, cases[0][0], cases[-1][0]))
    print(f"AUC                      {auc(scores, labels):.3f}")
    print(f"sensitivity              {tp / len(pos):.3f} ({tp}/{len(pos)})")
    print(f"specificity              {tn / (len(rows) - len(pos)):.3f} ({tn}/{len(rows) - len(pos)})")
    if found:
        print(f"side correct (found)     {sum(r['pred_side'] == r['side'] for r in found)}/{len(found)}")
        print(f"site correct (found)     {sum(r['site'] == expected_site(r['branch']) for r in found)}/{len(found)}")
        for b in pedata.BRANCHES:
            sel = [r for r in found if r["branch"] == b]
            if sel:
                med, mx = median_max([abs(r["volume"] - r["truth_ml"]) / r["truth_ml"] for r in sel])
                print(f"volume error {b:18s} median {med:5.1f}%  max {mx:5.1f}%  "
                      f"(truth {np.median([r['truth_ml'] for r in sel]):.2f} mL median)")
        med, mx = median_max([abs(r["volume"] - r["truth_ml"]) / r["truth_ml"] for r in found])
        print(f"volume error all                median {med:5.1f}%  max {mx:5.1f}%")
        med, mx = median_max([abs(r["burden"] - r["truth_burden"]) / r["truth_burden"] for r in found])
        print(f"clot burden error all (rel.)    median {med:5.1f}%  max {mx:5.1f}%")
    analyze_bench.print_timings(rows, "decode and preprocessing not included")
    ws.close()


if __name__ == "__main__":
    main()
