#!/usr/bin/env python3
"""The ComfyUI side of bench/run_bench.py: runs one API-format workflow with ComfyUI's own code,
in-process (tools/parity/comfy_side.py's imports and node bodies), under one set of ComfyUI
flags, and measures what the benchmark table needs:

  per node:  wall seconds (CUDA synchronised), peak VRAM allocated and reserved
             (torch.cuda.max_memory_allocated / max_memory_reserved, reset before each node)
  sampler:   the time at which each step ended (the sampler callback; no extra synchronisation,
             like sdflow's progress events), so ms/step is computed the same way for both engines
  result:    the final latent, written as <out>/final_latent.safetensors (latent_tensor)

  comfy_bench.py --comfy DIR --workflow WF.json --models-dir M --out DIR [-- COMFY FLAGS...]

Writes <out>/comfy_bench.json. One process = one set of flags (ComfyUI parses them at import).
"""

import argparse
import json
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
PARITY = os.path.join(HERE, "..", "tools", "parity")
sys.dont_write_bytecode = True
sys.path.insert(0, PARITY)
import comfy_side  # noqa: E402
import pyio  # noqa: E402


def main():
    argv = sys.argv[1:]
    flags = []
    if "--" in argv:
        i = argv.index("--")
        flags, argv = argv[i + 1:], argv[:i]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfy", default=os.environ.get("COMFY_PATH", "third_party_ref/ComfyUI"))
    ap.add_argument("--workflow", required=True)
    ap.add_argument("--models-dir", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    comfy, notes = comfy_side.setup_imports(args.comfy, flags)
    import torch
    mm = comfy.model_management
    cuda = torch.cuda.is_available()
    os.makedirs(args.out, exist_ok=True)
    result = {"flags": flags, "torch": torch.__version__, "device": str(mm.get_torch_device()),
              "vram_state": str(mm.vram_state), "t_import": round(time.perf_counter() - t0, 2), "nodes": [],
              "step_times": [], "ok": False}
    path = os.path.join(args.out, "comfy_bench.json")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    step_times = result["step_times"]

    def ksampler(a):
        """nodes.common_ksampler (comfy_side.common_ksampler) with a callback that records when each
        step ended."""
        latent = a["latent_image"]
        latent_image = comfy.sample.fix_empty_latent_channels(a["model"], latent["samples"])
        noise = comfy.sample.prepare_noise(latent_image, a["seed"], latent.get("batch_index"))
        start = time.perf_counter()

        def callback(step, x0, x, total):
            step_times.append(time.perf_counter() - start)

        samples = comfy.sample.sample(a["model"], noise, a["steps"], a["cfg"], a["sampler_name"], a["scheduler"],
                                      a["positive"], a["negative"], latent_image, denoise=a.get("denoise", 1.0),
                                      noise_mask=latent.get("noise_mask"), callback=callback, disable_pbar=True,
                                      seed=a["seed"])
        out = latent.copy()
        out["samples"] = samples
        return (out,)

    try:
        impl = comfy_side.RealNodes(comfy, args.models_dir, args.models_dir)
    except Exception:
        impl = comfy_side.Restated(comfy, args.models_dir, args.models_dir)
    result["nodes_impl"] = impl.name

    class Timed:
        def run(self, cls, a):
            sync()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            t = time.perf_counter()
            out = ksampler(a) if cls == "KSampler" else impl.run(cls, a)
            sync()
            rec = {"class_type": cls, "seconds": time.perf_counter() - t}
            if cls == "KSampler":
                rec["sampler_start"] = t
                rec["step_times"] = list(step_times)
            if cuda:
                rec["peak_vram_allocated"] = torch.cuda.max_memory_allocated()
                rec["peak_vram_reserved"] = torch.cuda.max_memory_reserved()
            result["nodes"].append(rec)
            return out

    with open(args.workflow) as f:
        wf = json.load(f)
    ex = comfy_side.MiniExecutor(wf, Timed())
    # The node ids are filled in afterwards: MiniExecutor evaluates depth-first from the outputs.
    ids = []
    orig_value = ex.value

    def value(nid):
        fresh = nid not in ex.memo
        v = orig_value(nid)
        if fresh:
            ids.append(nid)
        return v
    ex.value = value
    t_run = time.perf_counter()
    try:
        with torch.inference_mode():
            sampler = next(n for n, v in wf.items() if v["class_type"] == "KSampler")
            decode = next((n for n, v in wf.items() if v["class_type"] == "VAEDecode"), None)
            latent = ex.value(sampler)[0]["samples"]
            if decode:
                ex.value(decode)
        for rec, nid in zip(result["nodes"], ids):
            rec["node"] = nid
        pyio.write_safetensors(os.path.join(args.out, "final_latent.safetensors"),
                               {"latent_tensor": latent.float().cpu().contiguous().numpy()})
        result["ok"] = True
    except Exception as e:
        traceback.print_exc()
        result["error"] = f"{type(e).__name__}: {e}"
    result["t_run"] = round(time.perf_counter() - t_run, 3)
    if cuda:
        result["total_vram"] = torch.cuda.get_device_properties(0).total_memory
        result["peak_vram_allocated"] = torch.cuda.max_memory_allocated()
    with open(path + ".part", "w") as f:
        json.dump(result, f, indent=1, default=str)
    os.replace(path + ".part", path)
    sys.stdout.flush()
    os._exit(0 if result["ok"] else 1)  # ComfyUI's model list fails at interpreter teardown


if __name__ == "__main__":
    main()
