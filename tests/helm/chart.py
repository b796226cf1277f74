#!/usr/bin/env python3
"""Lints and renders a Helm chart as `helm lint --strict` and `helm template` do (Helm's own
library through PyPI helm-python-sdk: no helm binary), validates every rendered object
against the Kubernetes JSON schemas (PyPI kubernetes-validate, strict: unknown fields are
errors) and prints one JSON object for tests/tests/helm.rs:

    {"lint": {"messages": [{"severity", "path", "error"}], "errors": [...]},
     "objects": [<each rendered object>], "notes": "<NOTES.txt>",
     "invalid": [{"object": "Kind/name", "kube": "1.37.0", "error": "..."}],
     "unvalidated": ["Kind/name", ...]}

or {"error": "<Helm's message>"} when the chart refuses the values (exit status 0 both ways;
2 for bad usage).

    chart.py CHART [-f VALUES.yaml]... [--set-json JSON]... [--name R] [--namespace NS]
             [--kube-version 1.27.0]...
"""

import argparse
import json
import sys

import helm_python as helm
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv


def merge(base, over):
    """Helm's coalescing of values files: maps merge recursively, later files win, null removes."""
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("chart")
    p.add_argument("-f", "--values", action="append", default=[])
    p.add_argument("--set-json", action="append", default=[], help="a JSON object merged over the values files")
    p.add_argument("--name", default="aiaa")
    p.add_argument("--namespace", default="aiaa")
    p.add_argument("--kube-version", action="append", default=[])
    args = p.parse_args()

    helm.disable_logging()  # its log lines repeat the errors reported below
    values = {}
    for path in args.values:
        with open(path) as f:
            values = merge(values, yaml.safe_load(f) or {})
    for text in args.set_json:
        values = merge(values, json.loads(text))
    kube_versions = args.kube_version or [kv.latest_version()]

    report = {}
    try:
        lint = helm.lint(args.chart, values, strict=True, namespace=args.namespace,
                         kube_version="v" + kube_versions[-1])
        report["lint"] = {"messages": lint.get("messages") or [], "errors": lint.get("errors") or []}
        chart = helm.Chart.load(args.chart)
        rendered = chart.render(values, name=args.name, namespace=args.namespace, is_install=True)
    except helm.HelmError as e:
        print(json.dumps({"error": str(e), "lint": report.get("lint")}))
        return 0

    objects, notes = [], ""
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            notes = rendered[path]
            continue
        for doc in yaml.safe_load_all(rendered[path]):
            if doc:
                doc.setdefault("metadata", {})["annotations"] = doc["metadata"].get("annotations") or {}
                doc["metadata"]["annotations"]["aiaa.test/template"] = path
                objects.append(doc)

    invalid, unvalidated = [], []
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        # The marker above is ours; validate the object as rendered.
        plain = json.loads(json.dumps(obj))
        del plain["metadata"]["annotations"]["aiaa.test/template"]
        if not plain["metadata"]["annotations"]:
            del plain["metadata"]["annotations"]
        for version in kube_versions:
            try:
                kv.validate(plain, version, strict=True)
            except kv.SchemaNotFoundError:
                # A CRD's kind (ServiceMonitor): no schema in Kubernetes' own; the test checks it.
                if name not in unvalidated:
                    unvalidated.append(name)
            except (kv.ValidationError, kubernetes_validate.ValidationError) as e:
                invalid.append({"object": name, "kube": version,
                                "error": f"{'.'.join(str(x) for x in e.path)}: {e.message}"})
    report.update({"objects": objects, "notes": notes, "invalid": invalid, "unvalidated": unvalidated})
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
