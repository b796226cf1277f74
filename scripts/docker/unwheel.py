#!/usr/bin/env python3
"""Extracts the shared libraries (and optionally libtorch's headers) from PyPI wheels of torch
and NVIDIA's CUDA packages, flat into one folder, as an image's /usr/local/lib wants them.
Used by docker/Dockerfile's self-contained build; needs only the standard library.

    unwheel.py --wheels DIR --lib-out DIR [--include-out DIR] [--skip-names-in DIR]

Libraries are `torch/lib/*.so*` and `nvidia/*/lib/*.so*`; libtorch_python and libshm (Python
only) are left out; a name already present in --skip-names-in (the CPU set) is not extracted
again.
"""

import argparse
import glob
import os
import shutil
import zipfile

PYTHON_ONLY = ("libtorch_python", "libshm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheels", required=True)
    ap.add_argument("--lib-out", required=True)
    ap.add_argument("--include-out")
    ap.add_argument("--skip-names-in")
    args = ap.parse_args()
    skip = set(os.listdir(args.skip_names_in)) if args.skip_names_in else set()
    os.makedirs(args.lib_out, exist_ok=True)
    wheels = sorted(glob.glob(os.path.join(args.wheels, "*.whl")))
    if not wheels:
        raise SystemExit(f"unwheel: no wheels in {args.wheels}")
    count = 0
    for whl in wheels:
        with zipfile.ZipFile(whl) as z:
            for name in z.namelist():
                base = os.path.basename(name)
                if name.endswith("/"):
                    continue
                if args.include_out and name.startswith("torch/include/"):
                    out = os.path.join(args.include_out, name[len("torch/include/"):])
                elif (
                    (name.startswith("torch/lib/") or name.startswith("nvidia/"))
                    and "/lib/" in name
                    and ".so" in base
                    and not base.startswith(PYTHON_ONLY)
                    and base not in skip
                ):
                    out = os.path.join(args.lib_out, base)
                else:
                    continue
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with z.open(name) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.chmod(out, 0o755 if ".so" in base else 0o644)
                count += 1
    print(f"unwheel: {count} files from {len(wheels)} wheels")


if __name__ == "__main__":
    main()
