"""The baseline: start Python, SentenceTransformer(path), encode one sentence.

Usage: python bench/baseline_st.py MODEL_DIR   (prints "done" after the encode)
"""

from __future__ import annotations

import sys

from sentence_transformers import SentenceTransformer

model = SentenceTransformer(sys.argv[1], device="cpu")
assert model.encode(["hello world"]).shape == (1, 384)
print("done", flush=True)
