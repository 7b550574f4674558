"""The Kubernetes manifests in deploy/ validate against the Kubernetes
schemas (strict: an unknown field is an error), and the migrate Jobs pass
each pod its share by its completion index."""
import glob
import os
import subprocess
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def manifests():
    files = sorted(glob.glob(os.path.join(ROOT, "deploy", "kubernetes", "*.yaml")))
    assert files, "deploy/kubernetes has manifests"
    return files


def test_manifests_validate_against_the_kubernetes_schemas():
    validate = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    out = subprocess.run(
        [validate, "--strict", *manifests()], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "passed" in out.stdout


def test_each_share_of_the_migrate_jobs_is_its_completion_index():
    path = os.path.join(ROOT, "deploy", "kubernetes", "migrate-jobs.yaml")
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    jobs = [d for d in docs if d["kind"] == "Job"]
    assert {j["metadata"]["name"] for j in jobs} == {"cutover-copy", "cutover-validate"}
    for j in jobs:
        spec = j["spec"]
        n = spec["completions"]
        assert spec["completionMode"] == "Indexed" and spec["parallelism"] == n
        args = spec["template"]["spec"]["containers"][0]["args"]
        assert f"--split-index=$(JOB_COMPLETION_INDEX)/{n}" in args, args
        checkpoint = [a for a in args if a.startswith("--checkpoint=")]
        assert checkpoint and "$(JOB_COMPLETION_INDEX)" in checkpoint[0], args
