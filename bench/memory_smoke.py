#!/usr/bin/env python3
"""sdflow alone under each memory policy on one checkpoint (the GPU machine): the same txt2img
(20 steps, euler/normal, cfg 7, seed 42, batch 1) with default flags, --gpu-only, --novram,
--lowvram, --vram-budget 8 / 4, and ModelBlockSwap; prints the KSampler seconds (whole node,
model load included), the peak VRAM of each node from --report, bytes streamed, and whether the
final latent is bitwise equal to the default run's. Not a timed test; docs/BENCHMARKS.md.

    python3 bench/memory_smoke.py --sdflow build-gpu/sdflow --models-dir DIR --ckpt NAME
        [--size 1024] [--out FILE.md]
"""
import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys
import time

RUNS = [("default", [], 0), ("gpu-only", ["--gpu-only"], 0), ("novram", ["--novram"], 0),
        ("lowvram", ["--lowvram"], 0), ("vram-budget 8", ["--vram-budget", "8"], 0),
        ("vram-budget 4", ["--vram-budget", "4"], 0), ("block swap 12", [], 12)]


def workflow(ckpt, size, swap):
    wf = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse on a cliff at dawn", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["6" if swap else "1", 0], "seed": 42, "steps": 20,
                                                   "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
                                                   "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "denoise": 1.0}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "smoke"}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }
    if swap:
        wf["6"] = {"class_type": "ModelBlockSwap", "inputs": {"model": ["1", 0], "blocks_to_swap": swap}}
    return wf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdflow", default="build-gpu/sdflow")
    ap.add_argument("--models-dir", required=True)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--clip-vocab", default="third_party_ref/clip-tokenizer")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--work", default="/tmp/sdflow-memory-smoke")
    ap.add_argument("--out")
    a = ap.parse_args()
    env = dict(os.environ)
    if os.environ.get("SDFLOW_LD_LIBRARY_PATH"):
        env["LD_LIBRARY_PATH"] = os.environ["SDFLOW_LD_LIBRARY_PATH"]
    rows, ref = [], None
    for name, flags, swap in RUNS:
        d = os.path.join(a.work, name.replace(" ", "_"))
        os.makedirs(d, exist_ok=True)
        wf_path = os.path.join(d, "wf.json")
        with open(wf_path, "w") as f:
            json.dump(workflow(a.ckpt, a.size, swap), f)
        rep = os.path.join(d, "report.json")
        cmd = [a.sdflow, "--models-dir", a.models_dir, "--clip-vocab", a.clip_vocab, "--output-dir", d,
           "--temp-dir", os.path.join(d, "t")] + \
            flags + ["-q", "run", wf_path, "--report", rep]
        t = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        wall = time.time() - t
        if r.returncode != 0:
            rows.append(f"| {name} | rc {r.returncode}: {(r.stderr or r.stdout).strip()[-200:]} |||||||")
            continue
        with open(rep) as f:
            nodes = {n["node"]: n for n in json.load(f)["nodes"]}
        lat = sorted(glob.glob(os.path.join(d, "**", "smoke_*.latent"), recursive=True))
        digest = hashlib.sha256(open(lat[-1], "rb").read()).hexdigest() if lat else None
        ref = ref or digest
        ks, dec = nodes.get("5", {}), nodes.get("8", {})
        gib = lambda b: f"{(b or 0) / 2**30:.2f}"  # noqa: E731
        peak = max((n.get("peak_vram_reserved") or 0) for n in nodes.values())
        rows.append(f"| {name} | {ks.get('seconds', 0):.2f} | {gib(ks.get('peak_vram_reserved'))} | "
                    f"{gib(dec.get('peak_vram_reserved'))} | {gib(peak)} | {gib(ks.get('bytes_streamed'))} | "
                    f"{wall:.1f} | {'yes' if digest == ref else 'NO'} |")
        print(rows[-1], flush=True)
    head = (f"sdflow memory policies, {a.ckpt}, {a.size}², 20 steps euler/normal cfg 7, batch 1\n\n"
            "| policy | KSampler s (incl. load) | KSampler peak reserved GiB | VAEDecode peak GiB | run peak GiB | "
            "streamed GiB | process wall s | latent == default |\n|---|---|---|---|---|---|---|---|")
    text = head + "\n" + "\n".join(rows) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    sys.exit(main())
