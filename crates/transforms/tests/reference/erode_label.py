"""Reference values for `transforms.ErodeLabel` (tests/erode_label.rs).

Writes tests/reference/erode_label.json: the MNI152 brain mask (1 mm) and its 1 x 1 x 1.5 mm
validation variant (testdata/mni152, scripts/fetch-test-data.sh) eroded by
`scipy.ndimage.distance_transform_edt(mask, sampling=zooms) > d`, as voxel counts and sums
of the kept voxels' flat indices (Fortran order, `i` fastest, as our volumes).

    python crates/transforms/tests/reference/erode_label.py [TESTDATA_DIR]

Generated with numpy 2.2.6, nibabel 5.3.2, scipy 1.16.3.
"""

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import distance_transform_edt

here = Path(__file__).resolve().parent
testdata = Path(sys.argv[1]) if len(sys.argv) > 1 else here.parents[3] / "testdata"
out = {}
for name in ["MNI152_mask.nii.gz", "variants/mni152_v3_mask.nii.gz"]:
    img = nib.load(testdata / "mni152" / name)
    mask = np.asanyarray(img.dataobj) > 0
    depth = distance_transform_edt(mask, sampling=img.header.get_zooms()[:3])
    cases = {}
    for d in [1.0, 2.0, 3.5]:
        kept = np.flatnonzero((depth > d).ravel(order="F"))
        cases[str(d)] = {"count": int(kept.size), "index_sum": int(kept.sum(dtype=np.int64))}
    out[name] = {"zooms": [float(z) for z in img.header.get_zooms()[:3]], "count": int(mask.sum()), "eroded": cases}
(here / "erode_label.json").write_text(json.dumps(out, indent=1) + "\n")
