#!/usr/bin/env bash
# The quick-start demo: the same `aigc` commands a user would type, on the bundled defaults.
# 1. get the E2E restaurant data set (from ../shared/data when present, else its public source)
# 2. prepare it (clean, de-duplicate, split by meaning representation, BPE tokenizer, token shards)
# 3. train a small conditional GPT for about two minutes (resumes if a previous demo run was cut short)
# 4. write ad copy for a few venues from their attributes
set -euo pipefail
cd "$(dirname "$0")/.."
work=var/demo
mkdir -p "$work"

mirror_args=()
if [ -d ../shared/data/e2e ]; then mirror_args=(--mirror ../shared/data); fi
aigc data download e2e --out "$work/raw" "${mirror_args[@]}"

if [ ! -f "$work/e2e-data/dataset.json" ]; then
  aigc data prepare "$work/raw/trainset.csv" --source-col mr --target-col ref \
    --tokenizer bpe --vocab-size 2048 --out "$work/e2e-data"
fi

resume=()
if [ -f "$work/e2e-gpt/checkpoint/checkpoint.pt" ] && [ ! -f "$work/e2e-gpt/model.safetensors" ]; then resume=(--resume); fi
if [ ! -f "$work/e2e-gpt/model.safetensors" ] || [ ${#resume[@]} -gt 0 ]; then
  aigc train --data "$work/e2e-data" --arch gpt --config recipes/demo-e2e.toml --out "$work/e2e-gpt" "${resume[@]}"
fi

for mr in \
  "name[The Eagle], eatType[coffee shop], food[French], priceRange[moderate], area[riverside], familyFriendly[yes], near[Burger King]" \
  "name[The Mill], eatType[pub], food[Italian], priceRange[cheap], area[city centre], familyFriendly[no]" \
  "name[Zizzi], eatType[restaurant], customer rating[5 out of 5], near[The Sorrento]"; do
  echo
  echo "attributes: $mr"
  aigc generate --model "$work/e2e-gpt" --prompt "$mr" --n 3 --temperature 0.7 --top-k 40 --seed 7
done

echo
echo "Everything the demo wrote is under $work/:"
echo "  raw data       $work/raw"
echo "  prepared data  $work/e2e-data   (aigc data inspect $work/e2e-data)"
echo "  model + logs   $work/e2e-gpt    (metrics.jsonl, loss.png, README.md model card)"
