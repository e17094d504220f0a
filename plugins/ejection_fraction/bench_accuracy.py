#!/usr/bin/python3
"""Accuracy benchmark of the ejection_fraction plugin on held-out phantoms, through `aihubd analyze` (the whole host
path: scan, cine sorting, decode, plugin, SR/FHIR/HL7).

    /usr/bin/python3 plugins/ejection_fraction/bench_accuracy.py [--build build] [--count 12]
                     [--slices 10 --phases 20 --size 256]

Generates held-out short-axis cines with aihub-phantom (seeds from 90000 up: never used by train.py, whose seeds are
1000-1059 and 2000-2007); every third study has an ejection fraction drawn 12-29 % (--ef), the others the phantom's
own (20-70 %), so reduced and normal function both appear. Runs each study folder through `aihubd analyze` with a
site config that enables only `ejection_fraction` (its plugin folder holds ejection_fraction.so and .pt from the
build), and prints per study and in summary: the absolute EF error in points, the EDV and ESV errors in %, whether
the finding (EF below the operating point, default 30 %) agrees with the truth, the model inference time (plugin
log) and the wall time of `aihubd analyze` per study (process start, plugin load and self-test, scan, decode,
inference, SR/FHIR/HL7).
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
import efdata  # noqa: E402

VALUES = re.compile(r"ejection_fraction: EF ([0-9.]+) % EDV ([0-9.]+) mL ESV ([0-9.]+) mL ED phase (\d+) "
                    r"ES phase (\d+)")
LINE = re.compile(r" ejection_fraction \S+: Left ventricular systolic dysfunction (\w+) p=\S+ (\w+)")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(here, "..", "..", "build"))
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--slices", type=int, default=10)
    ap.add_argument("--phases", type=int, default=20)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--first-seed", type=int, default=90000)
    ap.add_argument("--threshold", type=float, default=30, help="operating point the plugin is configured with")
    ap.add_argument("--device", default="auto", help="plugin config device: auto, cpu or cuda")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    ws = analyze_bench.Workspace(args.build, "ejection_fraction", args.device, args.keep, extra_config=f"threshold_percent: {args.threshold}")
    phantom = ws.phantom

    rows = []
    for i in range(args.count):
        seed = args.first_seed + i
        ef_request = float(np.round(np.random.default_rng(seed).uniform(12, 29), 2)) if i % 3 == 0 else None
        inp = ws.path("in")
        shutil.rmtree(inp, ignore_errors=True)
        folder = efdata.generate(phantom, inp, seed, args.slices, args.phases, args.size, ef_request)
        truth = efdata.load_truth(folder)
        os.remove(os.path.join(folder, "truth.json"))  # the hub sees only DICOM
        r = ws.analyze(inp)
        text = r.text
        m, line = VALUES.search(text), LINE.search(r.stdout)
        if not m or not line:
            print(f"seed {seed}: no ejection-fraction result (rc {r.returncode}):\n{text}", file=sys.stderr)
            sys.exit(1)
        v = {"seed": seed, "ef_truth": truth["ef_percent"], "edv_truth": truth["edv_ml"],
             "esv_truth": truth["esv_ml"], "ef": float(m.group(1)), "edv": float(m.group(2)),
             "esv": float(m.group(3)), "ed_phase": int(m.group(4)) - 1, "es_phase": int(m.group(5)) - 1,
             "present": line.group(1) == "PRESENT", "urgency": line.group(2), "wall": r.wall,
             "inference": r.inference}
        v["ef_error"] = abs(v["ef"] - v["ef_truth"])
        v["edv_error"] = 100 * (v["edv"] / v["edv_truth"] - 1)
        v["esv_error"] = 100 * (v["esv"] / v["esv_truth"] - 1)
        v["agrees"] = v["present"] == (v["ef_truth"] < args.threshold)
        rows.append(v)
        print(f"seed {seed}: EF truth {v['ef_truth']:5.1f} % model {v['ef']:5.1f} % (error {v['ef_error']:4.1f}), "
              f"EDV {v['edv']:6.1f} mL ({v['edv_error']:+5.1f} %), ESV {v['esv']:6.1f} mL ({v['esv_error']:+5.1f} %), "
              f"ED/ES phase {v['ed_phase'] + 1}/{v['es_phase'] + 1} (truth {truth['ed_phase'] + 1}/"
              f"{truth['es_phase'] + 1}), {'PRESENT ' + v['urgency'] if v['present'] else 'absent'}, "
              f"{r.wall:.2f} s", flush=True)

    def stats(key, absolute=True):
        a = np.array([abs(r[key]) if absolute else r[key] for r in rows])
        return np.median(a), a.max()

    print("\n== Ejection fraction held-out benchmark: %d studies (%d with EF < %g %%), %d slices x %d phases, "
          "%d x %d, seeds %d-%d" % (len(rows), sum(r["ef_truth"] < args.threshold for r in rows), args.threshold,
                                    args.slices, args.phases, args.size, args.size, rows[0]["seed"],
                                    rows[-1]["seed"]))
    print("EF absolute error, points  median %.2f  max %.2f" % stats("ef_error"))
    print("EDV error, %% (absolute)    median %.2f  max %.2f" % stats("edv_error"))
    print("ESV error, %% (absolute)    median %.2f  max %.2f" % stats("esv_error"))
    print("EDV / ESV error, %% (signed) median %+.2f / %+.2f" % (np.median([r["edv_error"] for r in rows]),
                                                               np.median([r["esv_error"] for r in rows])))
    print(f"finding agrees with truth (EF < {args.threshold:g} %)  {sum(r['agrees'] for r in rows)}/{len(rows)}")
    analyze_bench.print_timings(rows, f"{args.slices * args.phases} frames; decode and grid mapping not included")
    ws.close()


if __name__ == "__main__":
    main()
