#!/usr/bin/env bash
# The HTTP API against its own OpenAPI document (X4): schemathesis fuzzes a
# real `kontextual serve` with an admin key, a read-only key and no key, and
# a client generated from /openapi.json must build and work.
#
# Runs on the binary the tests built ($CARGO_TARGET_DIR/debug/kontextual,
# built again only if it is stale);
# a throw-away data directory, a free loopback port, and `--workers 0`, so
# fuzzed jobs are queued but never run on this machine.
#
# SCHEMATHESIS_MAX_EXAMPLES bounds the examples per operation (the three runs
# take a few minutes on 2 cores at the default); the seed is fixed so a
# failure reproduces.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/kontextual-ci-target}"
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-25}"
seed="${SCHEMATHESIS_SEED:-20261204}"

python3 -c 'import schemathesis' 2>/dev/null || python3 -m pip install --quiet schemathesis
python3 -c 'import openapi_python_client' 2>/dev/null || python3 -m pip install --quiet openapi-python-client

work="$(mktemp -d)"
# A copy: another checkout sharing the target directory may build over it.
cargo build --quiet -p kontextual
cp "${CARGO_TARGET_DIR}/debug/kontextual" "${work}/kontextual"
bin="${work}/kontextual"

server_pid=""
cleanup() {
    if [[ -n "${server_pid}" ]]; then
        kill "${server_pid}" 2>/dev/null || true
        wait "${server_pid}" 2>/dev/null || true
    fi
    rm -rf "${work}"
}
trap cleanup EXIT

data="${work}/data"
kx() { "${bin}" --data-dir "${data}" -q "$@"; }
kx init
# Something to find, so reads and searches reach past "not found".
printf '# Handbook\n\n## Install\n\nRun the installer.\n' > "${work}/setup.md"
kx ingest "${work}/setup.md" --collection handbook > /dev/null
token() { python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'; }
admin_token="$(kx key create --name ci-admin --for user:ci-admin --scopes read,write,admin,export --json | token)"
read_token="$(kx key create --name ci-reader --for agent:ci-reader --scopes read --json | token)"
kx grant user:ci-admin admin > /dev/null
kx grant agent:ci-reader read > /dev/null

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:${port}"
"${bin}" --data-dir "${data}" -q serve --bind "127.0.0.1:${port}" --workers 0 --rate-limit 100000 \
    > "${work}/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    curl -fsS "${base}/readyz" > /dev/null 2>&1 && break
    kill -0 "${server_pid}" 2>/dev/null || { cat "${work}/serve.log"; exit 1; }
    sleep 0.2
done
curl -fsS "${base}/readyz" > /dev/null

fuzz() {
    local who="$1"
    shift
    echo "== schemathesis (${who})"
    # from the scratch directory: schemathesis keeps state in ./.schemathesis
    (cd "${work}" && schemathesis --no-color --config-file "${repo}/.ci/schemathesis.toml" run "${base}/openapi.json" \
        --generation-database none \
        --seed "${seed}" \
        --max-examples "${max_examples}" \
        --workers 1 \
        "$@")
}
# Every check runs, but `ignored_auth` (made-up tokens) in a pass of its
# own, last: failed authentications lock the client's address out for a
# minute (429, on purpose), which would turn the rest of a pass into 429s.
status=0
# The generated client first, while the fuzzer has not yet changed grants,
# clearances or data under it.
echo "== generated client (openapi-python-client)"
KX_BASE="${base}" KX_TOKEN="${admin_token}" KX_WORK="${work}" \
    python3 tests/generated_client.py || status=1

all=(--checks all --exclude-checks ignored_auth)
fuzz admin "${all[@]}" -H "Authorization: Bearer ${admin_token}" || status=1
fuzz read "${all[@]}" -H "Authorization: Bearer ${read_token}" || status=1
# no key at all: not even one the generator makes up for the bearer scheme
fuzz "no key" "${all[@]}" --generation-with-security-parameters false || status=1

fuzz "made-up keys" --checks ignored_auth -H "Authorization: Bearer ${read_token}" || status=1

if [[ "${status}" != 0 ]]; then
    echo "server log: ${work}/serve.log (last lines)"
    tail -n 40 "${work}/serve.log"
fi
exit "${status}"
