"""The nanochat reference model in PyTorch eager, to compare training speed with the Burn trainer.

Same architecture as reference/nanochat/src/train.rs (token embedding, RMSNorm without weights,
fused QKV, rotary embeddings, QK-norm, causal attention, ReLU^2 MLP, untied head, tanh
soft-capped logits), same initialisation, same AdamW groups and schedule. The sizes and learning
rates are read from the constants in train.rs and prepare.rs, so both sides always train the
same model. Tokens are bytes.

usage: python nanochat_torch.py --seconds 60 [--data FILE] [--threads 2] [--manual-attention]
prints a progress line every few seconds and, at the end, `tokens_per_second: N`.
"""

import argparse
import math
import re
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent / "reference" / "nanochat" / "src"


def read_constants(path):
    """`const NAME: type = value;` lines of a Rust file, as Python numbers."""
    constants = {}
    for match in re.finditer(r"^(?:pub )?const ([A-Z_0-9]+): (\w+) = ([0-9_.e-]+);", path.read_text(), re.M):
        name, kind, value = match.groups()
        value = value.replace("_", "")
        constants[name] = int(value) if kind in ("usize", "u64") else float(value)
    return constants


def rms_norm(x):
    return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + 1e-6)


class Attention(nn.Module):
    def __init__(self, dim, n_head, manual):
        super().__init__()
        self.n_head, self.manual = n_head, manual
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x, cos, sin):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        q, k = rms_norm(rotate(q, cos, sin)), rms_norm(rotate(k, cos, sin))
        if self.manual:
            # The same formulation as the Burn trainer: scores, additive causal mask, exp, normalise.
            scores = (q / math.sqrt(q.shape[-1])) @ k.transpose(2, 3)
            mask = torch.full((t, t), float("-inf")).triu(1)
            weights = (scores + mask).exp()
            y = (weights / weights.sum(-1, keepdim=True)) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


class Block(nn.Module):
    def __init__(self, dim, n_head, mlp_ratio, manual):
        super().__init__()
        self.attn = Attention(dim, n_head, manual)
        self.fc = nn.Linear(dim, mlp_ratio * dim, bias=False)
        self.mlp_proj = nn.Linear(mlp_ratio * dim, dim, bias=False)

    def forward(self, x, cos, sin):
        x = x + self.attn(rms_norm(x), cos, sin)
        return x + self.mlp_proj(F.relu(self.fc(rms_norm(x))).square())


class Gpt(nn.Module):
    def __init__(self, c, vocab, manual):
        super().__init__()
        dim = c["MODEL_DIM"]
        self.head_dim, self.softcap, self.rope_base = c["HEAD_DIM"], c["SOFTCAP"], c["ROPE_BASE"]
        self.embedding = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(
            Block(dim, dim // c["HEAD_DIM"], c["MLP_RATIO"], manual) for _ in range(c["DEPTH"])
        )
        self.head = nn.Linear(dim, vocab, bias=False)
        bound = math.sqrt(3.0 / dim)
        with torch.no_grad():
            nn.init.normal_(self.embedding.weight, std=1.0)
            nn.init.normal_(self.head.weight, std=0.001)
            for block in self.blocks:
                nn.init.uniform_(block.attn.qkv.weight, -bound, bound)
                nn.init.zeros_(block.attn.proj.weight)
                nn.init.uniform_(block.fc.weight, -bound, bound)
                nn.init.zeros_(block.mlp_proj.weight)

    def forward(self, tokens):
        t = tokens.shape[1]
        half = self.head_dim // 2
        freq = self.rope_base ** (-torch.arange(0, half, dtype=torch.float32) * 2 / self.head_dim)
        angle = torch.arange(t, dtype=torch.float32)[:, None] * freq[None, :]
        cos, sin = angle.cos(), angle.sin()
        x = rms_norm(self.embedding(tokens))
        for block in self.blocks:
            x = block(x, cos, sin)
        logits = self.head(rms_norm(x))
        return self.softcap * torch.tanh(logits / self.softcap)


def lr_multiplier(progress, c):
    if progress < c["WARMUP_RATIO"]:
        return progress / c["WARMUP_RATIO"]
    if progress < 1.0 - c["WARMDOWN_RATIO"]:
        return 1.0
    remaining = min(max((1.0 - progress) / c["WARMDOWN_RATIO"], 0.0), 1.0)
    return remaining + (1.0 - remaining) * c["FINAL_LR_FRAC"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--data", type=Path, help="train on random windows of this file (default: random bytes)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--manual-attention", action="store_true", help="attention written out, as in the Burn trainer")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    c = read_constants(ROOT / "train.rs")
    c.update(read_constants(ROOT / "prepare.rs"))
    seq, batch, vocab = c["MAX_SEQ_LEN"], c["BATCH_SIZE"], c["VOCAB_SIZE"]
    model = Gpt(c, vocab, args.manual_attention)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.3f}M parameters, batch {batch} x {seq}")

    betas = (c["ADAM_BETA1"], c["ADAM_BETA2"])
    matrices = [p for block in model.blocks for p in block.parameters()]
    groups = [
        dict(params=list(model.embedding.parameters()), lr=c["EMBEDDING_LR"], weight_decay=0.0),
        dict(params=matrices, lr=c["MATRIX_LR"], weight_decay=c["WEIGHT_DECAY"]),
        dict(params=list(model.head.parameters()), lr=c["UNEMBEDDING_LR"], weight_decay=0.0),
    ]
    for group in groups:
        group["initial_lr"] = group["lr"]
    optimizer = torch.optim.AdamW(groups, betas=betas, eps=1e-8)

    if args.data:
        corpus = torch.frombuffer(bytearray(args.data.read_bytes()), dtype=torch.uint8).long()
    generator = torch.Generator().manual_seed(args.seed)

    def next_batch():
        if not args.data:
            window = torch.randint(0, vocab, (batch, seq + 1), generator=generator)
        else:
            starts = torch.randint(0, len(corpus) - seq - 1, (batch,), generator=generator)
            window = torch.stack([corpus[s : s + seq + 1] for s in starts.tolist()])
        return window[:, :-1], window[:, 1:]

    training_seconds, steps, last_report = 0.0, 0, time.time()
    while training_seconds < args.seconds:
        started = time.time()
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * lr_multiplier(training_seconds / args.seconds, c)
        inputs, targets = next_batch()
        loss = F.cross_entropy(model(inputs).view(-1, vocab), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
        training_seconds += time.time() - started
        steps += 1
        if time.time() - last_report >= 5.0:
            print(f"step {steps:05d} | loss {loss_value:.4f} | {steps * batch * seq / training_seconds:.0f} tok/s | {training_seconds:.1f}s", flush=True)
            last_report = time.time()
    print(f"final_loss: {loss_value:.4f}")
    print(f"num_steps: {steps}")
    print(f"tokens_per_second: {steps * batch * seq / training_seconds:.0f}")


if __name__ == "__main__":
    main()
