"""The CPU a peer measurement ran on, as anchorctx's benchmarks report it (core/cpu_info.h):
vendor, brand, family, model and stepping, AVX512_BF16 and AMX-BF16, from Linux's
/proc/cpuinfo (empty fields elsewhere)."""


def cpu_info() -> dict:
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # the end of the first processor's block
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())

    def number(key: str):
        value = fields.get(key, "")
        return int(value) if value.isdigit() else None

    return {"vendor": fields.get("vendor_id", ""), "brand": fields.get("model name", ""),
            "family": number("cpu family"), "model": number("model"),
            "stepping": number("stepping"),
            "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags}
