#!/usr/bin/env bash
# Re-records every fixture in this folder: starts an embedded node, a
# recording relay in front of it, and runs each driver session through the
# relay. Needs the Python packages of tests/python/requirements.txt (./test
# installs them into .venv).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
py="${PYTHON:-$root/.venv/bin/python}"
cd "$root"
cargo build --quiet --bins --examples
bin="$root/target/debug/cutover"

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

record() { # NAME COMMAND...
  local name="$1"; shift
  local node_port relay_port
  node_port=$(free_port); relay_port=$(free_port)
  "$bin" node --listen "127.0.0.1:$node_port" >/dev/null 2>&1 &
  local node_pid=$!
  rm -rf "${here:?}/$name"
  "$py" "$here/relay.py" "$relay_port" 127.0.0.1 "$node_port" "$here/$name" >/dev/null &
  local relay_pid=$!
  sleep 1
  "$@" 127.0.0.1 "$relay_port"
  sleep 0.5
  kill "$relay_pid" "$node_pid"; wait "$relay_pid" "$node_pid" 2>/dev/null || true
  echo "recorded $name: $(ls "$here/$name" | wc -l) connection(s)"
}

py_session() { "$py" "$here/python_session.py" "$3" "$4" "$1" "$2"; }
rs_session() { "$root/target/debug/examples/scylla_fixture_session" "$1:$2"; }

record python-driver-3.30.1-v3 py_session 3 none
record python-driver-3.30.1-v4 py_session 4 none
record python-driver-3.30.1-v4-lz4 py_session 4 lz4
record python-driver-3.30.1-v5-negotiated py_session default none
record python-driver-3.30.1-v5-lz4 py_session 5 lz4
record scylla-rust-1.9.0-v4 rs_session
