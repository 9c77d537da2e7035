#!/usr/bin/env python3
"""Golden data for sdflow's CFG / DiffusionModel tests, computed by ComfyUI's own pipeline.

    /usr/bin/python3 tools/goldens/make_cfg_goldens.py --comfy third_party_ref/ComfyUI \
        [--out tests/data/cfg] [--attention basic|pytorch]

Every case runs what ComfyUI's KSampler node runs (nodes.common_ksampler: prepare_noise, then
comfy.sample.sample -> KSampler -> CFGGuider -> process_conds -> KSAMPLER -> sampling_function
-> calc_cond_batch -> BaseModel.apply_model) on a real comfy.model_base.BaseModel / SDXL
wrapped in a real comfy.model_patcher.ModelPatcher, with the tiny UNets of tests/data/unet/ (the
UNet goldens' weights, fp16-rounded, run in fp32 on the CPU). Nothing of ComfyUI is replaced
except the conditioning nodes, which are plain dict edits re-stated below, and optional
packages that the exercised code does not call (stubbed when absent, e.g. einops, safetensors).

Writes into --out:
  cfg_goldens.safetensors  conds, masks, input latents and every case's final latent (fp32)
  sdxl_label_emb.safetensors  label_emb.0.0.weight for the SDXL case (fp16): tiny_sdxl's other
                           weights with an ADM input of 16 (pooled) + 6 * 256 = 1552 values
  cfg_goldens.json         the cases (what the C++ test rebuilds) and the versions used
The ADM vectors of SDXL.encode_adm / SDXLRefiner.encode_adm for full-size pooled outputs are
stored too (adm.* tensors), to check the Fourier embeddings on their own.
"""

import argparse
import hashlib
import importlib.abc
import importlib.machinery
import json
import math
import os
import struct
import sys
import types

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Same shapes as UNetConfig::tiny_sd15() / tiny_sdxl() (and tools/goldens/make_unet_goldens.py).
TINY_SD15 = dict(
    in_channels=4, out_channels=4, model_channels=32, channel_mult=[1, 1], num_res_blocks=[1, 1],
    transformer_depth=[1, 0], transformer_depth_middle=1, transformer_depth_output=[1, 1, 0, 0],
    context_dim=48, use_linear_in_transformer=False, num_heads=2, num_head_channels=-1,
    adm_in_channels=None)
POOLED_DIM = 16
TINY_SDXL = dict(
    in_channels=4, out_channels=4, model_channels=32, channel_mult=[1, 1], num_res_blocks=[1, 1],
    transformer_depth=[0, 2], transformer_depth_middle=1, transformer_depth_output=[0, 0, 1, 2],
    context_dim=48, use_linear_in_transformer=True, num_heads=-1, num_head_channels=16,
    adm_in_channels=POOLED_DIM + 6 * 256)

# ---------------------------------------------------------------------------------------------
# Minimal safetensors I/O (the package is not in Debian); F16 / F32 / I64 / U8.

_DT = {"F16": ("float16", 2), "F32": ("float32", 4), "I64": ("int64", 8), "U8": ("uint8", 1)}


def read_safetensors(path):
    import torch
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        name, _ = _DT[v["dtype"]]
        b, e = v["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:e]), dtype=getattr(torch, name)) if e > b else \
            torch.zeros(0, dtype=getattr(torch, name))
        out[k] = t.reshape(v["shape"]).clone()
    return out


def write_safetensors(path, tensors, metadata):
    import torch
    names = {torch.float16: "F16", torch.float32: "F32", torch.int64: "I64", torch.uint8: "U8"}
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        raw = t.numpy().tobytes() if t.dtype != torch.float16 else t.view(torch.int16).numpy().tobytes()
        header[k] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------------------------------------
# Importing ComfyUI on a bare Debian PyTorch.

class _StubMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _stub_class(cls.__name__ + "." + name)


def _stub_class(name):
    def _init(self, *a, **k):
        raise NotImplementedError(f"{name}: stubbed by make_cfg_goldens.py (package not installed)")
    return _StubMeta(name, (), {"__init__": _init})


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _stub_class(self.__name__ + "." + name)


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last on sys.meta_path: only packages that are really missing get a stub, and a stub
    raises as soon as anything in it is called, so an exercised code path cannot use one."""
    ROOTS = ("einops", "trampoline", "safetensors", "torchvision", "packaging", "av", "aiohttp",
             "kornia", "spandrel", "transformers", "sentencepiece", "tokenizers")

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.ROOTS:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []


def import_comfy(comfy_dir, attention):
    import torch
    sys.path.insert(0, os.path.abspath(comfy_dir))
    sys.meta_path.append(_StubFinder())
    # torch < 2.1 has no fp8 dtypes; ComfyUI only names them. Unused integer dtypes stand in, so
    # no float dtype compares equal to them.
    for name, dt in (("float8_e4m3fn", torch.qint8), ("float8_e5m2", torch.quint8),
                     ("float8_e8m0fnu", torch.qint32), ("float8_e4m3fnuz", torch.quint4x2),
                     ("float8_e5m2fnuz", torch.complex32)):
        if not hasattr(torch, name):
            setattr(torch, name, dt)
    if not hasattr(torch.Tensor, "nbytes"):  # torch < 2.0
        torch.Tensor.nbytes = property(lambda self: self.numel() * self.element_size())
    if not hasattr(torch, "compiler"):  # torch < 2.1: nothing is ever being compiled
        torch.compiler = types.SimpleNamespace(is_compiling=lambda: False, disable=lambda *a, **k: (lambda f: f))
    import comfy.options
    comfy.options.enable_args_parsing()
    saved, sys.argv = sys.argv, [sys.argv[0], "--cpu"]
    try:
        import comfy.model_management  # noqa: F401
        import comfy.model_base
        import comfy.model_patcher
        import comfy.sample
        import comfy.samplers
        import comfy.supported_models
        import comfy.ldm.modules.attention as attn
    finally:
        sys.argv = saved
    fn = {"basic": attn.attention_basic, "pytorch": attn.attention_pytorch}[attention]
    attn.optimized_attention = fn
    attn.optimized_attention_masked = fn
    version = "unknown"
    try:
        import comfyui_version
        version = comfyui_version.__version__
    except ImportError:
        pass
    return comfy, version


# ---------------------------------------------------------------------------------------------
# The conditioning nodes used here (nodes.py), as dict edits on [[tensor, options], ...].

def cond(t, **opts):
    return [[t, dict(opts)]]


def set_values(c, **values):
    return [[t, {**o, **values}] for t, o in c]


def set_area(c, width, height, x, y, strength):  # ConditioningSetArea
    return set_values(c, area=(height // 8, width // 8, y // 8, x // 8), strength=strength,
                      set_area_to_bounds=False)


def set_mask(c, mask, set_cond_area, strength):  # ConditioningSetMask
    if mask.dim() < 3:
        mask = mask.unsqueeze(0)
    return set_values(c, mask=mask, set_area_to_bounds=set_cond_area != "default", mask_strength=strength)


def set_range(c, start, end):  # ConditioningSetTimestepRange
    return set_values(c, start_percent=start, end_percent=end)


def combine(a, b):  # ConditioningCombine
    return a + b


# ---------------------------------------------------------------------------------------------

def build_model(comfy, unet_cfg, weights, sdxl):
    import torch
    base_cls = comfy.supported_models.SDXL if sdxl else comfy.supported_models.SD15
    model_config = base_cls({k: v for k, v in unet_cfg.items()})
    # The family's unet_extra_config (real head counts) does not fit the tiny widths.
    model_config.unet_config["num_heads"] = unet_cfg["num_heads"]
    model_config.unet_config["num_head_channels"] = unet_cfg["num_head_channels"]
    model_config.unet_config.update(dict(use_temporal_resblock=False, use_temporal_attention=False,
                                         image_size=32, num_classes="sequential" if sdxl else None,
                                         use_spatial_transformer=True, legacy=False))
    model_config.set_inference_dtype(torch.float32, None)
    cls = comfy.model_base.SDXL if sdxl else comfy.model_base.BaseModel
    model = cls(model_config, device=torch.device("cpu"))
    model.diffusion_model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    model.eval()
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


def common_ksampler(comfy, patcher, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent,
                    denoise=1.0):
    """nodes.common_ksampler without the preview callback."""
    import torch
    latent_image = latent["samples"]
    noise = comfy.sample.prepare_noise(latent_image, seed, latent.get("batch_index"))
    samples = comfy.sample.sample(patcher, noise, steps, cfg, sampler_name, scheduler, positive, negative,
                                  latent_image, denoise=denoise, noise_mask=latent.get("noise_mask"),
                                  disable_pbar=True, seed=seed)
    return samples.to(torch.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfy", required=True, help="ComfyUI checkout root (the folder holding comfy/)")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "cfg"))
    ap.add_argument("--unet-data", default=os.path.join(REPO, "tests", "data", "unet"))
    ap.add_argument("--attention", default="basic", choices=["basic", "pytorch"],
                    help="ComfyUI attention function (pytorch needs torch >= 2)")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(1)  # deterministic reductions, whatever the machine
    comfy, version = import_comfy(args.comfy, args.attention)

    sd15_path = os.path.join(args.unet_data, "tiny_sd15.safetensors")
    sdxl_path = os.path.join(args.unet_data, "tiny_sdxl.safetensors")
    sd15_w = read_safetensors(sd15_path)
    sdxl_w = read_safetensors(sdxl_path)
    g = torch.Generator().manual_seed(20240)
    label_w = (torch.randn((128, TINY_SDXL["adm_in_channels"]), generator=g) /
               math.sqrt(TINY_SDXL["adm_in_channels"])).to(torch.float16)
    sdxl_w["label_emb.0.0.weight"] = label_w

    sd15 = build_model(comfy, TINY_SD15, sd15_w, sdxl=False)
    sdxl = build_model(comfy, TINY_SDXL, sdxl_w, sdxl=True)

    # Inputs (fp32, CPU). Token counts: 77 and 154 (a two-chunk prompt).
    ctx = TINY_SD15["context_dim"]
    t = {}
    t["c1"] = torch.randn((1, 77, ctx), generator=g)
    t["c2"] = torch.randn((1, 77, ctx), generator=g)
    t["n1"] = torch.randn((1, 77, ctx), generator=g)
    t["n154"] = torch.randn((1, 154, ctx), generator=g)
    t["p1"] = torch.randn((1, POOLED_DIM), generator=g)
    t["pn"] = torch.randn((1, POOLED_DIM), generator=g)
    t["img"] = torch.randn((1, 4, 8, 8), generator=g)
    t["img2"] = torch.randn((2, 4, 8, 6), generator=g)
    noise_mask = torch.zeros((1, 16, 16))
    noise_mask[:, 4:13, 2:11] = 1.0
    noise_mask[:, 3, :] = 0.5
    t["noise_mask"] = noise_mask
    cmask = torch.zeros((1, 64, 48))  # resized to the 32×24 latent, then its bounds become the area
    cmask[:, 20:52, 8:30] = 0.75
    cmask[:, 30:40, 12:20] = 1.0
    t["cond_mask"] = cmask

    def P(name, **o):
        return cond(t[name], **o)

    zero = {"samples": torch.zeros((1, 4, 8, 8))}
    cases = [
        # name, model, positive, negative, latent, settings; each positive/negative is described
        # for the C++ side as a list of entries {tensor, options}.
        dict(name="plain", model="sd15", seed=1, steps=6, cfg=7.0, sampler="euler", scheduler="normal",
             positive=[("c1", {})], negative=[("n1", {})], latent="zero"),
        dict(name="cfg1", model="sd15", seed=2, steps=6, cfg=1.0, sampler="euler", scheduler="normal",
             positive=[("c1", {})], negative=[("n1", {})], latent="zero"),
        dict(name="combine_area", model="sd15", seed=3, steps=6, cfg=7.0, sampler="euler", scheduler="normal",
             positive=[("c1", {}), ("c2", {"area": [20, 16, 6, 4], "strength": 0.5, "set_area_to_bounds": False})],
             negative=[("n1", {})], latent="zero_big"),
        dict(name="timestep_range", model="sd15", seed=4, steps=6, cfg=7.0, sampler="euler", scheduler="normal",
             positive=[("c1", {"start_percent": 0.0, "end_percent": 0.5}),
                       ("c2", {"start_percent": 0.5, "end_percent": 1.0})],
             negative=[("n1", {})], latent="zero"),
        dict(name="inpaint", model="sd15", seed=5, steps=6, cfg=7.0, sampler="euler", scheduler="normal",
             positive=[("c1", {})], negative=[("n1", {})], latent="img", noise_mask="noise_mask"),
        dict(name="mask_cond", model="sd15", seed=6, steps=6, cfg=6.0, sampler="euler", scheduler="normal",
             positive=[("c1", {}), ("c2", {"mask": "cond_mask", "set_area_to_bounds": True, "mask_strength": 0.8})],
             negative=[("n1", {})], latent="zero_big"),
        dict(name="token_lcm", model="sd15", seed=7, steps=6, cfg=7.0, sampler="euler", scheduler="normal",
             positive=[("c1", {})], negative=[("n154", {})], latent="zero"),
        dict(name="img2img_batch", model="sd15", seed=8, steps=5, cfg=5.0, sampler="euler_ancestral",
             scheduler="karras", positive=[("c1", {})], negative=[("n1", {})], latent="img2", denoise=0.6),
        dict(name="cfg_pp", model="sd15", seed=9, steps=6, cfg=1.0, sampler="euler_cfg_pp", scheduler="normal",
             positive=[("c1", {})], negative=[("n1", {})], latent="zero"),
        dict(name="sdxl", model="sdxl", seed=10, steps=6, cfg=5.0, sampler="euler", scheduler="normal",
             positive=[("c1", {"pooled_output": "p1", "width": 1024, "height": 768, "crop_w": 16, "crop_h": 8,
                               "target_width": 1024, "target_height": 1024})],
             negative=[("n1", {"pooled_output": "pn"})], latent="zero"),
    ]

    latents = {"zero": zero["samples"], "zero_big": torch.zeros((1, 4, 32, 24)), "img": t["img"], "img2": t["img2"]}
    out = dict(t)
    for c in cases:
        def entries(lst):
            res = []
            for name, opts in lst:
                o = {k: (t[v] if isinstance(v, str) and k in ("mask", "pooled_output") else v)
                     for k, v in opts.items()}
                if "area" in o:
                    o["area"] = tuple(o["area"])
                res += cond(t[name], **o)
            return res
        latent = {"samples": latents[c["latent"]]}
        if c.get("noise_mask"):
            latent["noise_mask"] = t[c["noise_mask"]]
        patcher = sd15 if c["model"] == "sd15" else sdxl
        with torch.no_grad():
            res = common_ksampler(comfy, patcher, c["seed"], c["steps"], c["cfg"], c["sampler"], c["scheduler"],
                                  entries(c["positive"]), entries(c["negative"]), latent, c.get("denoise", 1.0))
        out["result." + c["name"]] = res
        print(f"{c['name']}: {tuple(res.shape)} std {res.std().item():.4f}")

    # Sanity: the node-level helpers produce what the case table says (same dicts as above).
    assert set_area(P("c2"), 128, 160, 32, 48, 0.5)[0][1]["area"] == (20, 16, 6, 4)
    assert set_mask(P("c2"), t["cond_mask"], "mask bounds", 0.8)[0][1]["set_area_to_bounds"]
    assert len(combine(set_range(P("c1"), 0.0, 0.5), set_range(P("c2"), 0.5, 1.0))) == 2

    # ADM vectors for full-size pooled outputs, straight from encode_adm.
    pooled = torch.randn((1, 1280), generator=g)
    out["adm.pooled"] = pooled
    xl = sdxl.model  # a real comfy.model_base.SDXL
    out["adm.sdxl_default"] = xl.encode_adm(pooled_output=pooled, width=832, height=1216)
    out["adm.sdxl_full"] = xl.encode_adm(pooled_output=pooled, width=1024, height=1024, crop_w=12, crop_h=34,
                                         target_width=2048, target_height=1536)
    # SDXLRefiner without its UNet: encode_adm only reads the embedder (and the noise augmentor
    # for unCLIP conds, which are not used here).
    from comfy.ldm.modules.diffusionmodules.openaimodel import Timestep
    ref = comfy.model_base.SDXLRefiner.__new__(comfy.model_base.SDXLRefiner)
    torch.nn.Module.__init__(ref)
    ref.embedder = Timestep(256)
    ref.noise_augmentor = None
    out["adm.refiner_positive"] = ref.encode_adm(pooled_output=pooled, width=1024, height=1024,
                                                 prompt_type="positive")
    out["adm.refiner_negative"] = ref.encode_adm(pooled_output=pooled, width=896, height=1152, crop_w=3,
                                                 prompt_type="negative")
    out["adm.refiner_score"] = ref.encode_adm(pooled_output=pooled, width=1024, height=1024,
                                              aesthetic_score=7.5, prompt_type="negative")

    def sha(path):
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    meta = {
        "comfyui_version": version,
        "torch_version": torch.__version__,
        "attention": args.attention,
        "tiny_sd15_sha256": sha(sd15_path),
        "tiny_sdxl_sha256": sha(sdxl_path),
    }
    os.makedirs(args.out, exist_ok=True)
    gpath = os.path.join(args.out, "cfg_goldens.safetensors")
    lpath = os.path.join(args.out, "sdxl_label_emb.safetensors")
    write_safetensors(gpath, {k: v.float().contiguous() for k, v in out.items()}, meta)
    write_safetensors(lpath, {"label_emb.0.0.weight": label_w}, meta)
    with open(os.path.join(args.out, "cfg_goldens.json"), "w") as f:
        json.dump({"meta": meta, "cases": cases, "pooled_dim": POOLED_DIM}, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(args.out, n)) for n in os.listdir(args.out))
    print(f"wrote {args.out} ({total / 1024:.0f} KiB)")
    sys.stdout.flush()
    # ComfyUI's loaded-model list outlives main(); its ModelPatcher.__del__ fails once the
    # interpreter has torn down the modules it uses, so skip the finalizers.
    os._exit(0)


if __name__ == "__main__":
    main()
