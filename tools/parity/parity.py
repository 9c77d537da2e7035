#!/usr/bin/env python3
"""sdflow vs ComfyUI parity harness (docs/PARITY.md).

Runs ComfyUI (a reference copy, never committed; COMFY_PATH) and sdflow on the same random-weight
full-size SD1.5 checkpoint, prompts, seeds and settings, and reports per case: initial-noise
equality, final-latent relative L2 and max-abs difference, and decoded-image PSNR (8-bit).

  python3 tools/parity/parity.py [--cases quick|core|all] [--only REGEX] [--shard K/N]
                                 [--budget SECONDS] [--work DIR] [--sdflow BIN] [--comfy DIR]
  python3 tools/parity/parity.py --selftest      # CPU, tiny resolution, no sdflow run needed

Every case is one branch of a single API-format workflow per precision (fp16 = both engines'
defaults on the GPU, fp32 = --force-fp32 on both), so each engine loads the checkpoint once:

  CheckpointLoaderSimple -> CLIPTextEncode x2 -> EmptyLatentImage | LoadImage -> VAEEncode
  [-> RepeatLatentBatch] | VAEEncodeForInpaint | SetLatentNoiseMask -> KSampler -> VAEDecode
  -> SaveImage + SaveLatent, and a noise probe: KSamplerAdvanced -> SaveLatent (see below).

The same JSON goes to `sdflow run` and to comfy_side.py, which evaluates it with ComfyUI's own
node code in-process. Both engines run at the same time by default (--serial to not).

Noise probe (a real end-to-end observable of the initial noise): KSamplerAdvanced with the case's
seed and latent shape, euler, scheduler "simple" with 2000 steps, start 0, end 1, leftover
noise on. simple's table index int(x * 1000/2000) repeats, so the sigmas are [s_max, s_max]:
one Euler step with dt = 0 returns x = noise * sqrt(1 + s_max^2) unchanged (the max-denoise
noise scaling), and the output is that / 0.18215. Equal probes = equal initial noise;
the ComfyUI probe is also checked against comfy.sample.prepare_noise itself.
"""

import argparse
import datetime
import glob
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import numpy as np  # noqa: E402
import pyio  # noqa: E402

# ComfyUI v0.8.0 comfy/samplers.py: KSampler.SAMPLERS and SCHEDULERS (checked against both
# engines at run time; a difference is reported).
SAMPLERS = ["euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
            "exp_heun_2_x0", "exp_heun_2_x0_sde", "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive",
            "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m",
            "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu",
            "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v", "deis", "res_multistep",
            "res_multistep_cfg_pp", "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp",
            "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2", "seeds_3", "sa_solver",
            "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2"]
SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal", "linear_quadratic",
              "kl_optimal"]
# UNet evaluations per step, roughly (for ordering and the time estimate); dpm_adaptive is
# unbounded (adaptive step size) and always runs last.
EVALS = {"heun": 2, "heunpp2": 2.5, "exp_heun_2_x0": 2, "exp_heun_2_x0_sde": 2, "dpm_2": 2, "dpm_2_ancestral": 2,
         "dpmpp_2s_ancestral": 2, "dpmpp_2s_ancestral_cfg_pp": 2, "dpmpp_sde": 2, "dpmpp_sde_gpu": 2, "seeds_2": 2,
         "seeds_3": 3, "sa_solver_pece": 2, "dpm_adaptive": 10}

TOL = {"fp16": 1e-2, "fp32": 1e-4}
NOISE_REL_TOL = 2e-6   # probe difference allowed from float rounding alone (RNG differences are O(1))
PROMPT = "a watercolor painting of a lighthouse on a cliff at dawn, (soft light:1.2)"
NEGATIVE = "blurry, low quality"
CKPT_NAME = "parity_sd15.safetensors"
# --arch sdxl: the SDXL rows of docs/PARITY.md (set_arch() switches these globals).
ARCH = "sd15"
REFINER_NAME = "parity_sdxl_refiner.safetensors"
LORA_NAMES = ("parity_lora_kohya.safetensors", "parity_lora_peft.safetensors")
# The SDXL sizes of the issue besides the --width/--height default (1024x1024).
SDXL_PORTRAIT = (832, 1216)
SDXL_SAMPLERS = ["euler", "euler_ancestral", "heun", "dpm_2", "lms", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m",
                 "dpmpp_2m_sde", "dpmpp_3m_sde", "ddim", "uni_pc"]
SDXL_SCHEDULERS = ["normal", "karras", "sgm_uniform"]
INPUT_NAME = "parity_input.png"
SCALE = 0.18215


def set_arch(arch):
    global ARCH, CKPT_NAME, SCALE
    ARCH = arch
    CKPT_NAME = f"parity_{arch}.safetensors"
    SCALE = 0.13025 if arch == "sdxl" else 0.18215


class Case:
    def __init__(self, name, kind, sampler="euler", scheduler="normal", denoise=1.0, batch=2, precision="fp16",
                 seed=None, tier=2, size=None):
        self.name, self.kind, self.sampler, self.scheduler = name, kind, sampler, scheduler
        self.size = size  # (width, height); None: the run's --width/--height
        self.denoise, self.batch, self.precision, self.tier = denoise, batch, precision, tier
        self.seed = seed if seed is not None else zlib.crc32(name.encode())  # stable per name

    def row(self):
        return {k: getattr(self, k) for k in ("name", "kind", "sampler", "scheduler", "denoise", "batch", "precision",
                                               "seed", "size")}


def sdxl_cases(which):
    """SDXL rows: core samplers x normal/karras/sgm_uniform at the run's size (1024x1024), a few at
    832x1216, two stacked LoRAs, the base+refiner two-stage workflow, FreeU_V2, noise probes."""
    cases = []
    add = cases.append
    add(Case("sdxl.t2i.euler.normal", "t2i", tier=0))
    add(Case("sdxl.noise.seed0", "noise", seed=0, tier=0))
    add(Case("sdxl.lora2.euler.normal", "lora2", tier=0))
    add(Case("sdxl.refiner.euler.normal", "refiner", tier=0))
    add(Case("sdxl.freeu2.euler.normal", "freeu2", tier=0))
    add(Case("sdxl.portrait.euler.normal", "t2i", size=SDXL_PORTRAIT, tier=0))
    add(Case("sdxl.portrait.dpmpp_2m.karras", "t2i", "dpmpp_2m", "karras", size=SDXL_PORTRAIT, tier=1))
    add(Case("sdxl.portrait.dpmpp_2m_sde.karras", "t2i", "dpmpp_2m_sde", "karras", size=SDXL_PORTRAIT, tier=1))
    for sch in SDXL_SCHEDULERS:
        for smp in SDXL_SAMPLERS:
            if (smp, sch) != ("euler", "normal"):
                # The SDE samplers' Brownian tree costs 30-80 s per 1024² case in both engines
                # (measured on an H200): with `normal` and the 832x1216 cases they are in the
                # quick tiers; with karras/sgm_uniform they run last.
                sde = "sde" in smp
                add(Case(f"sdxl.t2i.{smp}.{sch}", "t2i", smp, sch, tier=3 if sde and sch != "normal" else
                         (1 if sch != "sgm_uniform" else 2)))
    if which == "quick":
        cases = [c for c in cases if c.tier == 0]
    return sorted(cases, key=lambda c: c.tier)


def all_cases(which):
    """Ordered by priority (tier), so a run cut by the time budget still covers the essentials."""
    if ARCH == "sdxl":
        return sdxl_cases(which)
    cases = []
    add = cases.append
    # tier 0: the quick set
    add(Case("t2i.euler.normal", "t2i", tier=0))
    add(Case("fp32.t2i.euler.normal", "t2i", precision="fp32", tier=0))
    add(Case("t2i.euler_ancestral.normal", "t2i", "euler_ancestral", tier=0))
    add(Case("t2i.dpmpp_2m_sde.normal", "t2i", "dpmpp_2m_sde", tier=0))
    add(Case("t2i.uni_pc.normal", "t2i", "uni_pc", tier=0))
    add(Case("i2i.euler.normal.d060", "i2i", denoise=0.6, tier=0))
    add(Case("inp_vefi.euler.normal", "inp_vefi", batch=1, tier=0))
    add(Case("noise.seed0", "noise", seed=0, tier=0))
    add(Case("noise.seed2p32plus5", "noise", seed=2 ** 32 + 5, tier=0))
    add(Case("noise.seedmax", "noise", seed=2 ** 64 - 1, tier=0))
    # tier 1: the rest of the core set
    add(Case("fp32.t2i.euler_ancestral.normal", "t2i", "euler_ancestral", precision="fp32", tier=1))
    add(Case("fp32.t2i.dpmpp_2m_sde.karras", "t2i", "dpmpp_2m_sde", "karras", precision="fp32", tier=1))
    add(Case("i2i.dpmpp_2m.karras.d060", "i2i", "dpmpp_2m", "karras", denoise=0.6, tier=1))
    add(Case("inp_mask.ddim.normal.d080", "inp_mask", "ddim", denoise=0.8, batch=1, tier=1))
    add(Case("inp_mask.euler_ancestral.karras", "inp_mask", "euler_ancestral", "karras", batch=1, tier=1))
    for s in SCHEDULERS:
        if s != "normal":
            add(Case(f"t2i.euler.{s}", "t2i", "euler", s, tier=1))
    done = {(c.sampler, c.scheduler) for c in cases if c.kind == "t2i" and c.precision == "fp16"}
    for s in sorted(SAMPLERS, key=lambda s: (s == "dpm_adaptive", EVALS.get(s, 1))):
        if (s, "normal") not in done:
            add(Case(f"t2i.{s}.normal", "t2i", s, "normal", tier=1 if s != "dpm_adaptive" else 3))
            done.add((s, "normal"))
    if which == "all":  # tier 2: the remaining sampler x scheduler grid
        for sch in SCHEDULERS:
            for s in SAMPLERS:
                if (s, sch) not in done:
                    add(Case(f"t2i.{s}.{sch}", "t2i", s, sch, tier=4 if s == "dpm_adaptive" else 2))
                    done.add((s, sch))
    if which == "quick":
        cases = [c for c in cases if c.tier == 0]
    return sorted(cases, key=lambda c: c.tier)  # stable: keeps the order above within a tier


# ---------------------------------------------------------------------------------------------
# Workflows

IMAGE_NODES = {"4", "5", "7", "8", "20", "21", "22"}  # LoadImage and what feeds img2img / inpainting
KIND_NODES = {"30": "refiner", "31": "refiner", "32": "refiner", "40": "lora2", "41": "lora2", "42": "lora2",
              "43": "lora2", "45": "freeu2"}  # shared nodes of one case kind (SDXL)


def build_workflow(cases, ckpt, width, height, steps, cfg, prompt=PROMPT, negative=NEGATIVE, only=None, probes=True):
    """One API workflow for the cases of one precision. Case i owns node ids 100 + 10 i ... + 5
    whatever subset `only` (case names) keeps, so ids stay stable across re-runs.
    Returns (workflow, {case name: [its node ids]})."""
    wf = {}

    def node(nid, cls, title, **inputs):
        wf[str(nid)] = {"class_type": cls, "inputs": inputs, "_meta": {"title": title}}
        return str(nid)

    keep = [c for c in cases if only is None or c.name in only]
    ck = node(1, "CheckpointLoaderSimple", "Load Checkpoint", ckpt_name=ckpt)
    pos = node(2, "CLIPTextEncode", "Positive", text=prompt, clip=[ck, 1])
    neg = node(3, "CLIPTextEncode", "Negative", text=negative, clip=[ck, 1])
    kinds = {c.kind for c in keep}
    size = lambda c: c.size or (width, height)  # noqa: E731
    shapes = sorted({(c.batch,) + size(c) for c in keep if probes or c.kind != "noise"})
    if kinds & {"i2i", "inp_vefi", "inp_mask"}:
        node(4, "LoadImage", "Load Image", image=INPUT_NAME)
    if kinds & {"i2i", "inp_mask"}:
        node(5, "VAEEncode", "VAE Encode", pixels=["4", 0], vae=[ck, 2])
    if "inp_vefi" in kinds:
        node(7, "VAEEncodeForInpaint", "VAE Encode (for Inpainting)", pixels=["4", 0], vae=[ck, 2], mask=["4", 1],
             grow_mask_by=6)
    if "inp_mask" in kinds:
        node(8, "SetLatentNoiseMask", "Set Latent Noise Mask", samples=["5", 0], mask=["4", 1])
    empty = {sh: node(10 + i, "EmptyLatentImage", f"Empty Latent {sh[1]}x{sh[2]} x{sh[0]}", width=sh[1],
                      height=sh[2], batch_size=sh[0]) for i, sh in enumerate(shapes)}
    repeat = {b: node(20 + i, "RepeatLatentBatch", f"Repeat Latent x{b}", samples=["5", 0], amount=b)
              for i, b in enumerate(sorted({c.batch for c in keep if c.kind == "i2i"}))}
    if "refiner" in kinds:  # ComfyUI's SDXL refiner example: a second checkpoint, its own prompts
        node(30, "CheckpointLoaderSimple", "Load Refiner", ckpt_name=REFINER_NAME)
        node(31, "CLIPTextEncodeSDXLRefiner", "Refiner Positive", ascore=6.0, width=width, height=height,
             text=prompt, clip=["30", 1])
        node(32, "CLIPTextEncodeSDXLRefiner", "Refiner Negative", ascore=2.5, width=width, height=height,
             text=negative, clip=["30", 1])
    if "lora2" in kinds:  # two stacked LoRAs (kohya and peft keys), model and clip strengths
        node(40, "LoraLoader", "LoRA kohya", model=[ck, 0], clip=[ck, 1], lora_name=LORA_NAMES[0],
             strength_model=0.8, strength_clip=0.6)
        node(41, "LoraLoader", "LoRA peft", model=["40", 0], clip=["40", 1], lora_name=LORA_NAMES[1],
             strength_model=0.5, strength_clip=1.0)
        node(42, "CLIPTextEncode", "LoRA Positive", text=prompt, clip=["41", 1])
        node(43, "CLIPTextEncode", "LoRA Negative", text=negative, clip=["41", 1])
    if "freeu2" in kinds:
        node(45, "FreeU_V2", "FreeU_V2", model=[ck, 0], b1=1.3, b2=1.4, s1=0.9, s2=0.2)
    ids = {}
    for i, c in enumerate(cases):
        base = 100 + 10 * i
        ids[c.name] = [str(base + k) for k in range(7)]
        if c not in keep or (c.kind == "noise" and not probes):
            continue
        pre = f"parity/{c.name}/"
        empty_c = empty.get((c.batch,) + size(c))
        if probes:
            node(base, "KSamplerAdvanced", f"{c.name} noise probe", model=[ck, 0], add_noise="enable",
                 noise_seed=c.seed, steps=2000, cfg=cfg, sampler_name="euler", scheduler="simple", positive=[pos, 0],
                 negative=[neg, 0], latent_image=[empty_c, 0], start_at_step=0, end_at_step=1,
                 return_with_leftover_noise="enable")
            node(base + 1, "SaveLatent", f"{c.name} probe", samples=[str(base), 0], filename_prefix=pre + "probe")
        if c.kind == "noise":
            continue
        latent = {"t2i": empty_c, "lora2": empty_c, "refiner": empty_c, "freeu2": empty_c, "i2i": repeat.get(c.batch),
                  "inp_vefi": "7", "inp_mask": "8"}[c.kind]
        model, p, n = {"lora2": ("41", "42", "43"), "freeu2": ("45", pos, neg)}.get(c.kind, (ck, pos, neg))
        final = str(base + 2)
        if c.kind == "refiner":  # base: steps 0..80 %, leftover noise; refiner: the rest
            switch = steps * 4 // 5
            node(base + 2, "KSamplerAdvanced", c.name, model=[ck, 0], add_noise="enable", noise_seed=c.seed,
                 steps=steps, cfg=cfg, sampler_name=c.sampler, scheduler=c.scheduler, positive=[pos, 0],
                 negative=[neg, 0], latent_image=[latent, 0], start_at_step=0, end_at_step=switch,
                 return_with_leftover_noise="enable")
            node(base + 6, "KSamplerAdvanced", c.name + " refiner", model=["30", 0], add_noise="disable",
                 noise_seed=c.seed, steps=steps, cfg=cfg, sampler_name=c.sampler, scheduler=c.scheduler,
                 positive=["31", 0], negative=["32", 0], latent_image=[str(base + 2), 0], start_at_step=switch,
                 end_at_step=10000, return_with_leftover_noise="disable")
            final = str(base + 6)
        else:
            node(base + 2, "KSampler", c.name, model=[model, 0], seed=c.seed, steps=steps, cfg=cfg,
                 sampler_name=c.sampler, scheduler=c.scheduler, positive=[p, 0], negative=[n, 0],
                 latent_image=[latent, 0], denoise=c.denoise)
        vae = ["30", 2] if c.kind == "refiner" else [ck, 2]
        node(base + 3, "VAEDecode", f"{c.name} decode", samples=[final, 0], vae=vae)
        node(base + 4, "SaveImage", f"{c.name} image", images=[str(base + 3), 0], filename_prefix=pre + "img")
        node(base + 5, "SaveLatent", f"{c.name} latent", samples=[final, 0], filename_prefix=pre + "latent")
    return wf, ids


def make_input_image(path, width, height):
    """Deterministic RGBA test picture: smooth colour fields and discs; alpha 0 (mask 1) in a
    soft-edged box right of centre, so LoadImage's MASK is an inpainting mask."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / max(width - 1, 1), y / max(height - 1, 1)
    r = 0.5 + 0.45 * np.sin(6.0 * u + 1.0) * np.cos(4.0 * v)
    g = 0.35 + 0.5 * v * (1 - 0.5 * u)
    b = 0.5 + 0.4 * np.cos(9.0 * (u - v))
    for cx, cy, rad, col in ((0.3, 0.35, 0.18, (0.9, 0.8, 0.2)), (0.7, 0.7, 0.12, (0.1, 0.3, 0.8))):
        d = np.sqrt((u - cx) ** 2 + (v - cy) ** 2)
        w = np.clip((rad - d) / 0.02, 0, 1)
        r, g, b = r * (1 - w) + col[0] * w, g * (1 - w) + col[1] * w, b * (1 - w) + col[2] * w
    box = np.clip(np.minimum.reduce([(u - 0.45) / 0.04, (0.85 - u) / 0.04, (v - 0.2) / 0.04, (0.6 - v) / 0.04]), 0, 1)
    alpha = 1.0 - box
    img = np.stack([r, g, b, alpha], axis=-1)
    pyio.write_png(path, np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------------------------
# Processes

class Proc:
    def __init__(self, name, cmd, log_path, env=None, cwd=REPO, append=False):
        self.name, self.cmd, self.log_path = name, cmd, log_path
        self.log = open(log_path, "a" if append else "w")
        self.log.write("$ " + " ".join(cmd) + "\n")
        self.log.flush()
        self.t0 = time.time()
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                  start_new_session=True)
        self.rc, self.seconds, self.killed = None, None, False

    def poll(self):
        if self.rc is None and self.p.poll() is not None:
            self.rc, self.seconds = self.p.returncode, time.time() - self.t0
            self.log.close()
        return self.rc

    def kill(self):
        """Stops this process (and its children: it leads its own process group)."""
        if self.poll() is not None:
            return
        self.killed = True
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                break
            t = time.time()
            while time.time() - t < wait and self.poll() is None:
                time.sleep(0.1)
            if self.rc is not None:
                break
        self.poll()


def wait_all(procs, deadline, grace=0.0):
    """Waits for every process; kills what is still running at deadline + grace."""
    while any(p.poll() is None for p in procs):
        if time.time() > deadline + grace:
            for p in procs:
                if p.poll() is None:
                    print(f"[parity] time budget: stopping {p.name}", flush=True)
                    p.kill()
            break
        time.sleep(0.2)


class SdflowRunner:
    """`sdflow run` of one precision's workflow, restarted without the culprit when a node fails
    (sdflow, like ComfyUI, stops a prompt at its first failing node): the failing node's id names
    the case (or the noise probes, or the image inputs); without an id, the first unfinished case
    is blamed. Looks like a Proc to wait_all."""

    MAX_RUNS = 12

    def __init__(self, prec, s, args, models, input_dir, work, deadline):
        self.name, self.prec, self.s, self.args = f"sdflow {prec}", prec, s, args
        self.models, self.input_dir, self.work, self.deadline = models, input_dir, work, deadline
        self.log_path = os.path.join(work, f"sdflow_{prec}.log")
        self.failed, self.probe_error, self.runs, self.notes = {}, None, 0, []
        self.rc, self.seconds, self.killed, self.t0 = None, None, False, time.time()
        self._start()

    def case_done(self, c):
        pre = os.path.join(self.s["sdflow_out"], "parity", c.name)
        probe = bool(glob.glob(os.path.join(glob.escape(pre), "probe_*_.latent"))) or self.probe_error is not None
        if c.kind == "noise":
            return probe
        return (probe and bool(glob.glob(os.path.join(glob.escape(pre), "latent_*_.latent"))) and
                len(glob.glob(os.path.join(glob.escape(pre), "img_*_.png"))) >= c.batch)

    def pending(self):
        return [c for c in self.s["cases"] if c.name not in self.failed and not self.case_done(c) and
                not (c.kind == "noise" and self.probe_error is not None)]

    def _start(self):
        pend = self.pending()
        self.runs += 1
        wf_path = self.s["wf"]
        if self.runs > 1:
            wf, _ = build_workflow(self.s["cases"], CKPT_NAME, self.args.width, self.args.height, self.args.steps,
                                   self.args.cfg, only={c.name for c in pend}, probes=self.probe_error is None)
            wf_path = os.path.join(self.work, f"workflow_{self.prec}_run{self.runs}.json")
            with open(wf_path, "w") as f:
                json.dump(wf, f, indent=1)
        self.log_offset = os.path.getsize(self.log_path) if self.runs > 1 and os.path.exists(self.log_path) else 0
        a = self.args
        self.proc = Proc(self.name, [a.sdflow, "--models-dir", self.models, "--input-dir", self.input_dir,
                                     "--output-dir", self.s["sdflow_out"], "--temp-dir", os.path.join(self.work, "temp"),
                                     "--clip-vocab", a.clip_vocab, "--disable-metadata"] + self.s["sdflow_flags"] +
                         ["run", wf_path, "--json-progress",
                          "--report", os.path.join(self.work, f"sdflow_{self.prec}_report{self.runs}.json")],
                         self.log_path, env=sdflow_env(), append=self.runs > 1)

    def _diagnose(self, rc):
        """Blames a case (or all probes, or the image cases) for the failed run; False: give up."""
        with open(self.log_path, errors="replace") as f:
            f.seek(self.log_offset)
            text = f.read()
        errs = [ln for ln in text.splitlines() if re.search(r"error|exception|what\(\)|Segmentation|Aborted", ln, re.I)]
        if errs:
            msg = f"rc {rc}: {errs[-1].strip()[:400]}"
        else:
            last = (text.strip().splitlines() or ["(none)"])[-1].strip()[:200]
            msg = f"rc {rc} without an error message" + (f" (killed by signal {-rc})" if rc < 0 else "") + \
                  f"; last output: {last}"
        m = None
        for ln in reversed(errs):
            m = re.search(r"\[(\w+) #(\d+)\]", ln)
            if m:
                break
        names = [c.name for c in self.s["cases"]]
        if m:
            nid = int(m.group(2))
            if nid >= 100:
                i, k = divmod(nid - 100, 10)
                if i < len(names):
                    if k in (0, 1) and self.probe_error is None:
                        self.probe_error = f"noise probe failed in sdflow ({m.group(1)} #{nid}): {msg}"
                        return True
                    self.failed[names[i]] = msg
                    return True
            elif str(nid) in IMAGE_NODES:
                for c in self.s["cases"]:
                    if c.kind in ("i2i", "inp_vefi", "inp_mask"):
                        self.failed.setdefault(c.name, f"image input path failed ({m.group(1)} #{nid}): {msg}")
                return True
            elif str(nid) in KIND_NODES:  # the refiner / LoRA / FreeU_V2 branch: only its cases
                kind = KIND_NODES[str(nid)]
                for c in self.s["cases"]:
                    if c.kind == kind:
                        self.failed.setdefault(c.name, f"{kind} path failed ({m.group(1)} #{nid}): {msg}")
                return True
            self.notes.append(f"shared node {m.group(1)} #{nid} failed, giving up: {msg}")
            for c in self.pending():
                self.failed[c.name] = f"shared node failed ({m.group(1)} #{nid}): {msg}"
            return False
        pend = self.pending()
        if not pend:
            return False
        self.failed[pend[0].name] = f"sdflow stopped during this case: {msg}"
        return True

    def poll(self):
        if self.rc is not None:
            return self.rc
        rc = self.proc.poll()
        if rc is None:
            return None
        if rc != 0 and not self.proc.killed and self._diagnose(rc) and self.pending() and \
                self.runs < self.MAX_RUNS and time.time() < self.deadline - 20:
            print(f"[parity] {self.name} failed ({rc}); restarting without: "
                  f"{sorted(self.failed) or ''}{' [probes]' if self.probe_error else ''}", flush=True)
            self._start()
            return None
        self.rc, self.seconds = rc, time.time() - self.t0
        return rc

    def kill(self):
        self.killed = True
        self.proc.kill()
        self.poll()
        if self.rc is None:
            self.rc, self.seconds = self.proc.rc, time.time() - self.t0


def tail(path, n=25):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def sdflow_env():
    """Environment for sdflow processes: run_on_gpu.sh keeps the Debian libraries' search path
    (device-deps) for sdflow only, so ComfyUI's Python never sees them."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if os.environ.get("SDFLOW_LD_LIBRARY_PATH"):
        env["LD_LIBRARY_PATH"] = os.environ["SDFLOW_LD_LIBRARY_PATH"]
    return env


def sdflow_lists(sdflow):
    """(samplers, schedulers, loader runnable) from `sdflow nodes --json`, or None."""
    try:
        out = subprocess.run([sdflow, "nodes", "--json"], capture_output=True, text=True, timeout=60, env=sdflow_env())
        schemas = json.loads(out.stdout)
        req = schemas["KSampler"]["input"]["required"]

        def options(spec):
            return spec[0] if isinstance(spec[0], list) else spec[1].get("options", [])
        return (options(req["sampler_name"]), options(req["scheduler"]),
                schemas["CheckpointLoaderSimple"].get("sdflow_runnable", True))
    except Exception as e:
        print(f"[parity] could not read `sdflow nodes --json`: {e}", flush=True)
        return None


def make_checkpoint(args, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path) and args.reuse_ckpt:
        return "reused " + path
    if args.ckpt_maker in ("auto", "sdflow") and os.path.exists(args.sdflow):
        r = subprocess.run([args.sdflow, "make-checkpoint", path, "--arch", ARCH, "--seed", str(args.ckpt_seed)],
                           capture_output=True, text=True, timeout=600, env=sdflow_env())
        if r.returncode == 0 and os.path.exists(path):
            return f"sdflow make-checkpoint --arch {ARCH} --seed {args.ckpt_seed}"
        print(f"[parity] sdflow make-checkpoint failed (rc {r.returncode}): {(r.stderr or r.stdout).strip()[-500:]}",
              flush=True)
        if args.ckpt_maker == "sdflow" or ARCH != "sd15":
            raise SystemExit(1)
    print("[parity] making the checkpoint with comfy_side.py make-ckpt (fallback)", flush=True)
    r = subprocess.run([sys.executable, os.path.join(HERE, "comfy_side.py"), "make-ckpt", "--comfy", args.comfy,
                        "--out", path, "--seed", str(args.ckpt_seed)], capture_output=True, text=True, timeout=900)
    if r.returncode != 0 or not os.path.exists(path):
        print(r.stdout[-2000:], r.stderr[-4000:], flush=True)
        raise SystemExit("could not make a checkpoint")
    return f"comfy_side.py make-ckpt --seed {args.ckpt_seed} (fallback: sdflow make-checkpoint unavailable)"


def make_sdxl_extras(args, models, kinds):
    """The refiner checkpoint and the two LoRAs the SDXL cases need, made by sdflow; returns
    {kind: reason} for the kinds that cannot run (their maker failed)."""
    ckpt = os.path.join(models, "checkpoints", CKPT_NAME)
    jobs = []
    if "refiner" in kinds:
        jobs.append(("refiner", [args.sdflow, "make-checkpoint", os.path.join(models, "checkpoints", REFINER_NAME),
                                 "--arch", "sdxl_refiner", "--seed", str(args.ckpt_seed + 1)]))
    if "lora2" in kinds:
        os.makedirs(os.path.join(models, "loras"), exist_ok=True)
        for name, fmt_, seed in ((LORA_NAMES[0], "kohya", 11), (LORA_NAMES[1], "peft", 12)):
            jobs.append(("lora2", [args.sdflow, "make-lora", "--for", ckpt, "--rank", "16", "--seed", str(seed),
                                   "--format", fmt_, os.path.join(models, "loras", name)]))
    bad = {}
    for kind, cmd in jobs:
        if kind in bad or (args.reuse_ckpt and os.path.exists(cmd[-1] if kind == "lora2" else cmd[3])):
            continue
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=sdflow_env())
        print(f"[parity] {' '.join(shlex.quote(x) for x in cmd[1:])}: rc {r.returncode}", flush=True)
        if r.returncode != 0:
            bad[kind] = f"could not make its files: {(r.stderr or r.stdout).strip()[-300:]}"
    return bad


# ---------------------------------------------------------------------------------------------
# Comparison

def sigma_max_sd15():
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    acp = np.cumprod(1.0 - betas)
    return float(np.float32(((1 - acp[-1]) / acp[-1]) ** 0.5))


def rel_l2(a, b):
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    nb = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / nb) if nb > 0 else float(np.linalg.norm(a - b))


def psnr(a, b):
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def load_comfy(out_dir, prefix):
    path = os.path.join(out_dir, prefix + ".safetensors")
    return pyio.read_safetensors(path) if os.path.exists(path) else None


def load_sdflow_latent(out_dir, prefix):
    files = sorted(glob.glob(os.path.join(out_dir, glob.escape(prefix) + "_*_.latent")))
    if not files:
        return None
    return pyio.read_safetensors(files[-1], names={"latent_tensor"}).get("latent_tensor")


def load_sdflow_images(out_dir, prefix):
    files = sorted(glob.glob(os.path.join(out_dir, glob.escape(prefix) + "_*_.png")))
    if not files:
        return None
    return np.stack([pyio.read_png(f)[..., :3] for f in files])


def fmt(v, spec):
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return format(v, spec)


def compare_case(c, comfy_dir, sdflow_dir):
    r = c.row()
    pre = f"parity/{c.name}/"
    problems = []
    # noise probe
    cp = load_comfy(comfy_dir, pre + "probe")
    try:
        sp = load_sdflow_latent(sdflow_dir, pre + "probe")
    except Exception as e:
        sp, r["sdflow_probe_error"] = None, str(e)
    if cp is not None and "prepare_noise" in cp:
        factor = math.sqrt(1.0 + sigma_max_sd15() ** 2) / SCALE
        r["probe_method_check"] = float(np.max(np.abs(cp["latent_tensor"] / factor - cp["prepare_noise"])))
        if not r["probe_method_check"] <= 1e-4:
            problems.append("noise probe does not reproduce prepare_noise on the ComfyUI side")
    if cp is None or sp is None:
        r["noise"] = "missing"
        problems.append("noise probe missing (" + ("comfy" if cp is None else "sdflow") + ")")
    elif sp.shape != cp["latent_tensor"].shape:
        r["noise"] = f"shape {list(sp.shape)} vs {list(cp['latent_tensor'].shape)}"
        problems.append("noise shape")
    else:
        a, b = sp.astype(np.float64), cp["latent_tensor"].astype(np.float64)
        d = float(np.max(np.abs(a - b)))
        r["noise_max_abs"] = d / (math.sqrt(1.0 + sigma_max_sd15() ** 2) / SCALE)  # in units of the noise
        if not np.all(np.isfinite(sp)) or not np.all(np.isfinite(b)):
            # x + d * 0 is NaN when the UNet's output d is not finite: the probe cannot tell
            r["noise"] = "probe non-finite"
            problems.append("noise probe non-finite (" + ("sdflow" if not np.all(np.isfinite(sp)) else "comfy") +
                            " UNet output not finite)")
        elif np.array_equal(sp, cp["latent_tensor"]):
            r["noise"] = "bitwise"
        elif d <= NOISE_REL_TOL * float(np.max(np.abs(b))):
            r["noise"] = "equal"
        else:
            r["noise"] = "DIFFERENT"
            problems.append("initial noise differs")
    if c.kind != "noise":
        cl = load_comfy(comfy_dir, pre + "latent")
        try:
            sl = load_sdflow_latent(sdflow_dir, pre + "latent")
        except Exception as e:
            sl, r["sdflow_latent_error"] = None, str(e)
        if cl is None or sl is None:
            problems.append("latent missing (" + ("comfy" if cl is None else "sdflow") + ")")
        elif sl.shape != cl["latent_tensor"].shape:
            problems.append(f"latent shape {list(sl.shape)} vs {list(cl['latent_tensor'].shape)}")
        else:
            b = cl["latent_tensor"]
            r["latent_rel_l2"] = rel_l2(sl, b)
            r["latent_max_abs"] = float(np.max(np.abs(sl.astype(np.float64) - b.astype(np.float64))))
            r["comfy_latent_std"] = float(np.std(b))
            if not np.all(np.isfinite(b)):
                problems.append("ComfyUI latent has non-finite values")
            if not r["latent_rel_l2"] <= TOL[c.precision]:
                problems.append(f"latent rel-L2 above {TOL[c.precision]:g}")
        ci = load_comfy(comfy_dir, pre + "img")
        try:
            si = load_sdflow_images(sdflow_dir, pre + "img")
        except Exception as e:
            si, r["sdflow_image_error"] = None, str(e)
        if ci is None or si is None:
            problems.append("image missing (" + ("comfy" if ci is None else "sdflow") + ")")
        elif si.shape != ci["image_u8"].shape:
            problems.append(f"image shape {list(si.shape)} vs {list(ci['image_u8'].shape)}")
        else:
            r["psnr_db"] = psnr(si, ci["image_u8"])
            r["image_max_abs"] = int(np.max(np.abs(si.astype(np.int32) - ci["image_u8"].astype(np.int32))))
    r["status"] = "PASS" if not problems else "FAIL"
    r["problems"] = problems
    return r


def save_samples(path, results, sets, limit=5):
    """Both engines' final latents and first images for euler/normal (fp16, fp32) and the worst
    other cases by rel-L2, for looking at by hand (at most `limit` cases, ~1.8 MB each)."""
    def key(r):
        v = r.get("latent_rel_l2")
        return -1.0 if v is None or math.isnan(v) else v
    picked = [r for r in results if r["name"] in ("t2i.euler.normal", "fp32.t2i.euler.normal")]
    picked += sorted((r for r in results if r not in picked and r.get("latent_rel_l2") is not None), key=key,
                     reverse=True)
    out = {}
    for r in picked[:limit]:
        s = sets[r["precision"]]
        pre = f"parity/{r['name']}/"
        cl, ci = load_comfy(s["comfy_out"], pre + "latent"), load_comfy(s["comfy_out"], pre + "img")
        sl, si = load_sdflow_latent(s["sdflow_out"], pre + "latent"), load_sdflow_images(s["sdflow_out"], pre + "img")
        if cl is not None:
            out[r["name"] + ".comfy.latent"] = cl["latent_tensor"]
        if sl is not None:
            out[r["name"] + ".sdflow.latent"] = sl.astype(np.float32)
        if ci is not None:
            out[r["name"] + ".comfy.image0"] = ci["image_u8"][0]
        if si is not None:
            out[r["name"] + ".sdflow.image0"] = si[0]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pyio.write_safetensors(path, out, {"cases": ",".join(r["name"] for r in picked[:limit])})


MISSING_RE = re.compile(r"(noise probe|latent|image) missing")


def case_seconds(meta_outputs, sdflow_nodes, ids):
    """Per-case seconds in each engine (ComfyUI: its output nodes, each charged with the upstream
    work done first for it; sdflow: the node_done times of the case's nodes)."""
    cs = [o.get("seconds") for nid, o in meta_outputs.items() if nid in ids and o.get("seconds") is not None]
    ss = [sdflow_nodes[n] for n in ids if n in sdflow_nodes]
    return (round(sum(cs), 3) if cs else None), (round(sum(ss), 3) if ss else None)


def parse_sdflow_events(log_path):
    nodes = {}
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                line = line.strip()
                if line.startswith("{") and '"node_done"' in line:
                    try:
                        e = json.loads(line)
                        nodes[e["node"]] = e.get("seconds", 0.0)
                    except (ValueError, KeyError):
                        pass
    except OSError:
        pass
    return nodes


# ---------------------------------------------------------------------------------------------
# Report

def markdown(results, meta):
    lines = ["| case | prec | noise | latent rel-L2 | latent max-abs | PSNR dB | img max | status | ComfyUI s | sdflow s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            r["name"], r["precision"], r.get("noise", "-"), fmt(r.get("latent_rel_l2"), ".2e"),
            fmt(r.get("latent_max_abs"), ".2e"), fmt(r.get("psnr_db"), ".1f"), fmt(r.get("image_max_abs"), "d"),
            r["status"] + ("" if r["status"] == "PASS" else " (" + "; ".join(r["problems"]) + ")"),
            fmt(r.get("comfy_seconds"), ".2f"), fmt(r.get("sdflow_seconds"), ".2f")))
    s = meta["summary"]
    head = [f"Measured {meta['date']} on {meta.get('device_name', '?')}; sdflow {meta['sdflow_commit']}, "
            f"ComfyUI {meta['comfy_version']} ({meta['comfy_commit']}), torch {meta.get('comfy_torch', '?')}.",
            f"Command: `{meta['command']}`",
            f"{s['pass']} PASS, {s['fail']} FAIL, {s['not_run']} NOT RUN (time budget) of {s['cases']} cases. "
            f"Settings: {meta['width']}x{meta['height']}, {meta['steps']} steps, cfg {meta['cfg']}. "
            f"Tolerances: fp16 rel-L2 <= {TOL['fp16']:g}, fp32 <= {TOL['fp32']:g}; noise equal within "
            f"{NOISE_REL_TOL:g} relative. Engines ran {'in parallel' if meta['parallel'] else 'one after the other'}: "
            f"the seconds are for orientation, not a benchmark.", ""]
    return "\n".join(head + lines) + "\n"


def git_commit(path):
    """HEAD of the git work tree whose top level is `path` (12 hex digits, +dirty), else None."""
    try:
        top = subprocess.run(["git", "-C", path, "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             timeout=10)
        if top.returncode != 0 or os.path.realpath(top.stdout.strip()) != os.path.realpath(path):
            return None
        c = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        d = subprocess.run(["git", "-C", path, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=30)
        return c.stdout.strip()[:12] + ("+dirty" if d.stdout.strip() else "")
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="core", choices=["quick", "core", "all"])
    ap.add_argument("--arch", default="sd15", choices=["sd15", "sdxl"],
                    help="sdxl: the SDXL rows (1024x1024 unless --width/--height, plus 832x1216 cases, two LoRAs, "
                         "base+refiner, FreeU_V2)")
    ap.add_argument("--only", help="regular expression on case names (re.search)")
    ap.add_argument("--shard", help="K/N: run the K-th (1-based) of N interleaved slices of the case list")
    ap.add_argument("--skip-passed", nargs="+", metavar="RESULTS_JSON",
                    help="leave out cases that these earlier results.json files report as PASS")
    ap.add_argument("--list", action="store_true", help="print the cases and exit")
    ap.add_argument("--budget", type=float, default=float(os.environ.get("PARITY_BUDGET", 540)),
                    help="seconds for the whole script from its start (default 540 or $PARITY_BUDGET)")
    ap.add_argument("--work", default=os.environ.get("PARITY_WORK", "/tmp/sdflow-parity"))
    ap.add_argument("--results-dir", default=HERE, help="where results.json and results.md go (default tools/parity)")
    ap.add_argument("--sdflow", default=os.path.join(REPO, "build-gpu", "sdflow"))
    ap.add_argument("--comfy", default=os.environ.get("COMFY_PATH", os.path.join(REPO, "third_party_ref", "ComfyUI")))
    ap.add_argument("--clip-vocab", default=os.path.join(REPO, "third_party_ref", "clip-tokenizer"))
    ap.add_argument("--width", type=int, default=None, help="default 512 (sd15), 1024 (sdxl)")
    ap.add_argument("--height", type=int, default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg", type=float, default=7.0)
    ap.add_argument("--ckpt-maker", default="auto", choices=["auto", "sdflow", "comfy"])
    ap.add_argument("--ckpt-seed", type=int, default=1)
    ap.add_argument("--reuse-ckpt", action="store_true", help="keep an existing checkpoint in the work dir")
    ap.add_argument("--nodes", default="auto", choices=["auto", "real", "restated"],
                    help="ComfyUI side: nodes.py classes (real) or comfy_side.py's re-statement")
    ap.add_argument("--comfy-attention", default="default", choices=["default", "basic"],
                    help="basic: ComfyUI without its memory-dependent attention chunking (CPU self-test)")
    ap.add_argument("--comfy-flags", default="", help="extra ComfyUI flags for every run (space separated)")
    ap.add_argument("--sdflow-flags", default="", help="extra sdflow flags for every run (space separated)")
    ap.add_argument("--serial", action="store_true", help="run the engines one after the other")
    ap.add_argument("--save-samples", help="write both engines' latents and first images of a few cases (the "
                    "euler/normal ones and the worst failures) to this .safetensors file")
    ap.add_argument("--selftest", action="store_true",
                    help="CPU self-test: 64x64, 3 steps, a few cases; the 'sdflow' side is a second ComfyUI run "
                         "with the other node implementation, written in sdflow's file formats")
    args = ap.parse_args()
    set_arch(args.arch)
    args.width = args.width or (1024 if args.arch == "sdxl" else 512)
    args.height = args.height or (1024 if args.arch == "sdxl" else 512)
    t_start = time.time()
    deadline = t_start + args.budget
    if args.selftest:
        return selftest(args)

    cases = all_cases(args.cases)
    if args.only:
        cases = [c for c in cases if re.search(args.only, c.name)]
    if args.skip_passed:  # a grid spread over several device calls: drop what earlier runs passed
        passed = set()
        for path in args.skip_passed:
            with open(path) as f:
                passed |= {r["name"] for r in json.load(f)["results"] if r["status"] == "PASS"}
        cases = [c for c in cases if c.name not in passed]
    if args.shard:
        k, n = (int(x) for x in args.shard.split("/"))
        cases = [c for i, c in enumerate(cases) if i % n == k - 1]
    if args.list:
        for c in cases:
            print(c.tier, c.name, c.precision, c.sampler, c.scheduler, c.denoise, c.batch, c.seed)
        print(len(cases), "cases")
        return 0
    res = run_cases(args, cases, deadline, t_start)
    return 0 if res and all(r["status"] == "PASS" for r in res) else 3


def run_cases(args, cases, deadline, t_start, comfy_base_flags=None, sdflow_base_flags=None, fake_sdflow=None):
    phases = {}
    work = os.path.abspath(args.work)
    if os.path.isdir(work):  # everything of an earlier run but the checkpoint
        for sub in ("comfy_fp16", "comfy_fp32", "sdflow_fp16", "sdflow_fp32", "sdflow_fp16_raw", "sdflow_fp32_raw",
                    "input", "temp"):
            shutil.rmtree(os.path.join(work, sub), ignore_errors=True)
        for f in glob.glob(os.path.join(work, "*.json")) + glob.glob(os.path.join(work, "*.log")):
            os.remove(f)
    os.makedirs(work, exist_ok=True)
    models = os.path.join(work, "models")
    input_dir = os.path.join(work, "input")
    os.makedirs(os.path.join(models, "checkpoints"), exist_ok=True)
    os.makedirs(input_dir, exist_ok=True)
    comfy_base_flags = comfy_base_flags if comfy_base_flags is not None else []
    sdflow_base_flags = sdflow_base_flags if sdflow_base_flags is not None else []
    comfy_extra, sdflow_extra = args.comfy_flags.split(), args.sdflow_flags.split()
    command = shlex.join(["python3", "tools/parity/parity.py"] + sys.argv[1:])

    print(f"[parity] {len(cases)} cases, budget {args.budget:.0f}s, work {work}", flush=True)
    lists = sdflow_lists(args.sdflow) if fake_sdflow is None and os.path.exists(args.sdflow) else None
    list_notes = []
    if lists:
        if lists[0] != SAMPLERS:
            list_notes.append(f"sdflow samplers differ: missing {sorted(set(SAMPLERS) - set(lists[0]))}, "
                              f"extra {sorted(set(lists[0]) - set(SAMPLERS))}")
        if lists[1] != SCHEDULERS:
            list_notes.append(f"sdflow schedulers differ: {lists[1]}")
        unsupported = set(SAMPLERS) - set(lists[0]) | set(SCHEDULERS) - set(lists[1])
        if unsupported:
            cases = [c for c in cases if c.sampler not in unsupported and c.scheduler not in unsupported]
    for n in list_notes:
        print("[parity] " + n, flush=True)

    t = time.time()
    ckpt = os.path.join(models, "checkpoints", CKPT_NAME)
    ckpt_how = make_checkpoint(args, ckpt)
    if ARCH == "sdxl":
        for kind, why in make_sdxl_extras(args, models, {c.kind for c in cases}).items():
            list_notes.append(f"{kind} cases left out: {why}")
            print(f"[parity] {kind} cases left out: {why}", flush=True)
            cases = [c for c in cases if c.kind != kind]
    phases["checkpoint"] = round(time.time() - t, 2)
    print(f"[parity] checkpoint: {ckpt_how} ({phases['checkpoint']}s)", flush=True)
    make_input_image(os.path.join(input_dir, INPUT_NAME), args.width, args.height)

    sets = {}
    for prec in ("fp16", "fp32"):
        cs = [c for c in cases if c.precision == prec]
        if not cs:
            continue
        wf, ids = build_workflow(cs, CKPT_NAME, args.width, args.height, args.steps, args.cfg)
        path = os.path.join(work, f"workflow_{prec}.json")
        with open(path, "w") as f:
            json.dump(wf, f, indent=1)
        flags = ["--force-fp32"] if prec == "fp32" else []
        sets[prec] = dict(cases=cs, wf=path, ids=ids, comfy_out=os.path.join(work, f"comfy_{prec}"),
                          sdflow_out=os.path.join(work, f"sdflow_{prec}"),
                          comfy_flags=comfy_base_flags + flags + comfy_extra,
                          sdflow_flags=sdflow_base_flags + flags + sdflow_extra)

    # Validate the workflows with sdflow first (seconds; catches schema mistakes before the runs).
    if fake_sdflow is None and os.path.exists(args.sdflow):
        for prec, s in sets.items():
            r = subprocess.run([args.sdflow, "--models-dir", models, "--input-dir", input_dir, "validate", s["wf"]],
                               capture_output=True, text=True, timeout=120, env=sdflow_env())
            print(f"[parity] sdflow validate {prec}: rc {r.returncode} {(r.stdout + r.stderr).strip()[-1500:]}",
                  flush=True)

    reserve = 20.0 + 0.25 * len(cases)  # for stopping stragglers, the comparison and the report
    engine_deadline = deadline - reserve
    procs = []
    t_engines = time.time()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    order = ["fp16", "fp32"]
    comfy_procs, sdflow_procs = {}, {}

    def start(prec, engine, dl):
        s = sets[prec]
        os.makedirs(s["sdflow_out"], exist_ok=True)
        if engine == "comfy":
            p = Proc(f"comfy {prec}", [sys.executable, os.path.join(HERE, "comfy_side.py"), "run", "--comfy", args.comfy,
                                        "--workflow", s["wf"], "--models-dir", models, "--input-dir", input_dir,
                                        "--out", s["comfy_out"], "--deadline", str(dl),
                                        "--nodes", args.nodes, "--attention", args.comfy_attention,
                                        "--"] + s["comfy_flags"],
                     os.path.join(work, f"comfy_{prec}.log"), env=env)
            comfy_procs[prec] = p
            return p
        if fake_sdflow is not None:
            p = fake_sdflow(prec, s, models, input_dir, dl)
        elif not os.path.exists(args.sdflow):
            p = Proc(f"sdflow {prec}", ["bash", "-c", f"echo 'no sdflow binary at {args.sdflow}'; exit 127"],
                     os.path.join(work, f"sdflow_{prec}.log"))
        else:
            p = SdflowRunner(prec, s, args, models, input_dir, work, dl)
        sdflow_procs[prec] = p
        return p

    if args.serial:
        # One process at a time; each gets a share of the time left, by its number of cases.
        steps = [(prec, e) for prec in order if prec in sets for e in ("comfy", "sdflow")]
        for i, (prec, e) in enumerate(steps):
            left_weight = sum(len(sets[q]["cases"]) for q, _ in steps[i:])
            dl = time.time() + (engine_deadline - time.time()) * len(sets[prec]["cases"]) / max(left_weight, 1)
            wait_all([start(prec, e, dl)], dl, grace=10 if e == "comfy" else 0)
    else:
        for prec in order:
            if prec in sets:
                procs += [start(prec, "comfy", engine_deadline), start(prec, "sdflow", engine_deadline)]
        wait_all([p for p in procs if p.name.startswith("sdflow")], engine_deadline)
        wait_all([p for p in procs if p.name.startswith("comfy")], engine_deadline, grace=10)
    phases["engines"] = round(time.time() - t_engines, 2)
    for p in list(comfy_procs.values()) + list(sdflow_procs.values()):
        status = f"rc {p.rc}" + (" (stopped at the time budget)" if p.killed else "")
        print(f"[parity] {p.name}: {status}, {p.seconds or 0:.1f}s", flush=True)
        if p.rc not in (0, None) or p.killed:
            print(tail(p.log_path), flush=True)

    # Compare
    t = time.time()
    results, meta_comfy = [], {}
    for prec, s in sets.items():
        try:
            with open(os.path.join(s["comfy_out"], "comfy_meta.json")) as f:
                meta_comfy[prec] = json.load(f)
        except (OSError, ValueError):
            meta_comfy[prec] = {}
        sd_nodes = parse_sdflow_events(sdflow_procs[prec].log_path)
        runner = sdflow_procs[prec]
        for c in s["cases"]:
            r = compare_case(c, s["comfy_out"], s["sdflow_out"])
            r["comfy_seconds"], r["sdflow_seconds"] = case_seconds(meta_comfy[prec].get("outputs", {}), sd_nodes,
                                                                    s["ids"][c.name])
            extra = []
            outs = meta_comfy[prec].get("outputs", {})
            errs = sorted({o.get("error") for nid, o in outs.items()
                           if nid in s["ids"][c.name] and o.get("status") == "error"})
            if errs:
                extra.append("ComfyUI error: " + "; ".join(errs))
            if c.name in getattr(runner, "failed", {}):
                extra.append("sdflow error: " + runner.failed[c.name])
            if getattr(runner, "probe_error", None) and r.get("noise") == "missing":
                r["noise"] = "not checked"
                r["problems"] = [p for p in r["problems"] if not p.startswith("noise probe missing")]
                extra.append("noise not checked: " + runner.probe_error)
            r["problems"] = extra + r["problems"]
            r["not_run"] = bool(r["problems"]) and all(MISSING_RE.match(p) for p in r["problems"])
            r["status"] = "PASS" if not r["problems"] else ("NOT RUN" if r["not_run"] else "FAIL")
            results.append(r)
    results.sort(key=lambda r: [c.name for c in cases].index(r["name"]))
    phases["compare"] = round(time.time() - t, 2)

    m16 = meta_comfy.get("fp16") or meta_comfy.get("fp32") or {}
    for key, mine in (("samplers", SAMPLERS), ("schedulers", SCHEDULERS)):
        if m16.get(key) and m16[key] != mine:
            list_notes.append(f"ComfyUI's {key} differ from parity.py's list: {m16[key]}")
            print("[parity] " + list_notes[-1], flush=True)
    n_pass = sum(r["status"] == "PASS" for r in results)
    meta = {
        "date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"),
        "command": os.environ.get("PARITY_COMMAND") or command,
        "parity_command": command,
        "device_name": m16.get("device_name"),
        "comfy_torch": m16.get("torch"),
        "comfy_version": m16.get("comfyui_version", "?"),
        "comfy_commit": os.environ.get("COMFY_COMMIT") or git_commit(args.comfy) or "unknown",
        "sdflow_commit": os.environ.get("SDFLOW_COMMIT") or git_commit(REPO) or "unknown",
        "checkpoint": ckpt_how, "width": args.width, "height": args.height, "steps": args.steps, "cfg": args.cfg,
        "prompt": PROMPT, "negative": NEGATIVE, "parallel": not args.serial, "cases_selected": args.cases,
        "comfy": {p: {k: v for k, v in m.items() if k != "outputs"} for p, m in meta_comfy.items()},
        "sdflow_flags": {p: s["sdflow_flags"] for p, s in sets.items()},
        "list_notes": list_notes, "phases_s": phases,
        "build_s": float(os.environ["BUILD_SECONDS"]) if os.environ.get("BUILD_SECONDS") else None,
        "summary": {"cases": len(results), "pass": n_pass, "fail": sum(r["status"] == "FAIL" for r in results),
                    "not_run": sum(r["status"] == "NOT RUN" for r in results)},
        "sdflow_runs": {p: {"runs": getattr(r, "runs", 1), "failed": getattr(r, "failed", {}),
                            "probe_error": getattr(r, "probe_error", None), "notes": getattr(r, "notes", []),
                            "rc": r.rc, "stopped_at_budget": r.killed} for p, r in sdflow_procs.items()},
        "tolerances": {"latent_rel_l2": TOL, "noise_rel": NOISE_REL_TOL},
    }
    if getattr(args, "save_samples", None):
        try:
            save_samples(args.save_samples, results, sets)
        except Exception as e:
            print(f"[parity] could not write samples: {e}", flush=True)
    phases["total"] = round(time.time() - t_start, 2)
    md = markdown(results, meta)
    os.makedirs(args.results_dir, exist_ok=True)
    with open(os.path.join(args.results_dir, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1, default=str)
        f.write("\n")
    with open(os.path.join(args.results_dir, "results.md"), "w") as f:
        f.write(md)
    print(md, flush=True)
    print(f"[parity] phases (s): {json.dumps(phases)}; results in {args.results_dir}", flush=True)
    return results


# ---------------------------------------------------------------------------------------------
# Self-test (CPU): ComfyUI with nodes.py's classes vs ComfyUI with the re-stated nodes, the
# second one's outputs written in sdflow's file formats (.latent + PNG) and read back by the
# same comparison code. Expect: bitwise noise, rel-L2 0, PSNR inf; then the comparison is
# checked to catch a planted difference and a missing output.

def selftest(args):
    t_start = time.time()
    args.work = args.work if args.work != "/tmp/sdflow-parity" else "/tmp/sdflow-parity-selftest"
    args.width = args.height = 64
    args.steps = 3
    args.results_dir = os.path.join(args.work, "results")
    args.reuse_ckpt = True
    args.comfy_attention = "basic"
    names = ["t2i.euler.normal", "fp32.t2i.euler.normal", "t2i.euler_ancestral.normal", "t2i.dpmpp_2m_sde.normal",
             "t2i.uni_pc.normal", "i2i.euler.normal.d060", "inp_vefi.euler.normal", "inp_mask.ddim.normal.d080",
             "noise.seedmax", "t2i.dpmpp_sde.normal", "t2i.euler.karras"]
    cases = [c for c in all_cases("core") if c.name in names]
    assert len(cases) == len(names), "self-test case names out of date"
    print(f"[selftest] {len(all_cases('quick'))} quick / {len(all_cases('core'))} core / "
          f"{len(all_cases('all'))} all cases", flush=True)
    # trampoline on its own: deep generator recursion with tail calls
    tr = pyio.install_trampoline(os.path.join(args.work, "tramp"))

    def count(n, acc):
        if n == 0:
            return acc
        if n % 2:
            raise tr.TailCall(count(n - 1, acc + 1))
        sub = yield count(n - 1, 0)
        return acc + sub + 1
    assert tr.trampoline(count(20000, 0)) == 20000, "trampoline"

    primary = "real" if args.nodes == "auto" else args.nodes
    other = "restated" if primary == "real" else "real"
    args.nodes = primary
    env = dict(os.environ, PYTHONUNBUFFERED="1")

    def fake_sdflow(prec, s, models, input_dir, engine_deadline):
        """A ComfyUI run with the other node implementation; a converter then writes its outputs
        as sdflow would (SaveLatent .latent, SaveImage PNGs)."""
        raw = s["sdflow_out"] + "_raw"
        conv = ("import sys, os, glob; sys.path.insert(0, %r); import pyio, numpy as np\n"
                "raw, out = %r, %r\n"
                "for f in glob.glob(os.path.join(raw, 'parity', '*', '*.safetensors')):\n"
                "    t = pyio.read_safetensors(f); d = os.path.join(out, os.path.relpath(os.path.dirname(f), raw))\n"
                "    os.makedirs(d, exist_ok=True); stem = os.path.basename(f)[:-len('.safetensors')]\n"
                "    if 'latent_tensor' in t:\n"
                "        pyio.write_safetensors(os.path.join(d, stem + '_00001_.latent'), {'latent_tensor': t['latent_tensor'],"
                " 'latent_format_version_0': np.zeros(0, np.float32)})\n"
                "    else:\n"
                "        for i, im in enumerate(t['image_u8']): pyio.write_png(os.path.join(d, '%%s_%%05d_.png' %% (stem, i + 1)), im)\n"
                % (HERE, raw, s["sdflow_out"]))
        cmd = (f"{sys.executable} {os.path.join(HERE, 'comfy_side.py')} run --comfy {args.comfy} --workflow {s['wf']} "
               f"--models-dir {models} --input-dir {input_dir} --out {raw} --deadline {engine_deadline} "
               f"--nodes {other} --attention basic -- {' '.join(s['comfy_flags'])} && {sys.executable} -c \"$CONV\"")
        return Proc(f"sdflow {prec} (selftest: ComfyUI, {other} nodes)", ["bash", "-c", cmd],
                    os.path.join(s["sdflow_out"] + ".log"), env=dict(env, CONV=conv))

    ok = True
    results = run_cases(args, cases, time.time() + 3600, t_start, comfy_base_flags=["--cpu"],
                        fake_sdflow=fake_sdflow)
    for r in results:
        exact = r.get("noise") == "bitwise" and (r["kind"] == "noise" or (r.get("latent_rel_l2") == 0.0 and
                                                                           r.get("psnr_db") == float("inf")))
        good = r["status"] == "PASS" and exact and r.get("probe_method_check", 1) <= 1e-4
        ok &= good
        print(f"[selftest] {r['name']}: {'ok' if good else 'NOT EXACT'} noise={r.get('noise')} "
              f"probe_check={r.get('probe_method_check')} rel_l2={r.get('latent_rel_l2')} psnr={r.get('psnr_db')} "
              f"{r['problems']}", flush=True)
    metas = json.load(open(os.path.join(args.results_dir, "results.json")))["meta"]["comfy"]
    print(f"[selftest] ComfyUI side: {json.dumps(metas.get('fp16', {}), default=str)[:600]}", flush=True)

    # The comparison must see a planted difference and a missing file.
    s_out = os.path.join(args.work, "sdflow_fp16", "parity")
    lat = sorted(glob.glob(os.path.join(s_out, "t2i.euler.normal", "latent_*_.latent")))[0]
    t = pyio.read_safetensors(lat)
    t["latent_tensor"] = t["latent_tensor"] * np.float32(1.001)
    pyio.write_safetensors(lat, t)
    png = sorted(glob.glob(os.path.join(s_out, "t2i.euler.normal", "img_*_.png")))[0]
    im = pyio.read_png(png)
    im[0, 0, 0] ^= 8
    pyio.write_png(png, im)
    for f in glob.glob(os.path.join(s_out, "t2i.uni_pc.normal", "probe_*")):
        os.remove(f)
    c_by = {c.name: c for c in cases}
    r1 = compare_case(c_by["t2i.euler.normal"], os.path.join(args.work, "comfy_fp16"), os.path.join(args.work, "sdflow_fp16"))
    r2 = compare_case(c_by["t2i.uni_pc.normal"], os.path.join(args.work, "comfy_fp16"), os.path.join(args.work, "sdflow_fp16"))
    planted = abs(r1["latent_rel_l2"] - 1e-3) < 1e-5 and r1["psnr_db"] < 100 and r1["image_max_abs"] == 8
    missing = r2["noise"] == "missing" and r2["status"] == "FAIL"
    print(f"[selftest] planted 1e-3 difference: rel_l2={r1['latent_rel_l2']:.6g} psnr={r1['psnr_db']:.1f} "
          f"-> {'ok' if planted else 'WRONG'}; missing probe -> {'ok' if missing else 'WRONG'}", flush=True)
    ok &= planted and missing
    # The PNG fallback decoder against Pillow on a real filtered PNG (Pillow writes adaptive filters).
    try:
        from PIL import Image
        src = np.random.RandomState(0).randint(0, 256, (37, 53, 3)).astype(np.uint8)
        src[:, :20] = np.linspace(0, 255, 20)[None, :, None].astype(np.uint8)
        p = os.path.join(args.work, "pil.png")
        Image.fromarray(src).save(p, optimize=True)
        dec_ok = np.array_equal(pyio._decode_png_zlib(p), src)
        print(f"[selftest] zlib PNG decoder vs Pillow-written PNG: {'ok' if dec_ok else 'WRONG'}", flush=True)
        ok &= dec_ok
    except ImportError:
        pass
    print(f"[selftest] {'PASSED' if ok else 'FAILED'} in {time.time() - t_start:.0f}s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
