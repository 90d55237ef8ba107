"""The text-generation task: a causal LM and its tokenizer, run by transformers' own
machinery (AutoModelForCausalLM, the tokenizer's chat template, `generate` with a
TextIteratorStreamer and stopping criteria), a bounded number of generations at a time.

Each generation runs `generate` in a thread of its own and hands text to the caller as it
is decoded; cancelling it (a client that went away) stops `generate` at the next token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from modeldeploy_contract.config import Generation, RuntimeConfig

from modeldeploy_runtime import decoding, modeldir
from modeldeploy_runtime.decoding import Busy, Sampling
from modeldeploy_runtime.errors import LoadError
from modeldeploy_runtime.protocol import BadRequest

log = logging.getLogger("modeldeploy.runtime")

Record = Callable[[str, float], None]
OnTokens = Callable[[int], None]
# Context length assumed when neither config.json nor the tokenizer states one.
_FALLBACK_CONTEXT = 2048
_NO_LIMIT = 1_000_000


class _Watch:
    """A stopping criterion that counts new tokens and stops when the run is cancelled."""

    def __init__(self, prompt_tokens: int, cancelled: threading.Event,
                 on_tokens: OnTokens | None) -> None:
        self._prompt, self._cancelled, self._on_tokens = prompt_tokens, cancelled, on_tokens
        self.generated = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor,
                 **kwargs: Any) -> torch.Tensor:
        now = int(input_ids.shape[1]) - self._prompt
        if self._on_tokens is not None and now > self.generated:
            self._on_tokens(now - self.generated)
        self.generated = now
        return torch.full((input_ids.shape[0],), self._cancelled.is_set(), dtype=torch.bool,
                          device=input_ids.device)


class Run:
    """One generation in progress: iterate it for text pieces (stop sequences already cut
    off); prompt_tokens, completion_tokens and finish_reason are final once it is done."""

    def __init__(self, generator: Generator, ids: list[int], sampling: Sampling,
                 max_new_tokens: int, on_tokens: OnTokens | None,
                 release: Callable[[], None]) -> None:
        import transformers

        self.prompt_tokens, self.completion_tokens = len(ids), 0
        self.finish_reason = "length"
        self._max_new_tokens = max_new_tokens
        self._cancelled, self._done = threading.Event(), threading.Event()
        self._error: BaseException | None = None
        self._scanner = decoding.StopScanner(sampling.stop)
        self._streamer: Any = transformers.TextIteratorStreamer(
            generator.tokenizer, skip_prompt=True, skip_special_tokens=True)
        self._watch = _Watch(len(ids), self._cancelled, on_tokens)
        kwargs = decoding.generate_kwargs(sampling, max_new_tokens)
        if sampling.stop:
            kwargs["tokenizer"] = generator.tokenizer  # stop_strings needs it
        tensor = torch.tensor([ids], dtype=torch.long, device=generator.device)
        kwargs.update(input_ids=tensor, attention_mask=torch.ones_like(tensor),
                      streamer=self._streamer, pad_token_id=generator.pad_token_id,
                      stopping_criteria=transformers.StoppingCriteriaList([self._watch]))
        self._thread = threading.Thread(
            target=self._generate, args=(generator.model, kwargs, release), name="generate",
            daemon=True)
        self._thread.start()

    def _generate(self, model: Any, kwargs: dict[str, Any],
                  release: Callable[[], None]) -> None:
        try:
            with torch.inference_mode():
                out = model.generate(**kwargs)
            self.completion_tokens = int(out.shape[1]) - self.prompt_tokens
        except BaseException as error:  # handed to the reader, who raises it
            self._error = error
            self.completion_tokens = self._watch.generated
            self._streamer.end()
        finally:
            release()
            self._done.set()

    def cancel(self) -> None:
        """Stop generating at the next token (the client went away or a stop was found)."""
        self._cancelled.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until `generate` has returned; True when it has."""
        return self._done.wait(timeout)

    def __iter__(self) -> Iterator[str]:
        for piece in self._streamer:
            text = self._scanner.feed(piece)
            if text:
                yield text
            if self._scanner.stopped:
                self.cancel()
                break
        else:
            if tail := self._scanner.finish():
                yield tail
        self._done.wait()
        if self._error is not None:
            raise self._error
        self.finish_reason = decoding.finish_reason(
            self._scanner.stopped, self.completion_tokens, self._max_new_tokens)

    def text(self) -> str:
        """The whole completion (blocks until it is done)."""
        return "".join(self)


@dataclass
class Generator:
    """A causal LM ready to generate; safe to call from many threads."""

    model: Any
    tokenizer: Any
    device: torch.device
    context: int  # the model's window: prompt and completion together
    settings: Generation = field(default_factory=Generation)
    pad_token_id: int | None = None
    _slots: threading.BoundedSemaphore = field(init=False)
    _running: int = field(init=False, default=0)
    _count: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(self.settings.max_concurrent)

    @property
    def running(self) -> int:
        """Generations holding a slot now (until `generate` has returned)."""
        return self._running

    def prompt_ids(self, prompt: str) -> list[int]:
        """A plain prompt's token ids, with the special tokens the tokenizer adds (BOS)."""
        ids: list[int] = self.tokenizer(prompt)["input_ids"]
        return ids

    def chat_ids(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """The chat rendered by the tokenizer's own chat template, ready for the answer."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise BadRequest(
                "messages: this model's tokenizer has no chat_template "
                "(tokenizer_config.json / chat_template.jinja), so a chat cannot be rendered: "
                "use /v1/completions with a plain prompt, or a checkpoint with a chat template"
            )
        try:
            encoded = self.tokenizer.apply_chat_template(
                [dict(m) for m in messages], add_generation_prompt=True, tokenize=True,
                return_dict=True)
        except Exception as error:  # the template's own complaint (jinja raise_exception)
            raise BadRequest(f"messages: the model's chat template refused them: {error}") \
                from None
        ids: list[int] = list(encoded["input_ids"])
        return ids

    def start(self, ids: list[int], sampling: Sampling, on_tokens: OnTokens | None = None,
              wait_seconds: float = 0.0) -> Run:
        """Begin generating; BadRequest when it cannot fit, Busy when every slot is still
        taken after `wait_seconds`."""
        max_new = decoding.budget(len(ids), sampling, self.context, self.settings.max_tokens)
        acquired = (self._slots.acquire(timeout=wait_seconds) if wait_seconds > 0
                    else self._slots.acquire(blocking=False))
        if not acquired:
            raise Busy(
                f"all {self.settings.max_concurrent} generation slots are busy "
                "(spec.runtime.generation.maxConcurrent); retry shortly"
            )
        with self._count:
            self._running += 1

        def release() -> None:
            with self._count:
                self._running -= 1
            self._slots.release()

        try:
            return Run(self, ids, sampling, max_new, on_tokens, release)
        except BaseException:
            release()
            raise

    def complete(self, prompt: str, sampling: Sampling) -> str:
        """The completion of a plain prompt, waiting for a free slot."""
        ids = self.prompt_ids(prompt)
        while True:
            try:
                return self.start(ids, sampling, wait_seconds=1.0).text()
            except Busy:
                continue

    def warm(self, texts: Sequence[str]) -> None:
        """A short greedy generation per text: prefill and the cached decode step."""
        for text in texts:
            self.complete(text, Sampling(max_tokens=decoding.WARMUP_TOKENS, temperature=0.0))


def context_length(config: Any, tokenizer_limit: int | None) -> int:
    """The model's window: the position table, or the tokenizer's limit if smaller."""
    positions = getattr(config, "max_position_embeddings", None)
    limits = [int(n) for n in (positions, tokenizer_limit)
              if isinstance(n, int) and 0 < n < _NO_LIMIT]
    return min(limits) if limits else _FALLBACK_CONTEXT


def load(config: RuntimeConfig, entry: Path, record: Record) -> Generator:
    """Build the Generator from the cache entry, recording phase seconds as loader.load."""
    started = time.monotonic()
    files = modeldir.read(entry, config.allow_pickle, config.trust_remote_code)
    record("fileIO", time.monotonic() - started)

    started = time.monotonic()
    import transformers

    record("import", time.monotonic() - started)
    started = time.monotonic()
    root = str(files.root)
    try:
        model: Any = transformers.AutoModelForCausalLM.from_pretrained(
            root, local_files_only=True, use_safetensors=not files.pickle,
            trust_remote_code=config.trust_remote_code, dtype=getattr(torch, config.dtype))
        tokenizer: Any = transformers.AutoTokenizer.from_pretrained(
            root, local_files_only=True, trust_remote_code=config.trust_remote_code)
    except (ValueError, KeyError, OSError) as error:
        first_line = (str(error).strip().splitlines() or [repr(error)])[0]
        raise LoadError(
            f"transformers {transformers.__version__} cannot load a causal LM for model_type "
            f"{files.model_type!r} from {root}: {first_line}; task text-generation needs a "
            "decoder checkpoint (GPT-2, Llama, Qwen2, Mistral, Phi, ...)"
        ) from None
    record("deserialize", time.monotonic() - started)

    started = time.monotonic()
    from modeldeploy_runtime.loader import device_for

    device = device_for(config.device)
    model.to(device=device)
    record("deviceTransfer", time.monotonic() - started)
    raw_limit = files.tokenizer_config.get("model_max_length")
    context = context_length(model.config, raw_limit if isinstance(raw_limit, int) else None)
    eos = model.generation_config.eos_token_id
    pad = model.generation_config.pad_token_id
    if pad is None:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (
            eos[0] if isinstance(eos, list) else eos)
    log.info("causal LM %s: context %d tokens, up to %d generations at once",
             files.model_type, context, config.generation.max_concurrent)
    return Generator(model.eval(), tokenizer, device, context, config.generation, pad)
