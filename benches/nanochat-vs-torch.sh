#!/usr/bin/env bash
# Training throughput of the Burn reference trainer against the same model in PyTorch eager, on
# this machine's CPU: both train for SECONDS on the same text, with the sizes and learning rates
# of reference/nanochat/src/train.rs, and the script prints tokens/s for each and their ratio.
#
# usage: benches/nanochat-vs-torch.sh [SECONDS] [--manual-attention]
#   SECONDS             training time of each side (default 60)
#   --manual-attention  PyTorch writes attention out as the Burn trainer does, instead of
#                       calling F.scaled_dot_product_attention
#
# The first run creates benches/.venv and installs torch from PyPI (large).
set -euo pipefail

seconds=${1:-60}
torch_flags=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
trainer=$root/reference/nanochat
venv=$here/.venv
threads=$(nproc)

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "installing torch into $venv (once)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch numpy
fi

# Both sides train on the same bytes: the trainer's own source code.
corpus=$(mktemp)
trap 'rm -f "$corpus"' EXIT
cat "$trainer"/src/*.rs "$trainer"/src/prepare/*.rs "$here"/*.py > "$corpus"

(cd "$trainer" && cargo build --release --quiet)
target_dir=${CARGO_TARGET_DIR:-$trainer/target}
constant() { sed -n "s/^\(pub \)\{0,1\}const $1: usize = \([0-9_]*\);.*/\2/p" "$trainer/src/$2" | tr -d _; }
batch=$(constant BATCH_SIZE train.rs)
seq=$(constant MAX_SEQ_LEN prepare.rs)

echo "== burn ($seconds s)" >&2
burn_log=$("$target_dir/release/nanochat" --budget "$seconds" --data "path:$corpus")
echo "$burn_log" | grep -E '^(step|val_bpb|training_seconds|num_steps|peak_vram_mb)' >&2
burn_steps=$(echo "$burn_log" | sed -n 's/^num_steps: *//p')
burn_seconds=$(echo "$burn_log" | sed -n 's/^training_seconds: *//p')
burn_tps=$(python3 -c "print(round($burn_steps * $batch * $seq / $burn_seconds))")

echo "== pytorch eager ($seconds s, $threads threads)" >&2
torch_log=$("$venv/bin/python" "$here/nanochat_torch.py" --seconds "$seconds" --data "$corpus" \
    --threads "$threads" $torch_flags)
echo "$torch_log" | grep -E '^(torch|step|final_loss|num_steps)' >&2
torch_tps=$(echo "$torch_log" | sed -n 's/^tokens_per_second: *//p')

echo "burn_tokens_per_second:  $burn_tps"
echo "torch_tokens_per_second: $torch_tps"
python3 -c "print(f'ratio_burn_over_torch:   {$burn_tps / $torch_tps:.2f}')"
