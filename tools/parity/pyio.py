"""Small file helpers for the parity harness, standard library + numpy only.

- safetensors read/write (numpy arrays; F16/BF16/F32/F64/I64/I32/U8/BOOL), used when the
  `safetensors` package is absent (Debian's python3 has none) and for ComfyUI's .latent files;
- PNG read (Pillow when importable, else a zlib decoder for 8-bit non-interlaced images) and an
  uncompressed-filter PNG writer;
- a real `trampoline` module (torchsde's Brownian interval recurses through generators with it);
- `install_safetensors_shim()`: a module with safetensors' safe_open / torch.load_file /
  torch.save_file on top of the reader above, so ComfyUI loads checkpoints without the package.
"""

import json
import os
import struct
import sys
import types
import zlib

import numpy as np

# --------------------------------------------------------------------------------------------
# safetensors

_NP = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32,
       "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_NAME = {np.dtype(v): k for k, v in _NP.items()}


def read_safetensors_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        if n > 100 * 1024 * 1024:
            raise ValueError(f"{path}: safetensors header of {n} bytes")
        header = json.loads(f.read(n))
    return n, header


def read_safetensors(path, names=None):
    """{name: numpy array}; BF16 comes back as float32. `names` limits what is read."""
    n, header = read_safetensors_header(path)
    out = {}
    with open(path, "rb") as f:
        for k, v in header.items():
            if k == "__metadata__" or (names is not None and k not in names):
                continue
            b, e = v["data_offsets"]
            f.seek(8 + n + b)
            raw = f.read(e - b)
            if v["dtype"] == "BF16":
                a = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                a = np.frombuffer(raw, dtype=_NP[v["dtype"]])
            out[k] = a.reshape(v["shape"]).copy()
    return out


def safetensors_metadata(path):
    return read_safetensors_header(path)[1].get("__metadata__") or {}


def write_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        raw = a.tobytes()
        header[k] = {"dtype": _NAME[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def install_safetensors_shim():
    """Registers modules `safetensors` and `safetensors.torch` (safe_open, load_file, save_file,
    load, save) when the real package is missing. Returns True when the shim was installed."""
    try:
        import safetensors.torch  # noqa: F401
        return False
    except ImportError:
        pass
    import torch

    tdt = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}
    tname = {v: k for k, v in tdt.items()}

    class SafeOpen:
        def __init__(self, path, framework="pt", device="cpu"):
            self.path, self.device = path, device
            self.n, self.header = read_safetensors_header(path)
            self.f = open(path, "rb")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def keys(self):
            return [k for k in self.header if k != "__metadata__"]

        def metadata(self):
            return self.header.get("__metadata__")

        def get_tensor(self, k):
            v = self.header[k]
            b, e = v["data_offsets"]
            self.f.seek(8 + self.n + b)
            raw = bytearray(self.f.read(e - b))
            dt = tdt[v["dtype"]]
            t = torch.frombuffer(raw, dtype=dt) if raw else torch.zeros(0, dtype=dt)
            return t.reshape(v["shape"]).to(self.device)

    def load_file(path, device="cpu"):
        with SafeOpen(path, device=device) as f:
            return {k: f.get_tensor(k) for k in f.keys()}

    def _parts(tensors, metadata):
        header, blobs, off = {}, [], 0
        if metadata:
            header["__metadata__"] = dict(metadata)
        for k in sorted(tensors):
            t = tensors[k].detach().cpu().contiguous()
            n = t.numel() * t.element_size()
            header[k] = {"dtype": tname[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + n]}
            blobs.append(t)
            off += n
        h = json.dumps(header, separators=(",", ":")).encode()
        h += b" " * ((8 - len(h) % 8) % 8)
        return struct.pack("<Q", len(h)) + h, blobs

    def _raw(t):
        return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""

    def save_bytes(tensors, metadata=None):
        head, blobs = _parts(tensors, metadata)
        return head + b"".join(_raw(t) for t in blobs)

    def save_file(tensors, path, metadata=None):
        head, blobs = _parts(tensors, metadata)
        with open(path, "wb") as f:
            f.write(head)
            for t in blobs:
                f.write(_raw(t))

    def load(data):
        import tempfile
        with tempfile.NamedTemporaryFile(suffix=".safetensors") as tf:
            tf.write(data)
            tf.flush()
            return load_file(tf.name)

    st = types.ModuleType("safetensors")
    st.__path__ = []
    st.safe_open = SafeOpen
    stt = types.ModuleType("safetensors.torch")
    stt.load_file, stt.save_file, stt.load, stt.save = load_file, save_file, load, save_bytes
    st.torch = stt
    sys.modules["safetensors"] = st
    sys.modules["safetensors.torch"] = stt
    return True


# --------------------------------------------------------------------------------------------
# PNG

def write_png(path, img):
    """8-bit RGB or RGBA (H, W, C uint8), filter 0 on every row."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    h, w, c = img.shape
    color = {3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _paeth_row(cur, prev, bpp):
    out = cur.astype(np.int32)
    pr = prev.astype(np.int32)
    for i in range(len(out)):
        a = out[i - bpp] if i >= bpp else 0
        b = pr[i]
        c = pr[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
        out[i] = (out[i] + pred) & 0xFF
    return out.astype(np.uint8)


def _decode_png_zlib(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    w, h, depth, color, _, _, interlace = ihdr
    if depth != 8 or interlace != 0 or color not in (0, 2, 4, 6):
        raise ValueError(f"{path}: only 8-bit non-interlaced gray/RGB(A) PNGs are decoded without Pillow")
    c = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    stride = w * c
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(h, stride + 1)
    out = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(h):
        ft, cur = raw[y, 0], raw[y, 1:]
        if ft == 0:
            row = cur.copy()
        elif ft == 1:  # Sub: running sum per channel
            row = (np.cumsum(cur.reshape(w, c).astype(np.int64), axis=0) & 0xFF).astype(np.uint8).reshape(-1)
        elif ft == 2:
            row = ((cur.astype(np.int32) + prev) & 0xFF).astype(np.uint8)
        elif ft == 3:
            row = cur.astype(np.int32)
            for i in range(stride):
                a = row[i - c] if i >= c else 0
                row[i] = (row[i] + ((int(a) + int(prev[i])) >> 1)) & 0xFF
            row = row.astype(np.uint8)
        elif ft == 4:
            row = _paeth_row(cur, prev, c)
        else:
            raise ValueError(f"{path}: bad PNG filter {ft}")
        out[y] = row
        prev = row
    img = out.reshape(h, w, c)
    if c == 1:
        img = np.repeat(img, 3, axis=2)
    elif c == 2:
        img = np.concatenate([np.repeat(img[..., :1], 3, axis=2), img[..., 1:]], axis=2)
    return img


def read_png(path):
    """(H, W, 3 or 4) uint8."""
    try:
        from PIL import Image
    except ImportError:
        return _decode_png_zlib(path)
    with Image.open(path) as im:
        im.load()
        if im.mode not in ("RGB", "RGBA"):
            im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
        return np.array(im)


# --------------------------------------------------------------------------------------------
# trampoline (the PyPI package's semantics, which torchsde's BrownianInterval uses): a generator
# yields a generator to "call" it and receives its return value; raising TailCall(gen) replaces
# the running generator by gen, whose return value then goes to the caller.

TRAMPOLINE_SRC = '''"""trampoline: generator-based recursion without Python stack growth (written for sdflow's
parity harness; the semantics of the PyPI package that torchsde imports)."""


class TailCall(BaseException):
    def __init__(self, call):
        BaseException.__init__(self)
        self.call = call


def trampoline(gen):
    stack = [gen]
    value = None
    while stack:
        try:
            sub = stack[-1].send(value)
        except StopIteration as stop:
            stack.pop()
            value = stop.value
            continue
        except TailCall as tail:
            stack[-1] = tail.call
            value = None
            continue
        if hasattr(sub, "send"):
            stack.append(sub)
            value = None
        else:
            value = sub
    return value
'''


def install_trampoline(tmpdir):
    """Writes trampoline.py into tmpdir and puts tmpdir first on sys.path (a stub that raises
    NotImplementedError may sit elsewhere on the path)."""
    os.makedirs(tmpdir, exist_ok=True)
    with open(os.path.join(tmpdir, "trampoline.py"), "w") as f:
        f.write(TRAMPOLINE_SRC)
    sys.path.insert(0, tmpdir)
    sys.modules.pop("trampoline", None)
    import trampoline  # noqa: F401
    return trampoline
