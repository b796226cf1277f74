"""dextr3d through the gateway on a session holding MNI152, as a viewer's plugin calls it
(Python's http.client, multipart with the AIAA client's boundary): per request, the model's
forward pass (params.latencies.infer) against everything else (decode, pre, post, encode,
gateway, transport = client wall time - infer). Prints medians and the ratio.

usage: bench_dextr3d.py GATEWAY_HOST:PORT MODEL MASK.nii.gz IMAGE.nii.gz ROUNDS
"""
import http.client
import json
import statistics
import sys
import time

import nibabel as nib
import numpy as np

gateway, model, mask_path, image_path, rounds = sys.argv[1:6]
rounds = int(rounds)
host, port = gateway.split(":")
LIMIT = "----------lImIt_of_THE_fIle_eW_$"


def multipart(fields, files):
    body = b""
    for k, v in fields.items():
        body += f'--{LIMIT}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    for k, (name, data) in files.items():
        body += (f'--{LIMIT}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    return body + f"--{LIMIT}--\r\n\r\n".encode()


def call(method, path, body=b""):
    c = http.client.HTTPConnection(host, int(port), timeout=600)
    c.request(method, path, body, {"content-type": f"multipart/form-data; boundary={LIMIT}"})
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status != 200:
        raise SystemExit(f"{method} {path}: {r.status} {data[:300]!r}")
    return r, data


mask = np.asarray(nib.load(mask_path).dataobj) > 0
idx = np.argwhere(mask)
points = []
for axis in range(3):
    for pick in (idx[:, axis].argmin(), idx[:, axis].argmax()):
        points.append([int(v) for v in idx[pick]])
with open(image_path, "rb") as f:
    image = f.read()
_, data = call("PUT", "/session/", multipart({}, {"image": ("MNI152_T1.nii.gz", image)}))
session = json.loads(data)["session_id"]
params = json.dumps({"points": points})
path = f"/v1/dextr3d?model={model}&session_id={session}"
call("POST", path, multipart({"params": params}, {}))  # warm: decode + cache the session
def params_of(body):
    """The params part of a multipart answer, found the way the clients find it."""
    delim = body[: body.index(b"\r\n")]
    first = body.split(delim)[1]
    return json.loads(first[first.index(b"\r\n\r\n") + 4 : -2])


walls, infers, stages = [], [], []
for _ in range(rounds):
    t0 = time.perf_counter()
    _, data = call("POST", path, multipart({"params": params}, {}))
    walls.append(time.perf_counter() - t0)
    lat = params_of(data)["latencies"]
    infers.append(lat["infer"])
    stages.append(lat)
wall, infer = statistics.median(walls), statistics.median(infers)
med = {k: statistics.median(s[k] for s in stages) for k in stages[0]}
print(json.dumps({"model": model, "rounds": rounds, "median_wall_s": round(wall, 4), "median_forward_s": round(infer, 4),
                  "stages_s": med, "overhead_over_forward": round((wall - infer) / infer, 3)}))
