#!/usr/bin/python3
"""Accuracy, speed and memory benchmark of the ki67 plugin on held-out phantom slides, through `aihubd analyze`.

    /usr/bin/python3 plugins/ki67/bench_accuracy.py [--build build] [--count 12] [--size 4096] [--jpeg]
                                                    [--big-size 40960] [--big-dir /tmp/aihub-ki67-big]

Generates --count held-out whole-slide images with `aihub-phantom wsi-ki67` (seeds from 80000 up: never used by
train.py, whose seeds are 5000-5119 and 6000-6029; Ki-67 index 5-54 % and 0-3 hot spots drawn from the seed), runs
each through `aihubd analyze` (process start, plugin load and self-test, scan, tile decoding, detection,
classification, SR/FHIR/HL7) with a site config that enables only `ki67`, and prints the absolute error of the
whole-slide and hot-spot index against the truth (points of %), the plugin's tiles/s (its log), and the peak RSS of
aihubd (/usr/bin/time -v "Maximum resident set size").

Memory: a --size slide is then compared with one slide of --big-size px (generated once into --big-dir and reused;
40960 px = 160 x 160 tiles of 256 px). Uncompressed PixelData has a 32-bit length, so slides above 37632 px (4.25 GB)
are written RLE Lossless (--rle: 40960 px is 5.0 GB), and the --size slide it is compared with then is RLE too. The
plugin reads one tile at a time into one buffer, so the two peak RSS should be close; the ratio is printed.
--big-size 0 skips it. --phantom may name any tool taking `wsi-ki67` with the CLI's options (e.g.
build/bin/ki67_data, before the CLI has the subcommand).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common", "python"))
import analyze_bench  # noqa: E402

WHOLE = re.compile(r"Ki-67 index, whole slide ([0-9.e+-]+) %")
HOT = re.compile(r"Ki-67 index, hot spot ([0-9.e+-]+) %")
POS = re.compile(r"Ki-67 positive nuclei ([0-9.e+-]+) ")
NEG = re.compile(r"Ki-67 negative nuclei ([0-9.e+-]+) ")
SPEED = re.compile(r"ki67: (\d+) tiles in ([0-9.]+) s \(([0-9.]+) tiles/s\)")


def folder_name(seed, size, rle, jpeg=False):
    return "wsi-ki67-s%d-%d%s%s" % (seed, size, "-rle" if rle else "", "-jpeg90" if jpeg else "")


def generate(phantom, out, seed, size, index, hotspots, rle=False, jpeg=False):
    os.makedirs(out, exist_ok=True)
    subprocess.run([phantom, "wsi-ki67", "--out", out, "--seed", str(seed), "--size", str(size), "--index",
                    str(index), "--hotspots", str(hotspots)] + (["--rle"] if rle else []) +
                   (["--jpeg"] if jpeg else []), check=True, capture_output=True, text=True)
    return os.path.join(out, folder_name(seed, size, rle, jpeg))


def parse(text):
    m = [WHOLE.search(text), HOT.search(text), POS.search(text), NEG.search(text)]
    s = SPEED.search(text)
    if not all(m) or not s:
        return None
    return {"index": float(m[0].group(1)), "hotspot": float(m[1].group(1)), "positive": float(m[2].group(1)),
            "negative": float(m[3].group(1)), "tiles": int(s.group(1)), "seconds": float(s.group(2)),
            "tiles_per_s": float(s.group(3))}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(here, "..", "..", "build"))
    ap.add_argument("--phantom", default=None, help="default: BUILD/bin/aihub-phantom")
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--first-seed", type=int, default=80000)
    ap.add_argument("--big-size", type=int, default=40960)
    ap.add_argument("--big-dir", default="/tmp/aihub-ki67-big")
    ap.add_argument("--device", default="auto", help="plugin config device: auto, cpu or cuda")
    ap.add_argument("--jpeg", action="store_true",
                    help="held-out slides with JPEG Baseline (YBR_FULL_422, quality 90) tiles, as scanners write")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    ws = analyze_bench.Workspace(args.build, "ki67", args.device, args.keep)
    phantom = os.path.abspath(args.phantom) if args.phantom else ws.phantom

    rows = []
    first_folder = None
    for i in range(args.count):
        seed = args.first_seed + i
        index, hotspots = 5 + (seed * 7919) % 50, seed % 4
        inp = ws.path("in-%d" % seed)
        folder = generate(phantom, inp, seed, args.size, index, hotspots, jpeg=args.jpeg)
        truth = json.load(open(os.path.join(folder, "truth.json")))
        os.remove(os.path.join(folder, "truth.json"))  # the hub sees only DICOM
        r = ws.analyze(inp, measure_memory=True)
        v = parse(r.text)
        if v is None:
            print(f"seed {seed}: no ki67 finding (rc {r.returncode}):\n{r.text}", file=sys.stderr)
            sys.exit(1)
        v.update({"seed": seed, "truth_index": truth["ki67"]["global_index_percent"],
                  "truth_hotspot": truth["hotspot"]["index_percent"],
                  "truth_nuclei": truth["ki67"]["positive_nuclei"] + truth["ki67"]["negative_nuclei"],
                  "wall": r.wall, "rss_kb": r.peak_rss_kb})
        rows.append(v)
        first_folder = first_folder or inp
        print(f"seed {seed} truth {v['truth_index']:5.1f} % (hot spot {v['truth_hotspot']:5.1f} %) -> "
              f"{v['index']:5.1f} % ({v['hotspot']:5.1f} %)  nuclei {int(v['positive'] + v['negative'])}/"
              f"{v['truth_nuclei']}  {v['tiles_per_s']:.0f} tiles/s  {r.wall:.2f} s  RSS {r.peak_rss_kb / 1024:.0f} MiB",
              flush=True)

    err = sorted(abs(r["index"] - r["truth_index"]) for r in rows)
    hot = sorted(abs(r["hotspot"] - r["truth_hotspot"]) for r in rows)
    speed = sorted(r["tiles_per_s"] for r in rows)
    print("\n== Ki-67 held-out benchmark: %d slides of %d x %d px (%d tiles each, %s), seeds %d-%d" %
          (len(rows), args.size, args.size, rows[0]["tiles"], "JPEG Baseline" if args.jpeg else "uncompressed",
           rows[0]["seed"], rows[-1]["seed"]))
    print(f"whole-slide index error, points  median {err[len(err) // 2]:.2f}  max {err[-1]:.2f}  "
          f"within 3 points {sum(e <= 3 for e in err)}/{len(err)}")
    print(f"hot-spot index error, points     median {hot[len(hot) // 2]:.2f}  max {hot[-1]:.2f}  "
          f"within 3 points {sum(e <= 3 for e in hot)}/{len(hot)}")
    print(f"plugin tiles/s (read, detect, classify) median {speed[len(speed) // 2]:.0f}")
    print(f"aihubd analyze per slide p50 {analyze_bench.p50(r['wall'] for r in rows):.2f} s, "
          f"peak RSS p50 {analyze_bench.p50(r['rss_kb'] for r in rows) / 1024:.0f} MiB")

    if args.big_size:
        rle = args.big_size > 37632  # over uncompressed PixelData's 32-bit length
        big_in = os.path.join(args.big_dir, "in")
        folder = os.path.join(big_in, folder_name(424242, args.big_size, rle))
        if not os.path.exists(os.path.join(folder, "SM000001.dcm")):
            shutil.rmtree(big_in, ignore_errors=True)
            t0 = time.time()
            folder = generate(phantom, big_in, 424242, args.big_size, 20, 2, rle)
            os.rename(os.path.join(folder, "truth.json"), os.path.join(args.big_dir, "truth.json"))
            print(f"generated {folder} ({os.path.getsize(os.path.join(folder, 'SM000001.dcm')) / 1e9:.2f} GB) "
                  f"in {time.time() - t0:.0f} s")
        truth = json.load(open(os.path.join(args.big_dir, "truth.json")))
        small_in = first_folder
        if rle:
            small_in = ws.path("in-memory")
            generate(phantom, small_in, args.first_seed, args.size, 20, 2, True)
        small_rss = ws.analyze(small_in, measure_memory=True).peak_rss_kb
        big = ws.analyze(big_in, measure_memory=True)
        rss = big.peak_rss_kb
        v = parse(big.text)
        if v is None:
            print(f"big slide: no ki67 finding (rc {big.returncode}):\n{big.text}", file=sys.stderr)
            sys.exit(1)
        print(f"\n== Memory: {args.size} px slide vs {args.big_size} px slide ({v['tiles']} tiles, "
              f"{os.path.getsize(os.path.join(folder, 'SM000001.dcm')) / 1e9:.2f} GB, "
              f"{'RLE Lossless' if rle else 'uncompressed'})")
        print(f"peak RSS {small_rss / 1024:.0f} MiB vs {rss / 1024:.0f} MiB: ratio {rss / small_rss:.2f}")
        print(f"big slide: index {v['index']:.1f} % (truth {truth['ki67']['global_index_percent']:.1f} %), hot spot "
              f"{v['hotspot']:.1f} % (truth {truth['hotspot']['index_percent']:.1f} %), {v['tiles_per_s']:.0f} "
              f"tiles/s, plugin {v['seconds']:.0f} s, aihubd analyze {big.wall:.0f} s")
    ws.close()


if __name__ == "__main__":
    main()
