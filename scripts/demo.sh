#!/usr/bin/env bash
# The quick-start demo: the same `aigc` commands a user would type, on the bundled defaults.
# Part 1, the main job: ad copy for a few venues from their attributes with the bundled `e2e-copy` model,
#   each as ranked candidates with their score cards (constraints, slot fidelity, keywords, fluency...).
# Part 2, your own model: get the E2E data (from ../shared/data when present, else its public source),
#   prepare it, train a small GPT for about two minutes (resumes if an earlier demo was cut short), generate.
# Part 3, customer service: the demo bank's knowledge base and customers, one conversation with the assistant
#   (an answer with its sources, a clarifying question, a handoff ticket for the studio's agent console).
# Part 4, the studio: `aigc serve` on the bundled model, at http://127.0.0.1:8000/ (AIGC_DEMO_SERVE=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
work=var/demo
mkdir -p "$work"

echo "== 1. ad copy with the bundled model (e2e-copy) =="
aigc write ad-copy --attributes "name[The Eagle], eatType[coffee shop], food[French], priceRange[moderate], area[riverside], familyFriendly[yes], near[Burger King]" \
  --keywords riverside --n 4 --num-beams 4
aigc write ad-copy --attributes "name[The Mill], eatType[pub], food[Italian], priceRange[cheap], area[city centre], familyFriendly[no]" \
  --forbid expensive --n 4 --num-beams 4
aigc write product-description --attributes "name[Blue Lagoon], eatType[restaurant], food[Japanese], customer rating[5 out of 5], near[Rainbow Vegetarian Café]" \
  --audience "families on holiday" --n 4 --num-beams 4

echo
echo "== 2. train a model of your own =="
mirror_args=()
if [ -d ../shared/data/e2e ]; then mirror_args=(--mirror ../shared/data); fi
aigc data download e2e --out "$work/raw" "${mirror_args[@]}"

if [ ! -f "$work/e2e-data/dataset.json" ]; then
  aigc data prepare "$work/raw/trainset.csv" --val-input "$work/raw/devset.csv" --source-col mr --target-col ref \
    --delexicalize name,near --tokenizer bpe --vocab-size 2048 --out "$work/e2e-data"
fi

if [ ! -f "$work/e2e-gpt/model.safetensors" ]; then
  resume=()
  if [ -f "$work/e2e-gpt/checkpoint/checkpoint.pt" ]; then resume=(--resume); fi
  if [ ${#resume[@]} -gt 0 ]; then
    aigc train --data "$work/e2e-data" --out "$work/e2e-gpt" --resume
  else
    aigc train --data "$work/e2e-data" --config recipes/demo-e2e.toml --out "$work/e2e-gpt"
  fi
fi

mr="name[The Golden Palace], eatType[restaurant], food[Chinese], area[city centre], familyFriendly[yes]"
echo
echo "attributes: $mr"
aigc generate --model "$work/e2e-gpt" --prompt "$mr" --n 3 --temperature 0.7 --top-k 40 --seed 7

echo
echo "Everything the demo wrote is under $work/:"
echo "  raw data       $work/raw"
echo "  prepared data  $work/e2e-data   (aigc data inspect $work/e2e-data)"
echo "  model + logs   $work/e2e-gpt    (metrics.jsonl, loss.png, README.md model card)"

# Part 3: customer service. The demo bank's knowledge base (its intent router is trained from the FAQ as it is
# added, in seconds), three demo customers with histories, and one conversation typed into `aigc support chat`.
echo
echo "== 3. customer service: a support conversation =="
aigc support kb add src/aigc_studio/support/demo/bank_faq.csv
aigc support customers load src/aigc_studio/support/demo/customers.json
printf '%s\n' "Hi" "My new card still hasn't arrived" "I want to make a transfer" "2" "Can I talk to a human, please?" \
  | aigc support chat --customer C1001
aigc support tickets --status open

# Part 4: product design sketches from the bundled diffusion model, each PNG carrying its provenance.
echo
echo "== 4. design sketches: four sneakers =="
aigc sketch --model fashion-sketch --label sneaker --n 4 --seed 7 --out "$work/sketches"
aigc provenance verify "$work/sketches/000.png"

# Part 5: the web studio and the OpenAI-compatible API on the bundled models (Ctrl-C stops it).
# AIGC_DEMO_SERVE=0 skips it (for scripted runs that must end).
if [ "${AIGC_DEMO_SERVE:-1}" = 1 ]; then
  echo
  echo "== 5. the studio and the API =="
  echo "Open http://127.0.0.1:${AIGC_DEMO_PORT:-8000}/ in a browser (API docs at /docs); Ctrl-C stops the server."
  exec aigc serve --port "${AIGC_DEMO_PORT:-8000}" --model e2e-copy --model fashion-sketch
fi
