"""MONAI Label's own client (monailabel==0.8.5, MONAILabelClient) against our gateway: every
call of the client's API that the platform supports, on real volumes and the shipped models,
with the checks a user would make. Run by tests/tests/monailabel.rs; exits non-zero with the
failed check. Prints one JSON line of figures at the end.

usage: client_flow.py SERVER_URL MNI_IMAGE MNI_MASK ROBEX_IMAGE ROBEX_MASK TMPDIR
"""
import json
import os
import sys
import time

import nibabel as nib
import numpy as np
import requests
import SimpleITK as sitk
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException

url, mni, mni_mask, robex, robex_mask, tmp = sys.argv[1:7]
client = MONAILabelClient(url, tmpdir=tmp, client_id="e2e")
figures = {}


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


def fails(what, call, status):
    """`call` must raise the client's exception with HTTP `status` in its message."""
    try:
        call()
    except MONAILabelClientException as e:
        check(f"Status: {status}" in e.msg, f"{what}: expected status {status}, got {e.msg}")
        return e.msg
    raise SystemExit(f"FAILED: {what}: no error")


def mask_of(path):
    """A mask as [i, j, k] booleans: NIfTI through nibabel, NRRD through SimpleITK."""
    if path.endswith(".nrrd"):
        return sitk.GetArrayFromImage(sitk.ReadImage(path)).transpose(2, 1, 0) > 0
    return np.squeeze(np.asarray(nib.load(path).dataobj)) > 0


def dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def extreme_points(mask):
    idx = np.argwhere(mask)
    return [idx[pick].tolist() for axis in range(3) for pick in (idx[:, axis].argmin(), idx[:, axis].argmax())]


# /info/ as 3D Slicer and OHIF read it.
info = client.info()
check(not info.get("config"), f"/info/ has a config key: {info}")
check(isinstance(info["labels"], list) and "brain" in info["labels"], f"labels: {info['labels']}")
models = info["models"]
check(models["segmentation_mri_brain"]["type"] == "segmentation", f"models: {models}")
check(models["annotation_mri_brain"]["type"] == "deepgrow", f"models: {models}")
for name, m in models.items():
    for key in ("type", "labels", "dimension", "description", "config"):
        check(key in m, f"model {name} lacks {key}: {m}")
check({"first", "random"} <= set(info["strategies"]), f"strategies: {info['strategies']}")
check(info["datastore"] == {"total": 0, "completed": 0, "label_tags": {}}, f"datastore: {info['datastore']}")
check(client.auth_enabled() is False, "auth should be disabled without an API key")

# Upload both heads; MNI152 gets its brain mask as the final label.
check(client.upload_image(mni, image_id="MNI152_T1") == {"image": "MNI152_T1"}, "upload MNI152")
check(client.upload_image(robex, image_id="robex_head")["image"] == "robex_head", "upload ROBEX")
saved = client.save_label("MNI152_T1", mni_mask, tag="final", params={"label_info": [{"name": "brain", "idx": 1}]})
check(saved == {"image": "MNI152_T1", "label": "MNI152_T1"}, f"save_label: {saved}")
got = client.download_label("MNI152_T1", "final")
check(open(got, "rb").read() == open(mni_mask, "rb").read(), "the downloaded label differs from the uploaded one")
check(got.endswith(".nii.gz"), f"downloaded label name {got}")
store = client.datastore()
objects = store["objects"]
check(set(objects) == {"MNI152_T1", "robex_head"}, f"objects: {list(objects)}")
final = objects["MNI152_T1"]["labels"]["final"]
check(final["ext"] == ".nii.gz" and final["info"]["label_info"] == [{"name": "brain", "idx": 1}], f"final: {final}")
check(objects["robex_head"]["labels"] == {}, f"robex labels: {objects['robex_head']}")

# A label on another grid than its image is refused, and nothing is stored.
msg = fails("a label on another grid", lambda: client.save_label("MNI152_T1", robex_mask, tag="other"), 400)
check("grid" in msg, msg)
check("other" not in client.datastore()["objects"]["MNI152_T1"]["labels"], "a refused label was stored")

# Active learning: the only image without a final label, named with its extension.
for strategy in ("first", "random"):
    sample = client.next_sample(strategy, {})
    check(sample["id"] == "robex_head" and sample["name"] == "robex_head.nii.gz", f"{strategy}: {sample}")
    check(sample["checksum"].startswith("SHA256:") and len(sample["checksum"]) == 71, f"{strategy}: {sample}")
    check("path" not in sample, f"{strategy} answers a server path: {sample}")
    check(strategy in sample["strategy"], f"{strategy} not recorded: {sample}")
fails("an unknown strategy", lambda: client.next_sample("nope", {}), 404)

# Inference with deepbet and with the DEXTR3D model on the held-out ROBEX head.
truth = mask_of(robex_mask)
out, params = client.infer("segmentation_mri_brain", "robex_head", {})
check(params["label_names"] == {"brain": 1}, f"params: {params}")
check(out.endswith(".nii.gz"), f"result file {out}")
result = nib.load(out)
check(result.shape[:3] == nib.load(robex).shape[:3], f"result grid {result.shape}")
figures["deepbet_robex_dice"] = float(dice(mask_of(out), truth))
check(figures["deepbet_robex_dice"] >= 0.95, f"deepbet Dice {figures['deepbet_robex_dice']}")
points = extreme_points(truth)
out, params = client.infer("annotation_mri_brain", "robex_head", {"foreground": points, "background": []})
figures["dextr3d_robex_dice"] = float(dice(mask_of(out), truth))
check(figures["dextr3d_robex_dice"] >= 0.90, f"DEXTR3D Dice {figures['dextr3d_robex_dice']}")
msg = fails("DEXTR3D with two clicks", lambda: client.infer("annotation_mri_brain", "robex_head", {"foreground": points[:2]}), 400)
check("6 extreme points" in msg, msg)

# save_label stores the prediction as the `original` label (what dice scoring and Slicer read).
out, params = client.infer("segmentation_mri_brain", "robex_head", {"save_label": True, "result_extension": ".nrrd"})
check(out.endswith(".nrrd"), f"result file {out}")
original = client.download_label("robex_head", "original")
check(dice(mask_of(original), truth) >= 0.95, "the stored original label")
labels = client.datastore()["objects"]["robex_head"]["labels"]
check(labels["original"]["info"]["model"] == "segmentation_mri_brain", f"original info: {labels}")

# Sessions: the volume sent once, then inference by session id; an uploaded file too.
session = client.create_session(robex)
sid = session["session_id"]
check("session_info" in session, f"session: {session}")
check(client.get_session(sid)["session_id"] == sid, "get_session")
out, _ = client.infer("segmentation_mri_brain", "", {}, session_id=sid)
figures["session_dice"] = float(dice(mask_of(out), truth))
check(figures["session_dice"] >= 0.95, f"session Dice {figures['session_dice']}")
client.remove_session(sid)
fails("a removed session", lambda: client.get_session(sid), 440)
out, _ = client.infer("segmentation_mri_brain", "", {}, file=robex)
check(dice(mask_of(out), truth) >= 0.95, "inference on an uploaded file")

# Bad input: clear 4xx, and the server keeps serving.
fails("an unknown model", lambda: client.infer("nope", "robex_head", {}), 404)
fails("an unknown image", lambda: client.infer("segmentation_mri_brain", "no_such_image", {}), 404)
fails("an unknown label", lambda: client.download_label("robex_head", "final"), 404)

# The epistemic strategy: an intensity-inverted and a noised copy of the ROBEX head join the
# datastore; the first proposal starts the scoring in the background, which the client then
# follows on /scoring/ (raw requests: the client has no scoring call), and the copy the model
# is least sure of comes first.
head = nib.load(robex)
values = np.asarray(head.dataobj).astype(np.float32)
copies = {
    "robex_inverted": values.max() + values.min() - values,
    "robex_noised": values + np.random.default_rng(5).normal(0.0, 0.25 * values.std(), values.shape),
}
for name, data in copies.items():
    path = os.path.join(tmp, f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(data.astype(np.float32), head.affine), path)
    client.upload_image(path, image_id=name)
first = client.next_sample("epistemic", {})
check(first["id"] in ("robex_head", *copies), f"epistemic before scoring: {first}")
deadline = time.time() + 600
while requests.get(f"{url}/scoring/?check_if_running=true").status_code == 200:
    check(time.time() < deadline, "epistemic scoring did not finish in 600 s")
    time.sleep(1)
task = requests.get(f"{url}/scoring/").json()
check(task["status"] == "DONE", f"epistemic scoring: {task}")
scores = task["result"]["scores"]
figures["epistemic"] = scores
figures["epistemic_seconds"] = task["result"]["latency"]
check(set(scores) == {"robex_head", *copies}, f"scored: {scores}")
sample = client.next_sample("epistemic", {})
check(sample["id"] == max(scores, key=scores.get) and sample["id"] != "robex_head", f"epistemic: {sample}, scores {scores}")
check(abs(sample["epistemic_entropy"] - scores[sample["id"]]) < 1e-9, f"the score in the info: {sample}")
# Cached per image and model version: a second scoring finds nothing to do.
requests.post(f"{url}/scoring/epistemic", json={}).raise_for_status()
while requests.get(f"{url}/scoring/?check_if_running=true").status_code == 200:
    time.sleep(0.2)
again = requests.get(f"{url}/scoring/").json()["result"]
check(again["executed"] == 0 and again["skipped"] == 3, f"the second scoring: {again}")
bad = requests.post(f"{url}/scoring/epistemic", json={"model": "annotation_mri_brain"})
check(bad.status_code == 400 and "segmentation" in bad.text, f"epistemic on a DEXTR3D model: {bad.status_code} {bad.text}")
bad = requests.post(f"{url}/scoring/epistemic", json={"simulation_size": 9})
check(bad.status_code == 400 and "simulation_size" in bad.text, f"simulation_size 9: {bad.status_code} {bad.text}")

# The datastore summary after all this.
stats = client.info()["datastore"]
check(stats == {"total": 4, "completed": 1, "label_tags": {"final": 1, "original": 1}}, f"stats: {stats}")
print(json.dumps(figures))
