#!/usr/bin/env python3
"""sdflow vs ComfyUI speed and memory under each VRAM policy (docs/BENCHMARKS.md).

For each architecture (random-weight SD1.5 at 512², SDXL at 1024², made by `sdflow
make-checkpoint`) and each policy, runs the same txt2img workflow (20 steps, euler, normal
scheduler, cfg 7, batch 1) in sdflow and in ComfyUI (bench/comfy_bench.py, in-process), and
reports:

  ms/step       (end of the sampler − end of its first step) / (steps − 1): the first step, which
                pays for loading, is left out; the end is after the result reached the CPU
  wall          the engine's run time for the whole workflow (process start and imports excluded)
  peak VRAM     per node: sdflow --report, ComfyUI torch.cuda.max_memory_allocated per node
  rel-L2        of the final latent against the sdflow gpu-only run (and sdflow vs ComfyUI
                under the same policy)

  python3 bench/run_bench.py [--budget SECONDS] [--archs sd15,sdxl] [--policies a,b]
                             [--engines sdflow,comfy] [--sdflow BIN] [--comfy DIR] [--work DIR]

Writes bench.md and bench.json into $OUT (or --out). Runs are started in priority order while
the time budget allows; a run whose estimated time (the slowest earlier run of that engine and
architecture, or a first-run guess) does not fit is skipped and listed as such.
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, ".."))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(REPO, "tools", "parity"))
import numpy as np  # noqa: E402
import pyio  # noqa: E402

STEPS, CFG, SEED = 20, 7.0, 42
PROMPT = "a watercolor painting of a lighthouse on a cliff at dawn"
NEGATIVE = "blurry, low quality"
ARCHS = {"sd15": 512, "sdxl": 1024}
GIB = 1 << 30

# name → (sdflow flags, ComfyUI flags, budget GiB or None). ComfyUI has no allocator cap: a
# budget is emulated with --reserve-vram (total − budget), which its loader keeps free.
POLICIES = [
    ("gpu-only", ["--gpu-only"], ["--gpu-only"], None),
    ("highvram", ["--highvram"], ["--highvram"], None),
    ("normalvram", ["--normalvram"], ["--normalvram"], None),
    ("lowvram-8G", ["--lowvram"], ["--lowvram"], 8),
    ("lowvram-4G", ["--lowvram"], ["--lowvram"], 4),
    ("novram", ["--novram"], ["--novram"], None),
    ("blockswap", ["--normalvram"], None, None),  # sdflow's ModelBlockSwap; ComfyUI core has none
]
FIRST_RUN_GUESS = {("sdflow", "sd15"): 90, ("sdflow", "sdxl"): 180, ("comfy", "sd15"): 120, ("comfy", "sdxl"): 240}


def workflow(ckpt, size, block_swap=None):
    model = ["4", 0]
    wf = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": SEED, "steps": STEPS, "cfg": CFG, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1.0, "model": model,
                                                   "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "bench"}},
        "10": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "bench"}},
    }
    if block_swap is not None:
        wf["11"] = {"class_type": "ModelBlockSwap", "inputs": {"model": model, "blocks_to_swap": block_swap}}
        wf["3"]["inputs"]["model"] = ["11", 0]
    return wf


def sdflow_env():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if os.environ.get("SDFLOW_LD_LIBRARY_PATH"):
        env["LD_LIBRARY_PATH"] = os.environ["SDFLOW_LD_LIBRARY_PATH"]
    return env


def sdflow_nodes(sdflow):
    try:
        out = subprocess.run([sdflow, "nodes", "--json"], capture_output=True, text=True, timeout=60, env=sdflow_env())
        return json.loads(out.stdout)
    except Exception as e:
        print(f"[bench] `sdflow nodes --json` failed: {e}", flush=True)
        return {}


def total_vram():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30)
        return int(out.stdout.split()[0]) * (1 << 20)
    except Exception:
        return 0


def rel_l2(a, b):
    if a is None or b is None or a.shape != b.shape:
        return None
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    nb = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / nb) if nb > 0 else float(np.linalg.norm(a - b))


def ms_per_step(step_ends, sampler_seconds):
    """(sampler end − end of step 1) / (steps − 1), in ms; step_ends are seconds from the sampler's
    start."""
    if len(step_ends) < 2 or sampler_seconds is None:
        return None
    return 1000.0 * (sampler_seconds - step_ends[0]) / (len(step_ends) - 1)


class Bench:
    def __init__(self, args):
        self.a = args
        self.t0 = time.time()
        self.results = []
        self.skipped = []
        self.slowest = {}
        self.total_vram = total_vram()

    def left(self):
        return self.a.budget - (time.time() - self.t0)

    def fits(self, engine, arch, what):
        est = 1.3 * self.slowest.get((engine, arch), FIRST_RUN_GUESS[(engine, arch)])
        if est > self.left():
            self.skipped.append(f"{what}: needs ~{est:.0f}s, {self.left():.0f}s left")
            print(f"[bench] skip {what} (needs ~{est:.0f}s, {self.left():.0f}s left)", flush=True)
            return False
        return True

    def note_time(self, engine, arch, seconds):
        key = (engine, arch)
        self.slowest[key] = max(self.slowest.get(key, 0), seconds)

    # --- checkpoints ------------------------------------------------------------------------
    def checkpoint(self, arch):
        tiny = "_tiny" if self.a.tiny else ""
        path = os.path.join(self.a.work, "models", "checkpoints", f"bench_{arch}{tiny}.safetensors")
        if os.path.exists(path):
            return os.path.basename(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        t = time.time()
        r = subprocess.run([self.a.sdflow, "make-checkpoint", path + ".part", "--arch", arch, "--seed", "1"] +
                           (["--tiny"] if self.a.tiny else []),
                           capture_output=True, text=True, timeout=max(60, int(self.left())), env=sdflow_env())
        if r.returncode != 0:
            raise RuntimeError(f"make-checkpoint --arch {arch} failed: {(r.stderr or r.stdout)[-500:]}")
        os.replace(path + ".part", path)
        print(f"[bench] made {path} in {time.time() - t:.0f}s", flush=True)
        return os.path.basename(path)

    # --- one sdflow run ---------------------------------------------------------------------
    def run_sdflow(self, arch, policy, flags, budget_gib, wf):
        run_dir = os.path.join(self.a.work, "runs", f"sdflow_{arch}_{policy}")
        shutil.rmtree(run_dir, ignore_errors=True)
        os.makedirs(run_dir)
        wf_path = os.path.join(run_dir, "workflow.json")
        with open(wf_path, "w") as f:
            json.dump(wf, f, indent=1)
        report = os.path.join(run_dir, "report.json")
        cmd = [self.a.sdflow, "--models-dir", os.path.join(self.a.work, "models"), "--output-dir", run_dir,
               "--temp-dir", os.path.join(run_dir, "temp"), "--clip-vocab", self.a.clip_vocab, "--disable-metadata"]
        cmd += flags + (["--vram-budget", str(budget_gib)] if budget_gib else []) + self.a.sdflow_flags.split()
        cmd += ["run", wf_path, "--json-progress", "--report", report]
        t = time.time()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=max(10, int(self.left())),
                               env=sdflow_env())
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = -9, e.stdout or "", (e.stderr or "") + "\n(timed out)"
        wall = time.time() - t
        with open(os.path.join(run_dir, "stderr.txt"), "w") as f:
            f.write(err or "")
        rec = {"engine": "sdflow", "arch": arch, "policy": policy, "flags": " ".join(cmd[cmd.index("--disable-metadata") + 1:cmd.index("run")]),
               "rc": rc, "process_seconds": wall}
        steps, sampler_end, sampler_start = [], None, None
        for line in (out or "").splitlines():
            if not line.startswith("{"):
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("class_type") != "KSampler":
                continue
            if e["event"] == "node_start":
                sampler_start = e.get("elapsed")
            elif e["event"] == "progress" and sampler_start is not None:
                steps.append(e["elapsed"] - sampler_start)
            elif e["event"] == "node_done" and sampler_start is not None:
                sampler_end = e["elapsed"] - sampler_start
        rec["ms_per_step"] = ms_per_step(steps, sampler_end)
        try:
            with open(report) as f:
                rep = json.load(f)
            rec["wall"] = rep.get("seconds")
            rec["nodes"] = [{k: n.get(k) for k in ("node", "class_type", "cached", "seconds", "peak_vram_allocated",
                                                    "peak_vram_reserved", "peak_host_rss", "bytes_streamed",
                                                    "models_loaded", "models_evicted", "oom_recovery")}
                            for n in rep.get("nodes", [])]
            if not rep.get("ok"):
                rec["error"] = rep.get("error", "")[-400:]
        except (OSError, ValueError):
            rec["error"] = (err or "")[-400:]
        latents = sorted(glob.glob(os.path.join(run_dir, "bench_*_.latent")))
        rec["latent"] = latents[-1] if latents else None
        images = sorted(glob.glob(os.path.join(run_dir, "bench_*_.png")))
        rec["image"] = images[-1] if images else None
        if rc != 0 and "error" not in rec:
            rec["error"] = (err or "")[-400:]
        self.note_time("sdflow", arch, wall)
        return rec

    # --- one ComfyUI run --------------------------------------------------------------------
    def run_comfy(self, arch, policy, flags, budget_gib, wf):
        run_dir = os.path.join(self.a.work, "runs", f"comfy_{arch}_{policy}")
        shutil.rmtree(run_dir, ignore_errors=True)
        os.makedirs(run_dir)
        wf_path = os.path.join(run_dir, "workflow.json")
        with open(wf_path, "w") as f:
            json.dump(wf, f, indent=1)
        flags = list(flags)
        if budget_gib:
            if not self.total_vram:
                return {"engine": "comfy", "arch": arch, "policy": policy, "error": "total VRAM unknown"}
            flags += ["--reserve-vram", f"{max(0.0, self.total_vram / GIB - budget_gib):.2f}"]
        flags += self.a.comfy_flags.split()
        cmd = [sys.executable, os.path.join(HERE, "comfy_bench.py"), "--comfy", self.a.comfy, "--workflow", wf_path,
               "--models-dir", os.path.join(self.a.work, "models"), "--out", run_dir, "--"] + flags
        t = time.time()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=max(10, int(self.left())))
            rc, err = p.returncode, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, err = -9, (e.stderr or "") + "\n(timed out)"
        wall = time.time() - t
        rec = {"engine": "comfy", "arch": arch, "policy": policy, "flags": " ".join(flags), "rc": rc,
               "process_seconds": wall}
        try:
            with open(os.path.join(run_dir, "comfy_bench.json")) as f:
                m = json.load(f)
            rec["wall"] = m.get("t_run")
            rec["nodes"] = [{k: n.get(k) for k in ("node", "class_type", "seconds", "peak_vram_allocated",
                                                    "peak_vram_reserved")} for n in m.get("nodes", [])]
            ks = next((n for n in m.get("nodes", []) if n.get("class_type") == "KSampler"), None)
            rec["ms_per_step"] = ms_per_step(ks.get("step_times", []), ks.get("seconds")) if ks else None
            if not m.get("ok"):
                rec["error"] = m.get("error", "")[-400:]
        except (OSError, ValueError):
            rec["error"] = (err or "")[-400:]
        lat = os.path.join(run_dir, "final_latent.safetensors")
        rec["latent"] = lat if os.path.exists(lat) else None
        self.note_time("comfy", arch, wall)
        return rec

    # --- all --------------------------------------------------------------------------------
    def run(self):
        a = self.a
        nodes = sdflow_nodes(a.sdflow) if "sdflow" in a.engines else {}
        for arch in a.archs:
            size = 64 if a.tiny else ARCHS[arch]
            try:
                ckpt = self.checkpoint(arch)
            except Exception as e:
                self.skipped.append(f"{arch}: {e}")
                continue
            if "sdflow" in a.engines and not a.tiny and self.fits("sdflow", arch, f"sdflow {arch} warm-up"):
                # One discarded run: the first process after making the checkpoint pays for
                # reading it into the page cache (both engines then read it from memory).
                print(f"[bench] sdflow {arch} warm-up run, not recorded", flush=True)
                self.run_sdflow(arch, "warmup", ["--gpu-only"], None, workflow(ckpt, size))
            for name, sd_flags, comfy_flags, budget in POLICIES:
                if name not in a.policies:
                    continue
                if budget and self.total_vram and budget * GIB >= self.total_vram:
                    self.skipped.append(f"{arch} {name}: the GPU has no more than {budget} GiB")
                    continue
                block_swap = a.block_swap if name == "blockswap" else None
                wf = workflow(ckpt, size, block_swap)
                for engine in a.engines:
                    what = f"{engine} {arch} {name}"
                    if engine == "comfy" and comfy_flags is None:
                        continue
                    if engine == "sdflow" and block_swap is not None and "ModelBlockSwap" not in nodes:
                        self.skipped.append(f"{what}: this sdflow has no ModelBlockSwap node")
                        continue
                    if not self.fits(engine, arch, what):
                        continue
                    print(f"[bench] {what} ({self.left():.0f}s left)", flush=True)
                    rec = (self.run_sdflow(arch, name, sd_flags, budget, wf) if engine == "sdflow" else
                           self.run_comfy(arch, name, comfy_flags, budget, wf))
                    print(f"[bench]   -> ms/step {rec.get('ms_per_step')}, wall {rec.get('wall')}, "
                          f"error {rec.get('error', '')[:200]!r}", flush=True)
                    self.results.append(rec)
                    self.write()
        self.compare()
        self.write()

    def compare(self):
        def load(path):
            if not path:
                return None
            try:
                return pyio.read_safetensors(path, names={"latent_tensor"}).get("latent_tensor")
            except Exception:
                return None
        by = {(r["engine"], r["arch"], r["policy"]): load(r.get("latent")) for r in self.results}
        for r in self.results:
            mine = by[(r["engine"], r["arch"], r["policy"])]
            r["rel_l2_vs_sdflow_gpu_only"] = rel_l2(mine, by.get(("sdflow", r["arch"], "gpu-only")))
            if r["engine"] == "sdflow":
                r["rel_l2_vs_comfy_same_policy"] = rel_l2(mine, by.get(("comfy", r["arch"], r["policy"])))

    def write(self):
        out = {"budget": self.a.budget, "elapsed": round(time.time() - self.t0, 1), "total_vram": self.total_vram,
               "steps": STEPS, "cfg": CFG, "sampler": "euler", "scheduler": "normal", "results": self.results,
               "skipped": self.skipped, "command": " ".join(sys.argv)}
        os.makedirs(self.a.out, exist_ok=True)
        with open(os.path.join(self.a.out, "bench.json"), "w") as f:
            json.dump(out, f, indent=1, default=str)
        with open(os.path.join(self.a.out, "bench.md"), "w") as f:
            f.write(markdown(out))


def fmt(v, spec, none="–"):
    return none if v is None else format(v, spec)


def mib(b):
    return None if b is None else b / (1 << 20)


def markdown(out):
    lines = [f"# sdflow vs ComfyUI: {out['steps']} steps, {out['sampler']}/{out['scheduler']}, cfg {out['cfg']}, "
             f"batch 1", "",
             "| arch | policy | engine | ms/step | wall s | peak VRAM MiB (CLIP / KSampler / VAEDecode) | "
             "rel-L2 vs sdflow gpu-only | rel-L2 vs ComfyUI | note |",
             "|---|---|---|---:|---:|---|---:|---:|---|"]
    for r in out["results"]:
        peaks = {}
        for n in r.get("nodes") or []:
            c = n.get("class_type")
            peaks[c] = max(peaks.get(c, 0), n.get("peak_vram_allocated") or 0)
        peak = " / ".join(fmt(mib(peaks.get(c)), ".0f") for c in ("CLIPTextEncode", "KSampler", "VAEDecode"))
        note = (r.get("error") or "").replace("|", "/").replace("\n", " ")[:120]
        lines.append(f"| {r['arch']} | {r['policy']} | {r['engine']} | {fmt(r.get('ms_per_step'), '.1f')} | "
                     f"{fmt(r.get('wall'), '.2f')} | {peak} | {fmt(r.get('rel_l2_vs_sdflow_gpu_only'), '.2e')} | "
                     f"{fmt(r.get('rel_l2_vs_comfy_same_policy'), '.2e')} | {note} |")
    return "\n".join(lines + footer(out))


def footer(out):
    """The skipped runs, total VRAM, time used and command line under a table."""
    lines = ["", "Skipped:", ""] + [f"- {s}" for s in out["skipped"]] if out["skipped"] else []
    return lines + ["", f"Total VRAM {fmt(mib(out['total_vram']), '.0f')} MiB; {out['elapsed']} s of a "
                        f"{out['budget']} s budget. `{out['command']}`", ""]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=540, help="seconds for the whole benchmark")
    ap.add_argument("--archs", default="sd15,sdxl")
    ap.add_argument("--policies", default=",".join(p[0] for p in POLICIES))
    ap.add_argument("--engines", default="sdflow,comfy")
    ap.add_argument("--block-swap", type=int, default=12, help="ModelBlockSwap's blocks_to_swap")
    ap.add_argument("--sdflow", default=os.path.join(REPO, "build-gpu", "sdflow"))
    ap.add_argument("--comfy", default=os.environ.get("COMFY_PATH", os.path.join(REPO, "third_party_ref", "ComfyUI")))
    ap.add_argument("--comfy-flags", default="", help="extra ComfyUI flags for every ComfyUI run")
    ap.add_argument("--sdflow-flags", default="", help="extra sdflow flags for every sdflow run")
    ap.add_argument("--tiny", action="store_true",
                    help="tiny checkpoints at 64² (a smoke test of this script on a CPU; ComfyUI cannot load them)")
    ap.add_argument("--clip-vocab", default=os.path.join(REPO, "third_party_ref", "clip-tokenizer"))
    ap.add_argument("--work", default="/tmp/sdflow-bench")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/sdflow-bench-out"))
    args = ap.parse_args()
    args.archs = [x for x in args.archs.split(",") if x]
    args.policies = [x for x in args.policies.split(",") if x]
    args.engines = [x for x in args.engines.split(",") if x]
    for x in args.archs:
        if x not in ARCHS:
            ap.error(f"unknown arch {x}")
    Bench(args).run()


if __name__ == "__main__":
    main()
