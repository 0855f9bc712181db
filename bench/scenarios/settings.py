"""Sizes, domains, bounds per profile and the scenarios' names and titles."""

KB = 1024
MIX = "60:4096,30:40960,10:409600"
SIZES = [("1 KB", str(KB)), ("10 KB", str(10 * KB)), ("100 KB", str(100 * KB)), ("mix", MIX)]
RCPT_DOMAIN = "bench.test"        # routed to the TLS sink
BACKLOG_DOMAIN = "backlog.test"   # routed to a plaintext sink under tls: require

# Bounds per profile: messages and seconds per loadgen run, seconds to wait
# for the sink to see everything, backlog size, idle sessions, seconds per
# open-loop step.
PROFILES = {
    "quick": dict(accept_msgs=150000, accept_s=6, relay_msgs=80000, relay_s=6, drain_s=60,
                  backlog=20000, scaling_msgs=150000, scaling_s=6, idle=2000, step_s=3),
    "default": dict(accept_msgs=500000, accept_s=15, relay_msgs=300000, relay_s=15, drain_s=180,
                    backlog=20000, scaling_msgs=500000, scaling_s=15, idle=10000, step_s=5),
    "full": dict(accept_msgs=1500000, accept_s=30, relay_msgs=800000, relay_s=30, drain_s=600,
                 backlog=1000000, scaling_msgs=1500000, scaling_s=30, idle=10000, step_s=8),
}

SCENARIOS = ["accept", "relay", "postfix", "backlog", "scaling", "connections", "crosscheck"]
TITLES = {
    "accept": "Scenario 1: accept only",
    "relay": "Scenario 2: relay through Postern",
    "postfix": "Scenario 3: relay through Postfix",
    "backlog": "Scenario 4: relay with a deferred backlog",
    "scaling": "Scenario 5: scaling over workers",
    "connections": "Scenario 6: idle TLS sessions",
    "crosscheck": "Cross-check: postern-loadgen against smtp-source",
    "plot": "Offered load plot",
}
