"""What the reference plugins' accuracy benchmarks (plugins/<id>/bench_accuracy.py) share: a work folder holding the
plugin and its model from the build with a site config that enables only that plugin, `aihubd analyze` runs on
study folders (the whole host path, as a site runs it), and the timing lines of the summary.
"""
import os
import re
import shutil
import subprocess
import tempfile
import time

_PEAK_RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


class Run:
    """One `aihubd analyze`: its output (text = stdout + stderr), exit status, wall seconds, the plugin's logged
    inference seconds (None when it logged none) and the process's peak RSS in kB (None unless measured)."""

    def __init__(self, stdout, stderr, returncode, wall, inference, peak_rss_kb):
        self.stdout, self.stderr, self.text, self.returncode = stdout, stderr, stdout + stderr, returncode
        self.wall, self.inference, self.peak_rss_kb = wall, inference, peak_rss_kb


class Workspace:
    """A temporary folder with plugins/<id>.pt and <id>.so copied from `build`/plugins (the model first, as an admin
    deploys it) and a site.yaml enabling only that plugin, silent, on 2 threads and `device`, plus `extra_config`
    (e.g. "threshold_percent: 30")."""

    def __init__(self, build, plugin_id, device="auto", keep=False, extra_config=""):
        build = os.path.abspath(build)
        self.plugin_id, self.keep = plugin_id, keep
        self.phantom = os.path.join(build, "bin", "aihub-phantom")
        self.aihubd = os.path.join(build, "bin", "aihubd")
        self.dir = tempfile.mkdtemp(prefix=f"aihub-{plugin_id}-bench-")
        os.makedirs(os.path.join(self.dir, "plugins"))
        for f in (plugin_id + ".pt", plugin_id + ".so"):
            shutil.copy(os.path.join(build, "plugins", f), os.path.join(self.dir, "plugins"))
        self.config = os.path.join(self.dir, "site.yaml")
        with open(self.config, "w") as f:
            f.write(f"state_dir: ./var\nplugin_dir: ./plugins\nplugins:\n  - id: {plugin_id}\n"
                    f"    modes: {{default: silent}}\n    config: {{threads: 2, device: {device}"
                    f"{', ' + extra_config if extra_config else ''}}}\n")
        self._inference = re.compile(re.escape(plugin_id) + r": inference ([0-9.]+) s")

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def analyze(self, inp, measure_memory=False):
        """`aihubd analyze` on folder `inp` with a fresh state and output folder (each study pays the same start)."""
        shutil.rmtree(self.path("var"), ignore_errors=True)
        shutil.rmtree(self.path("out"), ignore_errors=True)
        cmd = [self.aihubd, "analyze", "--config", self.config, "--input", inp, "--output", self.path("out")]
        if measure_memory:
            cmd = ["/usr/bin/time", "-v"] + cmd
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=self.dir)
        wall = time.time() - t0
        text = r.stdout + r.stderr
        inference = self._inference.findall(text)
        rss = _PEAK_RSS.search(text) if measure_memory else None
        return Run(r.stdout, r.stderr, r.returncode, wall, float(inference[-1]) if inference else None,
                   int(rss.group(1)) if rss else None)

    def close(self):
        if self.keep:
            print(f"work folder kept: {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def p50(values):
    values = sorted(values)
    return values[len(values) // 2]


def print_timings(rows, inference_note):
    """The summary's timing lines from result rows with "inference" and "wall" (seconds): the plugin's inference p50
    (from its log) and the whole `aihubd analyze` p50 and max."""
    inference = [r["inference"] for r in rows if r["inference"] is not None]
    if inference:
        print(f"model inference per study p50 {p50(inference):.3f} s (plugin log; {inference_note})")
    walls = [r["wall"] for r in rows]
    print(f"aihubd analyze per study p50 {p50(walls):.2f} s, max {max(walls):.2f} s (whole process: start, plugin "
          f"load, scan, decode, inference, SR/FHIR/HL7)")
