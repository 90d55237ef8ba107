"""Token states to one sentence vector, with sentence-transformers' pooling modes.

The math mirrors `sentence_transformers` Pooling/Dense/Normalize on padded batches (right
padding); tests/runtime/reference proves the results equal. torch is imported inside the
functions so that reading the settings stays off the start-up critical path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modeldeploy_runtime.errors import LoadError

if TYPE_CHECKING:
    from torch import Tensor, nn

MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# The legacy boolean keys, in the order sentence-transformers concatenates their vectors.
_LEGACY = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# Activations a Dense module may name; anything else is refused rather than imported.
ACTIVATIONS = {
    "torch.nn.modules.activation.Tanh": "tanh",
    "torch.nn.modules.linear.Identity": "identity",
    "torch.nn.modules.activation.ReLU": "relu",
    "torch.nn.modules.activation.Sigmoid": "sigmoid",
    "torch.nn.modules.activation.GELU": "gelu",
}


@dataclass(frozen=True)
class PoolingSettings:
    """1_Pooling/config.json: the modes (concatenated in order) and include_prompt."""

    modes: tuple[str, ...] = ("mean",)
    include_prompt: bool = True

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PoolingSettings:
        """Both the current (`pooling_mode`) and the legacy (`pooling_mode_*`) formats."""
        raw = config.get("pooling_mode")
        if raw is None:
            modes = tuple(mode for key, mode in _LEGACY.items() if config.get(key))
        else:
            modes = (raw,) if isinstance(raw, str) else tuple(str(m) for m in raw)
        unknown = [m for m in modes if m not in MODES]
        if unknown:
            raise LoadError(
                f"1_Pooling/config.json asks for pooling mode {unknown[0]!r}; supported: "
                + ", ".join(MODES)
            )
        return cls(modes or ("mean",), bool(config.get("include_prompt", True)))


def apply_activation(name: str, x: Tensor) -> Tensor:
    """The activation `name` (one of ACTIVATIONS' values) applied to x."""
    import torch

    functions = {"tanh": torch.tanh, "identity": lambda t: t, "relu": torch.relu,
                 "sigmoid": torch.sigmoid, "gelu": torch.nn.functional.gelu}
    out: Tensor = functions[name](x)
    return out


def activation_name(path: str, where: str) -> str:
    """The short name of a torch activation class path, or LoadError naming `where`."""
    if path not in ACTIVATIONS:
        raise LoadError(
            f"{where} names activation {path!r}, which the runtime does not run; supported: "
            + ", ".join(ACTIVATIONS)
        )
    return ACTIVATIONS[path]


def pool(settings: PoolingSettings, hidden: Tensor, mask: Tensor, prompt_length: int = 0) -> Tensor:
    """[B, T, H] token states and [B, T] attention mask -> [B, H * len(modes)]."""
    import torch

    if prompt_length and not settings.include_prompt:
        mask = mask.clone()
        mask[:, :prompt_length] = 0
    vectors: list[Tensor] = []
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    for mode in settings.modes:
        if mode == "cls":
            first = mask.to(torch.int).argmax(dim=1)
            vectors.append(hidden[torch.arange(hidden.shape[0]), first])
        elif mode == "max":
            vectors.append(hidden.masked_fill(weights == 0, float("-inf")).max(dim=1).values)
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            summed = (hidden * weights).sum(dim=1)
            counts = weights.sum(dim=1).clamp(min=1e-9)
            vectors.append(summed / (counts if mode == "mean" else torch.sqrt(counts)))
        elif mode == "weightedmean":
            # Position weights 1..T (right padding: no pad offset to subtract).
            positions = torch.arange(1, hidden.shape[1] + 1, device=hidden.device,
                                     dtype=hidden.dtype).view(1, -1, 1)
            weighted = weights * positions
            total = weighted.sum(dim=1).clamp(min=1e-9)
            vectors.append((hidden * weighted).sum(dim=1) / total)
        else:  # lasttoken: the last attended position of each row
            seq = hidden.shape[1]
            values, flipped = mask.flip(1).max(1)
            last = torch.where(values == 0, seq - 1, seq - flipped - 1)
            vectors.append((hidden * weights)[torch.arange(hidden.shape[0]), last])
    return torch.cat(vectors, dim=-1)


def build_dense(
    layers: list[tuple[int, int, bool]], states: list[dict[str, Tensor]]
) -> list[nn.Linear]:
    """Linear layers for Dense modules, adopting their saved `linear.weight`/`linear.bias`."""
    import torch

    built = []
    for (d_in, d_out, bias), state in zip(layers, states, strict=True):
        linear = torch.nn.Linear(d_in, d_out, bias=bias)
        linear.load_state_dict(
            {k.removeprefix("linear."): v for k, v in state.items()}, strict=True)
        built.append(linear.eval())
    return built
