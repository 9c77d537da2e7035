#!/usr/bin/env python3
"""Golden data for sdflow's LoRA tests, computed by ComfyUI's own LoRA code.

    /usr/bin/python3 tools/goldens/make_lora_goldens.py --comfy third_party_ref/ComfyUI \
        [--out tests/data/lora]

Each case runs what LoraLoader runs (comfy/sd.py load_lora_for_models): the key maps of
comfy.lora.model_lora_keys_unet on a real comfy.model_base.BaseModel / SDXL (the tiny UNets of
tests/data/unet) and model_lora_keys_clip on real SD1ClipModel / SDXLClipModel wrappers (the
tiny text towers of tests/data/clip), comfy.lora.load_lora, ModelPatcher.clone + add_patches
with the node's strengths, then ModelPatcher.patch_weight_to_device for every patched weight
(calculate_weight with fp32 intermediates, then stochastic_rounding to the stored dtype). What
ComfyUI logs as "lora key not loaded" / "NOT LOADED" is recorded too.

The LoRA files are small random ones written here, one per naming scheme: kohya (ldm and
diffusers layer names, LoCon 3×3 down / 1×1 up, Tucker mid, no-alpha, DoRA on both axes, full
diffs), diffusers/peft (lora_A/B, .lora.up/down, _lora.up/down attn-procs, peft attention names
ComfyUI does not map), SDXL kohya (lora_te1_/lora_te2_, text_projection) and a second kohya file
for stacking. Writes into --out:
  <lora>.safetensors        the LoRA files (fp16 factors, fp32 alphas)
  lora_goldens.safetensors  every patched weight of every case, keyed "<case>/<model>/<key>"
                            (model: unet, clip_l, clip_g), at the dtype ComfyUI stores it in
  lora_goldens.json         the cases (files, strengths, merge dtype) and ComfyUI's unloaded keys
"""

import argparse
import json
import logging
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
from make_cfg_goldens import TINY_SD15, import_comfy, read_safetensors, write_safetensors  # noqa: E402

# tests/data/unet/tiny_sdxl.safetensors has a 40-wide ADM input (make_unet_goldens.py).
TINY_SDXL = dict(
    in_channels=4, out_channels=4, model_channels=32, channel_mult=[1, 1], num_res_blocks=[1, 1],
    transformer_depth=[0, 2], transformer_depth_middle=1, transformer_depth_output=[0, 0, 1, 2],
    context_dim=48, use_linear_in_transformer=True, num_heads=-1, num_head_channels=16,
    adm_in_channels=40)
TINY_CLIP = dict(num_hidden_layers=3, hidden_size=32, num_attention_heads=2, intermediate_size=128,
                 max_position_embeddings=77, eos_token_id=49407, vocab_size=49408)


class Captured(logging.Handler):
    """ComfyUI's warnings about keys it did not load."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.keys = []

    def emit(self, record):
        msg = record.getMessage()
        for prefix in ("lora key not loaded: ", "NOT LOADED "):
            if msg.startswith(prefix):
                self.keys.append(msg[len(prefix):])


def build_unet(comfy, cfg, weights, sdxl, dtype):
    import torch
    base_cls = comfy.supported_models.SDXL if sdxl else comfy.supported_models.SD15
    model_config = base_cls({k: v for k, v in cfg.items()})
    model_config.unet_config["num_heads"] = cfg["num_heads"]
    model_config.unet_config["num_head_channels"] = cfg["num_head_channels"]
    model_config.unet_config.update(dict(use_temporal_resblock=False, use_temporal_attention=False,
                                         image_size=32, num_classes="sequential" if sdxl else None,
                                         use_spatial_transformer=True, legacy=False))
    model_config.set_inference_dtype(dtype, None)
    cls = comfy.model_base.SDXL if sdxl else comfy.model_base.BaseModel
    model = cls(model_config, device=torch.device("cpu"))
    model.diffusion_model.load_state_dict({k: v.to(dtype) for k, v in weights.items()}, strict=True)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


def dense_clip(path):
    """A tests/data/clip file with its sparse token table rebuilt (see make_clip_goldens.py)."""
    import torch
    w = read_safetensors(path)
    rows, values = w.pop("sparse.token_rows"), w.pop("sparse.token_values")
    table = torch.zeros((TINY_CLIP["vocab_size"], values.shape[1]), dtype=values.dtype)
    table[rows] = values
    return w, table


def build_clip(comfy, sdxl, clip_dir):
    import torch
    f16 = torch.float16
    cfg_l = dict(TINY_CLIP, hidden_act="quick_gelu")
    cfg_g = dict(TINY_CLIP, hidden_act="gelu")
    if sdxl:
        model = comfy.sdxl_clip.SDXLClipModel(device="cpu", dtype=f16, model_options={
            "clip_l_model_config": cfg_l, "clip_g_model_config": cfg_g})
    else:
        model = comfy.sd1_clip.SD1ClipModel(device="cpu", dtype=f16, model_options={"clip_l_model_config": cfg_l})
    wl, table = dense_clip(os.path.join(clip_dir, "tiny_l.safetensors"))
    wl["text_model.embeddings.token_embedding.weight"] = table
    wl.pop("text_model.embeddings.position_ids", None)
    missing, unexpected = model.clip_l.transformer.load_state_dict(wl, strict=False)
    assert missing == ["text_projection.weight"] and not unexpected, (missing, unexpected)
    model.clip_l.transformer.text_projection.weight.data.zero_()
    if sdxl:
        wg, table = dense_clip(os.path.join(clip_dir, "tiny_g.safetensors"))
        wg["token_embedding.weight"] = table
        conv = comfy.utils.clip_text_transformers_convert({"clip_g." + k: v for k, v in wg.items()},
                                                          "clip_g.", "clip_g.transformer.")
        hf = {k[len("clip_g.transformer."):]: v for k, v in conv.items() if k.startswith("clip_g.transformer.")}
        model.clip_g.transformer.load_state_dict(hf, strict=True)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


# ---------------------------------------------------------------------------------------------
# Random LoRA files.

class LoraWriter:
    def __init__(self, seed):
        import torch
        self.g = torch.Generator().manual_seed(seed)
        self.t = {}

    def randn(self, *shape, scale=1.0):
        import torch
        return (torch.randn(shape, generator=self.g) * scale).to(torch.float16)

    def pair(self, base, up_shape, down_shape, up_sfx, down_sfx, alpha=None, mid_shape=None, scale=0.3):
        import torch
        fan_in = math.prod(down_shape[1:])
        self.t[base + down_sfx] = self.randn(*down_shape, scale=1.0 / math.sqrt(fan_in))
        self.t[base + up_sfx] = self.randn(*up_shape, scale=scale)
        if mid_shape is not None:
            self.t[base + ".lora_mid.weight"] = self.randn(*mid_shape, scale=1.0 / math.sqrt(math.prod(mid_shape[1:])))
        if alpha is not None:
            self.t[base + ".alpha"] = torch.tensor(float(alpha))

    def kohya(self, base, out, inp, rank=4, kernel=None, **kw):
        down = (rank, inp) + ((kernel, kernel) if kernel else ())
        up = (out, rank) + ((1, 1) if kernel else ())
        self.pair(base, up, down, ".lora_up.weight", ".lora_down.weight", **kw)

    def write(self, path, meta):
        write_safetensors(path, self.t, meta)


def lora_sd15_kohya():
    w = LoraWriter(101)
    p = "lora_unet_input_blocks_1_1_transformer_blocks_0_"
    w.kohya(p + "attn1_to_q", 32, 32, alpha=2)
    w.kohya(p + "attn1_to_k", 32, 32, rank=8, alpha=8)
    w.kohya(p + "attn1_to_out_0", 32, 32)  # no alpha: scale 1
    w.kohya(p + "attn2_to_k", 32, 48, alpha=1)
    w.kohya(p + "attn2_to_v", 32, 48, alpha=3)
    w.kohya(p + "ff_net_0_proj", 256, 32, alpha=4)
    w.kohya("lora_unet_input_blocks_1_1_proj_in", 32, 32, kernel=1, alpha=4)  # 1×1 conv
    w.kohya("lora_unet_input_blocks_1_0_in_layers_2", 32, 32, kernel=3, alpha=2)  # LoCon 3×3 down
    # LoCon with a Tucker core: 1×1 down, 3×3 mid, 1×1 up.
    w.pair("lora_unet_middle_block_0_out_layers_3", (32, 4, 1, 1), (4, 32, 1, 1), ".lora_up.weight",
           ".lora_down.weight", alpha=4, mid_shape=(4, 4, 3, 3))
    w.kohya("lora_unet_output_blocks_0_0_skip_connection", 32, 64, kernel=1, alpha=4)
    w.kohya("lora_unet_input_blocks_3_0_emb_layers_1", 32, 128, alpha=4)
    # kohya with diffusers layer names.
    w.kohya("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_ff_net_2", 32, 128, alpha=4)
    w.kohya("lora_unet_up_blocks_1_resnets_0_conv2", 32, 32, kernel=3, alpha=4)
    # DoRA on the output axis (linear) and on the input axis (conv).
    w.kohya("lora_unet_middle_block_1_transformer_blocks_0_attn1_to_v", 32, 32, alpha=4)
    import torch
    w.t["lora_unet_middle_block_1_transformer_blocks_0_attn1_to_v.dora_scale"] = w.randn(32, 1, scale=0.2) + 1.0
    w.kohya("lora_unet_input_blocks_2_0_op", 32, 32, kernel=3, alpha=4)
    w.t["lora_unet_input_blocks_2_0_op.dora_scale"] = w.randn(1, 32, 1, 1, scale=0.2) + 3.0
    # Full-weight diffs through the generic names.
    w.t["diffusion_model.out.2.diff"] = w.randn(4, 32, 3, 3, scale=0.01)
    w.t["diffusion_model.out.2.diff_b"] = w.randn(4, scale=0.01)
    # Text encoder.
    w.kohya("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 32, 32, alpha=4)
    w.kohya("lora_te_text_model_encoder_layers_1_mlp_fc1", 128, 32, alpha=2)
    w.kohya("lora_te1_text_model_encoder_layers_2_mlp_fc2", 32, 128, alpha=4)
    w.kohya("lora_te_text_model_encoder_layers_2_self_attn_out_proj", 32, 32)
    w.kohya("lora_te1_text_projection", 32, 32, alpha=4)  # a weight sdflow's SD1 CLIP-L does not keep
    # Keys that match nothing.
    w.kohya("lora_unet_no_such_layer", 32, 32, alpha=4)
    w.kohya("lora_te_text_model_encoder_layers_9_mlp_fc1", 128, 32, alpha=4)
    w.t["lora_unet_input_blocks_1_1_proj_out.some_extra"] = w.randn(32, 4)
    return w


def lora_sd15_peft():
    w = LoraWriter(202)
    u = "unet.down_blocks.0.attentions.0.transformer_blocks.0."
    w.pair(u + "attn1.processor.to_q", (32, 4), (4, 32), ".lora.up.weight", ".lora.down.weight")
    w.pair(u + "attn2.processor.to_k", (32, 4), (4, 48), "_lora.up.weight", "_lora.down.weight", alpha=2)
    w.pair(u + "attn1.processor.to_out", (32, 4), (4, 32), ".lora_B.weight", ".lora_A.weight", alpha=4)
    w.pair(u + "ff.net.2", (32, 4), (4, 128), ".lora_B.weight", ".lora_A.weight", alpha=8)
    w.pair("unet.down_blocks.0.resnets.0.conv1", (32, 4, 1, 1), (4, 32, 3, 3), ".lora_B.weight", ".lora_A.weight",
           alpha=4)
    w.pair("unet.mid_block.attentions.0.proj_in", (32, 4, 1, 1), (4, 32, 1, 1), ".lora_B.weight",
           ".lora_A.weight", alpha=4)
    w.pair("up_blocks.0.resnets.1.time_emb_proj", (32, 4), (4, 128), ".lora_linear_layer.up.weight",
           ".lora_linear_layer.down.weight")
    w.pair("unet.up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_v", (32, 4), (4, 48),
           ".lora_B", ".lora_A", alpha=2)
    # Peft attention names: ComfyUI v0.8.0 maps only the .processor. spelling, so these stay unloaded.
    w.pair(u + "attn1.to_v", (32, 4), (4, 32), ".lora_B.weight", ".lora_A.weight")
    w.pair("text_encoder.text_model.encoder.layers.0.self_attn.k_proj", (32, 4), (4, 32), ".lora_B.weight",
           ".lora_A.weight", alpha=4)
    w.pair("text_encoder.text_model.encoder.layers.1.mlp.fc2", (32, 4), (4, 128), ".lora.up.weight",
           ".lora.down.weight")
    return w


def lora_sd15_second():
    """A second kohya LoRA overlapping the first, for stacking."""
    w = LoraWriter(303)
    p = "lora_unet_input_blocks_1_1_transformer_blocks_0_"
    w.kohya(p + "attn1_to_q", 32, 32, alpha=4)
    w.kohya(p + "attn1_to_v", 32, 32, alpha=4)
    w.kohya("lora_unet_input_blocks_1_0_in_layers_2", 32, 32, kernel=3, alpha=4)
    w.kohya("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 32, 32, alpha=2)
    return w


def lora_sdxl_kohya():
    w = LoraWriter(404)
    w.kohya("lora_unet_input_blocks_3_1_proj_in", 32, 32, alpha=4)  # Linear proj
    w.kohya("lora_unet_input_blocks_3_1_transformer_blocks_1_attn2_to_k", 32, 48, alpha=2)
    w.kohya("lora_unet_middle_block_1_transformer_blocks_0_ff_net_0_proj", 256, 32, alpha=4)
    w.kohya("lora_unet_label_emb_0_0", 128, 40, alpha=4)
    w.kohya("lora_unet_output_blocks_0_1_transformer_blocks_1_attn1_to_out_0", 32, 32, alpha=4)
    w.kohya("lora_unet_up_blocks_0_upsamplers_0_conv", 32, 32, kernel=3, alpha=4)
    # The diffusers map names the last level's upsampler, which this UNet lacks: NOT LOADED.
    w.kohya("lora_unet_up_blocks_1_upsamplers_0_conv", 32, 32, kernel=3, alpha=4)
    w.kohya("lora_te1_text_model_encoder_layers_0_self_attn_v_proj", 32, 32, alpha=4)
    w.kohya("lora_te_text_model_encoder_layers_1_mlp_fc2", 32, 128, alpha=4)  # lora_te_ = CLIP-L in SDXL
    w.kohya("lora_te2_text_model_encoder_layers_0_self_attn_q_proj", 32, 32, alpha=4)
    w.kohya("lora_te2_text_model_encoder_layers_2_mlp_fc1", 128, 32, alpha=2)
    w.kohya("lora_te2_text_projection", 32, 32, alpha=4)
    w.kohya("lora_te1_text_projection", 32, 32, alpha=4)
    w.pair("text_encoder_2.text_model.encoder.layers.1.self_attn.out_proj", (32, 4), (4, 32), ".lora_B.weight",
           ".lora_A.weight", alpha=4)
    return w


# ---------------------------------------------------------------------------------------------

def patched_weights(comfy, unet, clip, loras, merge_dtype):
    """load_lora_for_models for each (lora, strength_model, strength_clip) in order, then
    patch_weight_to_device for every patched weight. Returns ({model/key: weight}, not_loaded)."""
    import torch
    cpu = torch.device("cpu")
    comfy.model_management.LORA_COMPUTE_DTYPES[cpu] = merge_dtype
    captured = Captured()
    logging.getLogger().addHandler(captured)
    try:
        m, c = unet, clip
        for lora, sm, sc in loras:
            m, c = comfy.sd.load_lora_for_models(m, c, lora, sm, sc)
    finally:
        logging.getLogger().removeHandler(captured)
    out = {}
    for patcher, prefix in ((m, "unet"), (c, "clip")):
        if patcher is None:
            continue
        for key in sorted(patcher.patches):
            patcher.patch_weight_to_device(key, device_to=cpu)
            w = comfy.utils.get_attr(patcher.model, key).detach().clone()
            if prefix == "unet":
                name = "unet/" + key[len("diffusion_model."):]
            else:
                enc, _, rest = key.partition(".transformer.")
                name = enc + "/" + rest
            out[name] = w
        for key, bk in list(patcher.backup.items()):  # ModelPatcher.unpatch_model's restore
            comfy.utils.set_attr_param(patcher.model, key, bk.weight)
        patcher.backup.clear()
    del comfy.model_management.LORA_COMPUTE_DTYPES[cpu]
    return out, sorted(set(captured.keys))


class FakeClip:
    """What load_lora_for_models needs of comfy.sd.CLIP: cond_stage_model, clone, add_patches."""

    def __init__(self, patcher):
        self.patcher = patcher
        self.cond_stage_model = patcher.model

    def clone(self):
        return FakeClip(self.patcher.clone())

    def add_patches(self, patches, strength_patch=1.0, strength_model=1.0):
        return self.patcher.add_patches(patches, strength_patch, strength_model)

    @property
    def patches(self):
        return self.patcher.patches

    @property
    def model(self):
        return self.patcher.model

    @property
    def backup(self):
        return self.patcher.backup

    def patch_weight_to_device(self, key, device_to=None):
        return self.patcher.patch_weight_to_device(key, device_to=device_to)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfy", required=True, help="ComfyUI checkout root (the folder holding comfy/)")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "lora"))
    ap.add_argument("--unet-data", default=os.path.join(REPO, "tests", "data", "unet"))
    ap.add_argument("--clip-data", default=os.path.join(REPO, "tests", "data", "clip"))
    args = ap.parse_args()

    import torch
    torch.set_num_threads(1)
    comfy, version = import_comfy(args.comfy, "basic")
    import comfy.sd  # noqa: F401
    import comfy.sd1_clip  # noqa: F401
    import comfy.sdxl_clip  # noqa: F401
    import comfy.utils  # noqa: F401
    os.makedirs(args.out, exist_ok=True)
    meta = {"comfyui_version": version, "torch_version": torch.__version__}

    sd15_w = read_safetensors(os.path.join(args.unet_data, "tiny_sd15.safetensors"))
    sdxl_w = read_safetensors(os.path.join(args.unet_data, "tiny_sdxl.safetensors"))
    sd15_32 = build_unet(comfy, TINY_SD15, sd15_w, False, torch.float32)
    sd15_16 = build_unet(comfy, TINY_SD15, sd15_w, False, torch.float16)
    sdxl_32 = build_unet(comfy, TINY_SDXL, sdxl_w, True, torch.float32)
    clip_sd1 = FakeClip(build_clip(comfy, False, args.clip_data))
    clip_sdxl = FakeClip(build_clip(comfy, True, args.clip_data))

    files = {"sd15_kohya": lora_sd15_kohya(), "sd15_peft": lora_sd15_peft(), "sd15_second": lora_sd15_second(),
             "sdxl_kohya": lora_sdxl_kohya()}
    loaded = {}
    for name, w in files.items():
        w.write(os.path.join(args.out, name + ".safetensors"), meta)
        loaded[name] = {k: v.clone() for k, v in w.t.items()}

    f32, f16 = torch.float32, torch.float16
    cases = [
        # name, unet, clip, [(lora, strength_model, strength_clip)], merge dtype (ComfyUI's
        # lora_compute_dtype: fp32 on the CPU; fp16 as on a GPU for the *_fp16 case).
        ("sd15_kohya", "sd15", sd15_32, clip_sd1, [("sd15_kohya", 0.8, 1.3)], f32),
        ("sd15_peft", "sd15", sd15_32, clip_sd1, [("sd15_peft", 1.0, -0.7)], f32),
        ("sd15_stack", "sd15", sd15_32, clip_sd1, [("sd15_kohya", 0.8, 1.0), ("sd15_second", -0.5, 2.0)], f32),
        # Same UNet patches as sd15_kohya (its goldens are reused); only the key map differs.
        ("sd15_model_only", "sd15", sd15_32, None, [("sd15_kohya", 0.8, 0.0)], f32),
        ("sd15_kohya_fp16", "sd15_fp16", sd15_16, clip_sd1, [("sd15_kohya", 0.8, 1.3)], f16),
        ("sdxl_kohya", "sdxl", sdxl_32, clip_sdxl, [("sdxl_kohya", 1.2, 0.9)], f32),
    ]
    goldens, described = {}, []
    for name, unet_name, unet, clip, stack, merge in cases:
        weights, not_loaded = patched_weights(comfy, unet, clip, [(loaded[l], sm, sc) for l, sm, sc in stack], merge)
        for k, v in weights.items():
            if name == "sd15_model_only":
                assert torch.equal(v, goldens["sd15_kohya/" + k]), k
            else:
                goldens[name + "/" + k] = v
        described.append({"name": name, "unet": unet_name, "clip": clip is not None,
                          "loras": [{"file": l + ".safetensors", "strength_model": sm, "strength_clip": sc}
                                    for l, sm, sc in stack],
                          "merge_dtype": "fp16" if merge == f16 else "fp32", "not_loaded": not_loaded,
                          "patched": sorted(weights)})
        print(f"{name}: {len(weights)} patched weights, {len(not_loaded)} keys not loaded")

    write_safetensors(os.path.join(args.out, "lora_goldens.safetensors"), goldens, meta)
    with open(os.path.join(args.out, "lora_goldens.json"), "w") as f:
        json.dump({"meta": meta, "cases": described}, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(args.out, n)) for n in os.listdir(args.out))
    print(f"wrote {args.out} ({total / 1024:.0f} KiB)")
    sys.stdout.flush()
    os._exit(0)  # see make_cfg_goldens.py: ModelPatcher finalizers fail at interpreter teardown


if __name__ == "__main__":
    main()
