"""Operator e2e: a causal LM rolled out with a golden-prompt validation, and a version whose
golden prompt fails flipped back while completions flow through the Service.

Given a tiny random Llama (made here, saved to MinIO) and a ModelDeployment with task
text-generation whose validation expects transformers' greedy completion of the golden
prompt, when it is applied, it becomes Available with the pod's validation passed and
answers /v1/completions as transformers' `generate` does. When v2 (the same weights, a
golden text they do not generate) is applied under traffic, it is rolled back to v1 and
not one completion request fails.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modeldeploy_e2e import workload
from modeldeploy_e2e.flipback import flip_back_under_traffic
from modeldeploy_e2e.operator_process import OperatorProcess
from modeldeploy_e2e.s3 import MinioServer, upload_directory
from modeldeploy_e2e.traffic import Traffic

if TYPE_CHECKING:
    from modeldeploy_e2e.opcluster import Cluster

pytest_plugins = ["modeldeploy_e2e.operator_fixtures"]
NAME = "llm"
PROMPT = "the quick brown fox"
GOLDEN_TOKENS = 8
CORPUS = ["hello world, the quick brown fox jumps over the lazy dog.",
          "where does john live? in paris. a good movie, not a bad film."]


def _tiny_llama(target: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tok.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(
        vocab_size=160, special_tokens=["<unk>", "<s>", "</s>"]))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(target)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, bos_token_id=tok.token_to_id("<s>"),
                         eos_token_id=tok.token_to_id("</s>"))
    AutoModelForCausalLM.from_config(config).eval().save_pretrained(target)
    return target


def _greedy(model_dir: Path, prompt: str, tokens: int) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                             do_sample=False)
    text: str = tok.decode(out[0][ids.shape[1]:], skip_special_tokens=True)
    return text


def _manifest(namespace: str, endpoint: str, version: str, golden: str) -> dict[str, Any]:
    manifest = copy.deepcopy(workload.example("qwen-generation-rolling.yaml"))
    manifest["metadata"] = {"name": NAME, "namespace": namespace}
    spec = manifest["spec"]
    spec["replicas"] = 1
    spec["model"].update(name=NAME, version=version)
    spec["model"]["source"]["s3"].update(
        {"bucket": "models", "prefix": f"{NAME}/{version}/", "endpoint": endpoint,
         "credentialsSecret": "modeldeploy-s3"})
    spec["runtime"]["dtype"] = "float32"
    spec["runtime"]["resources"] = {"requests": {"cpu": "100m", "memory": "512Mi"}}
    spec["validation"] = {"input": PROMPT, "maxTokens": GOLDEN_TOKENS,
                          "expected": {"text": golden}, "timeoutSeconds": 60}
    return manifest


def _complete(ip: str, port: int, prompt: str, tokens: int, netns: str | None
              ) -> dict[str, Any]:
    return workload.post_json(ip, port, "/v1/completions",
                              {"prompt": prompt, "max_tokens": tokens, "temperature": 0}, 60,
                              netns=netns)


def test_a_causal_lm_rolls_out_with_a_golden_prompt_and_a_failing_one_flips_back(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str,
    operator_proc: OperatorProcess, tmp_path: Path,
) -> None:
    model_dir = _tiny_llama(tmp_path / "llama")
    for version in ("v1", "v2"):
        upload_directory(minilm_s3, "models", f"{NAME}/{version}", model_dir)
    golden = _greedy(model_dir, PROMPT, GOLDEN_TOKENS)
    client = op_cluster.client

    op_cluster.apply(_manifest(md_namespace, minilm_s3.endpoint, "v1", golden))
    workload.wait_for_status(client, md_namespace, NAME, workload.available_at("v1"), 600,
                             "llm v1 Available")
    endpoints = workload.service_endpoints(client, md_namespace, NAME)
    assert endpoints, "no ready endpoint behind the Service"
    for ip, port in endpoints:
        runtime = workload.runtime_status(ip, port, op_cluster.netns)
        assert runtime["task"] == "text-generation"
        assert runtime["validation"]["passed"] is True, runtime["validation"]
        answer = _complete(ip, port, PROMPT, GOLDEN_TOKENS, op_cluster.netns)
        assert answer["choices"][0]["text"] == golden

    body = json.dumps({"prompt": "hello world", "max_tokens": 2, "temperature": 0}).encode()
    traffic = Traffic(client, md_namespace, NAME, path="/v1/completions", method="POST",
                      body=body, headers={"Content-Type": "application/json"},
                      interval=0.05, timeout=30, ok_statuses=range(200, 300),
                      netns=op_cluster.netns)
    status = flip_back_under_traffic(
        client, md_namespace, NAME, traffic,
        lambda: op_cluster.apply(_manifest(md_namespace, minilm_s3.endpoint, "v2",
                                           golden + " and not this")),
        600, "llm v2 rolled back", min_successes=11)
    assert status["currentVersion"] == "v1"
    assert status["lastKnownGoodVersion"] == "v1"
