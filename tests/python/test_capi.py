#!/usr/bin/env python3
"""The C API (include/anchorctx/anchorctx.h) through ctypes, standard library only.

    python3 test_capi.py /path/to/libanchorctx_c.so

Forward and backward on small packed batches (several sequences and documents, every mask,
grouped-query attention, float32 and bfloat16) against a plain float64 reference written here in
Python; the plan handle (reuse, fewer queries than keys, sliding windows, non-causal masks,
strided tensors, NaN propagation); and the error paths (NULL pointers, bad layouts, bad shapes and enums): a nonzero status,
a useful message, and outputs left untouched. Fresh random inputs each run; the seed is printed
and ANCHORCTX_TEST_SEED replays it. Prints "N passed, M failed"; exits 1 on any failure.
"""

import array
import ctypes
import math
import os
import random
import struct
import sys
import traceback

MASK_CAUSAL, MASK_INTRA_DOC, MASK_ANCHOR = 0, 1, 2
MASK_NAMES = {MASK_CAUSAL: "causal", MASK_INTRA_DOC: "intra_doc", MASK_ANCHOR: "anchor"}
F32, BF16 = 0, 1
OK, INVALID_ARGUMENT = 0, 1


class Layout(ctypes.Structure):
    _fields_ = [
        ("num_sequences", ctypes.c_int32),
        ("cu_seqlens", ctypes.POINTER(ctypes.c_int32)),
        ("cu_docs", ctypes.POINTER(ctypes.c_int32)),
        ("doc_starts", ctypes.POINTER(ctypes.c_int32)),
        ("anchor_lens", ctypes.POINTER(ctypes.c_int32)),
    ]


class MaskSpec(ctypes.Structure):
    _fields_ = [
        ("mask", ctypes.c_int),
        ("window", ctypes.c_int32),
        ("non_causal", ctypes.c_int32),
    ]


class Params(ctypes.Structure):
    _fields_ = [
        ("heads_q", ctypes.c_int32),
        ("heads_kv", ctypes.c_int32),
        ("head_dim", ctypes.c_int32),
        ("scale", ctypes.c_float),
        ("threads", ctypes.c_int32),
    ]


def load(path):
    lib = ctypes.CDLL(path)
    vp, fp = ctypes.c_void_p, ctypes.POINTER(ctypes.c_float)
    common = [ctypes.POINTER(Layout), ctypes.c_int, ctypes.c_int, ctypes.POINTER(Params)]
    lib.anchorctx_attention_forward.argtypes = common + [vp, vp, vp, vp, fp, ctypes.c_char_p,
                                                         ctypes.c_size_t]
    lib.anchorctx_attention_forward.restype = ctypes.c_int
    lib.anchorctx_attention_backward.argtypes = common + [vp, vp, vp, vp, vp, fp, vp, vp, vp,
                                                          ctypes.c_char_p, ctypes.c_size_t]
    lib.anchorctx_attention_backward.restype = ctypes.c_int
    i32p, i64p = ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_int64)
    lib.anchorctx_plan_create.argtypes = [ctypes.POINTER(Layout), i32p, ctypes.POINTER(MaskSpec),
                                          ctypes.c_int32, ctypes.POINTER(vp), ctypes.c_char_p,
                                          ctypes.c_size_t]
    lib.anchorctx_plan_create.restype = ctypes.c_int
    lib.anchorctx_plan_destroy.argtypes = [vp]
    lib.anchorctx_plan_destroy.restype = None
    for name in ("anchorctx_plan_query_tokens", "anchorctx_plan_key_tokens"):
        getattr(lib, name).argtypes = [vp]
        getattr(lib, name).restype = ctypes.c_int64
    lib.anchorctx_attention_forward_plan.argtypes = [vp, ctypes.c_int, ctypes.POINTER(Params),
                                                     vp, vp, vp, vp, fp, i64p, ctypes.c_char_p,
                                                     ctypes.c_size_t]
    lib.anchorctx_attention_forward_plan.restype = ctypes.c_int
    lib.anchorctx_attention_backward_plan.argtypes = [vp, ctypes.c_int, ctypes.POINTER(Params),
                                                      vp, vp, vp, vp, vp, fp, vp, vp, vp, i64p,
                                                      ctypes.c_char_p, ctypes.c_size_t]
    lib.anchorctx_attention_backward_plan.restype = ctypes.c_int
    lib.anchorctx_version.restype = ctypes.c_char_p
    lib.anchorctx_version.argtypes = []
    return lib


# ---- bfloat16, round to nearest even (the rule of core/bf16.h and PyTorch) ----

def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def bf16_bits(x):
    u = f32_bits(x)
    if (u & 0x7FFFFFFF) > 0x7F800000:
        return 0x7FC0
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF


def bf16_to_float(bits):
    return struct.unpack("<f", struct.pack("<I", bits << 16))[0]


def round_f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


# ---- the packed layout, in Python terms ----

class Batch:
    """Sequences of given lengths, per-sequence document starts (local) and anchor lengths."""

    def __init__(self, seq_lens, doc_starts, anchor_lens, q_lens=None):
        self.seq_lens = seq_lens
        self.doc_starts = doc_starts  # as handed to the C API (a list may omit the leading 0)
        self.anchor_lens = anchor_lens
        self.q_lens = q_lens if q_lens is not None else list(seq_lens)  # the last keys
        self.cu = [0]
        for n in seq_lens:
            self.cu.append(self.cu[-1] + n)
        self.total = self.cu[-1]
        self.cu_q = [0]
        for n in self.q_lens:
            self.cu_q.append(self.cu_q[-1] + n)
        self.total_q = self.cu_q[-1]
        self.c_cu_seqlens_q = (ctypes.c_int32 * len(self.cu_q))(*self.cu_q)
        self.c_arrays()

    def c_arrays(self):
        b = len(self.seq_lens)
        flat = [s for starts in self.doc_starts for s in starts]
        cu_docs = [0]
        for starts in self.doc_starts:
            cu_docs.append(cu_docs[-1] + len(starts))
        self.c_cu_seqlens = (ctypes.c_int32 * (b + 1))(*self.cu)
        self.c_cu_docs = (ctypes.c_int32 * (b + 1))(*cu_docs)
        self.c_doc_starts = (ctypes.c_int32 * max(1, len(flat)))(*flat)
        self.c_anchor_lens = (ctypes.c_int32 * max(1, b))(*self.anchor_lens)
        self.layout = Layout(b, self.c_cu_seqlens, self.c_cu_docs, self.c_doc_starts,
                             self.c_anchor_lens)

    def doc_of(self, b, pos):
        starts = sorted(set([0] + list(self.doc_starts[b])))
        d = 0
        for i, s in enumerate(starts):
            if s <= pos:
                d = i
        return d

    def visible(self, mask, b, q, k, window=0, non_causal=False):
        """mask.h, written out: key positions q (the query's) and k (the key's) of sequence b."""
        if not non_causal and k > q:
            return False
        if window > 0 and k >= q + window:
            return False
        same_doc = self.doc_of(b, q) == self.doc_of(b, k)
        if non_causal and mask != MASK_CAUSAL and k > q and not same_doc:
            return False  # not even an anchor past the query's document
        if mask == MASK_ANCHOR and k < self.anchor_lens[b]:
            return True
        if window > 0 and k <= q - window:
            return False
        return mask == MASK_CAUSAL or same_doc


def reference(batch, mask, hq, hkv, d, scale, q, k, v, dout, window=0, non_causal=False):
    """Float64 forward and backward, dense and plain. Returns out, lse, dq, dk, dv (flat lists,
    shapes of kernels.h). Query i of sequence b stands at key position i + len - q_len."""
    t_all = batch.total_q
    group = hq // hkv
    out = [0.0] * (t_all * hq * d)
    lse = [0.0] * (hq * t_all)
    dq = [0.0] * (t_all * hq * d)
    dk = [0.0] * (batch.total * hkv * d)
    dv = [0.0] * (batch.total * hkv * d)
    for b, n in enumerate(batch.seq_lens):
        base = batch.cu[b]
        lq = batch.q_lens[b]
        for h in range(hq):
            g = h // group
            for i in range(lq):
                ti = batch.cu_q[b] + i
                pos = i + n - lq
                qi = q[(ti * hq + h) * d:(ti * hq + h + 1) * d]
                keys = [base + j for j in range(n)
                        if batch.visible(mask, b, pos, j, window, non_causal)]
                if not keys:
                    lse[h * t_all + ti] = -math.inf
                    continue
                s = [scale * sum(a * c for a, c in zip(qi, k[(tj * hkv + g) * d:(tj * hkv + g + 1) * d]))
                     for tj in keys]
                m = max(s)
                l = m + math.log(sum(math.exp(x - m) for x in s))
                lse[h * t_all + ti] = l
                p = [math.exp(x - l) for x in s]
                o = [0.0] * d
                for pj, tj in zip(p, keys):
                    vj = v[(tj * hkv + g) * d:(tj * hkv + g + 1) * d]
                    for c in range(d):
                        o[c] += pj * vj[c]
                out[(ti * hq + h) * d:(ti * hq + h + 1) * d] = o
                # Backward of sum(out * dout): ds = p * (dp - rowsum(dout * out)).
                do = dout[(ti * hq + h) * d:(ti * hq + h + 1) * d]
                delta = sum(a * c for a, c in zip(do, o))
                for pj, tj in zip(p, keys):
                    kv_off = (tj * hkv + g) * d
                    vj = v[kv_off:kv_off + d]
                    dp = sum(a * c for a, c in zip(do, vj))
                    ds = pj * (dp - delta)
                    for c in range(d):
                        dq[(ti * hq + h) * d + c] += scale * ds * k[kv_off + c]
                        dk[kv_off + c] += scale * ds * qi[c]
                        dv[kv_off + c] += pj * do[c]
    return out, lse, dq, dk, dv


# ---- tensors crossing the boundary ----

class Tensor:
    """A flat tensor of float32 or bf16 bits, with its address for ctypes."""

    def __init__(self, dtype, values=None, n=None, poison=True):
        self.dtype = dtype
        if values is None:
            values = [math.nan if poison else 0.0] * n
        if dtype == F32:
            self.buf = array.array("f", values)
        else:
            self.buf = array.array("H", [bf16_bits(x) for x in values])
        assert self.buf.itemsize == (4 if dtype == F32 else 2)

    @property
    def ptr(self):
        return ctypes.c_void_p(self.buf.buffer_info()[0])

    def values(self):
        if self.dtype == F32:
            return list(self.buf)
        return [bf16_to_float(b) for b in self.buf]

    def raw(self):
        return self.buf.tobytes()


class Floats:
    """A float32 array (lse) with a typed pointer."""

    def __init__(self, n, fill=math.nan):
        self.buf = array.array("f", [fill] * n)

    @property
    def ptr(self):
        return ctypes.cast(ctypes.c_void_p(self.buf.buffer_info()[0]),
                           ctypes.POINTER(ctypes.c_float))

    def values(self):
        return list(self.buf)


def rel_err(got, want):
    num = sum((a - b) ** 2 for a, b in zip(got, want))
    den = sum(b * b for b in want)
    return math.sqrt(num) / max(math.sqrt(den), 1e-30)


def finite_part(vals):
    return [0.0 if math.isinf(x) else x for x in vals]


# ---- the tests ----

class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


class Runner:
    def __init__(self, lib, seed):
        self.lib = lib
        self.seed = seed
        self.passed = 0
        self.failed = 0

    def run(self, name, fn):
        try:
            fn()
            self.passed += 1
            print(f"PASS {name}")
        except Failure as e:
            self.failed += 1
            print(f"FAIL {name}: {e} (seed {self.seed})")
        except Exception:  # a crash in the test itself is a failure too, with its trace
            self.failed += 1
            print(f"FAIL {name}: exception (seed {self.seed})")
            traceback.print_exc(file=sys.stdout)

    # Calls the C functions; returns (status, message).
    def forward(self, batch_layout, mask, dtype, params, q, k, v, out, lse, err_len=512,
                error=True):
        buf = ctypes.create_string_buffer(err_len) if error else None
        status = self.lib.anchorctx_attention_forward(batch_layout, mask, dtype, params, q, k, v,
                                                      out, lse, buf, err_len if error else 0)
        return status, (buf.value.decode() if error else "")

    def backward(self, batch_layout, mask, dtype, params, q, k, v, out, dout, lse, dq, dk, dv,
                 err_len=512):
        buf = ctypes.create_string_buffer(err_len)
        status = self.lib.anchorctx_attention_backward(batch_layout, mask, dtype, params, q, k, v,
                                                       out, dout, lse, dq, dk, dv, buf, err_len)
        return status, buf.value.decode()


def random_values(rng, n):
    return [round_f32(rng.gauss(0.0, 1.0)) for _ in range(n)]


def small_batch():
    # Two sequences, several documents each: one-token documents, the anchor its own document
    # (sequence 0) or longer (sequence 1, anchor_len 3, whose start list omits the leading 0).
    return Batch(seq_lens=[13, 19], doc_starts=[[0, 1, 2, 6, 11], [3, 4, 9, 10, 16]],
                 anchor_lens=[1, 3])


def attention_case(runner, batch, mask, dtype, hq, hkv, d, scale=0.0, threads=0):
    rng = random.Random(runner.seed * 1000003 + 7919 * mask + 31 * dtype + hq * 7 + d)
    t = batch.total
    nq, nkv = t * hq * d, t * hkv * d
    q = Tensor(dtype, random_values(rng, nq))
    k = Tensor(dtype, random_values(rng, nkv))
    v = Tensor(dtype, random_values(rng, nkv))
    dout = Tensor(dtype, random_values(rng, nq))
    out = Tensor(dtype, n=nq)
    lse = Floats(hq * t)
    params = Params(hq, hkv, d, scale, threads)
    lay = ctypes.byref(batch.layout)

    status, msg = runner.forward(lay, mask, dtype, ctypes.byref(params), q.ptr, k.ptr, v.ptr,
                                 out.ptr, lse.ptr)
    check(status == OK, f"forward status {status}: {msg}")
    check(msg == "", f"forward succeeded but left a message: {msg!r}")
    dq, dk, dv = Tensor(dtype, n=nq), Tensor(dtype, n=nkv), Tensor(dtype, n=nkv)
    status, msg = runner.backward(lay, mask, dtype, ctypes.byref(params), q.ptr, k.ptr, v.ptr,
                                  out.ptr, dout.ptr, lse.ptr, dq.ptr, dk.ptr, dv.ptr)
    check(status == OK, f"backward status {status}: {msg}")

    # The reference runs on exactly the values the kernel saw (bf16-rounded for bf16).
    eff_scale = scale if scale != 0.0 else 1.0 / math.sqrt(d)
    ref = reference(batch, mask, hq, hkv, d, eff_scale, q.values(), k.values(), v.values(),
                    dout.values())
    tol = 1e-5 if dtype == F32 else 1e-2
    for name, got, want in (("out", out.values(), ref[0]), ("dq", dq.values(), ref[2]),
                            ("dk", dk.values(), ref[3]), ("dv", dv.values(), ref[4])):
        check(all(math.isfinite(x) for x in got), f"{name} has non-finite values (unwritten?)")
        err = rel_err(got, want)
        check(err <= tol, f"{name}: relative error {err:.3g} > {tol}")
    got_lse = lse.values()
    check(all(not math.isnan(x) for x in got_lse), "lse has NaN (unwritten?)")
    check([math.isinf(x) for x in got_lse] == [math.isinf(x) for x in ref[1]],
          "lse: -inf rows differ from the reference")
    err = rel_err(finite_part(got_lse), finite_part(ref[1]))
    lse_tol = 1e-5 if dtype == F32 else 1e-3
    check(err <= lse_tol, f"lse: relative error {err:.3g} > {lse_tol}")
    return q, k, v, out, dout, lse, dq, dk, dv, params


# ---- the plan handle ----

class Plan:
    """anchorctx_plan_create / _destroy around a Batch and a mask spec."""

    def __init__(self, lib, batch, mask, window=0, non_causal=False, queries=False, tile=0,
                 layout=None):
        self.lib = lib
        self.handle = ctypes.c_void_p()
        err = ctypes.create_string_buffer(512)
        spec = MaskSpec(mask, window, 1 if non_causal else 0)
        lay = layout if layout is not None else ctypes.byref(batch.layout)
        cu_q = batch.c_cu_seqlens_q if queries else None
        self.status = lib.anchorctx_plan_create(lay, cu_q, ctypes.byref(spec), tile,
                                                ctypes.byref(self.handle), err, 512)
        self.message = err.value.decode()

    def close(self):
        self.lib.anchorctx_plan_destroy(self.handle)
        self.handle = ctypes.c_void_p()


def i64_array(values):
    return None if values is None else (ctypes.c_int64 * len(values))(*values)


def plan_forward(lib, plan, dtype, params, q, k, v, out, lse, strides=None):
    err = ctypes.create_string_buffer(512)
    status = lib.anchorctx_attention_forward_plan(plan.handle, dtype, ctypes.byref(params), q, k,
                                                  v, out, lse, i64_array(strides), err, 512)
    return status, err.value.decode()


def plan_backward(lib, plan, dtype, params, q, k, v, out, dout, lse, dq, dk, dv, strides=None):
    err = ctypes.create_string_buffer(512)
    status = lib.anchorctx_attention_backward_plan(plan.handle, dtype, ctypes.byref(params), q, k,
                                                   v, out, dout, lse, dq, dk, dv,
                                                   i64_array(strides), err, 512)
    return status, err.value.decode()


def plan_case(runner, batch, mask, dtype, hq, hkv, d, window=0, non_causal=False,
              queries=False):
    """Forward and backward through a plan against the Python reference."""
    rng = random.Random(runner.seed * 7 + 131 * mask + 17 * window + dtype)
    tq, tk = batch.total_q if queries else batch.total, batch.total
    q = Tensor(dtype, random_values(rng, tq * hq * d))
    k = Tensor(dtype, random_values(rng, tk * hkv * d))
    v = Tensor(dtype, random_values(rng, tk * hkv * d))
    dout = Tensor(dtype, random_values(rng, tq * hq * d))
    out, lse = Tensor(dtype, n=tq * hq * d), Floats(hq * tq)
    dq, dk, dv = Tensor(dtype, n=tq * hq * d), Tensor(dtype, n=tk * hkv * d), Tensor(dtype, n=tk * hkv * d)
    params = Params(hq, hkv, d, 0.0, 0)
    plan = Plan(runner.lib, batch, mask, window, non_causal, queries)
    check(plan.status == OK, f"plan status {plan.status}: {plan.message}")
    try:
        check(runner.lib.anchorctx_plan_query_tokens(plan.handle) == tq, "query tokens")
        check(runner.lib.anchorctx_plan_key_tokens(plan.handle) == tk, "key tokens")
        status, msg = plan_forward(runner.lib, plan, dtype, params, q.ptr, k.ptr, v.ptr, out.ptr,
                                   lse.ptr)
        check(status == OK, f"forward status {status}: {msg}")
        status, msg = plan_backward(runner.lib, plan, dtype, params, q.ptr, k.ptr, v.ptr, out.ptr,
                                    dout.ptr, lse.ptr, dq.ptr, dk.ptr, dv.ptr)
        check(status == OK, f"backward status {status}: {msg}")
    finally:
        plan.close()
    ref_batch = batch if queries else Batch(batch.seq_lens, batch.doc_starts, batch.anchor_lens)
    ref = reference(ref_batch, mask, hq, hkv, d, 1.0 / math.sqrt(d), q.values(), k.values(),
                    v.values(), dout.values(), window, non_causal)
    tol = 1e-5 if dtype == F32 else 1e-2
    for name, got, want in (("out", out.values(), ref[0]), ("dq", dq.values(), ref[2]),
                            ("dk", dk.values(), ref[3]), ("dv", dv.values(), ref[4])):
        check(all(math.isfinite(x) for x in got), f"{name} has non-finite values (unwritten?)")
        err = rel_err(got, want)
        check(err <= tol, f"{name}: relative error {err:.3g} > {tol}")
    err = rel_err(lse.values(), ref[1])
    check(err <= 1e-5 if dtype == F32 else 1e-3, f"lse: relative error {err:.3g}")


def test_bf16_rounding_helper():
    # The helper must follow the library's rule, or bf16 comparisons mean nothing.
    check(bf16_bits(1.0) == 0x3F80, "1.0")
    check(bf16_bits(struct.unpack("<f", struct.pack("<I", 0x3F808000))[0]) == 0x3F80,
          "tie to even (down)")
    check(bf16_bits(struct.unpack("<f", struct.pack("<I", 0x3F818000))[0]) == 0x3F82,
          "tie to even (up)")
    check(bf16_bits(struct.unpack("<f", struct.pack("<I", 0x3F808001))[0]) == 0x3F81,
          "above the tie")
    check(bf16_bits(math.nan) == 0x7FC0, "NaN")
    check(bf16_bits(math.inf) == 0x7F80, "inf")
    check(bf16_bits(3.4e38) == 0x7F80, "rounds to inf")


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} /path/to/libanchorctx_c.so")
        return 2
    lib = load(sys.argv[1])
    seed_env = os.environ.get("ANCHORCTX_TEST_SEED", "")
    seed = int(seed_env) if seed_env else random.SystemRandom().randrange(1 << 31)
    print(f"seed {seed} (set ANCHORCTX_TEST_SEED={seed} to replay)")
    r = Runner(lib, seed)

    r.run("version", lambda: check(lib.anchorctx_version().decode().count(".") == 2,
                                   f"version {lib.anchorctx_version()!r}"))
    r.run("bf16 rounding helper", test_bf16_rounding_helper)

    batch = small_batch()
    for dtype in (F32, BF16):
        dname = "fp32" if dtype == F32 else "bf16"
        for mask in (MASK_CAUSAL, MASK_INTRA_DOC, MASK_ANCHOR):
            r.run(f"{dname} {MASK_NAMES[mask]} GQA 4/2 D=16",
                  lambda m=mask, dt=dtype: attention_case(r, batch, m, dt, 4, 2, 16))
    r.run("fp32 anchor MHA 2/2 D=8 scale=0.3",
          lambda: attention_case(r, batch, MASK_ANCHOR, F32, 2, 2, 8, scale=0.3))
    r.run("fp32 intra_doc MQA 3/1 D=24",
          lambda: attention_case(r, batch, MASK_INTRA_DOC, F32, 3, 1, 24))

    # Documents and sequences crossing the kernels' tiles (64 tokens), an empty sequence.
    long_batch = Batch(seq_lens=[70, 0, 93], doc_starts=[[0, 1, 40, 65], [], [0, 3, 63, 64, 90]],
                       anchor_lens=[1, 0, 3])
    r.run("fp32 anchor across tiles, empty sequence",
          lambda: attention_case(r, long_batch, MASK_ANCHOR, F32, 2, 1, 8))
    r.run("bf16 intra_doc across tiles, empty sequence",
          lambda: attention_case(r, long_batch, MASK_INTRA_DOC, BF16, 2, 1, 8))

    def deterministic():
        # Same bits for any thread count (kernels.h's promise), through the C API.
        a = attention_case(r, batch, MASK_ANCHOR, F32, 4, 2, 16, threads=1)
        b = attention_case(r, batch, MASK_ANCHOR, F32, 4, 2, 16, threads=3)
        for name, x, y in zip(("out", "dq", "dk", "dv"), (a[3], a[6], a[7], a[8]),
                              (b[3], b[6], b[7], b[8])):
            check(x.raw() == y.raw(), f"{name} differs between 1 and 3 threads")
    r.run("deterministic across thread counts", deterministic)

    # ---- the plan handle ----
    def plan_same_bits():
        # One plan for forward and backward, used twice: the bits of the per-call entry points.
        for dtype in (F32, BF16):
            a = attention_case(r, batch, MASK_ANCHOR, dtype, 4, 2, 16)
            q, k, v, out0, dout, lse0, dq0, dk0, dv0, params = a
            plan = Plan(lib, batch, MASK_ANCHOR)
            check(plan.status == OK, plan.message)
            try:
                for _ in range(2):
                    out, lse = Tensor(dtype, n=len(out0.buf)), Floats(len(lse0.buf))
                    dq, dk, dv = (Tensor(dtype, n=len(x.buf)) for x in (dq0, dk0, dv0))
                    st, msg = plan_forward(lib, plan, dtype, params, q.ptr, k.ptr, v.ptr, out.ptr,
                                           lse.ptr)
                    check(st == OK, msg)
                    st, msg = plan_backward(lib, plan, dtype, params, q.ptr, k.ptr, v.ptr, out.ptr,
                                            dout.ptr, lse.ptr, dq.ptr, dk.ptr, dv.ptr)
                    check(st == OK, msg)
                    for name, x, y in (("out", out, out0), ("dq", dq, dq0), ("dk", dk, dk0),
                                       ("dv", dv, dv0)):
                        check(x.raw() == y.raw(), f"{name} differs from the per-call entry point")
                    check(lse.buf.tobytes() == lse0.buf.tobytes(), "lse differs")
            finally:
                plan.close()
    r.run("plan: reused, same bits as the per-call entry points", plan_same_bits)

    # Fewer queries than keys: decode (one query), a chunk, all; queries are the last keys.
    decode_batch = Batch(seq_lens=[13, 19, 70], doc_starts=[[0, 1, 2, 6, 11], [3, 4, 9, 10, 16],
                                                            [0, 1, 40, 65]],
                         anchor_lens=[1, 3, 1], q_lens=[1, 7, 70])
    for mask in (MASK_CAUSAL, MASK_INTRA_DOC, MASK_ANCHOR):
        for dtype in (F32, BF16):
            r.run(f"plan: {'fp32' if dtype == F32 else 'bf16'} {MASK_NAMES[mask]} queries [1, 7, 70] of keys [13, 19, 70]",
                  lambda m=mask, dt=dtype: plan_case(r, decode_batch, m, dt, 4, 2, 16, queries=True))
    for window, non_causal in ((3, False), (0, True), (4, True)):
        for mask in (MASK_CAUSAL, MASK_INTRA_DOC, MASK_ANCHOR):
            r.run(f"plan: fp32 {MASK_NAMES[mask]} window {window} non_causal {non_causal}",
                  lambda m=mask, w=window, nc=non_causal: plan_case(r, decode_batch, m, F32, 2, 1, 8,
                                                                    window=w, non_causal=nc,
                                                                    queries=w == 3))

    def fused_qkv():
        # q, k, v read in place from one [T, Hq + 2 Hkv, D] buffer; gradients into another.
        hq_, hkv_, d_ = 4, 2, 16
        a = attention_case(r, batch, MASK_ANCHOR, F32, hq_, hkv_, d_)
        q, k, v, out0, dout, lse0, dq0, dk0, dv0, params = a
        t_, w = batch.total, (hq_ + 2 * hkv_) * d_
        fused = array.array("f", [0.0] * (t_ * w))
        for t in range(t_):
            fused[t * w:t * w + hq_ * d_] = q.buf[t * hq_ * d_:(t + 1) * hq_ * d_]
            fused[t * w + hq_ * d_:t * w + (hq_ + hkv_) * d_] = k.buf[t * hkv_ * d_:(t + 1) * hkv_ * d_]
            fused[t * w + (hq_ + hkv_) * d_:(t + 1) * w] = v.buf[t * hkv_ * d_:(t + 1) * hkv_ * d_]
        grads = array.array("f", [math.nan] * (t_ * w))
        base, gbase = fused.buffer_info()[0], grads.buffer_info()[0]
        qp, kp, vp = (ctypes.c_void_p(base + 4 * o) for o in (0, hq_ * d_, (hq_ + hkv_) * d_))
        dqp, dkp, dvp = (ctypes.c_void_p(gbase + 4 * o) for o in (0, hq_ * d_, (hq_ + hkv_) * d_))
        out, lse = Tensor(F32, n=len(out0.buf)), Floats(len(lse0.buf))
        plan = Plan(lib, batch, MASK_ANCHOR)
        try:
            st, msg = plan_forward(lib, plan, F32, params, qp, kp, vp, out.ptr, lse.ptr,
                                   strides=[w, d_] * 3 + [0, 0])
            check(st == OK, msg)
            st, msg = plan_backward(lib, plan, F32, params, qp, kp, vp, out.ptr, dout.ptr, lse.ptr,
                                    dqp, dkp, dvp, strides=[w, d_] * 3 + [0, 0] * 2 + [w, d_] * 3)
            check(st == OK, msg)
        finally:
            plan.close()
        check(out.raw() == out0.raw(), "out differs from the dense run")
        for t in range(t_):
            check(grads[t * w:t * w + hq_ * d_].tobytes() ==
                  dq0.buf[t * hq_ * d_:(t + 1) * hq_ * d_].tobytes(), f"dq row {t}")
            check(grads[t * w + hq_ * d_:t * w + (hq_ + hkv_) * d_].tobytes() ==
                  dk0.buf[t * hkv_ * d_:(t + 1) * hkv_ * d_].tobytes(), f"dk row {t}")
            check(grads[t * w + (hq_ + hkv_) * d_:(t + 1) * w].tobytes() ==
                  dv0.buf[t * hkv_ * d_:(t + 1) * hkv_ * d_].tobytes(), f"dv row {t}")
    r.run("plan: fused qkv buffer through strides, same bits as dense", fused_qkv)

    def no_cu_docs():
        # cu_docs NULL: one document per sequence, so intra_doc is causal.
        b = small_batch()
        b.layout.cu_docs = None
        b.layout.doc_starts = None
        rng_ = random.Random(seed + 5)
        q = Tensor(F32, random_values(rng_, b.total * 2 * 8))
        kv = Tensor(F32, random_values(rng_, b.total * 8))
        params = Params(2, 1, 8, 0.0, 0)
        outs = []
        for mask, lay in ((MASK_INTRA_DOC, b.layout), (MASK_CAUSAL, small_batch().layout)):
            plan = Plan(lib, b, mask, layout=ctypes.byref(lay))
            check(plan.status == OK, plan.message)
            out, lse = Tensor(F32, n=b.total * 16), Floats(2 * b.total)
            st, msg = plan_forward(lib, plan, F32, params, q.ptr, kv.ptr, kv.ptr, out.ptr, lse.ptr)
            plan.close()
            check(st == OK, msg)
            outs.append(out.raw())
        check(outs[0] == outs[1], "intra_doc without cu_docs is not the causal mask")
    r.run("plan: cu_docs NULL is one document per sequence", no_cu_docs)

    def nan_propagates():
        # A NaN in one q row: that row's out and lse are NaN, every other row is finite.
        hq_, hkv_, d_ = 2, 1, 8
        rng_ = random.Random(seed + 9)
        qv = random_values(rng_, batch.total * hq_ * d_)
        bad_row = 5
        qv[(bad_row * hq_ + 1) * d_ + 3] = math.nan
        q = Tensor(F32, qv)
        kv = Tensor(F32, random_values(rng_, batch.total * hkv_ * d_))
        out, lse = Tensor(F32, n=len(qv)), Floats(hq_ * batch.total)
        plan = Plan(lib, batch, MASK_ANCHOR)
        st, msg = plan_forward(lib, plan, F32, Params(hq_, hkv_, d_, 0.0, 0), q.ptr, kv.ptr,
                               kv.ptr, out.ptr, lse.ptr)
        plan.close()
        check(st == OK, msg)
        o = out.values()
        for t in range(batch.total):
            for h in range(hq_):
                row = o[(t * hq_ + h) * d_:(t * hq_ + h + 1) * d_]
                want_nan = (t, h) == (bad_row, 1)
                check(all(math.isnan(x) for x in row) if want_nan
                      else all(math.isfinite(x) for x in row), f"out row {t} head {h}")
                check(math.isnan(lse.values()[h * batch.total + t]) == want_nan, f"lse {t} {h}")
    r.run("plan: NaN in a q row makes exactly that row NaN", nan_propagates)


    # ---- errors: a nonzero status, a message that names the problem, outputs untouched ----
    t, hq, hkv, d = batch.total, 4, 2, 16
    rng = random.Random(seed)
    q = Tensor(F32, random_values(rng, t * hq * d))
    k = Tensor(F32, random_values(rng, t * hkv * d))
    v = Tensor(F32, random_values(rng, t * hkv * d))
    good = Params(hq, hkv, d, 0.0, 0)

    def expect_error(layout, params, words, mask=MASK_ANCHOR, dtype=F32, tensors=None):
        out = Tensor(F32, n=t * hq * d)
        lse = Floats(hq * t)
        qq, kk, vv, oo, ll = tensors if tensors else (q.ptr, k.ptr, v.ptr, out.ptr, lse.ptr)
        status, msg = r.forward(layout, mask, dtype, params, qq, kk, vv, oo, ll)
        check(status == INVALID_ARGUMENT, f"status {status}, message {msg!r}")
        low = msg.lower()
        check(any(w.lower() in low for w in words), f"message {msg!r} names none of {words}")
        check(all(math.isnan(x) for x in out.values()), "out was written on failure")
        check(all(math.isnan(x) for x in lse.values()), "lse was written on failure")
        return msg

    gp = ctypes.byref(good)
    lay = ctypes.byref(batch.layout)
    def plan_errors():
        b = Batch(seq_lens=[13, 19], doc_starts=[[0], [0]], anchor_lens=[1, 1], q_lens=[1, 20])
        plan = Plan(lib, b, MASK_ANCHOR, queries=True)
        check(plan.status == INVALID_ARGUMENT and "cu_seqlens_q" in plan.message,
              f"more queries than keys: {plan.status} {plan.message!r}")
        check(plan.handle.value is None, "handle set on failure")
        plan = Plan(lib, batch, MASK_ANCHOR, window=-2)
        check(plan.status == INVALID_ARGUMENT and "window" in plan.message, plan.message)
        plan = Plan(lib, batch, 9)
        check(plan.status == INVALID_ARGUMENT and "mask" in plan.message, plan.message)
        plan = Plan(lib, batch, MASK_ANCHOR, tile=-1)
        check(plan.status == INVALID_ARGUMENT and "tile" in plan.message, plan.message)
        # At most 1024 (ANCHORCTX_MAX_TILE_SIZE): 1048576 ended the process in the forward (an
        # allocation failing inside an OpenMP region), INT32_MAX overflowed the tile arithmetic.
        for tile in (1025, 65536, 1048576, 2**31 - 1):
            plan = Plan(lib, batch, MASK_ANCHOR, tile=tile)
            check(plan.status == INVALID_ARGUMENT and "tile" in plan.message
                  and "1024" in plan.message, f"tile {tile}: {plan.status} {plan.message!r}")
            check(plan.handle.value is None, "handle set on failure")
        plan = Plan(lib, batch, MASK_ANCHOR, tile=1024)
        check(plan.status == OK, f"tile 1024 (the limit): {plan.status} {plan.message!r}")
        plan.close()
        err = ctypes.create_string_buffer(512)
        st = lib.anchorctx_plan_create(ctypes.byref(batch.layout), None, None, 0,
                                       ctypes.byref(ctypes.c_void_p()), err, 512)
        check(st == INVALID_ARGUMENT and b"mask" in err.value, err.value)
        st = lib.anchorctx_plan_create(ctypes.byref(batch.layout), None,
                                       ctypes.byref(MaskSpec(0, 0, 0)), 0, None, err, 512)
        check(st == INVALID_ARGUMENT and b"plan" in err.value, err.value)
        lib.anchorctx_plan_destroy(None)  # allowed
        check(lib.anchorctx_plan_query_tokens(None) == -1, "query tokens of NULL")
        null_plan = Plan.__new__(Plan)
        null_plan.handle = ctypes.c_void_p()
        out, lse = Tensor(F32, n=t * hq * d), Floats(hq * t)
        st, msg = plan_forward(lib, null_plan, F32, good, q.ptr, k.ptr, v.ptr, out.ptr, lse.ptr)
        check(st == INVALID_ARGUMENT and "plan" in msg, msg)
        plan = Plan(lib, batch, MASK_ANCHOR)
        st, msg = plan_forward(lib, plan, F32, good, q.ptr, k.ptr, v.ptr, out.ptr, lse.ptr,
                               strides=[-1, 0] + [0] * 6)
        plan.close()
        check(st == INVALID_ARGUMENT and "stride" in msg, msg)
        check(all(math.isnan(x) for x in out.values()), "out was written on failure")
    r.run("error: plan creation and use", plan_errors)

    r.run("error: NULL layout", lambda: expect_error(None, gp, ["layout"]))
    r.run("error: NULL params", lambda: expect_error(lay, None, ["params"]))

    def null_tensor():
        out, lse = Tensor(F32, n=t * hq * d), Floats(hq * t)
        expect_error(lay, gp, ["q"], tensors=(None, k.ptr, v.ptr, out.ptr, lse.ptr))
        expect_error(lay, gp, ["out"], tensors=(q.ptr, k.ptr, v.ptr, None, lse.ptr))
        expect_error(lay, gp, ["lse"], tensors=(q.ptr, k.ptr, v.ptr, out.ptr, None))
    r.run("error: NULL tensors", null_tensor)

    def null_arrays():
        b = small_batch()
        b.layout.cu_seqlens = None
        expect_error(ctypes.byref(b.layout), gp, ["cu_seqlens"])
        b = small_batch()
        b.layout.doc_starts = None
        expect_error(ctypes.byref(b.layout), gp, ["doc_starts"])
    r.run("error: NULL layout arrays", null_arrays)

    def bad_cu_seqlens():
        b = small_batch()
        b.c_cu_seqlens[1] = 40  # [0, 40, 32]: not increasing
        expect_error(ctypes.byref(b.layout), gp, ["cu_seqlens"])
        b = small_batch()
        b.c_cu_seqlens[0] = 1  # must start at 0
        expect_error(ctypes.byref(b.layout), gp, ["cu_seqlens"])
        b = small_batch()
        b.layout.num_sequences = -1
        expect_error(ctypes.byref(b.layout), gp, ["num_sequences"])
    r.run("error: bad cu_seqlens", bad_cu_seqlens)

    def bad_docs():
        b = Batch([13, 19], [[0, 5, 13], [0]], [1, 1])  # a start at the sequence's end
        expect_error(ctypes.byref(b.layout), gp, ["doc_starts"])
        b = Batch([13, 19], [[0, 7, 5], [0]], [1, 1])  # not increasing
        expect_error(ctypes.byref(b.layout), gp, ["doc_starts"])
        b = Batch([13, 19], [[0], [0]], [1, 20])  # anchor longer than its sequence
        expect_error(ctypes.byref(b.layout), gp, ["anchor"])
    r.run("error: bad document starts and anchors", bad_docs)

    r.run("error: heads not dividing",
          lambda: expect_error(lay, ctypes.byref(Params(3, 2, d, 0.0, 0)), ["heads"]))
    r.run("error: zero heads",
          lambda: expect_error(lay, ctypes.byref(Params(0, 0, d, 0.0, 0)), ["heads"]))
    r.run("error: head_dim not a multiple of 8",
          lambda: expect_error(lay, ctypes.byref(Params(hq, hkv, 12, 0.0, 0)), ["head_dim"]))
    r.run("error: NaN scale",
          lambda: expect_error(lay, ctypes.byref(Params(hq, hkv, d, math.nan, 0)), ["scale"]))

    def threads_out_of_range():
        # One limit, 4096 (ANCHORCTX_MAX_THREADS): above it OpenMP ended the process (INT32_MAX:
        # libgomp out of memory, exit 1) or crashed (50 million); now an error, before any work.
        for threads in (-1, 4097, 50_000_000, 2**31 - 1):
            msg = expect_error(lay, ctypes.byref(Params(hq, hkv, d, 0.0, threads)), ["threads"])
            check("4096" in msg, f"threads {threads}: the limit is not named: {msg!r}")
        out, lse = Tensor(F32, n=t * hq * d), Floats(hq * t)
        dq, dk, dv = Tensor(F32, n=t * hq * d), Tensor(F32, n=t * hkv * d), Tensor(F32, n=t * hkv * d)
        status, msg = r.backward(lay, MASK_ANCHOR, F32, ctypes.byref(Params(hq, hkv, d, 0.0, 2**31 - 1)),
                                 q.ptr, k.ptr, v.ptr, out.ptr, out.ptr, lse.ptr, dq.ptr, dk.ptr,
                                 dv.ptr)
        check(status == INVALID_ARGUMENT and "threads" in msg, f"backward: {status} {msg!r}")
    r.run("error: threads out of range", threads_out_of_range)
    # Any int32 is refused by name (the enums span every int32: no value is out of their range).
    for bad in (7, -1, 2**31 - 1, -(2**31)):
        r.run(f"error: bad mask enum {bad}", lambda bad=bad: expect_error(lay, gp, ["mask"], mask=bad))
        r.run(f"error: bad dtype enum {bad}", lambda bad=bad: expect_error(lay, gp, ["dtype"], dtype=bad))

    def backward_null():
        out, lse = Tensor(F32, n=t * hq * d), Floats(hq * t)
        dq, dk, dv = Tensor(F32, n=t * hq * d), Tensor(F32, n=t * hkv * d), Tensor(F32, n=t * hkv * d)
        status, msg = r.backward(lay, MASK_ANCHOR, F32, gp, q.ptr, k.ptr, v.ptr, out.ptr, None,
                                 lse.ptr, dq.ptr, dk.ptr, dv.ptr)
        check(status == INVALID_ARGUMENT and "dout" in msg, f"status {status}, message {msg!r}")
        check(all(math.isnan(x) for x in dq.values()), "dq was written on failure")
    r.run("error: backward NULL dout", backward_null)

    def message_buffers():
        out, lse = Tensor(F32, n=t * hq * d), Floats(hq * t)
        status, _ = r.forward(None, MASK_ANCHOR, F32, gp, q.ptr, k.ptr, v.ptr, out.ptr, lse.ptr,
                              error=False)  # error NULL: status only, no crash
        check(status == INVALID_ARGUMENT, f"status {status}")
        status, msg = r.forward(None, MASK_ANCHOR, F32, gp, q.ptr, k.ptr, v.ptr, out.ptr, lse.ptr,
                                err_len=8)
        check(status == INVALID_ARGUMENT and len(msg) == 7, f"truncated message {msg!r}")
    r.run("error: message buffer NULL or short", message_buffers)

    print(f"{r.passed} passed, {r.failed} failed")
    return 0 if r.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
