"""GPU-fit check and capacity plan: no expensive GPU node is started for a model that cannot run.

`facts` says what a model needs (from the spec, a local `config.json` or a table of known models);
`plan` checks it against one replica's GPUs and prices it. Pure, except `read_model_config`.
"""

from llm_operator.capacity.facts import FactsError, ModelFacts, known_model, read_model_config
from llm_operator.capacity.plan import RUNTIME_RESERVE_GIB, CapacityPlan, Verdict, format_table, plan

__all__ = [
    "RUNTIME_RESERVE_GIB",
    "CapacityPlan",
    "FactsError",
    "ModelFacts",
    "Verdict",
    "format_table",
    "known_model",
    "plan",
    "read_model_config",
]
