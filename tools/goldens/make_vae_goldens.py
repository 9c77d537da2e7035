#!/usr/bin/env python3
"""Golden data for sdflow's VAE tests, made with ComfyUI's own AutoencoderKL and VAE class.

A tiny AutoencoderKL with ComfyUI's real structure (ch 32, ch_mult [2, 1, 1], one ResBlock per
level: the same shapes as VaeConfig::tiny() in src/models/vae/vae_config.cpp; downscale 4) is
built through comfy.sd.VAE(sd, config=...) in fp32, with random weights rounded to fp16 (stored in
half the bytes, loaded exactly on both sides). ComfyUI's VAE wrapper is then used as the nodes use
it: encode (crop to multiples, RGBA → RGB, process_input), decode (process_output), decode_tiled
and encode_tiled (three tilings, feathered blending), plus raw first_stage_model calls.

  tests/data/vae/tiny.safetensors     the weights (fp16, keys without "first_stage_model.")
  tests/data/vae/tiny_io.safetensors  inputs and outputs (fp32); tiling in the metadata
  tests/data/vae/layout_<name>.txt    every key with its shape (tiny; --layouts: the SD VAE)

Usage (CPU; needs PyTorch and a ComfyUI checkout whose imports resolve, stubs are fine):
  python3 tools/goldens/make_vae_goldens.py --comfy /path/to/ComfyUI [--layouts] [--out DIR]
"""

import argparse
import json
import math
import os
import struct
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SEED = 2024
ACT_SUFFIXES = ("conv1", "conv2", "conv_out")
TINY = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 32,
        "ch_mult": [2, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
SD = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
      "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
DECODE_TILES = (8, 6, 2)     # tile_x, tile_y, overlap in latent px
ENCODE_TILES = (32, 24, 8)   # in pixels
# Positions and feathers at x.5 latent px: ComfyUI rounds half to even, and some latent cells are
# then covered by no tile (0/0 = NaN in its output). Kept to pin the rounding exactly.
ENCODE_TILES_ODD = (32, 24, 6)


class Writer:
    """Minimal safetensors writer (F16/F32), so no extra package is needed."""

    def __init__(self):
        self.tensors = {}

    def add(self, name, t):
        import torch
        t = t.detach().cpu().contiguous()
        dtype = {torch.float16: "F16", torch.float32: "F32"}[t.dtype]
        self.tensors[name] = (dtype, list(t.shape), t.numpy().tobytes())

    def write(self, path, metadata):
        header, offset, blobs = {"__metadata__": metadata}, 0, []
        for name in sorted(self.tensors):
            dtype, shape, data = self.tensors[name]
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
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


def import_comfy(comfy_dir):
    sys.path.insert(0, os.path.abspath(comfy_dir))
    import comfy.options
    comfy.options.enable_args_parsing()
    argv, sys.argv = sys.argv, [sys.argv[0], "--cpu"]
    try:
        import comfy.model_management as mm
        import comfy.sd
        import comfy.ldm.models.autoencoder  # noqa: F401
    finally:
        sys.argv = argv
    # Everything fits: no memory probing (psutil may be absent), no partial loading.
    mm.get_free_memory = lambda *a, **k: 1 << 40
    mm.load_models_gpu = lambda *a, **k: None
    try:
        import comfyui_version
        version = comfyui_version.__version__
    except ImportError:
        version = "unknown"
    return comfy, version


def random_weights(model, g):
    import torch
    norms = {n for n, m in model.named_modules() if isinstance(m, torch.nn.GroupNorm)}
    out = {}
    for key, t in sorted(model.state_dict().items()):
        module, _, kind = key.rpartition(".")
        shape = tuple(t.shape)
        if module in norms:
            v = (1.0 if kind == "weight" else 0.0) + 0.1 * torch.randn(shape, generator=g)
        elif kind == "bias":
            v = 0.05 * torch.randn(shape, generator=g)
        else:
            gain = 1.6 if module.endswith(ACT_SUFFIXES) else 1.0
            v = torch.randn(shape, generator=g) * (gain / math.sqrt(math.prod(shape[1:])))
        out[key] = v.to(torch.float16)
    return out


def write_layout(sd, path, title):
    with open(path, "w") as f:
        f.write(f"# {title}: {len(sd)} tensors, written by tools/goldens/make_vae_goldens.py\n")
        for k in sorted(sd):
            f.write(f"{k} {','.join(str(d) for d in sd[k].shape)}\n")
    print(f"wrote {path} ({len(sd)} keys)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfy", required=True, help="ComfyUI checkout root (the folder holding comfy/)")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "vae"))
    ap.add_argument("--layouts", action="store_true", help="also write the full-size SD VAE layout")
    args = ap.parse_args()

    import torch
    comfy, version = import_comfy(args.comfy)
    os.makedirs(args.out, exist_ok=True)
    g = torch.Generator().manual_seed(SEED)

    shell = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=dict(TINY), embed_dim=4)
    weights = random_weights(shell, g)
    vae = comfy.sd.VAE(sd={k: v.float() for k, v in weights.items()},
                       config={"params": {"ddconfig": dict(TINY), "embed_dim": 4}}, dtype=torch.float32)
    # VAE.__init__ assumes SD's 8× for a given config; the tiny one has three levels.
    vae.downscale_ratio = vae.upscale_ratio = 4
    assert vae.vae_dtype == torch.float32 and vae.output_device == torch.device("cpu")
    fsm = vae.first_stage_model.eval()

    io = Writer()
    image = torch.rand((2, 27, 22, 4), generator=g)  # cropped to 24×20 (offsets 1, 1), RGBA → RGB
    latent = torch.randn((2, 4, 6, 5), generator=g)
    x = torch.rand((2, 3, 16, 12), generator=g) * 2 - 1
    tiled_latent = torch.randn((2, 4, 20, 14), generator=g)
    tiled_image = torch.rand((1, 53, 45, 3), generator=g)  # cropped to 52×44
    # ComfyUI's executor runs nodes under inference_mode (encode_tiled_ relies on it).
    with torch.inference_mode():
        io.add("raw_encode.x", x)
        io.add("raw_encode.out", fsm.encode(x))
        io.add("raw_decode.z", latent)
        io.add("raw_decode.out", fsm.decode(latent))
        io.add("encode.image", image)
        io.add("encode.out", vae.encode(image))
        io.add("decode.latent", latent)
        io.add("decode.out", vae.decode(latent))
        tx, ty, ov = DECODE_TILES
        io.add("decode_tiled.latent", tiled_latent)
        io.add("decode_tiled.out", vae.decode_tiled(tiled_latent, tile_x=tx, tile_y=ty, overlap=ov))
        tx, ty, ov = ENCODE_TILES
        io.add("encode_tiled.image", tiled_image)
        io.add("encode_tiled.out", vae.encode_tiled(tiled_image, tile_x=tx, tile_y=ty, overlap=ov))
        tx, ty, ov = ENCODE_TILES_ODD
        io.add("encode_tiled_odd.out", vae.encode_tiled(tiled_image, tile_x=tx, tile_y=ty, overlap=ov))
    for k, (_, shape, _) in sorted(io.tensors.items()):
        print(f"  {k}: {shape}")

    meta = {"comfyui_version": version, "torch_version": torch.__version__, "seed": str(SEED),
            "config": json.dumps(TINY), "decode_tiles": ",".join(map(str, DECODE_TILES)),
            "encode_tiles": ",".join(map(str, ENCODE_TILES)),
            "encode_tiles_odd": ",".join(map(str, ENCODE_TILES_ODD))}
    w = Writer()
    for k, v in weights.items():
        w.add(k, v)
    w.write(os.path.join(args.out, "tiny.safetensors"), meta)
    io.write(os.path.join(args.out, "tiny_io.safetensors"), meta)
    write_layout(fsm.state_dict(), os.path.join(args.out, "layout_tiny.txt"), f"ComfyUI {version} AutoencoderKL tiny")
    if args.layouts:
        full = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=dict(SD), embed_dim=4)
        write_layout(full.state_dict(), os.path.join(args.out, "layout_sd.txt"), f"ComfyUI {version} AutoencoderKL SD")
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"tests/data/vae: {total / 1024:.0f} KiB in all")


if __name__ == "__main__":
    main()
