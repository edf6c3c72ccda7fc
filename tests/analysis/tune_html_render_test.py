#!/usr/bin/env python3
"""Renders the `goldilocks tune` HTML report in real headless Chromium.

Runs `goldilocks tune` on a tiny workload (overrides of the bundled case-study
file, a fresh measurement cache), checks the JSON (every point, the front, the
pick, the sensitivity), dumps the DOM Chromium built from the report and checks
both plots are there with their data marks, then checks the screenshot is not
blank. A second run must be answered from the measurement cache.

usage: tune_html_render_test.py GOLDILOCKS_BINARY WORKLOAD WORK_DIR
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from html_render_test import chromium, fail, find_chromium, read_png  # noqa: E402

PLOTS = ["tune-pareto", "tune-sensitivity"]
TINY = ["--set", "model.heads=4", "--set", "model.kv_heads=2", "--set", "model.head_dim=32",
        "--set", "workload.batch=1", "--set", "workload.prompt=[24, 40]", "--set", "workload.generate=4"]


def tune(binary, workload, work, *extra):
    cmd = [binary, "-t", "2", "tune", workload, *TINY, "--reps", "2", "--cache-dir", os.path.join(work, "cache"),
           *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        fail("goldilocks tune failed (%d): %s" % (r.returncode, r.stdout + r.stderr))
    return r.stdout


def main():
    binary, workload, work = sys.argv[1:4]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    html, js, pick = (os.path.join(work, n) for n in ("tune.html", "tune.json", "pick.json"))
    out = tune(binary, workload, work, "--max-error", "0.05", "--html", html, "--json", js, "--save-pick", pick)
    if "The Goldilocks pick" not in out or "Sensitivity" not in out:
        fail("no pick or sensitivity in the terminal table:\n" + out)
    j = json.load(open(js))
    if len(j["points"]) < 200 or not j["front"] or j["pick"] is None or len(j["sensitivity"]) != 3:
        fail("the JSON lacks points, front, pick or sensitivity")
    if j["pick"]["config"] != json.load(open(pick))["config"]:
        fail("--save-pick wrote another configuration than the JSON's pick")
    if any(p["status"] == "" for p in j["points"]):
        fail("a point has no status")

    again = tune(binary, workload, work, "--max-error", "0.05")
    if "measurements from the cache" not in again:
        fail("the second run was not answered from the measurement cache:\n" + again)

    browser = find_chromium()
    with tempfile.TemporaryDirectory() as profile:
        dom = chromium(browser, profile, "--dump-dom", "file://" + os.path.abspath(html))
        for kind in PLOTS:
            m = re.search(r'<svg[^>]*data-plot="%s"[^>]*>(.*?)</svg>' % kind, dom, re.S)
            if not m:
                fail("plot %s missing from the rendered DOM" % kind)
            marks = m.group(1).count('class="point"') + m.group(1).count('class="bar-part"')
            if marks < 3:
                fail("plot %s has only %d data marks" % (kind, marks))
        png = os.path.join(work, "tune.png")
        chromium(browser, profile, "--window-size=1280,1800", "--screenshot=" + png, "file://" + os.path.abspath(html))
    if not os.path.exists(png) or os.path.getsize(png) < 20000:
        fail("screenshot missing or suspiciously small")
    width, height, channels, pixels = read_png(png)
    colours = set()
    for row in pixels[::4]:
        for x in range(0, width * channels, channels * 4):
            colours.add((row[x], row[x + 1], row[x + 2]))
    if len(colours) < 20:
        fail("screenshot is nearly blank (%d colours)" % len(colours))
    print("ok: %d points, front of %d, both plots rendered, %d colours, second run from the cache"
          % (len(j["points"]), len(j["front"]), len(colours)))


if __name__ == "__main__":
    main()
