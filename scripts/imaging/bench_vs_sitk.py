#!/usr/bin/env python3
"""Side-by-side timing of aiaa-imaging and SimpleITK / nibabel on a synthetic CT-sized
volume: 512x512x300 int16, spacing 0.7x0.7x2.5 mm, 2 threads.

Usage: bench_vs_sitk.py [--dump target/release/examples/dump] [--repeat 3] [--read-only]
                        [--baseline OTHER/dump]
                        [--convert target/release/aiaa-convert] [--aiaa target/release/aiaa]
                        [--pairs 5] [--cases nii,nii.gz,nii-batch,nii.gz-batch]

--dump times reads and resampling inside one process (best of --repeat) and prints the
speed-up ratios (theirs / ours); --read-only times only the reads; --baseline also times
another build of `dump` (e.g. the previous commit's) on the same files. The reads are timed
on the SimpleITK-written file (one gzip member, inflated sequentially) and on the same
volume written by our writer (parallel gzip members).

--convert times conversion as whole processes, the way a user runs it: our command
(`aiaa-convert -d IN -r 1 -s EXT -e EXT -o OUT`) against a Python process that imports
SimpleITK, reads, resamples to 1 mm (linear) and writes each file (its interpreter start
included), in --pairs alternating pairs (ours first, then theirs first, ...), each under
`/usr/bin/time -v` for its wall time, CPU share and peak memory (maximum RSS). Cases: one
file and a batch of 5, as `.nii` -> `.nii` and `.nii.gz` -> `.nii.gz` (inputs written by
SimpleITK). Checked inside the benchmark, after the first pair of each case: both outputs
on the same grid, our voxels within 1 of SimpleITK's on >= 99.9% of them, and (gzip) our
files at most 1.05x the size of SimpleITK's. --aiaa also times `aiaa --help` (what loading
libtorch costs every start of `aiaa`) and `aiaa convert` (which hands over to aiaa-convert)
on the single `.nii` case.
"""
import argparse, os, re, shutil, statistics, subprocess, sys, tempfile, time
import numpy as np
import SimpleITK as sitk
import nibabel as nib


def best(fn, n):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def ct_volume():
    """Smooth-ish CT-like content (compressible like real CT, not pure noise)."""
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(np.arange(300), np.arange(512), np.arange(512), indexing="ij", sparse=True)
    vol = (1000 * np.sin(x / 40.0) * np.cos(y / 50.0) + 5 * z - 1024).astype(np.int16)
    vol += rng.integers(-20, 20, size=vol.shape, dtype=np.int16)
    return vol


def sitk_resample(image):
    """SimpleITK's resample to 1 mm, linear, on the grid our convert computes."""
    size = [int(np.floor(s * sp + 0.5)) for s, sp in zip(image.GetSize(), image.GetSpacing())]
    f = sitk.ResampleImageFilter()
    f.SetOutputSpacing((1.0, 1.0, 1.0))
    f.SetSize(size)
    f.SetOutputOrigin(image.GetOrigin())
    f.SetOutputDirection(image.GetDirection())
    f.SetInterpolator(sitk.sitkLinear)
    return f.Execute(image)


# The SimpleITK side of a conversion, as a process of its own: what a user's script does.
SITK_CONVERT = """
import os, sys
import numpy as np
import SimpleITK as sitk
sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
src, dst, ext = sys.argv[1:4]
for name in sorted(os.listdir(src)):
    image = sitk.ReadImage(os.path.join(src, name))
    size = [int(np.floor(s * sp + 0.5)) for s, sp in zip(image.GetSize(), image.GetSpacing())]
    f = sitk.ResampleImageFilter()
    f.SetOutputSpacing((1.0, 1.0, 1.0))
    f.SetSize(size)
    f.SetOutputOrigin(image.GetOrigin())
    f.SetOutputDirection(image.GetDirection())
    f.SetInterpolator(sitk.sitkLinear)
    out = f.Execute(image)
    del image
    sitk.WriteImage(out, os.path.join(dst, name), ext.endswith(".gz"))
"""


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def timed(cmd, env=None):
    """Runs `cmd` under /usr/bin/time -v: (wall s, peak RSS MiB, CPU %)."""
    r = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"{cmd} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")

    def field(name):
        m = re.search(rf"{re.escape(name)}: (.*)", r.stderr)
        return m.group(1).strip()

    wall = 0.0
    for part in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":"):
        wall = wall * 60 + float(part)
    rss = int(field("Maximum resident set size (kbytes)")) / 1024
    cpu = field("Percent of CPU this job got")
    return wall, rss, cpu


def startup(aiaa):
    """What starting `aiaa` costs (it links libtorch), against aiaa-convert's start."""
    runs = [timed([aiaa, "--help"]) for _ in range(5)]
    wall = statistics.median(r[0] for r in runs)
    rss = statistics.median(r[1] for r in runs)
    print(f"aiaa --help: median {wall:.2f} s, peak {rss:.0f} MiB (libtorch loaded at start)", flush=True)


def agreement(ours, theirs, ext):
    """Our output against SimpleITK's: same grid, voxels within 1 on >= 99.9%, size."""
    a, b = sitk.ReadImage(ours), sitk.ReadImage(theirs)
    same_grid = (a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-6)
                 and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
                 and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6))
    ok = same_grid
    within = 0.0
    if same_grid:
        va = sitk.GetArrayViewFromImage(a).astype(np.int32)
        vb = sitk.GetArrayViewFromImage(b).astype(np.int32)
        within = float(np.mean(np.abs(va - vb) <= 1))
        ok = within >= 0.999
    size_ratio = os.path.getsize(ours) / os.path.getsize(theirs)
    if ext.endswith(".gz"):
        ok = ok and size_ratio <= 1.05
    print(f"  check: same grid {same_grid}, voxels within 1 of SimpleITK's {100 * within:.3f}% (>= 99.9),"
          f" size ours/SimpleITK {size_ratio:.3f}{' (<= 1.05)' if ext.endswith('.gz') else ''}"
          f" -> {'PASS' if ok else 'FAIL'}", flush=True)
    return ok


def convert_case(a, img, d, case):
    """One convert case (`nii`, `nii.gz`, `nii-batch`, `nii.gz-batch`) in alternating pairs."""
    ext = "." + case.removesuffix("-batch")
    n = 5 if case.endswith("-batch") else 1
    src = os.path.join(d, f"in-{case}")
    os.makedirs(src)
    sitk.WriteImage(img, os.path.join(src, f"ct0{ext}"), ext.endswith(".gz"))
    for i in range(1, n):
        shutil.copyfile(os.path.join(src, f"ct0{ext}"), os.path.join(src, f"ct{i}{ext}"))
    env = dict(os.environ, RAYON_NUM_THREADS="2")
    outs = {k: os.path.join(d, f"out-{case}-{k}") for k in ("ours", "sitk", "aiaa")}

    def ours(key="ours", binary=a.convert):
        shutil.rmtree(outs[key], ignore_errors=True)
        cmd = [binary] + (["convert"] if key == "aiaa" else [])
        return timed(cmd + ["-d", src, "-r", "1", "-s", ext, "-e", ext, "-o", outs[key]], env)

    def theirs():
        shutil.rmtree(outs["sitk"], ignore_errors=True)
        os.makedirs(outs["sitk"])
        return timed([sys.executable, "-c", SITK_CONVERT, src, outs["sitk"], ext], env)

    runs = {"ours": [], "sitk": [], "aiaa": []}
    with_aiaa = a.aiaa and case == "nii"
    for p in range(a.pairs):
        order = [("ours", ours), ("sitk", theirs)]
        if with_aiaa:
            order.append(("aiaa", lambda: ours("aiaa", a.aiaa)))
        if p % 2:
            order.reverse()
        for key, fn in order:
            runs[key].append(fn())
        if p == 0:
            size = os.path.getsize(os.path.join(src, f"ct0{ext}")) / 1e6
            print(f"convert {ext} -> {ext}, {n} file(s) of {size:.0f} MB, {a.pairs} alternating pairs"
                  f" (load average {load()})", flush=True)
            ok = all(agreement(os.path.join(outs["ours"], f"ct{i}{ext}"), os.path.join(outs["sitk"], f"ct{i}{ext}"), ext)
                     for i in range(n))
            if not ok:
                sys.exit(f"convert {case}: our output does not match SimpleITK's (above)")
    ratios = sorted(t[0] / o[0] for o, t in zip(runs["ours"], runs["sitk"]))
    med = {k: statistics.median(r[0] for r in v) for k, v in runs.items() if v}
    rss = {k: max(r[1] for r in v) for k, v in runs.items() if v}
    cpu = {k: "/".join(r[2] for r in v) for k, v in runs.items() if v}
    line = (f"  ours median {med['ours']:.2f} s, peak {rss['ours']:.0f} MiB, CPU {cpu['ours']}\n"
            f"  SimpleITK median {med['sitk']:.2f} s, peak {rss['sitk']:.0f} MiB, CPU {cpu['sitk']}\n"
            f"  speed SimpleITK/ours: {med['sitk'] / med['ours']:.2f}x of the medians,"
            f" {statistics.median(ratios):.2f}x the median pair (pairs {ratios[0]:.2f}-{ratios[-1]:.2f}; target >= 1.5);"
            f" peak memory ours/SimpleITK {rss['ours'] / rss['sitk']:.2f} (target <= 1)")
    if "aiaa" in med:
        line += (f"\n  aiaa convert (hands over to aiaa-convert): median {med['aiaa']:.2f} s,"
                 f" peak {rss['aiaa']:.0f} MiB -> {med['sitk'] / med['aiaa']:.2f}x SimpleITK")
    print(line + f"\n  (load average after: {load()})", flush=True)
    for k in outs.values():
        shutil.rmtree(k, ignore_errors=True)
    shutil.rmtree(src)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--read-only", action="store_true")
    ap.add_argument("--baseline")
    ap.add_argument("--convert", help="our convert binary (aiaa-convert)")
    ap.add_argument("--aiaa", help="the aiaa binary: also time `aiaa --help` and `aiaa convert`")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--cases", default="nii,nii.gz,nii-batch,nii.gz-batch")
    a = ap.parse_args()
    if not (a.dump or a.convert):
        ap.error("give --dump, --convert or both")
    os.environ["RAYON_NUM_THREADS"] = "2"
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    with tempfile.TemporaryDirectory() as d:
        vol = ct_volume()
        img = sitk.GetImageFromArray(vol)
        img.SetSpacing((0.7, 0.7, 2.5))
        del vol
        if a.convert:
            print(f"machine: {os.cpu_count()} cores, load average {load()}", flush=True)
            if a.aiaa:
                startup(a.aiaa)
            for case in a.cases.split(","):
                convert_case(a, img, d, case)
        if not a.dump:
            return
        src = os.path.join(d, "ct.nii.gz")
        sitk.WriteImage(img, src, True)
        print(f"input: {src} {os.path.getsize(src) / 1e6:.1f} MB (written by SimpleITK)")

        n = a.repeat
        ours_src = os.path.join(d, "ours.nii.gz")
        run([a.dump, "write", src, ours_src])
        for label, f in (("SimpleITK-written", src), ("ours-written", ours_src)):
            ours_read = min(float(run([a.dump, "time-read", f])) for _ in range(n))
            nib_read = best(lambda: np.asarray(nib.load(f).dataobj), n)
            sitk_read = best(lambda: sitk.ReadImage(f), n)
            base = ""
            if a.baseline:
                b = min(float(run([a.baseline, "time-read", f])) for _ in range(n))
                base = (f"  baseline {b:.3f}s ({nib_read / b:.2f}x vs nibabel,"
                        f" {sitk_read / b:.2f}x vs SimpleITK)")
            print(f"read .nii.gz ({label}, {os.path.getsize(f) / 1e6:.1f} MB)  ours {ours_read:.3f}s"
                  f"  nibabel {nib_read:.3f}s  SimpleITK {sitk_read:.3f}s"
                  f"  -> {nib_read / ours_read:.2f}x vs nibabel (target >= 1.5),"
                  f" {sitk_read / ours_read:.2f}x vs SimpleITK{base}", flush=True)
        if a.read_only:
            return

        ours_res = min(float(run([a.dump, "time-resample", src, "1", "linear"])) for _ in range(n))
        loaded = sitk.ReadImage(src)

        sitk_res = best(lambda: sitk_resample(loaded), n)

        out = os.path.join(d, "out.nii.gz")

        def ours_convert():
            run([a.dump, "convert", src, out, "1", "linear"])

        def sitk_convert():
            sitk.WriteImage(sitk_resample(sitk.ReadImage(src)), os.path.join(d, "sitk.nii.gz"), True)

        ours_conv = best(ours_convert, n)
        sitk_conv = best(sitk_convert, n)
        print(f"resample 1mm lin ours {ours_res:.3f}s  SimpleITK {sitk_res:.3f}s  -> {sitk_res / ours_res:.2f}x (target >= 2)")
        print(f"convert (dump, no libtorch) ours {ours_conv:.3f}s  SimpleITK {sitk_conv:.3f}s  -> {sitk_conv / ours_conv:.2f}x (target >= 1.2)")
        print(f"output sizes: ours {os.path.getsize(out) / 1e6:.1f} MB, SimpleITK {os.path.getsize(os.path.join(d, 'sitk.nii.gz')) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
