#!/usr/bin/env python3
"""Speed and image delta of the UNet attention kernels against SDPA (docs/BENCHMARKS.md).

Issue 5: sage_int8 is reported to leave subtle texture artefacts at high CFG. For one
random-weight checkpoint (`sdflow make-checkpoint --arch sdxl`, 1024²; `--tiny`: 64² on any
machine) this runs bench/run_bench.py's txt2img workflow (20 steps, euler/normal, seed 42,
batch 1) with a PatchModelAttention node before the KSampler, once per mode (sdpa, sage_int8,
and split: exact attention computed another way, the floor for reading sage_int8's delta) and
per cfg (4 and 12), and reports per run:

  ms/step        as run_bench.py: (end of the sampler − end of its first step) / (steps − 1),
                 from sdflow's --json-progress events
  × sdpa         ms/step over the sdpa run's at the same cfg
  latent rel-L2  of the final latent against the sdpa run at the same cfg
  PSNR, max |Δ|  of the decoded 8-bit image against the sdpa run's (dB; 0–255)

  python3 bench/attention_quality.py [--arch sdxl] [--modes sdpa,sage_int8,split] [--cfgs 4,12]
                                     [--budget SECONDS] [--sdflow BIN] [--tiny] [--out DIR]

Writes attention_quality.md and attention_quality.json into $OUT (or --out); --keep-images
also copies the decoded PNGs there. sdpa and sage_int8
run first at every cfg; split and quad only while the time budget allows (run_bench.py's
estimate: 1.3 × the slowest earlier run).
"""

import argparse
import json
import math
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
import numpy as np  # noqa: E402
import run_bench  # noqa: E402  (also puts tools/parity on sys.path)
import pyio  # noqa: E402

MODES = ("sdpa", "split", "quad", "sage_int8")  # PatchModelAttention's
EXTRA_MODES = ("split", "quad")  # run after the others: reference kernels, slower than SDPA


def attention_workflow(ckpt, size, mode, cfg, seed):
    """run_bench.workflow with the KSampler's model behind PatchModelAttention(mode)."""
    wf = run_bench.workflow(ckpt, size)
    wf["12"] = {"class_type": "PatchModelAttention", "inputs": {"model": ["4", 0], "mode": mode}}
    ks = wf["3"]["inputs"]
    ks.update(model=["12", 0], cfg=float(cfg), seed=seed)
    return wf


def image_delta(a, b):
    """(PSNR dB, max |Δ|) of two 8-bit images; PSNR None when they are equal."""
    if a is None or b is None or a.shape != b.shape:
        return None, None
    d = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(d * d))
    psnr = None if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)
    return psnr, int(np.max(np.abs(d)))


class AttentionBench(run_bench.Bench):
    def run(self):
        a = self.a
        try:
            ckpt = self.checkpoint(a.arch)
        except Exception as e:
            self.skipped.append(f"{a.arch}: {e}")
            self.write()
            return
        size = 64 if a.tiny else run_bench.ARCHS[a.arch]
        first = [(cfg, m) for cfg in a.cfgs for m in a.modes if m not in EXTRA_MODES]
        extra = [(cfg, m) for cfg in a.cfgs for m in a.modes if m in EXTRA_MODES]
        for cfg, mode in first + extra:
            what = f"{a.arch} {mode} cfg {cfg:g}"
            if not self.fits("sdflow", a.arch, what):
                continue
            print(f"[attention] {what} ({self.left():.0f}s left)", flush=True)
            rec = self.run_sdflow(a.arch, f"{mode}_cfg{cfg:g}", [], None,
                                  attention_workflow(ckpt, size, mode, cfg, a.seed))
            rec.update(mode=mode, cfg=cfg)
            if a.keep_images and rec.get("image"):
                os.makedirs(os.path.join(a.out, "images"), exist_ok=True)
                shutil.copy(rec["image"], os.path.join(a.out, "images", f"{a.arch}_{mode}_cfg{cfg:g}.png"))
            print(f"[attention]   -> ms/step {rec.get('ms_per_step')}, wall {rec.get('wall')}, "
                  f"error {rec.get('error', '')[:200]!r}", flush=True)
            self.results.append(rec)
            self.write()
        self.compare()
        self.write()

    def compare(self):
        def latent(r):
            try:
                return pyio.read_safetensors(r["latent"], names={"latent_tensor"}).get("latent_tensor")
            except Exception:
                return None

        def image(r):
            try:
                return pyio.read_png(r["image"])[..., :3]
            except Exception:
                return None

        ref = {r["cfg"]: r for r in self.results if r["mode"] == "sdpa" and not r.get("error")}
        ref_latent = {cfg: latent(r) for cfg, r in ref.items()}
        ref_image = {cfg: image(r) for cfg, r in ref.items()}
        for r in self.results:
            if r["mode"] == "sdpa" or r["cfg"] not in ref or r.get("error"):
                continue
            base = ref[r["cfg"]]
            if r.get("ms_per_step") and base.get("ms_per_step"):
                r["speed_vs_sdpa"] = r["ms_per_step"] / base["ms_per_step"]
            r["latent_rel_l2_vs_sdpa"] = run_bench.rel_l2(latent(r), ref_latent[r["cfg"]])
            mine = image(r)
            r["psnr_db_vs_sdpa"], r["max_abs_pixel_diff_vs_sdpa"] = image_delta(mine, ref_image[r["cfg"]])
            r["image_equal_to_sdpa"] = (mine is not None and ref_image[r["cfg"]] is not None and
                                        mine.shape == ref_image[r["cfg"]].shape and
                                        bool(np.array_equal(mine, ref_image[r["cfg"]])))

    def write(self):
        a = self.a
        out = {"arch": a.arch, "tiny": a.tiny, "size": 64 if a.tiny else run_bench.ARCHS[a.arch],
               "steps": run_bench.STEPS, "sampler": "euler", "scheduler": "normal", "seed": a.seed,
               "budget": a.budget, "elapsed": round(time.time() - self.t0, 1), "total_vram": self.total_vram,
               "results": self.results, "skipped": self.skipped, "command": " ".join(sys.argv)}
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "attention_quality.json"), "w") as f:
            json.dump(out, f, indent=1, default=str)
        with open(os.path.join(a.out, "attention_quality.md"), "w") as f:
            f.write(markdown(out))


def markdown(out):
    fmt = run_bench.fmt
    lines = [f"# Attention kernels vs SDPA: {out['arch']}{' (tiny)' if out['tiny'] else ''} at {out['size']}², "
             f"{out['steps']} steps, {out['sampler']}/{out['scheduler']}, seed {out['seed']}, batch 1", "",
             "| cfg | mode | ms/step | × sdpa | wall s | KSampler peak VRAM MiB | latent rel-L2 vs sdpa | "
             "PSNR dB vs sdpa | max abs pixel diff | note |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in sorted(out["results"], key=lambda r: (r["cfg"], MODES.index(r["mode"]))):
        ks = [n.get("peak_vram_allocated") or 0 for n in r.get("nodes") or [] if n.get("class_type") == "KSampler"]
        reference = r["mode"] == "sdpa"
        psnr = "∞" if r.get("image_equal_to_sdpa") else fmt(r.get("psnr_db_vs_sdpa"), ".2f")
        note = (r.get("error") or "").replace("|", "/").replace("\n", " ")[:120]
        lines.append(f"| {r['cfg']:g} | {r['mode']} | {fmt(r.get('ms_per_step'), '.1f')} | "
                     f"{'1' if reference else fmt(r.get('speed_vs_sdpa'), '.2f')} | {fmt(r.get('wall'), '.2f')} | "
                     f"{fmt(run_bench.mib(max(ks)) if ks else None, '.0f')} | "
                     f"{'ref' if reference else fmt(r.get('latent_rel_l2_vs_sdpa'), '.2e')} | "
                     f"{'ref' if reference else psnr} | "
                     f"{'ref' if reference else fmt(r.get('max_abs_pixel_diff_vs_sdpa'), 'd')} | {note} |")
    return "\n".join(lines + run_bench.footer(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="sdxl", choices=sorted(run_bench.ARCHS))
    ap.add_argument("--modes", default="sdpa,sage_int8,split", help=f"PatchModelAttention modes ({', '.join(MODES)})")
    ap.add_argument("--cfgs", default="4,12")
    ap.add_argument("--seed", type=int, default=run_bench.SEED)
    ap.add_argument("--budget", type=float, default=540, help="seconds for the whole benchmark")
    ap.add_argument("--sdflow", default=os.path.join(run_bench.REPO, "build-gpu", "sdflow"))
    ap.add_argument("--sdflow-flags", default="", help="extra sdflow flags for every run")
    ap.add_argument("--keep-images", action="store_true", help="copy the decoded images into OUT/images/")
    ap.add_argument("--tiny", action="store_true", help="a tiny checkpoint at 64² (a smoke test of this script)")
    ap.add_argument("--clip-vocab", default=os.path.join(run_bench.REPO, "third_party_ref", "clip-tokenizer"))
    ap.add_argument("--work", default="/tmp/sdflow-attention-bench")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/sdflow-attention-bench-out"))
    args = ap.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    args.cfgs = [float(c) for c in args.cfgs.split(",") if c]
    for m in args.modes:
        if m not in MODES:
            ap.error(f"unknown mode {m}")
    if "sdpa" not in args.modes:
        ap.error("--modes needs sdpa: every delta is against it")
    args.engines = ["sdflow"]
    AttentionBench(args).run()


if __name__ == "__main__":
    main()
