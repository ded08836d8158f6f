# The MMLU loader and prompt the offline MMLU YAMLs name with `!function`.
from tokclean.evaluation import load_mmlu as mmlu


def mmlu_text(doc: dict) -> str:
    "lm-eval's MMLU `doc_to_text` template, rendered in Python: lm-eval compiles a Jinja template again for every document it renders."
    a, b, c, d = doc["choices"]
    return f"{doc['question'].strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"
