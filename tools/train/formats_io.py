"""Small self-contained writers/readers (struct + NumPy only) for the export formats:
GGUF v3 with F32/F16/I2_S/TQ2_0 tensors, and safetensors with the HF BitNet packed U8 layout.
Layouts follow shared/docs/formats.md."""
import json
import struct

import numpy as np

GGML_F32, GGML_F16, GGML_TQ2_0, GGML_I2_S = 0, 1, 35, 36
GGUF_MAGIC = b"GGUF"
# metadata value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
               U64: "<Q", I64: "<q", F64: "<d"}


# ---------------------------------------------------------------------------------------------
# float rounding helpers

def bf16_bits(x):
    """float32 array -> uint16 BF16 bits, round to nearest even (no NaN handling needed here)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_to_f32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_bf16(x):
    return bf16_to_f32(bf16_bits(x))


def round_f16_bf16(x):
    """Round to a float32 value exactly representable in both FP16 and BF16 (FP16 first, then BF16;
    a BF16 rounding of an FP16 value stays on the FP16 grid)."""
    y = round_bf16(np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32))
    assert np.array_equal(y.astype(np.float16).astype(np.float32), y)
    assert np.array_equal(round_bf16(y), y)
    return y


# ---------------------------------------------------------------------------------------------
# ternary packers / unpackers.  `t` is an int array in {-1,0,1} of shape [out, in] (row-major).

def pack_i2s(t, scale):
    """bitnet.cpp I2_S (128-value blocks): value j of block k -> byte 32k + j%32, shift 6 - 2*(j/32);
    code = w + 1; then one float32 scale, zero padding to 32 bytes. Size n/4 + 32."""
    codes = (np.asarray(t, dtype=np.int8).reshape(-1) + 1).astype(np.uint8)
    assert codes.size % 128 == 0
    b = codes.reshape(-1, 4, 32)
    packed = (b[:, 0] << 6) | (b[:, 1] << 4) | (b[:, 2] << 2) | b[:, 3]
    tail = struct.pack("<f", float(scale)) + bytes(28)
    return packed.astype(np.uint8).tobytes() + tail


def unpack_i2s(raw, n):
    q = np.frombuffer(raw, dtype=np.uint8, count=n // 4).reshape(-1, 1, 32)
    shifts = np.array([6, 4, 2, 0], dtype=np.uint8).reshape(1, 4, 1)
    codes = ((q >> shifts) & 3).reshape(-1)
    assert not np.any(codes == 3), "I2_S code 3 found"
    scale = struct.unpack_from("<f", raw, n // 4)[0]
    assert np.isfinite(scale) and scale > 0
    return codes.astype(np.int8) - 1, scale


def pack_tq2_0(t, scale):
    """ggml TQ2_0: blocks of 256 = qs[64] + fp16 d; element i -> byte qs[(i/128)*32 + i%32],
    bits 2*((i%128)/32); code = w + 1; d = scale (must be FP16-representable)."""
    codes = (np.asarray(t, dtype=np.int8).reshape(-1) + 1).astype(np.uint8)
    assert codes.size % 256 == 0
    b = codes.reshape(-1, 2, 4, 32)                       # [block, g, l, m]
    qs = b[:, :, 0] | (b[:, :, 1] << 2) | (b[:, :, 2] << 4) | (b[:, :, 3] << 6)   # [block, g, m]
    d = np.float16(scale)
    assert float(d) == float(scale), "TQ2_0 scale must be exactly representable in FP16"
    nb = qs.shape[0]
    out = np.zeros((nb, 66), dtype=np.uint8)
    out[:, :64] = qs.reshape(nb, 64)
    out[:, 64:66] = np.frombuffer(np.full(nb, d, dtype="<f2").tobytes(), dtype=np.uint8).reshape(nb, 2)
    return out.tobytes()


def unpack_tq2_0(raw, n):
    nb = n // 256
    a = np.frombuffer(raw, dtype=np.uint8, count=nb * 66).reshape(nb, 66)
    qs = a[:, :64].reshape(nb, 2, 1, 32)
    d = a[:, 64:66].copy().view("<f2").reshape(nb).astype(np.float32)
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)
    codes = ((qs >> shifts) & 3).reshape(nb, 256)
    assert not np.any(codes == 3), "TQ2_0 code 3 found"
    return (codes.astype(np.int8) - 1).reshape(-1), d


def pack_hf(t):
    """HF BitNet packing: U8 [out/4, in]; packed[r, c] holds rows r + i*(out/4) at bits 2i (code w+1)."""
    codes = (np.asarray(t, dtype=np.int8) + 1).astype(np.uint8)
    out = codes.shape[0]
    assert out % 4 == 0
    o4 = out // 4
    p = np.zeros((o4, codes.shape[1]), dtype=np.uint8)
    for i in range(4):
        p |= codes[i * o4:(i + 1) * o4] << (2 * i)
    return p


def unpack_hf(p):
    p = np.asarray(p, dtype=np.uint8)
    rows = [((p >> (2 * i)) & 3) for i in range(4)]
    codes = np.concatenate(rows, axis=0)
    assert not np.any(codes == 3)
    return codes.astype(np.int8) - 1


def tensor_nbytes(ggml_type, n):
    return {GGML_F32: 4 * n, GGML_F16: 2 * n, GGML_I2_S: n // 4 + 32, GGML_TQ2_0: n // 256 * 66}[ggml_type]


# ---------------------------------------------------------------------------------------------
# GGUF v3

def _str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(vtype, v):
    if vtype == STRING:
        return _str(v)
    if vtype == ARRAY:
        etype, items = v
        out = struct.pack("<IQ", etype, len(items))
        if etype == STRING:
            return out + b"".join(_str(s) for s in items)
        return out + b"".join(struct.pack(_SCALAR_FMT[etype], x) for x in items)
    return struct.pack(_SCALAR_FMT[vtype], v)


def write_gguf(path, kvs, tensors, alignment=32):
    """kvs: list of (key, vtype, value) (ARRAY value = (elem_type, list)).
    tensors: list of (name, dims innermost-first, ggml_type, raw bytes)."""
    head = GGUF_MAGIC + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for k, t, v in kvs:
        head += _str(k) + struct.pack("<I", t) + _value(t, v)
    offset = 0
    infos = b""
    for name, dims, gt, raw in tensors:
        n = int(np.prod(dims))
        assert len(raw) == tensor_nbytes(gt, n), (name, len(raw), tensor_nbytes(gt, n))
        infos += _str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", gt, offset)
        offset += (len(raw) + alignment - 1) // alignment * alignment
    head += infos
    head += bytes((-len(head)) % alignment)
    with open(path, "wb") as f:
        f.write(head)
        for _, _, _, raw in tensors:
            f.write(raw)
            f.write(bytes((-len(raw)) % alignment))


class GGUFReader:
    def __init__(self, path):
        self.buf = open(path, "rb").read()
        self.pos = 0
        assert self._take(4) == GGUF_MAGIC, "not a GGUF file"
        (self.version,) = self._unpack("<I")
        assert self.version == 3, self.version
        n_t, n_kv = self._unpack("<QQ")
        self.kv = {}
        for _ in range(n_kv):
            k = self._string()
            (t,) = self._unpack("<I")
            self.kv[k] = self._read_value(t)
        self.tensors = {}
        order = []
        for _ in range(n_t):
            name = self._string()
            (nd,) = self._unpack("<I")
            dims = list(self._unpack("<" + "Q" * nd))
            gt, off = self._unpack("<IQ")
            order.append((name, dims, gt, off))
        align = self.kv.get("general.alignment", 32)
        data0 = (self.pos + align - 1) // align * align
        for name, dims, gt, off in order:
            n = int(np.prod(dims))
            start = data0 + off
            nb = tensor_nbytes(gt, n)
            assert start + nb <= len(self.buf), f"tensor {name} runs past end of file"
            self.tensors[name] = (dims, gt, self.buf[start:start + nb])

    def _take(self, n):
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def _unpack(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return v

    def _string(self):
        (n,) = self._unpack("<Q")
        return self._take(n).decode("utf-8")

    def _read_value(self, t):
        if t == STRING:
            return self._string()
        if t == ARRAY:
            et, n = self._unpack("<IQ")
            return [self._read_value(et) for _ in range(n)]
        return self._unpack(_SCALAR_FMT[t])[0]

    def tensor(self, name):
        """-> float32 array for F32/F16 (shape reversed dims, i.e. row-major [ne1, ne0]), or
        (int8 ternary array [ne1, ne0], scale float or per-block scales) for I2_S / TQ2_0."""
        dims, gt, raw = self.tensors[name]
        shape = tuple(reversed(dims))
        n = int(np.prod(dims))
        if gt == GGML_F32:
            return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
        if gt == GGML_F16:
            return np.frombuffer(raw, dtype="<f2").reshape(shape).astype(np.float32)
        if gt == GGML_I2_S:
            t, s = unpack_i2s(raw, n)
            return t.reshape(shape), s
        if gt == GGML_TQ2_0:
            t, d = unpack_tq2_0(raw, n)
            return t.reshape(shape), d
        raise ValueError(f"unsupported ggml type {gt} for {name}")


# ---------------------------------------------------------------------------------------------
# safetensors

def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, dtype string, shape, raw bytes)."""
    header = {}
    off = 0
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((-len(hb)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for _, _, _, raw in tensors:
            f.write(raw)


def read_safetensors(path):
    buf = open(path, "rb").read()
    (hl,) = struct.unpack_from("<Q", buf, 0)
    header = json.loads(buf[8:8 + hl])
    base = 8 + hl
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = buf[base + a:base + b]
        dt, shape = info["dtype"], tuple(info["shape"])
        if dt == "BF16":
            arr = bf16_to_f32(np.frombuffer(raw, dtype="<u2")).reshape(shape)
        elif dt == "U8":
            arr = np.frombuffer(raw, dtype=np.uint8).reshape(shape)
        elif dt == "F32":
            arr = np.frombuffer(raw, dtype="<f4").reshape(shape)
        elif dt == "F16":
            arr = np.frombuffer(raw, dtype="<f2").reshape(shape).astype(np.float32)
        else:
            raise ValueError(dt)
        out[name] = arr
    return out
