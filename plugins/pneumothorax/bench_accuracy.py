#!/usr/bin/python3
"""Accuracy benchmark of the pneumothorax plugin on held-out phantoms, through `aihubd analyze` (the whole host path).

    /usr/bin/python3 plugins/pneumothorax/bench_accuracy.py [--build build] [--count 40] [--rows 2500 --columns 2048]

Generates held-out chest X-rays with aihub-phantom (seeds from 70000 up: never used by train.py, whose seeds are
3000-3179 and 4000-4039): --count studies with a pneumothorax (sides alternating, size drawn 5-45 % by the
phantom from the seed) and --count without. Runs each study folder through `aihubd analyze` with a site config
that enables only `pneumothorax` (its plugin folder holds pneumothorax.so and pneumothorax.pt from the build),
and prints AUC, sensitivity and specificity at the model's operating point, the size error against the truth (in
points of % and relative), the side accuracy, the p50 model inference time (plugin log) and the p50 per-study
wall time of `aihubd analyze` (process start, plugin load and self-test, scan, decode, inference, SR/FHIR/HL7).
"""
import argparse
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common", "python"))
import analyze_bench  # noqa: E402
import ptxdata  # noqa: E402

LINE = re.compile(r" pneumothorax \S+: Pneumothorax (\w+) p=([0-9.e+-]+) \w+(?: (left|right|bilateral))?"
                  r"(?: \| [^|]*? ([0-9.e+-]+) %)?")


def auc(scores, labels):
    pos = [s for s, l in zip(scores, labels) if l == 1]
    neg = [s for s, l in zip(scores, labels) if l == 0]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(here, "..", "..", "build"))
    ap.add_argument("--count", type=int, default=40, help="studies with and (as many) without a pneumothorax")
    ap.add_argument("--rows", type=int, default=2500)
    ap.add_argument("--columns", type=int, default=2048)
    ap.add_argument("--first-seed", type=int, default=70000)
    ap.add_argument("--device", default="auto", help="plugin config device: auto, cpu or cuda")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    ws = analyze_bench.Workspace(args.build, "pneumothorax", args.device, args.keep)
    phantom = ws.phantom

    cases = [(args.first_seed + i, True, "left" if i % 2 == 0 else "right") for i in range(args.count)]
    cases += [(args.first_seed + args.count + i, False, None) for i in range(args.count)]

    rows = []
    for seed, present, side in cases:
        inp = ws.path("in")
        shutil.rmtree(inp, ignore_errors=True)
        folder = ptxdata.generate(phantom, inp, seed, present, side or "left", None, args.rows, args.columns)
        truth = ptxdata.load_truth(folder)["pneumothorax"]
        os.remove(os.path.join(folder, "truth.json"))  # the hub sees only DICOM
        r = ws.analyze(inp)
        m = LINE.search(r.stdout)
        if not m:
            print(f"seed {seed}: no pneumothorax finding (rc {r.returncode}):\n{r.stdout}{r.stderr}", file=sys.stderr)
            sys.exit(1)
        v = {"seed": seed, "label": int(present), "side": side, "truth": truth["size_percent"],
             "present": m.group(1) == "PRESENT", "score": float(m.group(2)), "pred_side": m.group(3),
             "size": float(m.group(4) or 0), "wall": r.wall, "inference": r.inference}
        rows.append(v)
        print(f"seed {seed} {side or '-':5s} truth {v['truth']:5.1f} % -> {m.group(1):7s} p={v['score']:.3f} "
              f"{v['pred_side'] or '-':9s} {v['size']:5.1f} %  {r.wall:.2f} s", flush=True)

    labels, scores = [r["label"] for r in rows], [r["score"] for r in rows]
    tp = sum(r["present"] and r["label"] for r in rows)
    tn = sum((not r["present"]) and not r["label"] for r in rows)
    pos = [r for r in rows if r["label"]]
    found = [r for r in pos if r["present"]]
    print("\n== Pneumothorax held-out benchmark: %d studies (%d with pneumothorax), %dx%d, seeds %d-%d" %
          (len(rows), len(pos), args.columns, args.rows, cases[0][0], cases[-1][0]))
    print(f"AUC                      {auc(scores, labels):.3f}")
    print(f"sensitivity              {tp / len(pos):.3f} ({tp}/{len(pos)})")
    print(f"specificity              {tn / (len(rows) - len(pos)):.3f} ({tn}/{len(rows) - len(pos)})")
    if found:
        print(f"side correct (found)     {sum(r['pred_side'] == r['side'] for r in found)}/{len(found)}")
        pts = sorted(abs(r["size"] - r["truth"]) for r in found)
        rel = sorted(abs(r["size"] - r["truth"]) / r["truth"] for r in found)
        ok = sum(abs(r["size"] - r["truth"]) <= 3 or abs(r["size"] - r["truth"]) <= 0.2 * r["truth"] for r in found)
        print(f"size error, points of %  median {pts[len(pts) // 2]:.1f}  max {pts[-1]:.1f}")
        print(f"size error, relative     median {100 * rel[len(rel) // 2]:.1f}%  max {100 * rel[-1]:.1f}%")
        print(f"size within 20% or 3 pts {ok}/{len(found)}")
    missed = [r for r in pos if not r["present"]]
    if missed:
        print("missed sizes (truth %):  " + ", ".join(f"{r['truth']:.1f}" for r in missed))
    analyze_bench.print_timings(rows, "decode, resampling and post-processing not included")
    ws.close()


if __name__ == "__main__":
    main()
