"""`python -m hf_kd.trainers`: the generated block of docs/METHODS.md (terms and default weights)."""

from hf_kd.trainers import methods_block

print(methods_block())
