"""Decisions of text generation, free of torch and I/O: how many tokens a request may
generate, which settings reach transformers' `generate`, and where a stop sequence cuts
the streamed text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeldeploy_runtime.protocol import BadRequest

# Tokens generated per warm-up input: enough to run prefill and the cached decode path.
WARMUP_TOKENS = 4
# What a client told to come back later waits, in seconds (the Retry-After header).
RETRY_AFTER_SECONDS = 1


class Busy(Exception):
    """Every generation slot is taken; answered 503 with Retry-After."""


@dataclass(frozen=True)
class Sampling:
    """What one request asks of the decoder (None: the model's generation_config decides)."""

    max_tokens: int | None = None
    min_tokens: int = 0
    temperature: float | None = None  # 0: greedy
    top_p: float | None = None
    stop: tuple[str, ...] = ()


GREEDY = Sampling(temperature=0.0)


def budget(prompt_tokens: int, sampling: Sampling, context: int, cap: int) -> int:
    """The number of new tokens to allow, or a BadRequest naming the field and the limit.

    `context` is the model's window (prompt + completion); `cap` the server's per-request
    ceiling (runtime.generation.maxTokens). Unset max_tokens fills what is left, up to cap.
    """
    if prompt_tokens == 0:
        raise BadRequest("prompt: it tokenizes to 0 tokens; send some text to continue")
    room = context - prompt_tokens
    if room <= 0:
        raise BadRequest(
            f"prompt: it has {prompt_tokens} tokens; this model's context length is {context} "
            "tokens (prompt and completion together), leaving no room to generate: shorten "
            "the prompt"
        )
    requested = sampling.max_tokens
    if requested is None:
        chosen = min(cap, room)
    elif requested > cap:
        raise BadRequest(
            f"max_tokens: {requested} is more than this server allows per request ({cap}, "
            "spec.runtime.generation.maxTokens): send at most that"
        )
    elif requested > room:
        raise BadRequest(
            f"max_tokens: the prompt has {prompt_tokens} tokens and max_tokens is {requested}, "
            f"{prompt_tokens + requested} in all; this model's context length is {context} "
            f"tokens: lower max_tokens to {room} or shorten the prompt"
        )
    else:
        chosen = requested
    if sampling.min_tokens > chosen:
        raise BadRequest(
            f"min_tokens: {sampling.min_tokens} is more than the {chosen} tokens this request "
            "may generate (max_tokens and the context length): lower min_tokens"
        )
    return chosen


def generate_kwargs(sampling: Sampling, max_new_tokens: int) -> dict[str, Any]:
    """Keyword arguments for `model.generate` on top of the model's generation_config."""
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens}
    if sampling.min_tokens:
        kwargs["min_new_tokens"] = sampling.min_tokens
    if sampling.temperature == 0:
        # Greedy; sampling knobs of the model's generation_config would only raise warnings.
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    elif sampling.temperature is not None:
        kwargs.update(do_sample=True, temperature=sampling.temperature)
    if sampling.top_p is not None and sampling.temperature != 0:
        kwargs.update(do_sample=True, top_p=sampling.top_p)
    if sampling.stop:
        kwargs["stop_strings"] = list(sampling.stop)
    return kwargs


def finish_reason(stopped: bool, completion_tokens: int, max_new_tokens: int) -> str:
    """OpenAI's finish_reason: 'length' when the budget ran out, else 'stop'."""
    if not stopped and completion_tokens >= max_new_tokens:
        return "length"
    return "stop"


class StopScanner:
    """Cuts streamed text at the first stop sequence, which is not part of the answer.

    Text that might be the start of a stop sequence is held back until the next piece
    settles it, so a client never receives text that a later piece turns into a stop.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The part of the text so far that is safe to send."""
        if self.stopped:
            return ""
        text = self._pending + piece
        cuts = [i for i in (text.find(s) for s in self._stops) if i >= 0]
        if cuts:
            self.stopped = True
            self._pending = ""
            return text[: min(cuts)]
        held = self._held_back(text)
        self._pending = text[len(text) - held:] if held else ""
        return text[: len(text) - held]

    def finish(self) -> str:
        """What was held back, once no more text will come."""
        rest, self._pending = self._pending, ""
        return "" if self.stopped else rest

    def _held_back(self, text: str) -> int:
        # The longest tail of `text` that is a proper prefix of some stop sequence.
        longest = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:n]):
                    longest = n
                    break
        return longest
