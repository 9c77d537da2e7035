#!/usr/bin/env python3
"""The ComfyUI side of the parity harness: runs an API-format workflow with ComfyUI's own code,
in-process, headless. One process = one set of ComfyUI flags (they are parsed at import).

  comfy_side.py run --comfy DIR --workflow WF.json --models-dir M --input-dir I --out DIR
                    [--deadline EPOCH] [--nodes auto|real|restated] [-- COMFY FLAGS...]
  comfy_side.py make-ckpt --comfy DIR --out FILE.safetensors [--seed N]

`run` loads the checkpoint once and evaluates the workflow's output nodes (SaveLatent,
SaveImage) in ascending node-id order, as sdflow's executor orders them. Node bodies are
ComfyUI's own classes from nodes.py when that module imports ("real"; optional packages it
needs but these nodes never call, e.g. PyAV, are replaced by stubs that raise when used), or
else the bodies of those same nodes re-stated below from nodes.py v0.8.0 ("restated"). Either
way the work is done by comfy.sd / comfy.sample / comfy.samplers / the VAE, unchanged.

Outputs, per output node, in --out: <filename_prefix>.safetensors holding
  SaveLatent: latent_tensor (float32, exactly what SaveLatent stores) and, when the latent comes
              from a KSampler/KSamplerAdvanced, prepare_noise (the initial noise that node drew
              with comfy.sample.prepare_noise for its seed and latent)
  SaveImage:  image_u8 [B, H, W, 3], SaveImage's conversion (clip(255 * x) truncated to uint8)
and comfy_meta.json: versions, device, dtypes, per-output status and seconds.

Also imported by parity.py for the environment shims (setup_imports).
"""

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time
import traceback
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import pyio  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Environment shims. On the GPU machine (PyTorch 2.11, transformers, safetensors, einops
# installed) only the trampoline module and PyAV's stub are used; the rest is for running the
# self-test on a bare Debian PyTorch 1.13.

# (protocol, server, execution: ComfyUI top-level modules that the extracted tree leaves out.)
STUB_ROOTS = ("protocol", "server", "execution", "av", "einops", "torchvision", "packaging", "aiohttp", "kornia", "spandrel", "sentencepiece",
              "tokenizers", "comfyui_manager", "alembic", "sqlalchemy", "blake3", "pydantic", "pydantic_settings")


class _StubMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _stub_class(cls.__name__ + "." + name)


def _stub_class(name):
    def _init(self, *a, **k):
        raise NotImplementedError(f"{name}: stubbed by the parity harness (package not installed)")
    return _StubMeta(name, (), {"__init__": _init, "__call__": _init})


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _stub_class(self.__name__ + "." + name)


class _StubFinder:
    """Last on sys.meta_path: only packages that are really missing get a stub, and a stub raises
    as soon as anything in it is called."""

    def __init__(self):
        self.used = set()

    def find_spec(self, fullname, path, target=None):
        import importlib.machinery
        if fullname.split(".")[0] in STUB_ROOTS:
            self.used.add(fullname.split(".")[0])
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []


def _install_clip_tokenizer_shim():
    """transformers.CLIPTokenizer for the CPU self-test only (Debian has no transformers): the
    OpenAI CLIP BPE on the vocab.json/merges.txt ComfyUI passes, without ftfy."""
    import html
    import re as _re

    def bytes_to_unicode():
        bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
        cs, n = bs[:], 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        return dict(zip(bs, map(chr, cs)))

    class CLIPTokenizer:
        pat = _re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+",
                          _re.IGNORECASE)

        @classmethod
        def from_pretrained(cls, path, **kw):
            return cls(path)

        def __init__(self, path):
            with open(os.path.join(path, "vocab.json"), encoding="utf-8") as f:
                self.encoder = json.load(f)
            with open(os.path.join(path, "merges.txt"), encoding="utf-8") as f:
                merges = [tuple(m.split()) for m in f.read().split("\n")[1:] if m.strip()]
            self.ranks = {m: i for i, m in enumerate(merges)}
            self.byte_encoder = bytes_to_unicode()
            self.cache = {}
            self.bos, self.eos = self.encoder["<|startoftext|>"], self.encoder["<|endoftext|>"]

        def get_vocab(self):
            return dict(self.encoder)

        def bpe(self, token):
            if token in self.cache:
                return self.cache[token]
            word = tuple(token[:-1]) + (token[-1] + "</w>",)
            while len(word) > 1:
                pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
                best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
                if best not in self.ranks:
                    break
                new, i = [], 0
                while i < len(word):
                    if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                        new.append(word[i] + word[i + 1])
                        i += 2
                    else:
                        new.append(word[i])
                        i += 1
                word = tuple(new)
            self.cache[token] = word
            return word

        def __call__(self, text):
            text = _re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip().lower()
            ids = [self.bos]
            for tok in self.pat.findall(text):
                tok = "".join(self.byte_encoder[b] for b in tok.encode("utf-8"))
                ids += [self.encoder[t] for t in self.bpe(tok) if t in self.encoder]
            return {"input_ids": ids + [self.eos]}

    mod = _StubModule("transformers")  # any other name: a stub that raises when used
    mod.CLIPTokenizer = CLIPTokenizer
    mod.__path__ = []
    mod.__version__ = "parity-shim"
    sys.modules["transformers"] = mod


def _torch_compat():
    """Names ComfyUI v0.8.0 touches at import that torch < 2.1 lacks (no effect on torch 2.x)."""
    import torch
    for name, dt in (("float8_e4m3fn", torch.qint8), ("float8_e5m2", torch.quint8),
                     ("float8_e8m0fnu", torch.qint32), ("float8_e4m3fnuz", torch.quint4x2),
                     ("float8_e5m2fnuz", torch.complex32)):
        if not hasattr(torch, name):
            setattr(torch, name, dt)
    if not hasattr(torch.Tensor, "nbytes"):
        torch.Tensor.nbytes = property(lambda self: self.numel() * self.element_size())
    if not hasattr(torch, "compiler"):
        torch.compiler = types.SimpleNamespace(is_compiling=lambda: False, disable=lambda *a, **k: (lambda f: f))
    if not hasattr(torch.float32, "itemsize"):  # torch < 2.1; torch.dtype is a C type: patch its dict
        import ctypes
        import gc
        gc.get_referents(torch.dtype.__dict__)[0]["itemsize"] = property(
            lambda self: torch.empty((), dtype=self).element_size())
        ctypes.pythonapi.PyType_Modified(ctypes.py_object(torch.dtype))


def setup_imports(comfy_dir, flags):
    """Puts a real trampoline module first on sys.path, ComfyUI (with its bundled torchsde) next,
    installs shims for what is missing, parses `flags` as ComfyUI's command line and imports
    ComfyUI. Returns (comfy module, notes dict)."""
    import logging
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")  # as ComfyUI's main.py
    notes = {"shims": []}
    tmp = tempfile.mkdtemp(prefix="parity_trampoline_")
    pyio.install_trampoline(tmp)
    notes["trampoline"] = "tools/parity/pyio.py (real generator trampoline)"
    if pyio.install_safetensors_shim():
        notes["shims"].append("safetensors (pyio reader)")
    try:
        import transformers  # noqa: F401
    except ImportError:
        _install_clip_tokenizer_shim()
        notes["shims"].append("transformers.CLIPTokenizer (pyio BPE, self-test only)")
    _torch_compat()
    comfy_dir = os.path.abspath(comfy_dir)
    sys.path.insert(1, comfy_dir)
    finder = _StubFinder()
    sys.meta_path.append(finder)
    saved = sys.argv
    sys.argv = ["main.py"] + list(flags)
    try:
        import comfy.options
        comfy.options.enable_args_parsing()
        import comfy.cli_args  # noqa: F401
        import comfy.model_management
        import comfy.sd
        import comfy.sample
        import comfy.samplers
        import comfy.utils
    finally:
        sys.argv = saved
    import torchsde
    notes["torchsde"] = os.path.dirname(torchsde.__file__)
    notes["stubbed_at_import"] = sorted(finder.used)
    notes["finder"] = finder
    try:
        import comfyui_version
        notes["comfyui_version"] = comfyui_version.__version__
    except Exception:
        notes["comfyui_version"] = "unknown"
    return comfy, notes


# ---------------------------------------------------------------------------------------------
# Node bodies re-stated from ComfyUI v0.8.0 nodes.py (used when nodes.py does not import).

class Restated:
    name = "restated"

    def __init__(self, comfy, models_dir, input_dir):
        self.comfy, self.models_dir, self.input_dir = comfy, models_dir, input_dir

    def run(self, cls, a):
        import torch
        comfy = self.comfy
        if cls == "CheckpointLoaderSimple":
            path = os.path.join(self.models_dir, "checkpoints", a["ckpt_name"])
            out = comfy.sd.load_checkpoint_guess_config(path, output_vae=True, output_clip=True,
                                                        embedding_directory=[os.path.join(self.models_dir, "embeddings")])
            return out[:3]
        if cls == "CLIPTextEncode":
            clip = a["clip"]
            return (clip.encode_from_tokens_scheduled(clip.tokenize(a["text"])),)
        if cls == "EmptyLatentImage":
            dev = comfy.model_management.intermediate_device()
            return ({"samples": torch.zeros([a["batch_size"], 4, a["height"] // 8, a["width"] // 8], device=dev)},)
        if cls == "LoadImage":
            return load_image(os.path.join(self.input_dir, a["image"]))
        if cls == "VAEEncode":
            return ({"samples": a["vae"].encode(a["pixels"])},)
        if cls == "VAEEncodeForInpaint":
            return (vae_encode_for_inpaint(a["vae"], a["pixels"], a["mask"], a.get("grow_mask_by", 6)),)
        if cls == "SetLatentNoiseMask":
            s = a["samples"].copy()
            m = a["mask"]
            s["noise_mask"] = m.reshape((-1, 1, m.shape[-2], m.shape[-1]))
            return (s,)
        if cls == "RepeatLatentBatch":
            return (repeat_latent_batch(a["samples"], a["amount"]),)
        if cls == "KSampler":
            return common_ksampler(comfy, a["model"], a["seed"], a["steps"], a["cfg"], a["sampler_name"], a["scheduler"],
                                   a["positive"], a["negative"], a["latent_image"], denoise=a.get("denoise", 1.0))
        if cls == "KSamplerAdvanced":
            return common_ksampler(comfy, a["model"], a["noise_seed"], a["steps"], a["cfg"], a["sampler_name"],
                                   a["scheduler"], a["positive"], a["negative"], a["latent_image"], denoise=1.0,
                                   disable_noise=a["add_noise"] == "disable", start_step=a["start_at_step"],
                                   last_step=a["end_at_step"],
                                   force_full_denoise=a["return_with_leftover_noise"] != "enable")
        if cls == "VAEDecode":
            latent = a["samples"]["samples"]
            if latent.is_nested:
                latent = latent.unbind()[0]
            images = a["vae"].decode(latent)
            if len(images.shape) == 5:
                images = images.reshape(-1, images.shape[-3], images.shape[-2], images.shape[-1])
            return (images,)
        raise NotImplementedError(f"node {cls} is not re-stated in comfy_side.py")


def load_image(path):
    """nodes.LoadImage.load_image for a single-frame image without EXIF orientation."""
    import numpy as np
    import torch
    try:
        from PIL import Image, ImageOps
        with Image.open(path) as img:
            i = ImageOps.exif_transpose(img)
            rgb = np.array(i.convert("RGB")).astype(np.float32) / 255.0
            alpha = np.array(i.getchannel("A")).astype(np.float32) / 255.0 if "A" in i.getbands() else None
    except ImportError:
        arr = pyio.read_png(path)
        rgb = arr[..., :3].astype(np.float32) / 255.0
        alpha = arr[..., 3].astype(np.float32) / 255.0 if arr.shape[2] == 4 else None
    image = torch.from_numpy(rgb)[None,]
    mask = 1. - torch.from_numpy(alpha) if alpha is not None else torch.zeros((64, 64), dtype=torch.float32)
    return image, mask.unsqueeze(0)


def vae_encode_for_inpaint(vae, pixels, mask, grow_mask_by=6):
    import torch
    x = (pixels.shape[1] // vae.downscale_ratio) * vae.downscale_ratio
    y = (pixels.shape[2] // vae.downscale_ratio) * vae.downscale_ratio
    mask = torch.nn.functional.interpolate(mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])),
                                           size=(pixels.shape[1], pixels.shape[2]), mode="bilinear")
    pixels = pixels.clone()
    if pixels.shape[1] != x or pixels.shape[2] != y:
        x_offset = (pixels.shape[1] % vae.downscale_ratio) // 2
        y_offset = (pixels.shape[2] % vae.downscale_ratio) // 2
        pixels = pixels[:, x_offset:x + x_offset, y_offset:y + y_offset, :]
        mask = mask[:, :, x_offset:x + x_offset, y_offset:y + y_offset]
    if grow_mask_by == 0:
        mask_erosion = mask
    else:
        kernel_tensor = torch.ones((1, 1, grow_mask_by, grow_mask_by))
        padding = math.ceil((grow_mask_by - 1) / 2)
        mask_erosion = torch.clamp(torch.nn.functional.conv2d(mask.round(), kernel_tensor, padding=padding), 0, 1)
    m = (1.0 - mask.round()).squeeze(1)
    for i in range(3):
        pixels[:, :, :, i] -= 0.5
        pixels[:, :, :, i] *= m
        pixels[:, :, :, i] += 0.5
    t = vae.encode(pixels)
    return {"samples": t, "noise_mask": (mask_erosion[:, :, :x, :y].round())}


def repeat_latent_batch(samples, amount):
    s = samples.copy()
    s_in = samples["samples"]
    s["samples"] = s_in.repeat((amount,) + ((1,) * (s_in.ndim - 1)))
    if "noise_mask" in samples and samples["noise_mask"].shape[0] > 1:
        s["noise_mask"] = samples["noise_mask"].repeat((amount,) + ((1,) * (samples["noise_mask"].ndim - 1)))
    if "batch_index" in s:
        offset = max(s["batch_index"]) - min(s["batch_index"]) + 1
        s["batch_index"] = s["batch_index"] + [x + (i * offset) for i in range(1, amount) for x in s["batch_index"]]
    return s


def common_ksampler(comfy, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise=1.0,
                    disable_noise=False, start_step=None, last_step=None, force_full_denoise=False):
    """nodes.common_ksampler; the preview callback (progress only, no effect on the math) is left out."""
    import torch
    latent_image = latent["samples"]
    latent_image = comfy.sample.fix_empty_latent_channels(model, latent_image)
    if disable_noise:
        noise = torch.zeros(latent_image.size(), dtype=latent_image.dtype, layout=latent_image.layout, device="cpu")
    else:
        batch_inds = latent["batch_index"] if "batch_index" in latent else None
        noise = comfy.sample.prepare_noise(latent_image, seed, batch_inds)
    noise_mask = latent.get("noise_mask")
    samples = comfy.sample.sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                                  denoise=denoise, disable_noise=disable_noise, start_step=start_step,
                                  last_step=last_step, force_full_denoise=force_full_denoise, noise_mask=noise_mask,
                                  callback=None, disable_pbar=True, seed=seed)
    out = latent.copy()
    out["samples"] = samples
    return (out,)


class RealNodes:
    """ComfyUI's own node classes from nodes.py."""
    name = "real"

    def __init__(self, comfy, models_dir, input_dir):
        import folder_paths
        import nodes
        import comfy.utils
        folder_paths.add_model_folder_path("checkpoints", os.path.join(models_dir, "checkpoints"), is_default=True)
        folder_paths.add_model_folder_path("embeddings", os.path.join(models_dir, "embeddings"), is_default=True)
        folder_paths.add_model_folder_path("loras", os.path.join(models_dir, "loras"), is_default=True)
        folder_paths.set_input_directory(input_dir)
        comfy.utils.PROGRESS_BAR_ENABLED = False  # console progress bars only
        self.nodes = nodes
        self.extras = {}

    def extra_node(self, cls):
        """Nodes of comfy_extras (v3 schema classes: execute() is a classmethod returning a
        NodeOutput), imported on first use."""
        if not self.extras:
            import importlib
            for mod in ("comfy_extras.nodes_freelunch", "comfy_extras.nodes_clip_sdxl"):
                m = importlib.import_module(mod)
                for k, v in vars(m).items():
                    if isinstance(v, type) and hasattr(v, "execute"):
                        self.extras.setdefault(k, v)
        return self.extras[cls]

    def run(self, cls, a):
        if cls not in self.nodes.NODE_CLASS_MAPPINGS:
            out = self.extra_node(cls).execute(**a)
            return tuple(out.result) if hasattr(out, "result") else out
        klass = self.nodes.NODE_CLASS_MAPPINGS[cls]
        obj = klass()
        return getattr(obj, klass.FUNCTION)(**a)


# ---------------------------------------------------------------------------------------------

def link(v):
    return isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], int)


def id_key(nid):
    return (0, int(nid), "") if re.fullmatch(r"\d+", nid) else (1, 0, nid)


class MiniExecutor:
    def __init__(self, wf, impl):
        self.wf, self.impl, self.memo = wf, impl, {}

    def inputs(self, nid):
        return {k: (self.value(v[0])[v[1]] if link(v) else v) for k, v in self.wf[nid]["inputs"].items()}

    def value(self, nid):
        if nid not in self.memo:
            try:
                self.memo[nid] = self.impl.run(self.wf[nid]["class_type"], self.inputs(nid))
            except Exception as e:  # remembered, so dependents fail at once with the cause
                self.memo[nid] = e
                raise
        v = self.memo[nid]
        if isinstance(v, Exception):
            raise RuntimeError(f"node {nid} ({self.wf[nid]['class_type']}) failed earlier: {v}")
        return v


def force_basic_attention():
    """CPU self-test only: ComfyUI's CPU attention (sub-quadratic in the UNet, sliced in the VAE)
    picks its chunk sizes from the free RAM at call time, so two runs beside each other need not
    agree (on Debian's PyTorch 1.13 one even produced NaNs once). The plain implementations have
    no chunking."""
    import comfy.ldm.modules.attention as attn
    import comfy.ldm.modules.diffusionmodules.model as vae_model
    attn.optimized_attention = attn.attention_basic
    attn.optimized_attention_masked = attn.attention_basic
    vae_model.vae_attention = lambda: vae_model.normal_attention


def math_modes(torch):
    """The fp32 math modes in effect after ComfyUI's import (sdflow logs the same line), with
    PARITY_COMFY_CUDNN_TF32 / PARITY_COMFY_CUBLAS_TF32 = 0|1 applied first (diagnosis only)."""
    for env, attr in (("PARITY_COMFY_CUDNN_TF32", "cudnn"), ("PARITY_COMFY_CUBLAS_TF32", "matmul")):
        v = os.environ.get(env)
        if v:
            if attr == "cudnn":
                torch.backends.cudnn.allow_tf32 = v != "0"
            else:
                torch.backends.cuda.matmul.allow_tf32 = v != "0"
    modes = {"cudnn_tf32": torch.backends.cudnn.allow_tf32, "cublas_tf32": torch.backends.cuda.matmul.allow_tf32,
             "float32_matmul_precision": torch.get_float32_matmul_precision(),
             "cudnn_benchmark": torch.backends.cudnn.benchmark, "cudnn_deterministic": torch.backends.cudnn.deterministic}
    cuda = torch.backends.cuda
    for name in ("flash_sdp_enabled", "mem_efficient_sdp_enabled", "math_sdp_enabled", "cudnn_sdp_enabled"):
        if hasattr(cuda, name):
            modes[name] = getattr(cuda, name)()
    for path in ("cudnn.conv", "cuda.matmul"):
        obj = torch.backends
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if obj is not None and hasattr(obj, "fp32_precision"):
            modes[path + ".fp32_precision"] = obj.fp32_precision
    print("[comfy_side] math modes:", json.dumps(modes), flush=True)
    return modes


def run(args, flags):
    t_start = time.time()
    comfy, notes = setup_imports(args.comfy, flags)
    if args.attention == "basic":
        force_basic_attention()
        notes["attention"] = "forced attention_basic / normal_attention (self-test)"
    import numpy as np
    import torch
    mm = comfy.model_management
    t_import = time.time() - t_start
    finder = notes.pop("finder")
    notes["math_modes"] = math_modes(torch)

    impl, impl_error = None, None
    if args.nodes in ("auto", "real"):
        try:
            impl = RealNodes(comfy, args.models_dir, args.input_dir)
        except Exception as e:
            impl_error = f"{type(e).__name__}: {e}"
            if args.nodes == "real":
                raise
    if impl is None:
        impl = Restated(comfy, args.models_dir, args.input_dir)
    notes["stubbed_total"] = sorted(finder.used)

    with open(args.workflow) as f:
        wf = json.load(f)
    if "prompt" in wf and isinstance(wf["prompt"], dict):
        wf = wf["prompt"]
    ex = MiniExecutor(wf, impl)
    outputs = sorted((nid for nid, n in wf.items() if n["class_type"] in ("SaveLatent", "SaveImage")), key=id_key)
    os.makedirs(args.out, exist_ok=True)
    meta = {"flags": flags, "nodes_impl": impl.name, "real_nodes_error": impl_error, "torch": torch.__version__,
            "cuda": torch.version.cuda, "device": str(mm.get_torch_device()),
            "device_name": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "vram_state": str(mm.vram_state), "t_import": round(t_import, 2),
            "samplers": list(comfy.samplers.KSampler.SAMPLERS), "schedulers": list(comfy.samplers.KSampler.SCHEDULERS),
            "outputs": {}, **notes}
    meta_path = os.path.join(args.out, "comfy_meta.json")

    def write_meta():
        with open(meta_path + ".part", "w") as f:
            json.dump(meta, f, indent=1, default=str)
        os.replace(meta_path + ".part", meta_path)

    # The loader first, so its time is not charged to the first case.
    t = time.time()
    try:
        with torch.inference_mode():
            for nid in sorted(wf, key=id_key):
                if wf[nid]["class_type"] == "CheckpointLoaderSimple":
                    model, clip, vae = ex.value(nid)
                    meta["unet_dtype"] = str(model.model.get_dtype())
                    meta["model_config"] = type(model.model.model_config).__name__
                    meta["model_type"] = str(model.model.model_type)
                    meta["vae_dtype"] = str(vae.vae_dtype)
    except Exception as e:
        traceback.print_exc()
        meta["load_error"] = f"{type(e).__name__}: {e}"
        write_meta()
        sys.stdout.flush()
        os._exit(1)
    meta["t_load"] = round(time.time() - t, 2)
    write_meta()
    print(f"[comfy] imported in {t_import:.1f}s, loaded in {meta['t_load']:.1f}s, nodes: {impl.name}, "
          f"{meta.get('model_config')}, unet {meta.get('unet_dtype')}, vae {meta.get('vae_dtype')}, {len(outputs)} outputs", flush=True)

    for nid in outputs:
        node = wf[nid]
        prefix = node["inputs"]["filename_prefix"]
        rec = {"prefix": prefix, "class_type": node["class_type"]}
        meta["outputs"][nid] = rec
        if args.deadline and time.time() > args.deadline:
            rec["status"] = "skipped (deadline)"
            continue
        t = time.time()
        try:
            with torch.inference_mode():
                src = node["inputs"]["samples" if node["class_type"] == "SaveLatent" else "images"]
                value = ex.value(src[0])[src[1]]
                tensors = {}
                if node["class_type"] == "SaveLatent":
                    tensors["latent_tensor"] = value["samples"].contiguous().float().cpu().numpy()
                    sampler = wf[src[0]]
                    if sampler["class_type"] in ("KSampler", "KSamplerAdvanced"):
                        a = ex.inputs(src[0])
                        seed = a["seed"] if "seed" in a else a["noise_seed"]
                        lat = a["latent_image"]
                        li = comfy.sample.fix_empty_latent_channels(a["model"], lat["samples"])
                        noise = comfy.sample.prepare_noise(li, seed, lat.get("batch_index"))
                        tensors["prepare_noise"] = noise.float().cpu().numpy()
                else:
                    i = 255. * value.cpu().numpy()
                    tensors["image_u8"] = np.clip(i, 0, 255).astype(np.uint8)
            path = os.path.join(args.out, prefix + ".safetensors")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            pyio.write_safetensors(path, tensors)
            rec["status"] = "ok"
        except Exception as e:
            rec["status"] = "error"
            rec["error"] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        rec["seconds"] = round(time.time() - t, 3)
        print(f"[comfy] {nid} {prefix}: {rec['status']} {rec['seconds']:.2f}s", flush=True)
        write_meta()
    meta["t_total"] = round(time.time() - t_start, 2)
    if torch.cuda.is_available():
        meta["peak_mib"] = torch.cuda.max_memory_allocated() >> 20
    write_meta()
    sys.stdout.flush()
    # ComfyUI's loaded-model list outlives this; its finalizers fail at interpreter teardown.
    os._exit(0)


# ---------------------------------------------------------------------------------------------
# Fallback checkpoint maker (when `sdflow make-checkpoint` is unavailable): the SD1.5 config
# ComfyUI detects, random weights with an init that keeps activations O(1) (the project's
# ../shared/tools/comfy_ref.py make-ckpt, kept here because ../shared does not travel).

SD15 = {'use_checkpoint': False, 'image_size': 32, 'out_channels': 4, 'use_spatial_transformer': True, 'legacy': False,
        'adm_in_channels': None, 'dtype': None, 'in_channels': 4, 'model_channels': 320, 'num_res_blocks': [2, 2, 2, 2],
        'transformer_depth': [1, 1, 1, 1, 1, 1, 0, 0], 'channel_mult': [1, 2, 4, 4], 'transformer_depth_middle': 1,
        'use_linear_in_transformer': False, 'context_dim': 768, 'num_heads': 8,
        'transformer_depth_output': [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], 'use_temporal_attention': False,
        'use_temporal_resblock': False}


def random_init(module, gen, torch):
    for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
        with torch.no_grad():
            t = torch.empty(p.shape, dtype=torch.float32)
            leaf = name.split(".")[-1]
            if p.ndim == 0:
                t.fill_(1.0)
            elif p.ndim == 1 and ("norm" in name or "ln_" in name or name.endswith("ln_final.weight")) and leaf == "weight":
                t.fill_(1.0)
            elif leaf == "bias" or p.ndim == 1:
                t.normal_(0.0, 0.02, generator=gen)
            elif "embedding" in name or "positional" in name:
                t.normal_(0.0, 0.02, generator=gen)
            else:
                t.normal_(0.0, p[0].numel() ** -0.5, generator=gen)
            p.data = t.to(p.dtype) if p.dtype.is_floating_point else p.data


def make_ckpt(args):
    comfy, _ = setup_imports(args.comfy, ["--cpu"])
    import torch
    import comfy.model_detection
    import comfy.ldm.models.autoencoder as ae
    mc = comfy.model_detection.model_config_from_unet_config(comfy.model_detection.convert_config(dict(SD15)))
    gen = torch.Generator().manual_seed(args.seed)
    model = mc.get_model({}, "model.", device="cpu")
    model.to(torch.float32)
    random_init(model.diffusion_model, gen, torch)
    clip = comfy.sd.CLIP(mc.clip_target(), model_options={"initial_device": torch.device("cpu"),
                                                           "load_device": torch.device("cpu"), "dtype": torch.float32})
    random_init(clip.cond_stage_model, gen, torch)
    ddconfig = {'double_z': True, 'z_channels': 4, 'resolution': 256, 'in_channels': 3, 'out_ch': 3, 'ch': 128,
                'ch_mult': [1, 2, 4, 4], 'num_res_blocks': 2, 'attn_resolutions': [], 'dropout': 0.0}
    vae = ae.AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    random_init(vae, gen, torch)
    sd = model.state_dict_for_saving(clip.get_sd(), vae.state_dict(), None)
    sd = {k: v.contiguous().to(torch.float16) if v.dtype.is_floating_point else v.contiguous() for k, v in sd.items()}
    comfy.utils.save_torch_file(sd, args.out)
    print(json.dumps({"made": args.out, "arch": "sd15", "keys": len(sd), "maker": "comfy_side.py make-ckpt"}), flush=True)
    os._exit(0)


def main():
    argv = sys.argv[1:]
    flags = []
    if "--" in argv:
        i = argv.index("--")
        flags, argv = argv[i + 1:], argv[:i]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["run", "make-ckpt"])
    ap.add_argument("--comfy", default=os.environ.get("COMFY_PATH", "third_party_ref/ComfyUI"))
    ap.add_argument("--workflow")
    ap.add_argument("--models-dir")
    ap.add_argument("--input-dir")
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--deadline", type=float, default=0.0, help="epoch seconds; no output node starts after it")
    ap.add_argument("--nodes", default="auto", choices=["auto", "real", "restated"])
    ap.add_argument("--attention", default="default", choices=["default", "basic"],
                    help="basic: unchunked attention (CPU self-test determinism)")
    args = ap.parse_args(argv)
    if args.cmd == "make-ckpt":
        make_ckpt(args)
    else:
        run(args, flags)


if __name__ == "__main__":
    main()
