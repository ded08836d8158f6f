# What the offline task YAMLs name with `!function` (lm-eval imports this file by its path).
# The built-in tasks' own prompt and scoring functions are imported from lm_eval, so the offline twins
# format and score exactly as the built-in tasks do; only the rows come from local files.
from lm_eval.tasks.hellaswag.utils import process_docs as hellaswag_docs
from lm_eval.tasks.logiqa.utils_logiqa import doc_to_target as logiqa_target, doc_to_text as logiqa_text
from lm_eval.tasks.truthfulqa.utils import process_results_mc2 as truthfulqa_mc2_results

from tokclean.evaluation import (language_mean, load_arc_challenge as arc_challenge, load_boolq as boolq,
                                 load_hellaswag as hellaswag, load_logiqa as logiqa, load_truthfulqa as truthfulqa,
                                 load_tydiqa as tydiqa, tydiqa_results)


def logiqa_gold(doc) -> str:
    "The correct option's text: the continuation whose loss the `items` suite measures."
    return doc["options"][logiqa_target(doc)]
