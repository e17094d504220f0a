#!/usr/bin/env python3
"""Integration test of `aihubd serve`: a running host hot-reloads a plugin renamed into plugin_dir, unmaps the
old version, reloads its config on SIGHUP (refusing a bad one), and stops cleanly on SIGTERM.

Run by ctest with: serve_test.py BUILD_DIR SOURCE_DIR
"""
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BUILD = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build")
SOURCE = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else ".")
AIHUBD = os.path.join(BUILD, "bin", "aihubd")
PHANTOM = os.path.join(BUILD, "bin", "aihub-phantom")
TEST_PLUGINS = os.path.join(BUILD, "test-plugins")

CONFIG = """state_dir: ./var
plugin_dir: ./plugins
host: {{workers: 1, reload_poll_ms: 60000}}
departments:
  - id: emergency
    match: {{InstitutionalDepartmentName: EMERGENCY}}
plugins:
  - id: fixed-work
    modes: {{emergency: {mode}, default: silent}}
    config: {{work_ms: {work_ms}}}
"""


class Lines:
    """Collects a process's stdout lines on a thread so the test can wait for one with a timeout."""

    def __init__(self, stream):
        self.q = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for line in stream:
            self.q.put(line.rstrip("\n"))

    def wait_for(self, text, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                line = self.q.get(timeout=max(0.05, deadline - time.time()))
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError("timed out waiting for %r; saw:\n%s" % (text, "\n".join(self.seen)))


def deploy(src, dst):
    tmp = os.path.join(os.path.dirname(dst), "." + os.path.basename(dst) + ".incoming")
    shutil.copy(src, tmp)
    os.rename(tmp, dst)


def drop_study(root, seed):
    """Generates a small head CT and moves its folder into the inbox in one rename, as an operator would."""
    staging = os.path.join(root, "staging", str(seed))
    r = subprocess.run([PHANTOM, "head-ct", "--out", staging, "--seed", str(seed), "--slices", "10",
                        "--size", "64"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    folder = os.listdir(staging)[0]
    os.rename(os.path.join(staging, folder), os.path.join(root, "inbox", "study-%d" % seed))


def audit_actions(root):
    import sqlite3
    con = sqlite3.connect(os.path.join(root, "var", "aihub.db"))
    try:
        return [r[0] for r in con.execute("SELECT action FROM audit ORDER BY seq")]
    finally:
        con.close()


def mapped(pid, needle):
    with open("/proc/%d/maps" % pid) as f:
        return needle in f.read()


class ServeTest(unittest.TestCase):
    def test_hot_reload_sighup_and_clean_stop(self):
        root = tempfile.mkdtemp(prefix="aihub-serve-")
        try:
            self._run(root)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def _run(self, root):
        plugin_dir = os.path.join(root, "plugins")
        os.makedirs(plugin_dir)
        os.makedirs(os.path.join(root, "inbox"))
        config = os.path.join(root, "site.yaml")
        with open(config, "w") as f:
            f.write(CONFIG.format(mode="assistive", work_ms=50))
        deploy(os.path.join(TEST_PLUGINS, "fixed_work_v1.so"), os.path.join(plugin_dir, "fixed_work.so"))
        proc = subprocess.Popen([AIHUBD, "serve", "--config", config, "--inbox", os.path.join(root, "inbox"),
                                 "--output", os.path.join(root, "out")],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            out = Lines(proc.stdout)
            out.wait_for("aihubd serving")

            drop_study(root, 11)
            self.assertIn("CRITICAL", out.wait_for("fixed-work 1.0.0: Fixed work result PRESENT"))
            cache = os.path.join(root, "var", "plugin-cache")
            v1_cached = [os.path.join(cache, n) for n in os.listdir(cache) if n.endswith(".so")]
            self.assertEqual(len(v1_cached), 1)
            self.assertTrue(mapped(proc.pid, v1_cached[0]))

            # Hot reload: rename v2 over v1; the watcher (inotify; the poll is 60 s) swaps it in.
            deploy(os.path.join(TEST_PLUGINS, "fixed_work_v2.so"), os.path.join(plugin_dir, "fixed_work.so"))
            deadline = time.time() + 30
            while time.time() < deadline and mapped(proc.pid, v1_cached[0]):
                time.sleep(0.05)
            self.assertFalse(mapped(proc.pid, v1_cached[0]), "v1 is still mapped after the swap")
            drop_study(root, 12)
            out.wait_for("fixed-work 2.0.0: Fixed work result PRESENT")

            # A broken version is refused; v2 keeps serving.
            deploy(os.path.join(TEST_PLUGINS, "fixed_work_v3.so"), os.path.join(plugin_dir, "fixed_work.so"))
            deadline = time.time() + 30
            while time.time() < deadline and "plugin.rejected" not in audit_actions(root):
                time.sleep(0.05)
            self.assertIn("plugin.rejected", audit_actions(root))  # refused before the next study arrives
            drop_study(root, 13)
            out.wait_for("fixed-work 2.0.0: Fixed work result PRESENT")

            # SIGHUP with a broken config: refused with file:line:column, the last good config stays.
            with open(config, "w") as f:
                f.write(CONFIG.format(mode="sometimes", work_ms=50))
            proc.send_signal(signal.SIGHUP)
            refused = out.wait_for("config reload refused")
            self.assertRegex(refused, r"site\.yaml:\d+:\d+: .*sometimes")

            # SIGHUP with a good config that turns the plugin off for the department.
            with open(config, "w") as f:
                f.write(CONFIG.format(mode="'off'", work_ms=50))
            proc.send_signal(signal.SIGHUP)
            out.wait_for("config reloaded")
            drop_study(root, 14)
            out.wait_for("no plugin applies (department emergency)")

            proc.send_signal(signal.SIGTERM)
            out.wait_for("aihubd stopped")
            self.assertEqual(proc.wait(timeout=30), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()

        v = subprocess.run([AIHUBD, "verify-audit", "--config", config], capture_output=True, text=True, timeout=60)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        import sqlite3
        con = sqlite3.connect(os.path.join(root, "var", "aihub.db"))
        actions = [r[0] for r in con.execute("SELECT action FROM audit ORDER BY seq")]
        versions = [r[0] for r in con.execute("SELECT plugin_version FROM jobs ORDER BY id")]
        con.close()
        for action in ("plugin.loaded", "plugin.replaced", "plugin.rejected", "config.reload_refused",
                       "config.reloaded", "job.succeeded"):
            self.assertIn(action, actions)
        self.assertEqual(versions, ["1.0.0", "2.0.0", "2.0.0"])


class ServeStopTest(unittest.TestCase):
    """SIGTERM while a plugin runs: the plugin is cancelled, the job goes back to pending without losing an
    attempt, and the next start runs it."""

    def test_sigterm_releases_the_running_job(self):
        root = tempfile.mkdtemp(prefix="aihub-serve-stop-")
        try:
            self._run(root)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def _serve(self, root, config):
        return subprocess.Popen([AIHUBD, "serve", "--config", config, "--inbox", os.path.join(root, "inbox"),
                                 "--output", os.path.join(root, "out")],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def _run(self, root):
        import sqlite3
        plugin_dir = os.path.join(root, "plugins")
        os.makedirs(plugin_dir)
        os.makedirs(os.path.join(root, "inbox"))
        config = os.path.join(root, "site.yaml")
        with open(config, "w") as f:
            f.write(CONFIG.format(mode="assistive", work_ms=60000))
        deploy(os.path.join(TEST_PLUGINS, "fixed_work_v1.so"), os.path.join(plugin_dir, "fixed_work.so"))
        db = os.path.join(root, "var", "aihub.db")

        def jobs():
            con = sqlite3.connect(db)
            try:
                return con.execute("SELECT state, attempts FROM jobs").fetchall()
            finally:
                con.close()

        proc = self._serve(root, config)
        try:
            out = Lines(proc.stdout)
            out.wait_for("aihubd serving")
            drop_study(root, 21)
            deadline = time.time() + 60
            while time.time() < deadline and jobs() != [("running", 1)]:
                time.sleep(0.1)
            self.assertEqual(jobs(), [("running", 1)])
            proc.send_signal(signal.SIGTERM)
            out.wait_for("aihubd stopped", timeout=30)  # well before the plugin's 60 s of work
            self.assertEqual(proc.wait(timeout=30), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        self.assertEqual(jobs(), [("pending", 0)])

        # The next start runs it (with a shorter work time: the plugin's config is read when it loads).
        with open(config, "w") as f:
            f.write(CONFIG.format(mode="assistive", work_ms=50))
        proc = self._serve(root, config)
        try:
            out = Lines(proc.stdout)
            out.wait_for("fixed-work 1.0.0: Fixed work result PRESENT")
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=30), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        self.assertEqual(jobs(), [("succeeded", 1)])
        con = sqlite3.connect(db)
        actions = [r[0] for r in con.execute("SELECT action FROM audit ORDER BY seq")]
        con.close()
        self.assertIn("job.released", actions)


if __name__ == "__main__":
    unittest.main(verbosity=2)
