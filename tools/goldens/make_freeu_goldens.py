#!/usr/bin/env python3
"""Golden data for sdflow's FreeU / FreeU_V2 tests, computed by ComfyUI's own nodes.

    /usr/bin/python3 tools/goldens/make_freeu_goldens.py --comfy third_party_ref/ComfyUI \
        [--out tests/data/freeu]

The model patches come from comfy_extras/nodes_freelunch.py (FreeU.execute / FreeU_V2.execute on
a real comfy.model_patcher.ModelPatcher); the patched model runs through BaseModel.apply_model
with the patcher's transformer_options, as ComfyUI's sampler does. Fourier_filter is also run
on its own for odd and tiny spatial sizes.

The tiny UNets of tests/data/unet have model_channels 32 and one width on every level, so
FreeU (which matches hidden states of 2x and 4x model_channels) would never fire on them. This
UNet has channel_mult [1, 2, 4] instead. Its weights are not stored: both sides make them from
a seeded CPU generator, one torch.randn per tensor in sorted key order (rule in
seeded_weights(), restated in tests/models/test_freeu_golden_torch.cpp), so only the key list
and the outputs are committed.

Writes into --out:
  freeu_goldens.safetensors  inputs and every case's output (fp32)
  freeu_goldens.json         the UNet config, its keys and shapes, the cases, versions used
"""

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_cfg_goldens as cfg  # noqa: E402  (safetensors I/O, ComfyUI import with stubs)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

FREEU_UNET = dict(
    in_channels=4, out_channels=4, model_channels=32, channel_mult=[1, 2, 4], num_res_blocks=[1, 1, 1],
    transformer_depth=[1, 0, 0], transformer_depth_middle=-1, transformer_depth_output=[1, 1, 0, 0, 0, 0],
    context_dim=48, use_linear_in_transformer=False, num_heads=2, num_head_channels=-1,
    adm_in_channels=None)
WEIGHT_SEED = 4242


def seeded_weights(shapes, seed):
    """One randn per tensor in sorted key order: >= 2-D weights scaled by 1/sqrt(fan_in), 1-D
    `.weight` (norms) 1 + 0.1 N, other 1-D (biases) 0.1 N."""
    import torch
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k in sorted(shapes):
        shape = shapes[k]
        t = torch.randn(shape, generator=g)
        if len(shape) >= 2:
            t = t / math.sqrt(math.prod(shape[1:]))
        elif k.endswith(".weight"):
            t = 1 + 0.1 * t
        else:
            t = 0.1 * t
        out[k] = t
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfy", required=True, help="ComfyUI checkout root (the folder holding comfy/)")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "freeu"))
    args = ap.parse_args()

    import torch
    torch.set_num_threads(1)
    # comfy_api (imported by comfy_extras) names server modules this script never calls.
    cfg._StubFinder.ROOTS = cfg._StubFinder.ROOTS + ("protocol", "server")
    comfy, version = cfg.import_comfy(args.comfy, "basic")
    import comfy_extras.nodes_freelunch as freelunch

    # Key list from ComfyUI's own UNetModel (a throwaway CPU instance).
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    kwargs = dict(FREEU_UNET)
    kwargs.update(dict(image_size=32, use_spatial_transformer=True, legacy=False, num_classes=None,
                       dtype=torch.float32, device="cpu", operations=comfy.ops.disable_weight_init))
    kwargs.pop("adm_in_channels")
    shapes = {k: list(v.shape) for k, v in UNetModel(**kwargs).state_dict().items()}
    weights = seeded_weights(shapes, WEIGHT_SEED)
    base = cfg.build_model(comfy, FREEU_UNET, weights, sdxl=False)

    g = torch.Generator().manual_seed(777)
    t = {
        "x": torch.randn((2, 4, 12, 10), generator=g),
        "sigma": torch.tensor([3.5, 0.8]),
        "context": torch.randn((2, 8, FREEU_UNET["context_dim"]), generator=g),
    }

    def patched(node, model, b1, b2, s1, s2):
        return node.execute(model, b1, b2, s1, s2).result[0]

    cases = [
        dict(name="none", patches=[]),
        dict(name="freeu", patches=[["FreeU", 1.1, 1.2, 0.9, 0.2]]),
        dict(name="freeu_v2", patches=[["FreeU_V2", 1.3, 1.4, 0.9, 0.2]]),
        dict(name="freeu_v2_custom", patches=[["FreeU_V2", 1.7, 0.6, 0.3, 1.5]]),
        dict(name="stacked", patches=[["FreeU", 1.1, 1.2, 0.9, 0.2], ["FreeU_V2", 1.3, 1.4, 0.5, 0.7]]),
    ]
    nodes = {"FreeU": freelunch.FreeU, "FreeU_V2": freelunch.FreeU_V2}
    out = dict(t)
    for c in cases:
        m = base
        for name, b1, b2, s1, s2 in c["patches"]:
            m = patched(nodes[name], m, b1, b2, s1, s2)
        opts = m.model_options.get("transformer_options", {})
        with torch.no_grad():
            res = m.model.apply_model(t["x"], t["sigma"], c_crossattn=t["context"], transformer_options=dict(opts))
        out["out." + c["name"]] = res.float()
        print(f"{c['name']}: std {res.std().item():.5f}")

    # Fourier_filter on its own: odd sizes, H or W of 1, threshold 2.
    filters = [
        dict(name="f1", shape=[1, 2, 1, 1], threshold=1, scale=0.3),
        dict(name="f2", shape=[1, 3, 3, 5], threshold=1, scale=0.2),
        dict(name="f3", shape=[2, 2, 4, 6], threshold=1, scale=1.7),
        dict(name="f4", shape=[1, 1, 2, 7], threshold=1, scale=0.5),
        dict(name="f5", shape=[1, 2, 8, 9], threshold=2, scale=0.25),
    ]
    for f in filters:
        x = torch.randn(f["shape"], generator=g)
        out["filter_in." + f["name"]] = x
        out["filter_out." + f["name"]] = freelunch.Fourier_filter(x, f["threshold"], f["scale"])

    meta = {"comfyui_version": version, "torch_version": torch.__version__}
    os.makedirs(args.out, exist_ok=True)
    cfg.write_safetensors(os.path.join(args.out, "freeu_goldens.safetensors"),
                          {k: v.float().contiguous() for k, v in out.items()}, meta)
    with open(os.path.join(args.out, "freeu_goldens.json"), "w") as fp:
        json.dump({"meta": meta, "unet": FREEU_UNET, "weight_seed": WEIGHT_SEED,
                   "keys": [[k, shapes[k]] for k in sorted(shapes)], "cases": cases, "filters": filters},
                  fp, indent=1)
        fp.write("\n")
    print(f"wrote {args.out}")
    sys.stdout.flush()
    os._exit(0)  # see make_cfg_goldens.py: ModelPatcher finalizers fail at interpreter teardown


if __name__ == "__main__":
    main()
