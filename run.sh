#!/usr/bin/env bash
# The paper's entry point: bash run.sh CONFIG_NAME [CONFIG_FILE] [tpembed run options ...]
# Without CONFIG_FILE the named configs shipped with tpembed are used (configs/config.yaml links to them).
set -euo pipefail
name="${1:?usage: bash run.sh CONFIG_NAME [CONFIG_FILE] [options]}"
shift
if [[ $# -gt 0 && "$1" != -* ]]; then
    file="$1"
    shift
    exec tpembed run "$name" --config "$file" "$@"
fi
exec tpembed run "$name" "$@"
