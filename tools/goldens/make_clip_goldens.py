#!/usr/bin/env python3
"""Golden data for sdflow's CLIP text encoder tests, made with ComfyUI's own classes.

Two tiny text towers with ComfyUI's real structure (3 layers, width 32, 2 heads, real
49408-token vocabulary): tiny_l (quick_gelu, like CLIP-L) and tiny_g (gelu + text_projection,
like OpenCLIP-G). They are built through ComfyUI's real wrappers (SD1ClipModel, SDXLClipModel,
SDXLRefinerClipModel, SD2ClipModel) by overriding their JSON config with
model_options["clip_<x>_model_config"], in fp16 like ComfyUI's text encoder default (manual
cast, fp32 compute). Written files:

  tests/data/clip/tiny_l.safetensors   HF-layout weights (fp16)
  tests/data/clip/tiny_g.safetensors   open_clip-layout weights (fp16), loaded into ComfyUI
                                       through comfy.utils.clip_text_transformers_convert
  tests/data/clip/clip_io.safetensors  inputs and outputs of every case (fp32; tokens int64)
  tests/data/clip/layout_<name>.txt    every key of ComfyUI's CLIPTextModel with its shape

Only token rows that some case looks up are non-zero, so the weight files store the token
embedding sparsely: "sparse.token_rows" (int64 ids) and "sparse.token_values" (fp16 rows); the
test rebuilds the full [49408, 32] matrix with zeros elsewhere.

Cases (clip_io metadata "cases" lists name:kind pairs; "clip_layer:<name>" the CLIPSetLastLayer
value when one is set): raw CLIPTextModel forwards (pooled at argmax of tokens == EOS, hidden
layers with and without final LayerNorm) and encode_from_tokens through each wrapper (prompt
weights, two chunks, textual-inversion rows incl. one of the wrong width, clip skip values).

Usage (CPU; needs PyTorch and a ComfyUI checkout whose imports resolve, stubs are fine):
  python3 tools/goldens/make_clip_goldens.py --comfy /path/to/ComfyUI [--layouts] [--out DIR]
"""

import argparse
import json
import math
import os
import struct
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
START, END = 49406, 49407
SEED = 4321

TINY = {
    "tiny_l": dict(num_hidden_layers=3, hidden_size=32, num_attention_heads=2, intermediate_size=128,
                   hidden_act="quick_gelu", max_position_embeddings=77, eos_token_id=END, vocab_size=49408),
    "tiny_g": dict(num_hidden_layers=3, hidden_size=32, num_attention_heads=2, intermediate_size=128,
                   hidden_act="gelu", max_position_embeddings=77, eos_token_id=END, vocab_size=49408),
}
FULL = {"clip_l": "comfy/sd1_clip_config.json", "clip_h": "comfy/text_encoders/sd2_clip_config.json",
        "clip_g": "comfy/clip_config_bigg.json"}
# Vocabulary ids the cases use besides start/end/pad (pads: 49407 for L, 0 for G/H).
WORDS = [320, 539, 1125, 2368, 267, 1929, 3287, 533, 871, 4558, 12032, 27661, 43001, 49000, 7, 11]


class Writer:
    """Minimal safetensors writer (F16/F32/F64/I64), so no extra package is needed."""

    def __init__(self):
        self.tensors = {}

    def add(self, name, t):
        import torch
        t = t.detach().cpu().contiguous()
        dtype = {torch.float16: "F16", torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}[t.dtype]
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


def import_comfy(comfy_dir, attention):
    comfy_dir = os.path.abspath(comfy_dir)
    sys.path.insert(0, comfy_dir)
    import comfy.options
    comfy.options.enable_args_parsing()
    argv, sys.argv = sys.argv, [sys.argv[0], "--cpu"]
    try:
        import comfy.model_management  # noqa: F401
        import comfy.sd1_clip
        import comfy.sdxl_clip
        import comfy.clip_model
        import comfy.utils
        import comfy.ops
        import comfy.text_encoders.sd2_clip
        import comfy.ldm.modules.attention as attn
    finally:
        sys.argv = argv
    import torch
    if attention == "auto":
        attention = "pytorch" if hasattr(torch.nn.functional, "scaled_dot_product_attention") else "basic"
    fn = {"pytorch": attn.attention_pytorch, "basic": attn.attention_basic}[attention]
    # CLIPEncoder asks for "small input" attention per call; pin it so the goldens do not depend
    # on what is installed.
    comfy.clip_model.optimized_attention_for_device = lambda *a, **k: fn
    try:
        import comfyui_version
        version = comfyui_version.__version__
    except ImportError:
        version = "unknown"
    return comfy, attention, version


def random_hf_weights(module, g):
    """fp16 weights for a CLIPTextModel: 1/sqrt(fan_in) matrices, perturbed LayerNorms."""
    import torch
    out = {}
    for key, t in sorted(module.state_dict().items()):
        shape = tuple(t.shape)
        if key.endswith("token_embedding.weight"):
            v = torch.zeros(shape)
            ids = sorted(set(WORDS + [0, START, END]))
            v[ids] = torch.randn((len(ids), shape[1]), generator=g) * 0.5
        elif key.endswith("position_embedding.weight"):
            v = torch.randn(shape, generator=g) * 0.5
        elif "layer_norm" in key:
            v = (1.0 if key.endswith("weight") else 0.0) + 0.1 * torch.randn(shape, generator=g)
        elif key.endswith("bias"):
            v = 0.1 * torch.randn(shape, generator=g)
        else:
            v = torch.randn(shape, generator=g) / math.sqrt(shape[1])
        out[key] = v.to(torch.float16)
    return out


def hf_to_open_clip(hf, layers):
    """The inverse of ComfyUI's clip_text_transformers_convert, for storing tiny_g."""
    import torch
    o = {"token_embedding.weight": hf["text_model.embeddings.token_embedding.weight"],
         "positional_embedding": hf["text_model.embeddings.position_embedding.weight"],
         "ln_final.weight": hf["text_model.final_layer_norm.weight"],
         "ln_final.bias": hf["text_model.final_layer_norm.bias"],
         "text_projection": hf["text_projection.weight"].transpose(0, 1).contiguous(),
         "logit_scale": torch.tensor(math.log(100.0)).to(torch.float16)}
    ren = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
           "attn.out_proj": "self_attn.out_proj"}
    for i in range(layers):
        f, t = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for s in ("weight", "bias"):
            o[t + "attn.in_proj_" + s] = torch.cat([hf[f + f"self_attn.{p}_proj.{s}"] for p in "qkv"])
            for a, b in ren.items():
                o[t + a + "." + s] = hf[f + b + "." + s]
    return o


def sparse(w, key):
    """Replaces the token embedding by its non-zero rows."""
    import torch
    table = w.pop(key)
    rows = torch.nonzero(table.float().abs().sum(1)).flatten()
    w["sparse.token_rows"] = rows.to(torch.int64)
    w["sparse.token_values"] = table[rows]
    return w


def token_lists(g, n_chunks, pad, weights, embeds):
    """Chunks of 77 (token, weight) pairs like SDTokenizer builds them; `embeds` puts embedding
    rows (tensors) at fixed positions of chunk 0."""
    import torch
    chunks = []
    for c in range(n_chunks):
        n_words = 75 if c + 1 < n_chunks else 9 + 4 * c
        ids = [WORDS[int(i)] for i in torch.randint(0, len(WORDS), (n_words,), generator=g)]
        ws = [weights[i % len(weights)] for i in range(n_words)]
        chunk = [(START, 1.0)] + list(zip(ids, ws)) + [(END, 1.0)]
        chunk += [(pad, 1.0)] * (77 - len(chunk))
        chunks.append(chunk)
    for pos, row, w in embeds:
        chunks[0][pos] = (row, w)
    return chunks


def store_tokens(writer, name, chunks, embeddings):
    """Tokens as tensors: ids (-1 for embedding slots), weights, embedding index and row."""
    import torch
    ids, ws, ei, er = [], [], [], []
    for chunk in chunks:
        for tok, w in chunk:
            ws.append(w)
            if torch.is_tensor(tok):
                for e, table in enumerate(embeddings):
                    hits = [r for r in range(table.shape[0]) if table[r] is tok or torch.equal(table[r], tok)]
                    if hits:
                        ids.append(-1), ei.append(e), er.append(hits[0])
                        break
                else:
                    raise ValueError("embedding row not found")
            else:
                ids.append(tok), ei.append(-1), er.append(0)
    shape = (len(chunks), len(chunks[0]))
    writer.add(f"{name}.ids", torch.tensor(ids, dtype=torch.int64).reshape(shape))
    writer.add(f"{name}.weights", torch.tensor(ws, dtype=torch.float64).reshape(shape))
    writer.add(f"{name}.emb_index", torch.tensor(ei, dtype=torch.int64).reshape(shape))
    writer.add(f"{name}.emb_row", torch.tensor(er, dtype=torch.int64).reshape(shape))
    for e, table in enumerate(embeddings):
        writer.add(f"{name}.emb.{e}", table.float())


def encode(model, tokens, clip_layer):
    """comfy.sd.CLIP.encode_from_tokens without the model patcher."""
    import torch
    model.reset_clip_options()
    if clip_layer is not None:
        model.set_clip_options({"layer": clip_layer})
    model.set_clip_options({"execution_device": torch.device("cpu")})
    with torch.no_grad():
        return model.encode_token_weights(tokens)[:2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfy", required=True, help="ComfyUI checkout root (the folder holding comfy/)")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "clip"))
    ap.add_argument("--attention", default="auto", choices=["auto", "pytorch", "basic"])
    ap.add_argument("--layouts", action="store_true", help="also write full-size layout_*.txt files")
    args = ap.parse_args()

    import torch
    comfy, attention, version = import_comfy(args.comfy, args.attention)
    os.makedirs(args.out, exist_ok=True)
    meta = {"comfyui_version": version, "torch_version": torch.__version__, "attention": attention,
            "seed": str(SEED)}
    f16 = torch.float16
    cfg_l, cfg_g = dict(TINY["tiny_l"]), dict(TINY["tiny_g"])

    # The real wrappers with tiny configs (fp16 weights, manual-cast fp32 compute).
    sd1 = comfy.sd1_clip.SD1ClipModel(device="cpu", dtype=f16, model_options={"clip_l_model_config": cfg_l})
    sdxl = comfy.sdxl_clip.SDXLClipModel(device="cpu", dtype=f16, model_options={
        "clip_l_model_config": dict(cfg_l), "clip_g_model_config": cfg_g})
    refiner = comfy.sdxl_clip.SDXLRefinerClipModel(device="cpu", dtype=f16,
                                                   model_options={"clip_g_model_config": dict(cfg_g)})
    sd2 = comfy.text_encoders.sd2_clip.SD2ClipModel(device="cpu", dtype=f16,
                                                     model_options={"clip_h_model_config": dict(cfg_g)})

    g = torch.Generator().manual_seed(SEED)
    w_l = random_hf_weights(sd1.clip_l.transformer, g)
    w_l.pop("text_projection.weight")  # SD1.x / SDXL CLIP-L checkpoints have none
    w_g = random_hf_weights(sdxl.clip_g.transformer, g)
    open_g = hf_to_open_clip(w_g, cfg_g["num_hidden_layers"])
    # Load tiny_g the way ComfyUI loads an SDXL checkpoint's CLIP-G.
    conv = comfy.utils.clip_text_transformers_convert({"clip_g." + k: v for k, v in open_g.items()},
                                                      "clip_g.", "clip_g.transformer.")
    hf_g = {k[len("clip_g.transformer."):]: v for k, v in conv.items() if k.startswith("clip_g.transformer.")}
    for m in (sd1.clip_l, sdxl.clip_l):
        missing, unexpected = m.transformer.load_state_dict({k: v for k, v in w_l.items()}, strict=False)
        assert missing == ["text_projection.weight"] and not unexpected, (missing, unexpected)
        # ComfyUI leaves the missing projection uninitialized; nothing reads it for these models.
        m.transformer.text_projection.weight.data.zero_()
    for m in (sdxl.clip_g, refiner.clip_g, sd2.clip_h):
        missing, unexpected = m.transformer.load_state_dict(hf_g, strict=True)

    wl = Writer()
    for k, v in sparse(dict(w_l), "text_model.embeddings.token_embedding.weight").items():
        wl.add(k, v)
    wl.add("text_model.embeddings.position_ids", torch.arange(77).unsqueeze(0))
    wl.write(os.path.join(args.out, "tiny_l.safetensors"), {**meta, "config": json.dumps(cfg_l)})
    wg = Writer()
    for k, v in sparse(dict(open_g), "token_embedding.weight").items():
        wg.add(k, v)
    wg.write(os.path.join(args.out, "tiny_g.safetensors"), {**meta, "config": json.dumps(cfg_g)})

    io = Writer()
    cases = []

    # Raw CLIPTextModel forwards: pooled at argmax(tokens == EOS); the second sequence has no
    # EOS at all (argmax → 0), the third pads with EOS.
    tok = torch.tensor([[START] + WORDS[:10] + [END] + [0] * 65,
                        [START] + WORDS[3:15] * 6 + WORDS[:4],
                        [START] + WORDS[5:9] + [END] * 72], dtype=torch.int64)
    for name, tm in (("raw_l", sd1.clip_l.transformer), ("raw_g", sdxl.clip_g.transformer)):
        for suffix, inter, ln in (("last", None, True), ("m2_ln", -2, True), ("m2", -2, False), ("p0", 0, True)):
            with torch.no_grad():
                last, hidden, projected, pooled = tm(tok, intermediate_output=inter,
                                                     final_layer_norm_intermediate=ln, dtype=torch.float32)
            case = f"{name}_{suffix}"
            cases.append(f"{case}:{name}")
            io.add(f"{case}.tokens", tok)
            io.add(f"{case}.last", last)
            io.add(f"{case}.pooled", pooled)
            if name == "raw_g":
                io.add(f"{case}.projected", projected)
            if inter is not None:
                io.add(f"{case}.intermediate", hidden)
                io.add(f"{case}.layer", torch.tensor(inter, dtype=torch.int64))
                io.add(f"{case}.layer_norm", torch.tensor(int(ln), dtype=torch.int64))

    # encode_from_tokens cases.
    emb_l = [torch.randn((2, 32), generator=g).to(f16), torch.randn((1, 48), generator=g).to(f16)]
    emb_g = [torch.randn((3, 32), generator=g).to(f16)]

    def l_tokens(n_chunks, weights, with_emb):
        e = [(3, emb_l[0][0], weights[0]), (4, emb_l[0][1], weights[0]), (9, emb_l[1][0], 1.0)] if with_emb else []
        return token_lists(g, n_chunks, END, weights, e), emb_l if with_emb else []

    def g_tokens(n_chunks, weights, with_emb):
        e = [(2, emb_g[0][2], weights[-1]), (5, emb_g[0][0], 1.0)] if with_emb else []
        return token_lists(g, n_chunks, 0, weights, e), emb_g if with_emb else []

    plan = [
        ("sd1_plain", "sd1", None, dict(l=(1, [1.0], False))),
        ("sd1_weighted", "sd1", None, dict(l=(2, [1.1, 0.5, 1.0, 1.21, 1.5], True))),
        ("sd1_skip2", "sd1", -2, dict(l=(1, [1.0, 0.8], False))),
        ("sd1_skip1", "sd1", -1, dict(l=(1, [1.0], False))),
        ("sd1_skip20", "sd1", -20, dict(l=(1, [1.0], False))),
        ("sdxl_plain", "sdxl", None, dict(l=(1, [1.0], False), g=(1, [1.0], False))),
        ("sdxl_weighted", "sdxl", None, dict(l=(2, [1.3, 1.0, 0.7], True), g=(1, [1.3, 1.0, 0.7], True))),
        ("sdxl_skip1", "sdxl", -1, dict(l=(1, [1.0, 1.2], False), g=(2, [1.0, 1.2], False))),
        ("sdxl_skip3", "sdxl", -3, dict(l=(1, [1.0], False), g=(1, [1.0], False))),
        ("refiner", "refiner", None, dict(g=(2, [1.0, 0.9], True))),
        ("sd2", "sd2", None, dict(h=(1, [1.0, 1.4], True))),
        ("sd2_skip1", "sd2", -1, dict(h=(1, [1.0], False))),
    ]
    for name, kind, clip_layer, parts in plan:
        tokens = {}
        for part, (n, weights, with_emb) in parts.items():
            chunks, embs = (l_tokens if part == "l" else g_tokens)(n, weights, with_emb)
            tokens[part] = chunks
            store_tokens(io, f"{name}.{part}", chunks, embs)
        model = {"sd1": sd1, "sdxl": sdxl, "refiner": refiner, "sd2": sd2}[kind]
        cond, pooled = encode(model, tokens, clip_layer)
        io.add(f"{name}.cond", cond)
        io.add(f"{name}.pooled", pooled)
        cases.append(f"{name}:{kind}")
        if clip_layer is not None:
            meta[f"clip_layer:{name}"] = str(clip_layer)
        print(f"{name}: cond {tuple(cond.shape)} std {cond.std().item():.3f}, pooled {tuple(pooled.shape)}")

    meta["cases"] = ",".join(cases)
    io.write(os.path.join(args.out, "clip_io.safetensors"), meta)

    def write_layout(module, name, title):
        sd = module.state_dict()
        path = os.path.join(args.out, f"layout_{name}.txt")
        with open(path, "w") as f:
            f.write(f"# ComfyUI {version} {title}: {len(sd)} tensors, written by tools/goldens/make_clip_goldens.py\n")
            for k in sorted(sd):
                f.write(f"{k} {','.join(str(d) for d in sd[k].shape)}\n")
        print(f"wrote {path} ({len(sd)} keys)")

    write_layout(sd1.clip_l.transformer, "tiny_l", "CLIPTextModel tiny_l")
    write_layout(sdxl.clip_g.transformer, "tiny_g", "CLIPTextModel tiny_g")
    if args.layouts:
        for name, rel in FULL.items():
            with open(os.path.join(os.path.abspath(args.comfy), rel)) as f:
                cfg = json.load(f)
            m = comfy.clip_model.CLIPTextModel(cfg, f16, "meta", comfy.ops.manual_cast)
            write_layout(m, name, f"CLIPTextModel {name} ({rel})")

    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"tests/data/clip: {total / 1024:.0f} KiB in all")


if __name__ == "__main__":
    main()
