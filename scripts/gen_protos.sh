#!/usr/bin/env bash
# Generates the Python code and type stubs of the public API (protos/minmo/**/*.proto) into protos/gen/.
#
# protos/gen/ is a build output (gitignored, never edited): its root is a package root, so the generated
# `from minmo.v1 import minmo_pb2` inside minmo_pb2_grpc.py resolves, and pyproject.toml packages `minmo*`
# from it. Output is written to a scratch folder and swapped in, so a failed run leaves the old code intact.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
BIN="$(dirname "$PY")"
OUT=protos/gen
TMP="$(mktemp -d protos/.gen.XXXXXX)"
trap 'rm -rf "$TMP"' EXIT

mapfile -t sources < <(find protos/minmo -name '*.proto' | sort)
if [ ${#sources[@]} -eq 0 ]; then
  echo "gen_protos: no .proto files under protos/minmo" >&2
  exit 1
fi
for tool in protoc-gen-mypy protoc-gen-mypy_grpc; do
  if [ ! -x "$BIN/$tool" ]; then
    echo "gen_protos: $BIN/$tool is missing: install the dev extras (make install)" >&2
    exit 1
  fi
done

"$PY" -m grpc_tools.protoc -I protos \
  --plugin=protoc-gen-mypy="$BIN/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$BIN/protoc-gen-mypy_grpc" \
  --python_out="$TMP" --grpc_python_out="$TMP" --mypy_out="$TMP" --mypy_grpc_out="$TMP" \
  "${sources[@]}"

# protoc writes modules only; the folders become regular packages, typed (PEP 561).
find "$TMP" -mindepth 1 -type d -exec touch {}/__init__.py \;
touch "$TMP/minmo/py.typed"

rm -rf "$OUT"
mv "$TMP" "$OUT"
trap - EXIT
touch "$OUT/.stamp"
echo "gen_protos: ${sources[*]} -> $OUT/"
