# The MMLU loader the offline MMLU YAMLs name with `!function`.
from tokclean.evaluation import load_mmlu as mmlu
