#!/usr/bin/env bash
# The GPU run in one call (issue 27, item 4): within 8 minutes on one GPU, writes $OUT/gpu_check.json.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # OUT_DIR default: $OUT, else results/gpu
#
# Needs the project installed with a CUDA build of torch (bash install.sh on a machine whose torch
# sees the GPU), the packaged models and ../shared/senteval (or $TPEMBED_DATA). Steps, each under
# its own time limit, each recorded (exit code, seconds) whether it passes or not:
#   1. the CUDA tests: CUDA vectors (bf16 and fp32) equal CPU fp32 within bf16's tolerance for
#      vanilla, TP, CP, attention sum, layer lists, prefix cache on/off (tests/test_low_precision.py);
#   2. benchmarks/speed.py on both packaged models in bf16 on CUDA (vs the paper's path);
#   3. benchmarks/serve_load.py: the server under 1-64 clients on CUDA bf16, answers checked;
#   4. a corpus run, Ray engine, one actor with --gpus-per-worker 1, checked against the local engine.
# Without a GPU it stops at once with exit code 2 (it never runs the GPU parts on a CPU).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-results/gpu}}
mkdir -p "$OUT_DIR"
export TPEMBED_DATA=${TPEMBED_DATA:-$(cd .. && pwd)/shared/senteval}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}

if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device visible to torch; nothing run" >&2
  exit 2
fi

declare -A RC SECONDS_TAKEN
step() {  # step NAME LIMIT_S COMMAND...
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s): $*"
  local start=$(date +%s)
  timeout "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
  RC[$name]=$?
  SECONDS_TAKEN[$name]=$(( $(date +%s) - start ))
  tail -n 25 "$OUT_DIR/$name.log"
  echo "== $name: exit ${RC[$name]} in ${SECONDS_TAKEN[$name]} s"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT_DIR/gpu.txt" 2>/dev/null \
  || python -c "import torch; print(torch.cuda.get_device_name(0))" > "$OUT_DIR/gpu.txt"

step cuda_tests 120 python -m pytest -q -p no:cacheprovider tests/test_low_precision.py --junitxml "$OUT_DIR/cuda_tests.xml"
step speed_smollm2 75 python benchmarks/speed.py --model smollm2-135m --device cuda --dtype bfloat16 \
  --methods ke --limit 2048 --batch-size 64 --repeats 3 --out "$OUT_DIR/speed_smollm2.json"
step speed_gemma3 75 python benchmarks/speed.py --model gemma3-270m --device cuda --dtype bfloat16 \
  --methods ke --limit 2048 --batch-size 64 --repeats 3 --out "$OUT_DIR/speed_gemma3.json"
step serve_load 75 python benchmarks/serve_load.py --config smollm2-135m-tp --device cuda --dtype bfloat16 \
  --requests 400 --clients 1 16 64 --unbatched-clients 16 --out "$OUT_DIR/serve_load.json"
step corpus_ray_gpu 100 python benchmarks/gpu_corpus.py --rows 4000 --out "$OUT_DIR/corpus.json"

steps=""
for name in "${!RC[@]}"; do steps="$steps $name=${RC[$name]}:${SECONDS_TAKEN[$name]}"; done
python - "$OUT_DIR" $steps <<'EOF'
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path
out = Path(sys.argv[1])
def load(name):
    p = out / name
    return json.loads(p.read_text()) if p.exists() else None
tests = None
if (out / "cuda_tests.xml").exists():
    suite = ET.parse(out / "cuda_tests.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    tests = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
steps = {}
for arg in sys.argv[2:]:  # NAME=EXIT_CODE:SECONDS
    name, figures = arg.split("=")
    rc, seconds = figures.split(":")
    steps[name] = {"exit_code": int(rc), "seconds": int(seconds), "log": f"{name}.log"}
report = {"gpu": (out / "gpu.txt").read_text().strip(), "cuda_tests": tests,
          "speed": {"smollm2-135m": load("speed_smollm2.json"), "gemma3-270m": load("speed_gemma3.json")},
          "serve_load": load("serve_load.json"), "corpus": load("corpus.json"), "steps": steps}
(out / "gpu_check.json").write_text(json.dumps(report, indent=1))
print("wrote", out / "gpu_check.json")
EOF
failed=0
for name in "${!RC[@]}"; do [ "${RC[$name]}" -ne 0 ] && { echo "FAILED: $name (exit ${RC[$name]})"; failed=1; }; done
exit $failed
