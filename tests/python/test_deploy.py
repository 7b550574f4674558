"""deploy/: the Kubernetes manifests validate against the Kubernetes
schemas (strict: an unknown field is an error) and the migrate Jobs pass
each pod its share by its completion index; the systemd unit passes
`systemd-analyze verify`; the container build file passes hadolint, and the
cargo command of its build step builds a binary that runs."""
import glob
import os
import re
import shutil
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


def test_the_systemd_unit_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian package systemd)"
    unit = open(os.path.join(ROOT, "deploy", "systemd", "cutover.service")).read()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    for line in ["ProtectSystem=strict", "NoNewPrivileges=yes", "StateDirectory=cutover", "LimitNOFILE="]:
        assert line in unit, line
    # verify checks that ExecStart's binary exists: the one just built.
    binary = os.path.join(ROOT, "target", "debug", "cutover")
    copy = tmp_path / "cutover.service"
    copy.write_text(unit.replace("/usr/local/bin/cutover", binary))
    out = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "cutover.service" not in out.stderr, out.stderr


def dockerfile():
    return open(os.path.join(ROOT, "deploy", "container", "Dockerfile")).read()


def test_the_container_build_file_passes_hadolint():
    hadolint = os.path.join(os.path.dirname(sys.executable), "hadolint")
    out = subprocess.run(
        [hadolint, os.path.join(ROOT, "deploy", "container", "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = dockerfile()
    assert re.search(r"^USER 65532", text, re.M), "runs as a non-root user"
    assert text.count("FROM ") == 2, "multi-stage"


def test_the_container_build_steps_cargo_command_builds_a_binary_that_runs():
    commands = re.findall(r"(cargo build [^\\&\n]+)", dockerfile())
    assert commands, "the build step runs cargo build"
    command = commands[-1].split()
    assert "--locked" in command and "--release" in command, command
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    version = subprocess.run(
        [os.path.join(ROOT, "target", "release", "cutover"), "--version"],
        capture_output=True,
        text=True,
    )
    assert version.stdout.startswith("cutover "), version.stdout + version.stderr
