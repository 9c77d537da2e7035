#!/usr/bin/env python3
"""Golden data for sdflow's tests/sampling, computed by ComfyUI itself.

    python3 tools/goldens/make_sampling_goldens.py --comfy /path/to/ComfyUI \
        [--out tests/data/sampling]

Writes goldens.safetensors (tensors) and goldens.json (the cases and the versions used):
  * the SD1.x sigma table (plain and zero-terminal-SNR) and model-sampling conversions,
  * sigma lists of every scheduler for several (steps, denoise) pairs, for a plain sampler and a
    discard-penultimate one (KSampler.set_steps),
  * comfy.sample.prepare_noise for several seeds (up to 2^64 - 1) and batch_index lists,
  * the final latent of every KSampler sampler on a toy analytic denoiser, through ComfyUI's
    real KSampler / KSAMPLER / KSamplerX0Inpaint code, plus driver cases (img2img denoise,
    inpainting masks, KSamplerAdvanced start/end steps, leftover noise).

Everything runs on the CPU in float32. The toy denoiser is the exact posterior mean of a
Gaussian data distribution per element: D(x, sigma) = (s2 * x + sigma^2 * mu) / (s2 + sigma^2),
with mu = mu_c for the positive and mu_u for the negative prompt, combined by ComfyUI's
cfg_function (cfg = 2.5). Its constants are stored in the goldens, and the C++ test evaluates
the same ops in the same order, so any difference comes from the sampling code.
"""

import argparse
import json
import math
import os
import struct
import sys

LATENT_SHAPE = [2, 4, 8, 8]
CFG = 2.5


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--comfy", required=True, help="ComfyUI checkout (the directory holding comfy/)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "sampling"))
    return p.parse_args()


def import_comfy(comfy_dir):
    sys.path.insert(0, os.path.abspath(comfy_dir))
    import comfy.options
    # ComfyUI reads its flags at import time: force the CPU so nothing touches a GPU.
    comfy.options.enable_args_parsing()
    saved = sys.argv
    sys.argv = [saved[0], "--cpu"]
    try:
        import comfy.model_management  # noqa: F401
        import comfy.samplers
        import comfy.sample
        import comfy.model_sampling
        import comfy.model_base
        import comfy.latent_formats
        import comfy.sampler_helpers
    finally:
        sys.argv = saved
    return comfy


class SafetensorsWriter:
    """Minimal safetensors writer (F32 / F64 / I64), so the script needs no extra package."""

    def __init__(self):
        self.tensors = []

    def add(self, name, tensor):
        import torch
        t = tensor.detach().cpu().contiguous()
        if t.dtype == torch.float32:
            dtype = "F32"
        elif t.dtype == torch.float64:
            dtype = "F64"
        elif t.dtype == torch.int64:
            dtype = "I64"
        else:
            raise ValueError(f"{name}: unsupported dtype {t.dtype}")
        self.tensors.append((name, dtype, list(t.shape), t.numpy().tobytes()))
        return name

    def write(self, path, metadata):
        header = {"__metadata__": metadata}
        offset = 0
        for name, dtype, shape, data in self.tensors:
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
            offset += len(data)
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * ((8 - len(raw) % 8) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(raw)))
            f.write(raw)
            for _, _, _, data in self.tensors:
                f.write(data)


def toy_constants(torch):
    c, h, w = LATENT_SHAPE[1:]
    mu_c = torch.empty([1, c, h, w], dtype=torch.float32)
    mu_u = torch.empty([1, c, h, w], dtype=torch.float32)
    s2 = torch.empty([1, c, h, w], dtype=torch.float32)
    for ci in range(c):
        for hi in range(h):
            for wi in range(w):
                mu_c[0, ci, hi, wi] = 0.8 * math.sin(0.7 * ci + 0.37 * hi - 0.23 * wi + 0.1)
                mu_u[0, ci, hi, wi] = 0.5 * math.cos(0.3 * ci - 0.41 * hi + 0.17 * wi)
                s2[0, ci, hi, wi] = 0.25 + 0.5 * (1 + math.sin(1.3 * ci + 0.5 * hi + 0.9 * wi)) / 2
    return mu_c, mu_u, s2


def toy_denoise(x, sigma, mu, s2):
    # sigma: [B]. Mirrored op for op by tests/sampling/test_goldens_torch.cpp.
    sig2 = sigma.view([-1, 1, 1, 1]) ** 2
    return (s2 * x + sig2 * mu) / (s2 + sig2)


def main():
    args = parse_args()
    comfy = import_comfy(args.comfy)
    import numpy
    import scipy
    import torch

    samplers_mod = comfy.samplers
    mu_c, mu_u, s2 = toy_constants(torch)

    class ModelSamplingEps(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.EPS):
        pass

    class ModelSamplingV(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.V_PREDICTION):
        pass

    ms = ModelSamplingEps()

    class FakeBaseModel:
        def __init__(self):
            self.model_sampling = ms
            self.latent_format = comfy.latent_formats.SD15()

        def scale_latent_inpaint(self, **kwargs):
            return comfy.model_base.BaseModel.scale_latent_inpaint(self, **kwargs)

        def process_latent_in(self, latent):
            return self.latent_format.process_in(latent)

        def process_latent_out(self, latent):
            return self.latent_format.process_out(latent)

    base = FakeBaseModel()

    class FakePatcher:
        load_device = torch.device("cpu")
        model_options = {}

        def get_model_object(self, name):
            if name == "model_sampling":
                return ms
            raise KeyError(name)

    patcher = FakePatcher()

    class FakeGuider:
        """Stands in for CFGGuider: inner_model, model_patcher and __call__ = predict_noise."""

        inner_model = base
        model_patcher = patcher

        def __call__(self, x, timestep, model_options={}, seed=None):
            cond = toy_denoise(x, timestep, mu_c, s2)
            uncond = toy_denoise(x, timestep, mu_u, s2)
            return samplers_mod.cfg_function(base, cond, uncond, CFG, x, timestep, model_options=model_options)

    guider = FakeGuider()

    def fake_sample(model, noise, positive, negative, cfg, device, sampler, sigmas, model_options={},
                    latent_image=None, denoise_mask=None, callback=None, disable_pbar=False, seed=None):
        # CFGGuider.sample -> outer_sample -> inner_sample for one plain (non-nested) latent.
        if sigmas.shape[-1] == 0:
            return latent_image
        if denoise_mask is not None:
            denoise_mask = comfy.sampler_helpers.prepare_mask(denoise_mask, latent_image.shape, device)
        if latent_image is not None and torch.count_nonzero(latent_image) > 0:
            latent_image = base.process_latent_in(latent_image)
        extra_args = {"model_options": {"transformer_options": {"sample_sigmas": sigmas}}, "seed": seed}
        samples = sampler.sample(guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask, True)
        return base.process_latent_out(samples.to(torch.float32))

    samplers_mod.sample = fake_sample

    out = SafetensorsWriter()
    cases = {"schedules": [], "noise": [], "samplers": [], "model_sampling": {}}

    # Model sampling tables and conversions.
    out.add("ms.sigmas", ms.sigmas)
    out.add("ms.log_sigmas", ms.log_sigmas)
    ms_zsnr = ModelSamplingEps(zsnr=True)
    out.add("ms_zsnr.sigmas", ms_zsnr.sigmas)
    probe_sigmas = torch.tensor([0.0291675, 0.5, 1.0, 3.3, 7.0, 14.6146], dtype=torch.float32)
    out.add("ms.timestep_in", probe_sigmas)
    out.add("ms.timestep_out", ms.timestep(probe_sigmas))
    probe_t = torch.tensor([0.0, 0.25, 1.5, 500.7, 998.2, 999.0, 1200.0], dtype=torch.float32)
    out.add("ms.sigma_in", probe_t)
    out.add("ms.sigma_out", ms.sigma(probe_t))
    percents = [0.0, 0.2, 0.5, 0.8, 0.999, 1.0]
    cases["model_sampling"]["percent_to_sigma"] = [[p, ms.percent_to_sigma(p)] for p in percents]
    gen = torch.Generator().manual_seed(7)
    v_in = torch.randn(LATENT_SHAPE, generator=gen)
    v_out = torch.randn(LATENT_SHAPE, generator=gen)
    v_sigma = torch.tensor([0.7, 3.0], dtype=torch.float32)
    out.add("ms.v_input", v_in)
    out.add("ms.v_model_output", v_out)
    out.add("ms.v_sigma", v_sigma)
    out.add("ms.v_denoised", ModelSamplingV().calculate_denoised(v_sigma, v_out, v_in))
    out.add("ms.eps_denoised", ms.calculate_denoised(v_sigma, v_out, v_in))
    out.add("ms.calculate_input", ms.calculate_input(v_sigma, v_in))

    # Schedules through KSampler.set_steps.
    combos = [(1, 1.0), (2, 1.0), (7, 1.0), (10, 1.0), (20, 1.0), (30, 1.0), (13, 0.6), (10, 0.35)]
    for scheduler in samplers_mod.KSampler.SCHEDULERS:
        for sampler_name in ["euler", "dpm_2"]:
            for steps, denoise in combos:
                ks = samplers_mod.KSampler(patcher, steps=steps, device="cpu", sampler=sampler_name,
                                           scheduler=scheduler, denoise=denoise)
                key = out.add(f"sched.{scheduler}.{sampler_name}.{steps}.{denoise}", ks.sigmas.float())
                cases["schedules"].append({"key": key, "scheduler": scheduler, "sampler": sampler_name,
                                           "steps": steps, "denoise": denoise})

    # prepare_noise.
    latent0 = torch.zeros(LATENT_SHAPE)
    noise_cases = [(0, None), (1, None), (42, None), (2**32 + 7, None), (2**63, None), (2**64 - 1, None),
                   (5, [3, 1, 3]), (7, [0]), (2**64 - 1, [2, 0])]
    for i, (seed, inds) in enumerate(noise_cases):
        lat = latent0 if inds is None else torch.zeros([len(inds)] + LATENT_SHAPE[1:])
        key = out.add(f"noise.{i}", comfy.sample.prepare_noise(lat, seed, inds))
        cases["noise"].append({"key": key, "seed": str(seed), "batch_index": inds,
                               "shape": list(lat.shape)})

    # Samplers through comfy.sample.sample (KSampler -> KSAMPLER -> KSamplerX0Inpaint).
    gen = torch.Generator().manual_seed(99)
    img_latent = torch.randn(LATENT_SHAPE, generator=gen) * 4.0
    out.add("toy.mu_c", mu_c)
    out.add("toy.mu_u", mu_u)
    out.add("toy.s2", s2)
    out.add("latent.img", img_latent)
    mask_small = torch.zeros([1, 5, 5])
    mask_small[0, 1:4, 2:5] = 1.0
    out.add("latent.mask", mask_small)

    def run(name, sampler_name, scheduler="karras", steps=8, denoise=1.0, seed=1234, latent="empty",
            mask=False, add_noise=True, start=None, last=None, force_full=False, batch_index=None):
        lat = torch.zeros(LATENT_SHAPE) if latent == "empty" else img_latent.clone()
        if add_noise:
            noise = comfy.sample.prepare_noise(lat, seed, batch_index)
        else:
            noise = torch.zeros(lat.size(), dtype=lat.dtype, layout=lat.layout, device="cpu")
        result = comfy.sample.sample(patcher, noise, steps, CFG, sampler_name, scheduler, [], [], lat,
                                     denoise=denoise, disable_noise=not add_noise, start_step=start,
                                     last_step=last, force_full_denoise=force_full,
                                     noise_mask=mask_small if mask else None, seed=seed)
        key = out.add(f"sampler.{name}", result)
        cases["samplers"].append({"key": key, "sampler": sampler_name, "scheduler": scheduler, "steps": steps,
                                  "denoise": denoise, "seed": str(seed), "latent": latent, "mask": mask,
                                  "add_noise": add_noise, "start_step": start, "last_step": last,
                                  "force_full_denoise": force_full, "batch_index": batch_index})

    for name in samplers_mod.KSampler.SAMPLERS:
        run(name, name)
    run("euler_ancestral.img2img", "euler_ancestral", scheduler="normal", steps=10, denoise=0.6, latent="img")
    run("dpmpp_2m.inpaint", "dpmpp_2m", latent="img", mask=True)
    run("ddim.inpaint", "ddim", scheduler="ddim_uniform", latent="img", mask=True)
    run("euler_cfg_pp.inpaint", "euler_cfg_pp", latent="img", mask=True)
    run("dpmpp_2m_sde.inpaint", "dpmpp_2m_sde", scheduler="exponential", latent="img", mask=True, seed=2**64 - 1)
    run("advanced.stage1", "euler_ancestral", scheduler="normal", steps=10, start=0, last=6, force_full=False)
    run("advanced.stage2", "dpmpp_2m", scheduler="normal", steps=10, latent="img", add_noise=False, start=6,
        last=10000, force_full=True)
    run("advanced.skip", "euler", steps=5, latent="img", start=5, last=10000)
    run("uni_pc.one_step", "uni_pc", steps=1)
    run("lms.simple", "lms", scheduler="simple", steps=12, denoise=0.8, latent="img")
    run("dpmpp_sde.batch_index", "dpmpp_sde", scheduler="beta", steps=6, seed=77, batch_index=[1, 0])

    meta = {
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "comfy_dir": os.path.abspath(args.comfy),
        "cfg": str(CFG),
    }
    os.makedirs(args.out, exist_ok=True)
    out.write(os.path.join(args.out, "goldens.safetensors"), {k: str(v) for k, v in meta.items()})
    with open(os.path.join(args.out, "goldens.json"), "w") as f:
        json.dump({"meta": meta, "latent_shape": LATENT_SHAPE, "cfg": CFG, "cases": cases}, f, indent=1)
    print(f"wrote {len(out.tensors)} tensors to {args.out}")


if __name__ == "__main__":
    main()
