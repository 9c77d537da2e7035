#!/usr/bin/env python3
"""One full tiny txt2img run through ComfyUI's own nodes, as the end-to-end golden of sdflow.

    /usr/bin/python3 tools/goldens/make_txt2img_golden.py [--comfy third_party_ref/ComfyUI]
        [--sdflow build/sdflow | --checkpoint FILE] [--out tests/data/txt2img]

The checkpoint is the one `sdflow make-checkpoint --arch sd15 --tiny --seed 3` writes (random
fp16 weights in the real SD1.5 single-file layout: tiny UNet, 3-layer width-32 CLIP-L with the real
vocabulary, 4-level width-32 VAE). Its widths match none of ComfyUI's model configs, so the three
parts are built the way ComfyUI's checkpoint loader builds them, with tiny configs:

  CLIP  comfy.sd.CLIP(ClipTarget(SD1Tokenizer, SD1ClipModel)) with clip_l_model_config = tiny_l,
        state dict through SD15.process_clip_state_dict (fp16 weights, fp32 compute)
  UNet  comfy.model_base.BaseModel (SD15 model config, tiny unet_config) in a ModelPatcher, fp32
  VAE   comfy.sd.VAE(sd, config=AutoencoderKL params), fp32

and then ComfyUI's default txt2img graph runs through the real node classes of nodes.py under
torch.inference_mode (as ComfyUI's executor runs nodes): CLIPTextEncode (positive with weights and
escaped parentheses, negative), EmptyLatentImage 64x64 batch 2, KSampler (one case per sampler),
VAEDecode; the 8-bit image is SaveImage's formula (clip(255 * x, 0, 255) truncated to uint8).

Two small dependencies missing from Debian are replaced. transformers: ComfyUI's SDTokenizer gets a
small CLIPTokenizer stand-in (CLIP BPE over the same vocab.json / merges.txt, ASCII text only).
Before anything runs it must reproduce, id for id, the HF tokenizer ids recorded in
tests/data/tokenizer/comfy_tokens.json for every ASCII prompt there; everything above the
word level (weights, escapes, chunking, padding) is ComfyUI's code. trampoline (torchsde's
generator driver, for the Brownian tree of the SDE sampler): tools/parity/pyio.py's module.

Writes into --out (a few dozen KiB):
  golden.safetensors  cond.{positive,negative}[.pooled], and per case: latent.<case> [2,4,8,8]
                      (KSampler output, fp32) and image.<case> [2,64,64,3] (uint8 levels)
  golden.json         the workflow values, the cases, the checkpoint's seed and sha256, versions
"""

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import make_cfg_goldens as cfgg  # noqa: E402  (ComfyUI import with stubs, safetensors I/O, UNet build)
import make_clip_goldens as clipg  # noqa: E402  (the tiny CLIP-L config)
sys.path.insert(0, os.path.join(REPO, "tools", "parity"))
import pyio  # noqa: E402  (the trampoline module torchsde needs)

CHECKPOINT_SEED = 3
POSITIVE = "a (red:1.3) fox, \\(studio\\) photo, ((sharp focus)), [soft] light"
NEGATIVE = "blurry, (low quality:0.8), text"
WIDTH, HEIGHT, BATCH = 64, 64, 2
CFG = 7.0
# name, KSampler seed, steps, sampler, scheduler
CASES = [
    ("euler", 42, 4, "euler", "normal"),
    ("dpmpp_2m_karras", 7, 5, "dpmpp_2m", "karras"),
    ("euler_ancestral", 1234, 4, "euler_ancestral", "normal"),
    ("dpmpp_2m_sde_karras", 99, 6, "dpmpp_2m_sde", "karras"),
]
# UNetConfig::tiny_sd15() with the tiny CLIP's width as context (make_checkpoint.cpp).
TINY_SD15 = dict(cfgg.TINY_SD15, context_dim=32)
# make_checkpoint.cpp's tiny VAE: SD's four levels (8x) at width 32, one ResBlock per level.
TINY_VAE = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 32,
            "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
# Packages nodes.py imports that are absent here and unused by these nodes (stubs raise if called).
EXTRA_STUBS = ("protocol", "server", "comfy_api_nodes", "PIL", "blake3", "pydantic", "yaml", "comfy_aimdo")


# ---------------------------------------------------------------------------------------------
# CLIPTokenizer stand-in (ASCII only), checked against the HF ids in the tokenizer goldens.

class AsciiClipTokenizer:
    """What SDTokenizer uses of transformers.CLIPTokenizer: from_pretrained, __call__ and
    get_vocab. Fast CLIPTokenizer behaviour on ASCII: collapse whitespace, lowercase, split with
    CLIP's pattern ([a-z]+ | one digit | other non-space runs | contractions), byte-level BPE with
    the </w> word end; <|startoftext|> and <|endoftext|> around the ids."""
    PATTERN = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")
    files = {}

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        return cls(path)

    def __init__(self, path):
        vocab_path, merges_path = os.path.join(path, "vocab.json"), os.path.join(path, "merges.txt")
        with open(vocab_path, encoding="utf-8") as f:
            self.vocab = json.load(f)
        with open(merges_path, encoding="utf-8") as f:
            merges = f.read().strip().split("\n")[1:49152 - 256 - 2 + 1]
        self.ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
        self.bos, self.eos = self.vocab["<|startoftext|>"], self.vocab["<|endoftext|>"]
        self.cache = {}
        for p in (vocab_path, merges_path):
            with open(p, "rb") as f:
                AsciiClipTokenizer.files[os.path.basename(p)] = hashlib.sha256(f.read()).hexdigest()

    @staticmethod
    def supports(text):
        return all(" " <= c <= "~" or c in "\t\n" for c in text) and "<|" not in text

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            # Merge every occurrence of the best-ranked adjacent pair, until no pair is a merge.
            rank, a, b = min((self.ranks.get(pair, 1 << 30),) + pair for pair in zip(parts, parts[1:]))
            if rank == 1 << 30:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self.vocab[p] for p in parts]
        self.cache[word] = ids
        return ids

    def __call__(self, text):
        if not self.supports(text):
            raise ValueError(f"AsciiClipTokenizer: only printable ASCII without special tokens: {text!r}")
        text = re.sub(r"\s+", " ", text).strip().lower()
        ids = [self.bos]
        for w in self.PATTERN.findall(text):
            ids += self.bpe(w)  # printable ASCII is its own byte-level alphabet
        return {"input_ids": ids + [self.eos]}

    def get_vocab(self):
        return dict(self.vocab)


def check_tokenizer(vocab_dir, goldens):
    """Every ASCII prompt of the HF-made tokenizer goldens must tokenize to the same ids."""
    tok = AsciiClipTokenizer(vocab_dir)
    with open(goldens, encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    n = 0
    for c in cases:
        if "hf_ids" in c and AsciiClipTokenizer.supports(c["prompt"]):
            got = tok(c["prompt"])["input_ids"]
            if got != c["hf_ids"]:
                sys.exit(f"tokenizer stand-in differs from transformers on {c['prompt']!r}:\n {got}\n {c['hf_ids']}")
            n += 1
    if n < 100:
        sys.exit(f"only {n} ASCII prompts in {goldens}: too few to trust the tokenizer stand-in")
    return n


def install_tokenizer():
    """transformers as a stub package whose CLIPTokenizer is the stand-in (sd1_clip binds it as a
    default argument at import, so it must be in place before ComfyUI is imported)."""
    mod = cfgg._StubModule("transformers")
    mod.__path__ = []
    mod.CLIPTokenizer = AsciiClipTokenizer
    sys.modules["transformers"] = mod


def patch_torch113(comfy):
    """ModelPatcher._load_list sizes the fp32 copies of manual-cast (fp16) weights with
    dtype.itemsize, which torch < 2.1 lacks. That figure only orders partial loads; here every
    model is fully loaded on the CPU, so the estimate is skipped (manual_cast_dtype hidden for
    the call) and the weights and compute stay ComfyUI's."""
    import torch
    if hasattr(torch.float32, "itemsize"):
        return
    original = comfy.model_patcher.ModelPatcher._load_list

    def load_list(self, *a, **k):
        saved = getattr(self.model, "manual_cast_dtype", None)
        self.model.manual_cast_dtype = None
        try:
            return original(self, *a, **k)
        finally:
            self.model.manual_cast_dtype = saved
    comfy.model_patcher.ModelPatcher._load_list = load_list


# ---------------------------------------------------------------------------------------------

def make_checkpoint(sdflow, seed, out):
    cmd = [sdflow, "make-checkpoint", "--arch", "sd15", "--tiny", "--seed", str(seed), out]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return " ".join(["sdflow"] + cmd[1:-1])


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load_parts(comfy, ckpt):
    """CheckpointLoaderSimple's split (comfy.sd.load_state_dict_guess_config) with tiny configs."""
    import torch
    sd = cfgg.read_safetensors(ckpt)
    split = {p: {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}
             for p in ("model.diffusion_model.", "cond_stage_model.", "first_stage_model.")}
    assert sum(len(v) for v in split.values()) == len(sd), "checkpoint has keys outside the three parts"

    patcher = cfgg.build_model(comfy, TINY_SD15, split["model.diffusion_model."], sdxl=False)

    model_config = comfy.supported_models.SD15({})
    clip_sd = model_config.process_clip_state_dict({"cond_stage_model." + k: v
                                                    for k, v in split["cond_stage_model."].items()})
    tiny_l = dict(clipg.TINY["tiny_l"])
    target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, comfy.sd1_clip.SD1ClipModel)
    clip = comfy.sd.CLIP(target, embedding_directory=None, state_dict=clip_sd,
                         model_options={"clip_l_model_config": tiny_l})
    have = set(clip.cond_stage_model.state_dict())
    missing = have - set(clip_sd) - {"clip_l.transformer.text_projection.weight", "clip_l.logit_scale"}
    # position_ids (arange) is in checkpoints but not in ComfyUI's module: load_sd ignores it.
    extra = set(clip_sd) - have - {"clip_l.transformer.text_model.embeddings.position_ids"}
    assert not missing and not extra, (missing, extra)

    vae_sd = split["first_stage_model."]
    vae = comfy.sd.VAE(sd=vae_sd, config={"params": {"ddconfig": dict(TINY_VAE), "embed_dim": 4}})
    have = set(vae.first_stage_model.state_dict())
    assert have == set(vae_sd), (have ^ set(vae_sd))
    assert vae.vae_dtype == torch.float32
    return patcher, clip, vae


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfy", default=os.path.join(REPO, "third_party_ref", "ComfyUI"),
                    help="ComfyUI v0.8.0 checkout root (the folder holding comfy/ and nodes.py)")
    ap.add_argument("--sdflow", default=os.path.join(REPO, "build", "sdflow"), help="sdflow binary that makes the checkpoint")
    ap.add_argument("--checkpoint", help="use this file instead (must be make-checkpoint --tiny --seed 3)")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "txt2img"))
    ap.add_argument("--tokenizer-goldens", default=os.path.join(REPO, "tests", "data", "tokenizer", "comfy_tokens.json"))
    args = ap.parse_args()

    import torch
    torch.set_num_threads(1)  # deterministic reductions, whatever the machine
    n_checked = check_tokenizer(os.path.join(args.comfy, "comfy", "sd1_tokenizer"), args.tokenizer_goldens)
    print(f"tokenizer stand-in matches transformers on {n_checked} ASCII prompts")
    install_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        pyio.install_trampoline(tmp)  # imported at once; the file is not needed afterwards
    cfgg._StubFinder.ROOTS += EXTRA_STUBS
    comfy, version = cfgg.import_comfy(args.comfy, "basic")
    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models_base
    import nodes
    import numpy as np
    patch_torch113(comfy)
    # CLIP asks for "small input" attention per call (pytorch's where enabled); pin the same
    # function as the UNet so the golden does not depend on the torch it was made with.
    import comfy.clip_model
    comfy.clip_model.optimized_attention_for_device = lambda *a, **k: comfy.ldm.modules.attention.attention_basic

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint
        recipe = f"sdflow make-checkpoint --arch sd15 --tiny --seed {CHECKPOINT_SEED}"
        if ckpt is None:
            ckpt = os.path.join(tmp, "sd15-tiny.safetensors")
            recipe = make_checkpoint(args.sdflow, CHECKPOINT_SEED, ckpt)
        ckpt_sha = sha256(ckpt)
        model, clip, vae = load_parts(comfy, ckpt)

    out, cases = {}, []
    with torch.inference_mode():
        positive = nodes.CLIPTextEncode().encode(clip, POSITIVE)[0]
        negative = nodes.CLIPTextEncode().encode(clip, NEGATIVE)[0]
        for name, c in (("positive", positive), ("negative", negative)):
            assert len(c) == 1
            out[f"cond.{name}"] = c[0][0]
            out[f"cond.{name}.pooled"] = c[0][1]["pooled_output"]
        latent = nodes.EmptyLatentImage().generate(WIDTH, HEIGHT, BATCH)[0]
        for name, seed, steps, sampler, scheduler in CASES:
            samples = nodes.KSampler().sample(model, seed, steps, CFG, sampler, scheduler, positive, negative,
                                              latent, denoise=1.0)[0]
            image = nodes.VAEDecode().decode(vae, samples)[0]
            levels = np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8)  # SaveImage
            out[f"latent.{name}"] = samples["samples"].float()
            out[f"image.{name}"] = torch.from_numpy(levels)
            cases.append(dict(name=name, seed=seed, steps=steps, cfg=CFG, sampler_name=sampler, scheduler=scheduler,
                              denoise=1.0))
            s = samples["samples"]
            print(f"{name}: latent {tuple(s.shape)} std {s.std().item():.4f}, image mean level {levels.mean():.1f}")

    meta = {"comfyui_version": version, "torch_version": torch.__version__, "attention": "basic",
            "checkpoint_sha256": ckpt_sha}
    os.makedirs(args.out, exist_ok=True)
    cfgg.write_safetensors(os.path.join(args.out, "golden.safetensors"),
                           {k: (v if v.dtype == torch.uint8 else v.float()).contiguous() for k, v in out.items()},
                           meta)
    doc = {
        "generated_by": "tools/goldens/make_txt2img_golden.py",
        "versions": {"comfyui": version, "torch": torch.__version__, "python": sys.version.split()[0]},
        "checkpoint": {"recipe": recipe, "arch": "sd15", "tiny": True, "seed": CHECKPOINT_SEED, "dtype": "fp16",
                       "sha256": ckpt_sha},
        "tokenizer": {"stand_in": "AsciiClipTokenizer (transformers absent)",
                      "checked_ascii_prompts": n_checked, "files_sha256": AsciiClipTokenizer.files},
        "attention": "UNet and CLIP: attention_basic; VAE: ComfyUI's pick for this torch (vae_attention)",
        "compute": "CPU fp32; CLIP weights fp16 (manual cast), UNet and VAE weights upcast to fp32",
        "workflow": {"positive": POSITIVE, "negative": NEGATIVE, "width": WIDTH, "height": HEIGHT,
                     "batch_size": BATCH},
        "cases": cases,
        "tensors": {"cond.<positive|negative>[.pooled]": "CLIPTextEncode output [1,77,32] and pooled_output [1,32]",
                    "latent.<case>": "KSampler samples [2,4,8,8] fp32",
                    "image.<case>": "VAEDecode output as SaveImage's 8-bit levels [2,64,64,3] uint8"},
    }
    with open(os.path.join(args.out, "golden.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(args.out, n)) for n in os.listdir(args.out))
    print(f"wrote {args.out} ({total / 1024:.0f} KiB)")
    sys.stdout.flush()
    os._exit(0)  # ModelPatcher finalizers fail during interpreter teardown (see make_cfg_goldens.py)


if __name__ == "__main__":
    main()
