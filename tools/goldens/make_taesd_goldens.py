#!/usr/bin/env python3
"""Golden data for sdflow's TAESD tests.

1. tiny_io.safetensors — ComfyUI's own comfy/taesd/taesd.py TAESD inside comfy.sd.VAE (the class
   the VAE nodes call: process_input/output, crops, decode_tiled, encode_tiled), for "sd" (4 latent
   channels, vae_scale 0.18215) and "f1" (16 channels, scale 0.3611, shift 0.1159). ComfyUI v0.8.0
   has no FLUX.2 variant, so "f2" (32 channels with the mid-block GroupNorm, latents 2×2-patchified
   to 128 channels, scale 1, shift 0) runs madebyollin/taesd's own Encoder/Decoder
   (use_midblock_gn=True) with the VAE wrapper's formulas written out here.
   Weights are not stored: they are torch.randn draws from one CPU generator per case, key by key in
   state-dict order (encoder, then decoder), which the C++ test repeats bit for bit.
2. taef2_ref.safetensors — the real TAEF2 weights (not committed; ../shared/data/taef2) run by
   upstream's module on the shared photo (its 512×512 original, pixels [64, 576) of
   images/reconstruction_example.jpg, 2×2-averaged to 256×256): the latent (fp16) and the decoded
   image 4×4-averaged to 64×64, with the input's mean and the reconstruction's PSNR in the metadata.

Usage (CPU, Debian's python3 with torch 1.13):
  /usr/bin/python3 tools/goldens/make_taesd_goldens.py --comfy /path/to/ComfyUI \
      --upstream-taesd /path/to/madebyollin/taesd/taesd.py [--shared ../shared/data] [--out DIR]
"""

import argparse
import importlib.util
import json
import math
import os
import struct
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CASES = {  # name: (conv channels, latent channels, scale, shift, mid-block GN, seed)
    "sd": (4, 4, 0.18215, 0.0, False, 11),
    "f1": (16, 16, 0.3611, 0.1159, False, 12),
    "f2": (32, 128, 1.0, 0.0, True, 13),
}
PIXELS = (2, 34, 52)      # batch, H, W: cropped to multiples of 8 (16 for f2) by the wrapper
DECODE_TILES = (4, 4, 1)  # latent cells
ENCODE_TILES = (32, 32, 8)


def write_safetensors(path, tensors, metadata):
    import torch
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        dtype = {torch.float16: "F16", torch.float32: "F32"}[t.dtype]
        data = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB)")


def stub_missing(*names):
    """Empty modules for imports ComfyUI makes but these runs never use (no file loading here)."""
    import types
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                mod = types.ModuleType(".".join(parts[:i]))

                def missing(attr, _name=mod.__name__):
                    if attr.startswith("__"):
                        raise AttributeError(attr)
                    return type(attr, (), {"__init__": lambda self, *a, **k: None})
                mod.__getattr__ = missing
                sys.modules.setdefault(mod.__name__, mod)


def import_comfy(comfy_dir):
    stub_missing("safetensors.torch", "einops", "einops.layers.torch", "torchsde", "transformers", "tokenizers",
                 "sentencepiece", "aiohttp", "av", "kornia", "spandrel", "comfy_aimdo")
    import torch
    # ComfyUI names fp8 dtypes at import time; torch 1.13 has none. Nothing here uses them.
    for name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu"):
        if not hasattr(torch, name):
            setattr(torch, name, torch.uint8)
    if not hasattr(torch, "compiler"):
        import types
        torch.compiler = types.SimpleNamespace(is_compiling=lambda: False, disable=lambda *a, **k: (lambda f: f))
    if not hasattr(torch.Tensor, "nbytes"):
        torch.Tensor.nbytes = property(lambda t: t.numel() * t.element_size())
    sys.path.insert(0, os.path.abspath(comfy_dir))
    argv, sys.argv = sys.argv, [sys.argv[0], "--cpu"]
    try:
        for _ in range(50):  # stub whatever optional package this Python lacks, then retry
            try:
                import comfy.options
                comfy.options.enable_args_parsing()
                import comfy.model_management as mm
                import comfy.sd
                import comfy.taesd.taesd  # noqa: F401
                break
            except ModuleNotFoundError as e:
                if e.name.split(".")[0] in ("comfy", "comfy_extras", "comfy_api"):
                    raise
                stub_missing(e.name)
                for m in [m for m in sys.modules if m.split(".")[0] in ("comfy", "comfy_api", "comfy_extras")]:
                    del sys.modules[m]
    finally:
        sys.argv = argv
    mm.get_free_memory = lambda *a, **k: 1 << 40
    mm.load_models_gpu = lambda *a, **k: None
    return comfy


def load_upstream(path):
    spec = importlib.util.spec_from_file_location("upstream_taesd", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def random_state(modules, seed):
    """randn per tensor in state-dict order: convs N(0, 1/fan_in), biases ×0.05, GroupNorm 1 ± 0.1."""
    import torch
    g = torch.Generator().manual_seed(seed)
    out = {}
    for prefix, module in modules:
        norms = {n for n, m in module.named_modules() if isinstance(m, torch.nn.GroupNorm)}
        for key, t in module.state_dict().items():
            owner, _, kind = key.rpartition(".")
            r = torch.randn(tuple(t.shape), generator=g)
            if owner in norms:
                v = 1.0 + 0.1 * r if kind == "weight" else 0.1 * r
            elif kind == "bias":
                v = 0.05 * r
            else:
                v = r * (1.0 / math.sqrt(math.prod(t.shape[1:])))
            out[prefix + key] = v
    return out


def patchify(x):
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)


def unpatchify(x):
    b, c, h, w = x.shape
    return x.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c // 4, h * 2, w * 2)


class Flux2Stage(object):
    """ComfyUI's TAESD.encode/decode for 128-channel latents around upstream's FLUX.2 halves."""

    def __init__(self, up, sd):
        import torch
        self.enc = up.Encoder(32, use_midblock_gn=True)
        self.dec = up.Decoder(32, use_midblock_gn=True)
        self.enc.load_state_dict({k[len("taesd_encoder."):]: v for k, v in sd.items() if k.startswith("taesd_encoder.")})
        self.dec.load_state_dict({k[len("taesd_decoder."):]: v for k, v in sd.items() if k.startswith("taesd_decoder.")})
        self.torch = torch

    def encode(self, x):  # x in -1..1
        return patchify(self.enc(x * 0.5 + 0.5)) / 1.0 + 0.0

    def decode(self, z):
        return self.dec(unpatchify((z - 0.0) * 1.0)).sub(0.5).mul(2)


def wrapper_encode(stage, image, f):
    """comfy.sd.VAE.encode for an image [B, H, W, 3]: crop to multiples of f, −1..1, encode."""
    h, w = image.shape[1] // f * f, image.shape[2] // f * f
    y0, x0 = (image.shape[1] % f) // 2, (image.shape[2] % f) // 2
    x = image[:, y0:y0 + h, x0:x0 + w, :].movedim(-1, 1)
    return stage.encode(x * 2.0 - 1.0).float()


def wrapper_decode(stage, z):
    import torch
    return torch.clamp((stage.decode(z).float() + 1.0) / 2.0, min=0.0, max=1.0).movedim(1, -1)


def tiny_goldens(comfy, up, out):
    import torch
    tensors, meta = {}, {"decode_tiles": json.dumps(DECODE_TILES), "encode_tiles": json.dumps(ENCODE_TILES),
                         "pixels": json.dumps(PIXELS)}
    g = torch.Generator().manual_seed(5)
    image = torch.rand(PIXELS[0], PIXELS[1], PIXELS[2], 3, generator=g)
    tensors["image"] = image
    for name, (conv_ch, lat_ch, scale, shift, gn, seed) in CASES.items():
        with torch.inference_mode():
            if not gn:
                model = comfy.taesd.taesd.TAESD(latent_channels=conv_ch)
                sd = random_state([("taesd_encoder.", model.taesd_encoder), ("taesd_decoder.", model.taesd_decoder)], seed)
                sd["vae_scale"] = torch.tensor(scale)
                sd["vae_shift"] = torch.tensor(shift)
                vae = comfy.sd.VAE(sd=sd)
                assert vae.vae_dtype == torch.float32 and vae.latent_channels == lat_ch
                latent = vae.encode(image)
                z = torch.randn(latent.shape, generator=g) * 2.0
                decoded = vae.decode(z)
                tiled_dec = vae.decode_tiled(z, tile_x=DECODE_TILES[0], tile_y=DECODE_TILES[1], overlap=DECODE_TILES[2])
                tiled_enc = vae.encode_tiled(image, tile_x=ENCODE_TILES[0], tile_y=ENCODE_TILES[1], overlap=ENCODE_TILES[2])
                tensors[f"{name}.tiled_decode"] = tiled_dec
                tensors[f"{name}.tiled_encode"] = tiled_enc
            else:
                enc, dec = up.Encoder(conv_ch, use_midblock_gn=True), up.Decoder(conv_ch, use_midblock_gn=True)
                sd = random_state([("taesd_encoder.", enc), ("taesd_decoder.", dec)], seed)
                stage = Flux2Stage(up, sd)
                latent = wrapper_encode(stage, image, 16)
                z = torch.randn(latent.shape, generator=g) * 2.0
                decoded = wrapper_decode(stage, z)
        tensors[f"{name}.latent"] = latent
        tensors[f"{name}.z"] = z
        tensors[f"{name}.decoded"] = decoded
        print(name, "latent", tuple(latent.shape), float(latent.abs().mean()), "decoded", tuple(decoded.shape),
              float(decoded.mean()))
    write_safetensors(os.path.join(out, "tiny_io.safetensors"), tensors, meta)


def taef2_reference(up, shared, out):
    import torch
    import torch.nn.functional as F
    import numpy as np
    from PIL import Image
    d = os.path.join(shared, "taef2")
    with torch.no_grad():
        enc, dec = up.Encoder(32, use_midblock_gn=True), up.Decoder(32, use_midblock_gn=True)
        enc.load_state_dict(torch.load(os.path.join(d, "taef2_encoder.pth"), map_location="cpu"))
        dec.load_state_dict(torch.load(os.path.join(d, "taef2_decoder.pth"), map_location="cpu"))
        sd = {**{"taesd_encoder." + k: v.float() for k, v in enc.state_dict().items()},
              **{"taesd_decoder." + k: v.float() for k, v in dec.state_dict().items()}}
        stage = Flux2Stage(up, sd)
        photo = np.asarray(Image.open(os.path.join(shared, "images", "reconstruction_example.jpg")).convert("RGB"))
        x = torch.from_numpy(photo[64:576, 64:576].astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        x = F.avg_pool2d(x, 2)                       # [1, 3, 256, 256]
        image = x.movedim(1, -1)
        latent = wrapper_encode(stage, image, 16)   # [1, 128, 16, 16]
        decoded = wrapper_decode(stage, latent)     # [1, 256, 256, 3]
        mse = float(((decoded - image) ** 2).mean())
        small = F.avg_pool2d(decoded.movedim(-1, 1), 4).movedim(1, -1)
    meta = {"input_mean": json.dumps([float(v) for v in image.mean(dim=(0, 1, 2))]),
            "psnr": f"{10 * math.log10(1.0 / mse):.4f}", "latent_std": f"{float(latent.std()):.6f}"}
    print("taef2: latent", tuple(latent.shape), "std", meta["latent_std"], "PSNR", meta["psnr"])
    write_safetensors(os.path.join(out, "taef2_ref.safetensors"),
                      {"latent": latent.half(), "decoded_4x4": small.float()}, meta)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--comfy", required=True)
    ap.add_argument("--upstream-taesd", required=True)
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "taesd"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    import torch
    torch.set_grad_enabled(False)
    comfy = import_comfy(a.comfy)
    up = load_upstream(a.upstream_taesd)
    tiny_goldens(comfy, up, a.out)
    if os.path.isdir(os.path.join(a.shared, "taef2")):
        taef2_reference(up, a.shared, a.out)
    else:
        print("no", os.path.join(a.shared, "taef2"), "- skipping the TAEF2 reference")


if __name__ == "__main__":
    main()
