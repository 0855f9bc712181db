"""The machine's limits (bench/machine_limits.json) and the limit of each
cell derived from them."""
import json
import os

from . import BENCH
from .settings import KB

LIMITS_FILE = os.path.join(BENCH, "machine_limits.json")


def load_limits(path=LIMITS_FILE):
    """The figures of machine_limits.json. relay_table maps a body size in
    bytes to (new STARTTLS inbound per message with outbound connections
    reused, persistent TLS sessions on both hops), in msgs/s."""
    with open(path) as f:
        data = json.load(f)
    return {
        "machine": data["machine"],
        "cores": data["cores"]["value"],
        "relay_table": {int(size): (row["new_inbound_starttls"], row["persistent"])
                        for size, row in data["relay_msgs_per_s"]["by_body_bytes"].items()},
        "seconds_per_byte": data["seconds_per_byte"]["value"],
        "idle_session_target_kb": data["idle_session_target_kb"]["value"],
    }


_LIMITS = load_limits()
MACHINE = _LIMITS["machine"]
LIMIT_CORES = _LIMITS["cores"]
RELAY_LIMIT_TABLE = _LIMITS["relay_table"]
NS_PER_BYTE = _LIMITS["seconds_per_byte"]
IDLE_SESSION_TARGET_KB = _LIMITS["idle_session_target_kb"]


def mean_size(spec):
    """Mean body size of "1024" or "60:4096,30:40960,..."."""
    if ":" not in spec:
        return int(spec)
    parts = [tuple(int(x) for x in p.split(":")) for p in spec.split(",")]
    return sum(w * s for w, s in parts) / sum(w for w, _ in parts)


def relay_limit(spec, per_conn):
    """msgs/s a relay could reach on the limit machine. The table's sizes
    come from machine_limits.json; other sizes (the mix) use its model,
    CPU per message = fixed part + 4.4 ns per byte, with the fixed part
    fitted to the 1 KB row (2 cores / limit - 4.4 ns x 1 KB); cores and
    seconds per byte are the file's too."""
    persistent = per_conn >= 50
    if ":" not in spec and int(spec) in RELAY_LIMIT_TABLE:
        return RELAY_LIMIT_TABLE[int(spec)][1 if persistent else 0]
    base = LIMIT_CORES / RELAY_LIMIT_TABLE[KB][1 if persistent else 0] - NS_PER_BYTE * KB
    return LIMIT_CORES / (base + NS_PER_BYTE * mean_size(spec))


def accept_limit(spec, per_conn):
    """machine_limits.json has no accept-only limit; this derives one: a
    single hop costs half the relay's per-message CPU (one client, one
    server instead of two of each). An estimate, labelled as such in every
    table."""
    return 2 * relay_limit(spec, per_conn)
