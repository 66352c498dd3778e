#!/bin/bash
# Peak RSS of a full-fine-tune DPO run (2 steps, 48 pairs, validation 16 pairs) on a random 50.7M-parameter
# Llama (768 wide, 8 layers), for each source tree given, alternating: the frozen reference copies are
# the difference (before: two deep copies of the policy kept all run; after: one, freed once the
# reference log-probs are cached).
#
#   bench/dpo_full_reference_rss.sh OLD_TREE NEW_TREE     # e.g. a `git worktree` at the old commit, and .
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$repo/.venv/bin/python}
work=$(mktemp -d)
export TUNERY_HOME=$work/home HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
PYTHONPATH=$repo/tests "$py" - "$work/model" <<'PY'
import sys
from pathlib import Path

import torch
from builders import build_tiny_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

out = Path(sys.argv[1])
out.mkdir()
build_tiny_tokenizer(out)
config = LlamaConfig(vocab_size=400, hidden_size=768, intermediate_size=2048, num_hidden_layers=8,
                     num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=512,
                     bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=True)
torch.manual_seed(0)
LlamaForCausalLM(config).save_pretrained(out)
PY
head -48 "$repo/examples/signoff-prefs/train.jsonl" > "$work/train.jsonl"
head -16 "$repo/examples/signoff-prefs/valid.jsonl" > "$work/valid.jsonl"
for round in 1 2; do
  for tree in "$@"; do
    rm -rf "$work/run" "$work/home/cache"
    PYTHONPATH=$tree /usr/bin/time -f "$tree round $round: peak_rss_kb=%M wall_s=%e" "$py" -m tunery train \
      --model "$work/model" --method dpo --adapter full --data "$work/train.jsonl" --validation "$work/valid.jsonl" \
      --output "$work/run" max_steps=2 batch_size=4 final_eval=false eval_every=2 save_every=2 keep_checkpoints=1 \
      > "$work/log" 2>&1 || { tail -20 "$work/log"; exit 1; }
    tail -1 "$work/log"
  done
done
uptime
rm -rf "$work"
