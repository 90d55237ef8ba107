"""`modeldeploy-runtime fetch` of a ~1 GiB multi-file model from a loopback MinIO, against
`aws s3 cp --recursive`, a plain boto3 `download_file` loop with default settings, boto3's
CRT transfer manager (awscrt) and a local `cp -r` of MinIO's own files for those objects.

Every contender is a fresh process downloading the same prefix into an empty directory;
they alternate, REPEATS times each, and medians are compared.

Usage: python bench/bench_fetch.py [--repeats N] [--size-mib N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from modeldeploy_e2e.s3 import MinioServer, create_bucket

PY = sys.executable
BIN = Path(sys.executable).parent

BOTO3_LOOP = """
import sys, boto3
from pathlib import Path
bucket, prefix, target = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=sys.argv[4], region_name="us-east-1")
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for item in page.get("Contents", []):
        dest = Path(target) / item["Key"][len(prefix):]
        dest.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, item["Key"], str(dest))
"""

# boto3's CRT transfer client (s3transfer.crt, awscrt), built as boto3 builds it but with
# the endpoint: boto3's own factory serializes for AWS only (endpoint_url=None), so it
# cannot reach MinIO. Every object is submitted to one CRT transfer manager at once.
BOTO3_CRT = """
import sys, boto3, botocore.session
from pathlib import Path
from botocore.config import Config
from s3transfer.crt import (BotocoreCRTCredentialsWrapper, BotocoreCRTRequestSerializer,
                            CRTTransferManager, create_s3_crt_client)
bucket, prefix, target, endpoint = sys.argv[1:5]
session = botocore.session.get_session()
kwargs = dict(region_name="us-east-1", endpoint_url=endpoint,
              config=Config(s3={"addressing_style": "path"}))
creds = BotocoreCRTCredentialsWrapper(session.get_credentials()).to_crt_credentials_provider()
crt = create_s3_crt_client("us-east-1", crt_credentials_provider=creds, use_ssl=False)
s3 = boto3.client("s3", **kwargs)
manager = CRTTransferManager(crt, BotocoreCRTRequestSerializer(session, kwargs))
with manager:
    futures = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            dest = Path(target) / item["Key"][len(prefix):]
            dest.parent.mkdir(parents=True, exist_ok=True)
            futures.append(manager.download(bucket, item["Key"], str(dest)))
    for future in futures:
        future.result()
"""


def _make_model(directory: Path, total_mib: int) -> int:
    """Shards of random bytes (like a sharded safetensors model) plus small JSON files."""
    directory.mkdir(parents=True)
    shards = 5
    per = total_mib // shards
    chunk = os.urandom(1 << 20)
    for i in range(shards):
        with (directory / f"model-{i + 1:05d}-of-{shards:05d}.safetensors").open("wb") as f:
            for j in range(per):
                # Vary each MiB cheaply so no layer can dedupe or compress it away.
                f.write(j.to_bytes(8, "little") + chunk[8:])
    (directory / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (directory / "tokenizer.json").write_bytes(os.urandom(700_000))
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def _timed(cmd: list[str], env: dict[str, str], cpu: list[float]) -> float:
    """Wall seconds of one run; appends the client's own CPU seconds (user + system) to
    `cpu`: on shared cores the wall time mostly measures the neighbours, CPU per byte does
    not."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, check=False, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed with exit code {done.returncode}:\n"
                         f"{done.stderr[-3000:]}")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-fetch-"))
    try:
        with MinioServer(work / "minio") as server:
            create_bucket(server, "models")
            total = _make_model(work / "src", args.size_mib)
            subprocess.run(
                [str(BIN / "aws"), "s3", "cp", "--recursive", "--quiet", str(work / "src"),
                 "s3://models/big/v1/", "--endpoint-url", server.endpoint],
                env=_env(server), check=True)
            shutil.rmtree(work / "src")
            config = work / "runtime.json"
            config.write_text(json.dumps({
                "model": {"name": "big", "version": "v1", "source": {"s3": {
                    "bucket": "models", "prefix": "big/v1/", "endpoint": server.endpoint}}},
                "task": "embedding"}))
            env = _env(server)
            contenders = {
                "modeldeploy fetch": lambda d: [
                    PY, "-m", "modeldeploy_runtime.cli", "fetch", "--config", str(config),
                    "--cache-root", str(d), "--termination-log", os.devnull],
                "aws s3 cp --recursive": lambda d: [
                    str(BIN / "aws"), "s3", "cp", "--recursive", "--quiet", "s3://models/big/v1/",
                    str(d), "--endpoint-url", server.endpoint],
                "boto3 download_file loop": lambda d: [
                    PY, "-c", BOTO3_LOOP, "models", "big/v1/", str(d), server.endpoint],
                "boto3 + CRT": lambda d: [
                    PY, "-c", BOTO3_CRT, "models", "big/v1/", str(d), server.endpoint],
                # The same objects as MinIO stores them (xl.meta + part files), page cache
                # warm for both alike: the floor a loopback download could approach.
                "local cp -r": lambda d: [
                    "cp", "-r", str(server.data_dir / "models" / "big" / "v1"), str(d)],
            }
            seconds: dict[str, list[float]] = {name: [] for name in contenders}
            cpu: dict[str, list[float]] = {name: [] for name in contenders}
            for i in range(args.repeats):
                for name, cmd in contenders.items():
                    target = work / "out"
                    seconds[name].append(_timed(cmd(target), env, cpu[name]))
                    shutil.rmtree(target)
                print(f"  run {i + 1}: " + ", ".join(
                    f"{n} {s[-1]:.2f} s" for n, s in seconds.items()), flush=True)
            mbs = {n: total / 1e6 / statistics.median(s) for n, s in seconds.items()}
            ours = mbs["modeldeploy fetch"]
            print(f"payload: {total / 2**20:.0f} MiB in 7 files from MinIO on loopback; "
                  f"median of {args.repeats}")
            for name, value in mbs.items():
                median = statistics.median(seconds[name])
                print(f"  {name}: {value:.0f} MB/s (median {median:.2f} s; client CPU "
                      f"{statistics.median(cpu[name]):.2f} s)")
            for other, target in (("aws s3 cp --recursive", 2.0),
                                  ("boto3 download_file loop", 1.5),
                                  ("boto3 + CRT", None),
                                  ("local cp -r", 0.8)):
                print(f"fetch ~1 GiB: modeldeploy {ours:.0f} MB/s vs {other} "
                      f"{mbs[other]:.0f} MB/s -> ratio {ours / mbs[other]:.2f} "
                      + (f"(target >= {target})" if target else "(no target)"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _env(server: MinioServer) -> dict[str, str]:
    env = dict(os.environ, AWS_ACCESS_KEY_ID=server.access_key,
               AWS_SECRET_ACCESS_KEY=server.secret_key, AWS_DEFAULT_REGION="us-east-1")
    env.pop("AWS_SESSION_TOKEN", None)
    return env


if __name__ == "__main__":
    main()
