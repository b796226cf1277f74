#!/usr/bin/env python3
"""Side-by-side timing of aiaa-imaging (the `dump` example) and SimpleITK / nibabel on a
synthetic CT-sized volume: 512x512x300 int16, spacing 0.7x0.7x2.5 mm, 2 threads.

Usage: bench_vs_sitk.py --dump target/release/examples/dump [--repeat 3] [--read-only]
                        [--baseline OTHER/dump]
Prints each timing (best of --repeat) and the speed-up ratios (theirs / ours).
--read-only times only the reads; --baseline also times another build of `dump` (e.g. the
previous commit's) on the same files, for before/after numbers under the same load. The
reads are timed on the SimpleITK-written file (one gzip member, inflated sequentially)
and on the same volume written by our writer (parallel gzip members).
"""
import argparse, os, subprocess, tempfile, time
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--read-only", action="store_true")
    ap.add_argument("--baseline")
    a = ap.parse_args()
    os.environ["RAYON_NUM_THREADS"] = "2"
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        # Smooth-ish CT-like content (compressible like real CT, not pure noise).
        z, y, x = np.meshgrid(np.arange(300), np.arange(512), np.arange(512), indexing="ij", sparse=True)
        vol = (1000 * np.sin(x / 40.0) * np.cos(y / 50.0) + 5 * z - 1024).astype(np.int16)
        vol += rng.integers(-20, 20, size=vol.shape, dtype=np.int16)
        img = sitk.GetImageFromArray(vol)
        img.SetSpacing((0.7, 0.7, 2.5))
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

        def sitk_resample(image):
            size = [int(np.floor(s * sp + 0.5)) for s, sp in zip(image.GetSize(), image.GetSpacing())]
            f = sitk.ResampleImageFilter()
            f.SetOutputSpacing((1.0, 1.0, 1.0))
            f.SetSize(size)
            f.SetOutputOrigin(image.GetOrigin())
            f.SetOutputDirection(image.GetDirection())
            f.SetInterpolator(sitk.sitkLinear)
            return f.Execute(image)

        sitk_res = best(lambda: sitk_resample(loaded), n)

        out = os.path.join(d, "out.nii.gz")

        def ours_convert():
            run([a.dump, "convert", src, out, "1", "linear"])

        def sitk_convert():
            sitk.WriteImage(sitk_resample(sitk.ReadImage(src)), os.path.join(d, "sitk.nii.gz"), True)

        ours_conv = best(ours_convert, n)
        sitk_conv = best(sitk_convert, n)
        print(f"resample 1mm lin ours {ours_res:.3f}s  SimpleITK {sitk_res:.3f}s  -> {sitk_res / ours_res:.2f}x (target >= 2)")
        print(f"convert (process) ours {ours_conv:.3f}s  SimpleITK {sitk_conv:.3f}s  -> {sitk_conv / ours_conv:.2f}x (target >= 1.2)")
        print(f"output sizes: ours {os.path.getsize(out) / 1e6:.1f} MB, SimpleITK {os.path.getsize(os.path.join(d, 'sitk.nii.gz')) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
