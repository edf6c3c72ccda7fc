#!/usr/bin/env python3
"""Renders the bench HTML report in real headless Chromium.

Runs `goldilocks bench` on a tiny spec (writing HTML, CSV and JSON), checks
that CSV and JSON parse back, dumps the DOM Chromium built from the report and
checks every plot is there with its data points, then takes a screenshot and
checks it is not blank: the series colours of the plots must appear in it.

usage: html_render_test.py GOLDILOCKS_BINARY SPEC WORK_DIR
"""
import csv
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

PLOTS = ["time-vs-length", "memory-vs-length", "memory-saved", "error-vs-time", "phase-breakdown"]
SERIES_COLOURS = [(0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28)]  # the first two palette entries (math, flash)


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    fail("no chromium on PATH: scripts/setup.sh installs Debian's `chromium` package")


def chromium(browser, profile, *args):
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
           "--user-data-dir=" + profile, *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail("chromium failed (%d): %s" % (r.returncode, r.stderr[-2000:]))
    return r.stdout


def read_png(path):
    """Decodes an 8-bit RGB/RGBA PNG with the standard library; returns (w, h, channels, rows)."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail("screenshot is not a PNG")
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            if depth != 8 or colour not in (2, 6):
                fail("unexpected PNG format depth=%d colour=%d" % (depth, colour))
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b, c = prev[x], prev[x - channels] if x >= channels else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return width, height, channels, rows


def main():
    binary, spec, work = sys.argv[1:4]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    html = os.path.join(work, "report.html")
    r = subprocess.run([binary, "bench", spec, "--no-peak", "--out", work, "--html", html, "--csv", "--json"],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        fail("goldilocks bench failed: " + r.stdout + r.stderr)
    if "render_test" not in r.stdout or "flash" not in r.stdout:
        fail("no summary table on stdout")

    results = json.load(open(os.path.join(work, "render_test.json")))
    cases = results["cases"]
    if len(cases) != 6 or any(c["status"] != "ok" for c in cases):
        fail("expected 6 ok cases in the JSON")
    rows = list(csv.DictReader(open(os.path.join(work, "render_test.csv"))))
    if len(rows) != 6 or float(rows[0]["time.median"]) != cases[0]["time"]["median"]:
        fail("CSV does not match the JSON")

    browser = find_chromium()
    with tempfile.TemporaryDirectory() as profile:
        dom = chromium(browser, profile, "--dump-dom", "file://" + os.path.abspath(html))
        for kind in PLOTS:
            m = re.search(r'<svg[^>]*data-plot="%s"[^>]*>(.*?)</svg>' % kind, dom, re.S)
            if not m:
                fail("plot %s missing from the rendered DOM" % kind)
            body = m.group(1)
            marks = body.count('class="point"') + body.count('class="bar-part"')
            if marks < 3:
                fail("plot %s has only %d data marks" % (kind, marks))
        if dom.count('class="series-line"') < 4:
            fail("expected math and flash lines in both length plots")

        png = os.path.join(work, "report.png")
        chromium(browser, profile, "--window-size=1280,2400", "--screenshot=" + png, "file://" + os.path.abspath(html))
    if not os.path.exists(png) or os.path.getsize(png) < 20000:
        fail("screenshot missing or suspiciously small")
    width, height, channels, pixels = read_png(png)
    colours, found = set(), {c: 0 for c in SERIES_COLOURS}
    for row in pixels[::2]:
        for x in range(0, width * channels, channels * 2):
            px = (row[x], row[x + 1], row[x + 2])
            colours.add(px)
            for c in SERIES_COLOURS:
                if all(abs(px[i] - c[i]) <= 6 for i in range(3)):
                    found[c] += 1
    if len(colours) < 20:
        fail("screenshot is nearly blank (%d colours)" % len(colours))
    for c, n in found.items():
        if n < 50:
            fail("series colour #%02x%02x%02x barely visible in the screenshot (%d pixels)" % (c + (n,)))
    print("ok: %d plots in the DOM, screenshot %dx%d with %d colours, series pixels %s"
          % (len(PLOTS), width, height, len(colours), list(found.values())))


if __name__ == "__main__":
    main()
