"""The floor for start-up: import torch + tokenizers, read the safetensors file, tokenize,
one forward pass written with torch.nn.functional on the raw tensors. No server, no
framework, no validation: nothing a real start-up could skip.

Usage: python bench/floor_minilm.py MODEL_DIR   (prints "done" after the forward pass)
"""

from __future__ import annotations

import sys

import safetensors.torch
import tokenizers
import torch
import torch.nn.functional as F


def main(model_dir: str) -> None:
    w = safetensors.torch.load_file(f"{model_dir}/model.safetensors")
    tok = tokenizers.Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tok.no_padding()
    enc = tok.encode("hello world")
    ids = torch.tensor([enc.ids])
    heads, hidden = 12, 384
    with torch.inference_mode():
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][: ids.shape[1]][None]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = F.layer_norm(x, (hidden,), w["embeddings.LayerNorm.weight"],
                         w["embeddings.LayerNorm.bias"], 1e-12)
        for i in range(6):
            p = f"encoder.layer.{i}."

            def lin(name: str, t: torch.Tensor, p: str = p) -> torch.Tensor:
                return F.linear(t, w[p + name + ".weight"], w[p + name + ".bias"])

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.view(1, -1, heads, hidden // heads).transpose(1, 2)

            q = split(lin("attention.self.query", x))
            k = split(lin("attention.self.key", x))
            v = split(lin("attention.self.value", x))
            ctx = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, -1, hidden)
            x = F.layer_norm(lin("attention.output.dense", ctx) + x, (hidden,),
                             w[p + "attention.output.LayerNorm.weight"],
                             w[p + "attention.output.LayerNorm.bias"], 1e-12)
            h = F.gelu(lin("intermediate.dense", x))
            x = F.layer_norm(lin("output.dense", h) + x, (hidden,),
                             w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"],
                             1e-12)
        embedding = F.normalize(x.mean(dim=1), dim=1)
    assert embedding.shape == (1, hidden)
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
