#!/usr/bin/env python3
"""Golden data for sdflow's UNet tests, made with ComfyUI's own UNetModel.

For each tiny config (the same shapes as UNetConfig::tiny_sd15() / tiny_sdxl() in
src/models/unet/unet_config.cpp) this builds comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel
with explicit arguments, fills it with random weights rounded to fp16 (so they are stored in
half the bytes and load bit-exactly into an fp32 model on both sides), runs one fp32 forward
pass on fixed inputs and writes:

  tests/data/unet/<name>.safetensors     the weights (fp16, UNet keys without prefix)
  tests/data/unet/<name>_io.safetensors  x, timesteps, context, [y], output (fp32)
  tests/data/unet/layout_<name>.txt      every key with its shape ("key d0,d1,...")

With --layouts it also writes layout_<name>.txt for the full-size SD1.5, SD2.x, SDXL and SDXL
refiner UNets (built on the meta device: no weights, no memory).

Usage (any machine with PyTorch and a ComfyUI checkout; CPU is the default and the reference):
  python3 tools/goldens/make_unet_goldens.py --comfy /path/to/ComfyUI [--layouts]
      [--device cpu|cuda] [--attention pytorch|basic|sub_quad|split] [--out DIR]
The C++ tests (models_test_unet_torch, models_test_unet_golden_torch) skip when these files
are absent.
"""

import argparse
import json
import math
import os
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Inputs of these layers come through SiLU or GEGLU; same gain as kActGain in unet_layout.cpp.
ACT_GAIN = 1.6
ACT_SUFFIXES = ("in_layers.2", "out_layers.3", "emb_layers.1", "time_embed.2", "label_emb.0.2", "ff.net.2", "out.2")

TINY = {
    "tiny_sd15": dict(
        in_channels=4, out_channels=4, model_channels=32, channel_mult=[1, 1], num_res_blocks=[1, 1],
        transformer_depth=[1, 0], transformer_depth_middle=1, transformer_depth_output=[1, 1, 0, 0],
        context_dim=48, use_linear_in_transformer=False, num_heads=2, num_head_channels=-1,
        adm_in_channels=None),
    "tiny_sdxl": dict(
        in_channels=4, out_channels=4, model_channels=32, channel_mult=[1, 1], num_res_blocks=[1, 1],
        transformer_depth=[0, 2], transformer_depth_middle=1, transformer_depth_output=[0, 0, 1, 2],
        context_dim=48, use_linear_in_transformer=True, num_heads=-1, num_head_channels=16,
        adm_in_channels=40),
}
# Golden input sizes: even for one, odd for the other (the upsample then targets the skip's size).
TINY_INPUT_HW = {"tiny_sd15": (8, 6), "tiny_sdxl": (7, 5)}

# Full-size configs as ComfyUI detects them (model_detection.py + supported_models.py extras).
FULL = {
    "sd15": dict(
        in_channels=4, out_channels=4, model_channels=320, channel_mult=[1, 2, 4, 4], num_res_blocks=[2, 2, 2, 2],
        transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
        transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], context_dim=768,
        use_linear_in_transformer=False, num_heads=8, num_head_channels=-1, adm_in_channels=None),
    "sd2": dict(
        in_channels=4, out_channels=4, model_channels=320, channel_mult=[1, 2, 4, 4], num_res_blocks=[2, 2, 2, 2],
        transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
        transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], context_dim=1024,
        use_linear_in_transformer=True, num_heads=-1, num_head_channels=64, adm_in_channels=None),
    "sdxl": dict(
        in_channels=4, out_channels=4, model_channels=320, channel_mult=[1, 2, 4], num_res_blocks=[2, 2, 2],
        transformer_depth=[0, 0, 2, 2, 10, 10], transformer_depth_middle=10,
        transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10], context_dim=2048,
        use_linear_in_transformer=True, num_heads=-1, num_head_channels=64, adm_in_channels=2816),
    "sdxl_refiner": dict(
        in_channels=4, out_channels=4, model_channels=384, channel_mult=[1, 2, 4, 4], num_res_blocks=[2, 2, 2, 2],
        transformer_depth=[0, 0, 4, 4, 4, 4, 0, 0], transformer_depth_middle=4,
        transformer_depth_output=[0, 0, 0, 4, 4, 4, 4, 4, 4, 0, 0, 0], context_dim=1280,
        use_linear_in_transformer=True, num_heads=-1, num_head_channels=64, adm_in_channels=2560),
}


def import_comfy(comfy_dir, attention):
    comfy_dir = os.path.abspath(comfy_dir)
    if not os.path.isdir(os.path.join(comfy_dir, "comfy")):
        sys.exit(f"--comfy {comfy_dir}: no comfy/ package there (give the ComfyUI checkout root)")
    sys.path.insert(0, comfy_dir)
    # ComfyUI parses sys.argv only when asked to; keep ours away from it anyway.
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        import comfy.ops
        import comfy.ldm.modules.attention as attn
        from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    finally:
        sys.argv = argv
    # The module-level choice depends on the machine (xformers, SDPA, sub-quad on CPU); pin it so
    # the goldens do not depend on what is installed. CrossAttention looks the name up per call.
    fn = {"pytorch": attn.attention_pytorch, "basic": attn.attention_basic,
          "sub_quad": attn.attention_sub_quad, "split": attn.attention_split}[attention]
    attn.optimized_attention = fn
    attn.optimized_attention_masked = fn
    version = "unknown"
    try:
        import comfyui_version
        version = comfyui_version.__version__
    except ImportError:
        pass
    return comfy.ops, UNetModel, version


def build(UNetModel, ops, cfg, dtype, device):
    import torch
    adm = cfg["adm_in_channels"]
    return UNetModel(
        image_size=32, in_channels=cfg["in_channels"], model_channels=cfg["model_channels"],
        out_channels=cfg["out_channels"], num_res_blocks=list(cfg["num_res_blocks"]),
        channel_mult=list(cfg["channel_mult"]), num_classes="sequential" if adm is not None else None,
        use_checkpoint=False, dtype=dtype, num_heads=cfg["num_heads"], num_head_channels=cfg["num_head_channels"],
        use_spatial_transformer=True, transformer_depth=list(cfg["transformer_depth"]),
        context_dim=cfg["context_dim"], legacy=False, use_linear_in_transformer=cfg["use_linear_in_transformer"],
        adm_in_channels=adm, transformer_depth_middle=cfg["transformer_depth_middle"],
        transformer_depth_output=list(cfg["transformer_depth_output"]), use_temporal_resblock=False,
        use_temporal_attention=False, device=device, operations=ops.disable_weight_init)


def write_layout(model, path, title):
    sd = model.state_dict()
    with open(path, "w") as f:
        f.write(f"# {title}: {len(sd)} tensors, written by tools/goldens/make_unet_goldens.py\n")
        for k in sorted(sd):
            f.write(f"{k} {','.join(str(d) for d in sd[k].shape)}\n")
    print(f"wrote {path} ({len(sd)} keys)")


def random_weights(model, seed):
    """fp16-representable weights: fan-in scaled conv/linear, perturbed norm affines."""
    import torch
    g = torch.Generator().manual_seed(seed)
    norms = set()
    for name, mod in model.named_modules():
        if isinstance(mod, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
            norms.add(name)
    out = {}
    for key, t in sorted(model.state_dict().items()):
        module, _, kind = key.rpartition(".")
        shape = tuple(t.shape)
        if module in norms:
            # Not 1/0, so a norm whose affine is skipped or swapped shows in the output.
            base = 1.0 if kind == "weight" else 0.0
            v = base + 0.1 * torch.randn(shape, generator=g)
        elif kind == "bias":
            v = 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = math.prod(shape[1:])
            gain = ACT_GAIN if module.endswith(ACT_SUFFIXES) else 1.0
            v = torch.randn(shape, generator=g) * (gain / math.sqrt(fan_in))
        out[key] = v.to(torch.float16).contiguous()
    return out


def make_golden(name, cfg, args, ops, UNetModel, version):
    import torch
    from safetensors.torch import save_file

    model = build(UNetModel, ops, cfg, torch.float32, "cpu")
    weights = random_weights(model, seed=args.seed)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    model = model.to(args.device).eval()

    g = torch.Generator().manual_seed(args.seed + 1)
    H, W = TINY_INPUT_HW[name]
    B = 2
    io = {
        "x": torch.randn((B, cfg["in_channels"], H, W), generator=g),
        "timesteps": torch.tensor([981.0, 37.5]),
        "context": torch.randn((B, 5, cfg["context_dim"]), generator=g),
    }
    if cfg["adm_in_channels"] is not None:
        io["y"] = torch.randn((B, cfg["adm_in_channels"]), generator=g)
    dev = {k: v.to(args.device) for k, v in io.items()}
    with torch.no_grad():
        out = model(dev["x"], dev["timesteps"], context=dev["context"], y=dev.get("y"), transformer_options={})
    io["output"] = out.float().cpu().contiguous()

    meta = {
        "config": json.dumps(cfg),
        "comfyui_version": version,
        "torch_version": torch.__version__,
        "device": args.device,
        "attention": args.attention,
        "seed": str(args.seed),
    }
    os.makedirs(args.out, exist_ok=True)
    wpath = os.path.join(args.out, f"{name}.safetensors")
    iopath = os.path.join(args.out, f"{name}_io.safetensors")
    save_file(weights, wpath, metadata=meta)
    save_file({k: v.contiguous() for k, v in io.items()}, iopath, metadata=meta)
    write_layout(model, os.path.join(args.out, f"layout_{name}.txt"), f"ComfyUI {version} UNetModel {name}")
    size = os.path.getsize(wpath) + os.path.getsize(iopath)
    print(f"wrote {wpath}, {iopath} ({size / 1024:.0f} KiB), output std {io['output'].std().item():.4f}")
    if size >= 1 << 20:
        print(f"warning: {name} goldens are {size} bytes (keep them under 1 MiB)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfy", required=True, help="ComfyUI checkout root (the folder holding comfy/)")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "unet"))
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda; TF32 is turned off on CUDA")
    ap.add_argument("--attention", default="pytorch", choices=["pytorch", "basic", "sub_quad", "split"])
    ap.add_argument("--configs", default=",".join(TINY), help="comma-separated subset of " + ",".join(TINY))
    ap.add_argument("--layouts", action="store_true", help="also write full-size layout_*.txt files")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device visible to PyTorch")

    ops, UNetModel, version = import_comfy(args.comfy, args.attention)
    for name in [c for c in args.configs.split(",") if c]:
        if name not in TINY:
            sys.exit(f"unknown config {name!r}; choose from {', '.join(TINY)}")
        make_golden(name, TINY[name], args, ops, UNetModel, version)

    if args.layouts:
        os.makedirs(args.out, exist_ok=True)
        for name, cfg in FULL.items():
            try:
                model = build(UNetModel, ops, cfg, torch.float16, "meta")
            except Exception as e:  # older torch without meta support in some layer: spend memory
                print(f"meta build failed ({e}); building {name} on the CPU in fp16")
                model = build(UNetModel, ops, cfg, torch.float16, "cpu")
            write_layout(model, os.path.join(args.out, f"layout_{name}.txt"), f"ComfyUI {version} UNetModel {name}")
            del model


if __name__ == "__main__":
    main()
