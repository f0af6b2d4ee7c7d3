#!/usr/bin/env bash
# The paper's entry point: bash run.sh CONFIG_NAME [CONFIG_FILE]
set -euo pipefail
name="${1:?usage: bash run.sh CONFIG_NAME [CONFIG_FILE]}"
file="${2:-configs/config.yaml}"
shift $(( $# >= 2 ? 2 : 1 ))
exec tpembed run "$name" --config "$file" "$@"
