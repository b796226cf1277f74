#!/usr/bin/env python3
"""A Python client of the aiaa gRPC services, straight from the contracts in proto/: it lists
the registry's models, uploads an image to the datastore and runs a segmentation model on it
through the inference service (not the REST gateway), then saves the mask and, given a
reference mask, prints its Dice.

    pip install -r requirements.txt
    python aiaa_grpc_example.py --image head.nii.gz [--reference mask.nii.gz] [--out mask.nii.gz]

The Python stubs are generated from the .proto files at start (grpcio-tools, into a temporary
folder), so the client always matches the contracts it is run against: --proto-dir names the
folder holding aiaa/<service>/v1/*.proto (default: the repository's proto/). Addresses default
to the docker-compose deployment's published ports on 127.0.0.1. With AIAA_API_KEY set on the
services, pass --api-key (uploads are mutating calls).
"""

import argparse
import glob
import hashlib
import importlib
import json
import os
import sys
import tempfile
import time

import grpc

# Large payloads travel as chunks of at most 1 MiB (proto/aiaa/common/v1/common.proto).
CHUNK = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))


def generate_stubs(proto_dir: str, out_dir: str) -> None:
    """Compiles every aiaa .proto file into Python modules under out_dir (importable as
    aiaa.<service>.v1.<service>_pb2 / _pb2_grpc)."""
    from grpc_tools import protoc  # grpcio-tools

    protos = sorted(glob.glob(os.path.join(proto_dir, "aiaa", "*", "v1", "*.proto")))
    if not protos:
        raise SystemExit(f"no aiaa/*/v1/*.proto under {proto_dir} (set --proto-dir)")
    # grpc_tools ships the well-known types (google/protobuf/*.proto).
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = ["protoc", f"-I{proto_dir}", f"-I{well_known}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}"]
    if protoc.main(args + protos) != 0:
        raise SystemExit("protoc failed on " + " ".join(protos))
    sys.path.insert(0, out_dir)


def stubs(service: str):
    """(messages module, grpc module) of one service, e.g. stubs("registry")."""
    pb2 = importlib.import_module(f"aiaa.{service}.v1.{service}_pb2")
    grpc_mod = importlib.import_module(f"aiaa.{service}.v1.{service}_pb2_grpc")
    return pb2, grpc_mod


def list_registry_models(addr: str, metadata) -> list:
    pb2, rpc = stubs("registry")
    with grpc.insecure_channel(addr) as channel:
        answer = rpc.RegistryServiceStub(channel).ListModels(pb2.ListModelsRequest(), timeout=30, metadata=metadata)
    return list(answer.models)


def upload_image(addr: str, path: str, item_id: str, metadata):
    """Stores the file as a datastore image (header first, then 1 MiB chunks; the size and
    sha256 in the header make the datastore refuse a truncated or altered upload). An item
    with the same id and bytes is reused."""
    pb2, rpc = stubs("datastore")
    common = importlib.import_module("aiaa.common.v1.common_pb2")
    data = open(path, "rb").read()
    sha = hashlib.sha256(data).hexdigest()
    with grpc.insecure_channel(addr) as channel:
        client = rpc.DatastoreServiceStub(channel)
        try:
            item = client.Stat(pb2.GetRequest(kind=pb2.ITEM_KIND_IMAGE, id=item_id), timeout=30, metadata=metadata)
            if item.sha256 == sha:
                return item
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise

        def requests():
            yield pb2.PutRequest(
                header=pb2.PutHeader(kind=pb2.ITEM_KIND_IMAGE, id=item_id, size=len(data), sha256=sha)
            )
            for i in range(0, len(data), CHUNK):
                yield pb2.PutRequest(chunk=common.Chunk(data=data[i : i + CHUNK]))

        return client.Put(requests(), timeout=120, metadata=metadata)


def infer(addr: str, model: str, image_id: str, out_path: str, metadata) -> dict:
    """Runs `model` on a datastore image; writes the label volume; returns the result params."""
    pb2, rpc = stubs("inference")
    header = pb2.InferHeader(
        model=model,
        image_id=image_id,
        params_json="{}",
        output="image",
        result_extension=".nii.gz",
        model_type="segmentation",
    )
    result, chunks = None, []
    with grpc.insecure_channel(addr) as channel:
        for answer in rpc.InferenceServiceStub(channel).Infer(
            iter([pb2.InferRequest(header=header)]), timeout=600, metadata=metadata
        ):
            if answer.HasField("result"):
                result = answer.result
            else:
                chunks.append(answer.chunk)
    if result is None:
        raise SystemExit("inference answered no InferResult")
    data = b"".join(chunks)
    if len(data) != result.size:
        raise SystemExit(f"result volume: {len(data)} bytes received, {result.size} announced")
    with open(out_path, "wb") as f:
        f.write(data)
    return json.loads(result.params_json or "{}")


def dice(mask_path: str, reference_path: str) -> float:
    import nibabel
    import numpy

    # Trailing length-1 axes (a 4th "time" axis of 1) do not change the grid.
    a = numpy.squeeze(numpy.asarray(nibabel.load(mask_path).dataobj)) > 0
    b = numpy.squeeze(numpy.asarray(nibabel.load(reference_path).dataobj)) > 0
    if a.shape != b.shape:
        raise SystemExit(f"mask shape {a.shape} differs from the reference's {b.shape}")
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * numpy.logical_and(a, b).sum() / total)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", required=True, help="a volume the model takes (e.g. a T1 MRI .nii.gz)")
    ap.add_argument("--reference", help="a reference mask: print the Dice of the answer against it")
    ap.add_argument("--out", default="mask.nii.gz", help="where to write the mask")
    ap.add_argument("--model", default="segmentation_mri_brain", help="a loaded segmentation model")
    ap.add_argument("--item-id", help="the datastore id to store the image under (default: examples/<sha256>.nii.gz)")
    ap.add_argument("--registry", default="127.0.0.1:5101")
    ap.add_argument("--datastore", default="127.0.0.1:5102")
    ap.add_argument("--inference", default="127.0.0.1:5103")
    ap.add_argument("--proto-dir", default=os.path.join(HERE, "..", "..", "proto"))
    ap.add_argument("--api-key", default=os.environ.get("AIAA_API_KEY"))
    args = ap.parse_args()
    metadata = [("authorization", f"Bearer {args.api_key}")] if args.api_key else None

    with tempfile.TemporaryDirectory(prefix="aiaa-stubs-") as gen:
        generate_stubs(os.path.abspath(args.proto_dir), gen)

        for m in list_registry_models(args.registry, metadata):
            print(f"registry: {m.model.org}/{m.model.team}/{m.model.name} {m.model_type} latest {m.latest_version}")

        digest = hashlib.sha256(open(args.image, "rb").read()).hexdigest()[:16]
        suffix = ".nii.gz" if args.image.endswith(".nii.gz") else os.path.splitext(args.image)[1]
        item = upload_image(args.datastore, args.image, args.item_id or f"examples/{digest}{suffix}", metadata)
        print(f"datastore: {item.id} {item.format} {item.size} bytes sha256 {item.sha256[:12]}")

        t0 = time.monotonic()
        params = infer(args.inference, args.model, item.id, args.out, metadata)
        print(f"inference: {args.model} -> {args.out} in {time.monotonic() - t0:.1f} s; params {json.dumps(params)[:200]}")

        if args.reference:
            print(f"dice: {dice(args.out, args.reference):.4f}")


if __name__ == "__main__":
    main()
