"""Tuning on STS-B dev (never a test set): two strategies over one scorer, one candidate type and
one set of output writers.

- :mod:`.candidate`: :class:`Candidate`, a frozen partial EncoderConfig (searchable fields only).
- :mod:`.scorer`: :class:`DevScorer`, STS-B dev rows through the embedding cache, forward calls counted.
- :mod:`.grid`: ``tpembed sweep``, every TP exit x output layer; :mod:`.grid_outputs` writes it.
- :mod:`.ascent` / :mod:`.space`: ``tpembed search``, coordinate ascent; :mod:`.search_outputs` writes it;
  :mod:`.ablation` scores a recipe without each lever and times it.
"""

from __future__ import annotations

from .ablation import ablation, time_ratio
from .ascent import Evaluation, SearchResult, coordinate_ascent, load_for_search, run_search
from .candidate import Candidate, Plan, plan_settings
from .grid import SweepResult, check_grid, default_exits, load_for_sweep, plan_grid, row_candidate, run_sweep
from .grid_outputs import format_grid, write_best_yaml, write_grid, write_heatmap
from .layers import ANY_MODEL, check_output_layers, output_layers, parse_layers, refusal
from .loading import load_for_tuning
from .outputs import entry_name, short_model_name, write_config_file, write_csv, yaml_entry
from .scorer import DEV_TASK, DevScorer, ForwardCount, count_forwards, dev_data, dev_pairs, encode_layers_cached
from .search_outputs import format_ranked, write_outputs
from .space import (AXES, SearchSpace, axis_settings, check_space, parse_cp_layers, parse_demos, parse_filters, parse_floats,
                    parse_prompt_options, parse_tp_options)

__all__ = [
    "ANY_MODEL", "AXES", "DEV_TASK", "Candidate", "DevScorer", "Evaluation", "ForwardCount", "Plan", "SearchResult", "SearchSpace",
    "SweepResult", "ablation", "axis_settings", "check_grid", "check_output_layers", "check_space",
    "coordinate_ascent", "count_forwards", "default_exits", "dev_data", "dev_pairs", "encode_layers_cached",
    "entry_name", "format_grid", "format_ranked", "load_for_search", "load_for_sweep", "load_for_tuning",
    "output_layers", "parse_cp_layers", "parse_demos", "parse_filters", "parse_floats", "parse_layers", "parse_prompt_options",
    "parse_tp_options", "plan_grid", "plan_settings", "refusal", "row_candidate", "run_search", "run_sweep",
    "short_model_name", "time_ratio", "write_best_yaml", "write_config_file", "write_csv", "write_grid",
    "write_heatmap", "write_outputs", "yaml_entry",
]
