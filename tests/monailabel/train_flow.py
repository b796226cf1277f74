"""MONAI Label's annotate -> save -> retrain -> serve loop, driven by MONAI Label's own client
(monailabel==0.8.5, MONAILabelClient) against our gateway. Run by tests/tests/monailabel.rs
after it has published a deliberately weak DEXTR3D model (a few training steps) as
registry version 1 of MODEL, with its checkpoint, and loaded it. Exits non-zero with the
failed check; prints one JSON line of figures at the end.

The datastore holds both heads; only MNI152 gets a final label, so the fine-tune trains on
MNI152 alone (one labelled image: val_split 0.2 leaves none to validate, the last weights
are the result). The held-out ROBEX head is only ever scored.

usage: train_flow.py SERVER_URL MODEL MNI_IMAGE MNI_MASK ROBEX_IMAGE ROBEX_MASK TMPDIR EPOCHS
"""
import json
import os
import sys
import time

import hashlib

import nibabel as nib
import numpy as np
import requests
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException

url, model, mni, mni_mask, robex, robex_mask, tmp, epochs = sys.argv[1:9]
epochs = int(epochs)
client = MONAILabelClient(url, tmpdir=tmp, client_id="e2e-train")
figures = {}


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


def fails(what, call, status):
    try:
        call()
    except MONAILabelClientException as e:
        check(f"Status: {status}" in e.msg, f"{what}: expected status {status}, got {e.msg}")
        return e.msg
    raise SystemExit(f"FAILED: {what}: no error")


def mask_of(path):
    return np.squeeze(np.asarray(nib.load(path).dataobj)) > 0


def dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


truth = mask_of(robex_mask)
idx = np.argwhere(truth)
points = [idx[pick].tolist() for axis in range(3) for pick in (idx[:, axis].argmin(), idx[:, axis].argmax())]


def robex_dice():
    out, _ = client.infer(model, "robex_head", {"foreground": points, "background": []})
    return float(dice(mask_of(out), truth))


def wait_for_end(limit_s):
    deadline = time.time() + limit_s
    while time.time() < deadline:
        task = client.train_status()
        if task["status"] not in ("SUBMITTED", "RUNNING"):
            return task
        time.sleep(1)
    raise SystemExit(f"FAILED: training still running after {limit_s} s: {client.train_status()}")


info = client.info()
check(model in info["trainers"], f"trainers: {info['trainers']}")
check(info["trainers"][model]["config"]["max_epochs"] >= 1, f"trainer config: {info['trainers'][model]}")
check(info["models"][model]["version"] == "1", f"model: {info['models'][model]}")
check(info["train_stats"] == {}, f"train_stats before any run: {info['train_stats']}")

# Nothing to train on yet, nothing running, nothing to stop.
fails("training without any final label", lambda: client.train_start(model, {"max_epochs": 1}), 400)
check(client.train_status(check_if_running=True) is False, "a task runs before any start")
check(client.train_stop() is None, "stop with nothing running")
fails("an unknown trainer", lambda: client.train_start("no_such_model", {}), 404)

client.upload_image(mni, image_id="MNI152_T1")
client.upload_image(robex, image_id="robex_head")
client.save_label("MNI152_T1", mni_mask, tag="final")
check(client.next_sample("first", {})["id"] == "robex_head", "active learning proposes the unlabelled head")

figures["robex_dice_before"] = robex_dice()
check(figures["robex_dice_before"] < 0.8, f"the starting model is not weak: {figures['robex_dice_before']}")

# Bad params are refused before anything starts.
fails("max_epochs 0", lambda: client.train_start(model, {"max_epochs": 0}), 400)

# A run that is stopped: STOPPED, and the served model does not change.
task = client.train_start(model, {"max_epochs": 1000})
check(task["status"] in ("SUBMITTED", "RUNNING") and task["request"]["model"] == model, f"task: {task}")
fails("a second run while one runs", lambda: client.train_start(model, {"max_epochs": 1}), 429)
check(client.train_status(check_if_running=True) is True, "check_if_running while it runs")
time.sleep(3)
stopped = client.train_stop()
check(stopped["id"] == task["id"] and stopped["status"] == "STOPPED", f"stop: {stopped}")
check(client.train_status()["status"] == "STOPPED", f"status after the stop: {client.train_status()}")
check(client.info()["models"][model]["version"] == "1", "a stopped run changed the served model")

# The real run: fine-tune, publish version 2, serve it.
t0 = time.time()
task = client.train_start(model, {"max_epochs": epochs})
done = wait_for_end(600)
figures["train_seconds"] = round(time.time() - t0, 1)
check(done["id"] == task["id"] and done["status"] == "DONE", f"the run ended {done['status']}: {done}")
check(done["result"]["version"] == "2", f"result: {done['result']}")
info = client.info()
check(info["models"][model]["version"] == "2", f"served after the run: {info['models'][model]}")
stats = info["train_stats"][model]
check(stats["total_epochs"] == epochs and stats["epoch"] == epochs, f"train_stats: {stats}")
check(model in info["trainers"], "the new version is trainable again")
figures["robex_dice_after"] = robex_dice()
check(
    figures["robex_dice_after"] >= figures["robex_dice_before"] + 0.05,
    f"the loop did not learn: ROBEX Dice {figures['robex_dice_before']:.3f} -> {figures['robex_dice_after']:.3f}",
)

# /scoring/dice: the final label against the model's original prediction, into the image's info.
mni_truth = mask_of(mni_mask)
mi = np.argwhere(mni_truth)
mni_points = [mi[pick].tolist() for axis in range(3) for pick in (mi[:, axis].argmin(), mi[:, axis].argmax())]
client.infer(model, "MNI152_T1", {"foreground": mni_points, "save_label": True})
original = client.download_label("MNI152_T1", "original")
expected = float(dice(mask_of(original), mni_truth))
check(requests.get(f"{url}/scoring/").status_code == 404, "scoring status before any run")
r = requests.post(f"{url}/scoring/nope")
check(r.status_code == 404, f"an unknown scoring method: {r.status_code} {r.text}")
r = requests.post(f"{url}/scoring/dice")
check(r.status_code == 200 and r.json()["status"] in ("SUBMITTED", "RUNNING", "DONE"), f"scoring: {r.text}")
deadline = time.time() + 120
while (task := requests.get(f"{url}/scoring/").json())["status"] in ("SUBMITTED", "RUNNING"):
    check(time.time() < deadline, f"scoring still running: {task}")
    time.sleep(0.5)
check(task["status"] == "DONE" and set(task["result"]) == {"MNI152_T1"}, f"scoring task: {task}")
figures["scoring_dice"] = task["result"]["MNI152_T1"]
check(abs(figures["scoring_dice"] - expected) < 1e-9, f"scoring Dice {figures['scoring_dice']} != {expected}")
info_dice = client.datastore()["objects"]["MNI152_T1"]["image"]["info"]["dice"]
check(abs(info_dice - figures["scoring_dice"]) < 1e-12, f"the image info's dice: {info_dice} vs {figures['scoring_dice']}")
check("dice" in client.info()["scoring"], "scoring methods in /info/")

# /model/: the served version's file, its checksum, a replacement, an unload.
r = requests.get(f"{url}/model/info/{model}")
check(r.status_code == 200, f"model info: {r.text}")
minfo = r.json()
check(minfo["version"] == "2" and minfo["checksum"].startswith("SHA256:"), f"model info: {minfo}")
check(minfo["train_stats"]["version"] == "2", f"model info train_stats: {minfo}")
r = requests.get(f"{url}/model/{model}")
check(r.status_code == 200 and f'filename="{model}.pt"' in r.headers["content-disposition"], f"model download: {r.headers}")
check("SHA256:" + hashlib.sha256(r.content).hexdigest() == minfo["checksum"], "the downloaded model's checksum")
weights = os.path.join(tmp, "weights.pt")
with open(weights, "wb") as f:
    f.write(r.content)
check(requests.get(f"{url}/model/info/no_such_model").status_code == 404, "the info of a model that is not served")
with open(weights, "rb") as f:
    r = requests.put(f"{url}/model/{model}", files={"file": ("weights.pt", f)})
check(r.status_code == 200 and r.json()["checksum"] == minfo["checksum"], f"model put: {r.text}")
check(client.info()["models"][model]["version"] == "3", "the put model's version serves")
check(model not in client.info()["trainers"], "a put model (no checkpoint) is still listed as a trainer")
check(abs(robex_dice() - figures["robex_dice_after"]) < 1e-6, "the same weights answer differently after the put")
check(requests.put(f"{url}/model/{model}").status_code == 400, "a put without a file")
check(requests.delete(f"{url}/model/no_such_model").status_code == 404, "deleting an unknown model")
check(requests.delete(f"{url}/model/{model}").status_code == 200, "deleting the model")
check(model not in client.info()["models"], "a deleted model is still served")
print(json.dumps(figures))
