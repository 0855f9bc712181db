"""The Bench: one object per invocation that runs the selected scenarios
(one mixin per scenario group) and keeps their results."""
import time

from node import binary  # noqa: E402
from tls_helpers import make_client_cert  # noqa: E402

from .accept import AcceptScenarios
from .backlog import BacklogScenario
from .connections import ConnectionsScenario
from .crosscheck import CrosscheckScenario
from .harness import Interrupted, NotRun, loadavg, need_file
from .loadgen import Loadgen
from .offered_load import OfferedLoadPlot
from .relay import RelayScenarios
from .report import fmt, one_line, render_text
from .settings import PROFILES, TITLES


class Bench(AcceptScenarios, RelayScenarios, BacklogScenario, ConnectionsScenario,
            CrosscheckScenario, OfferedLoadPlot):
    """The scenarios share this state: args, the profile's bounds (p), the
    work dir, the certificate, the Loadgen, the workers setting and the
    results so far (scenario 3 reads scenario 2's, 4 reads 2's)."""

    def __init__(self, args, workdir):
        self.args = args
        self.p = dict(PROFILES[args.profile])
        if args.backlog:
            self.p["backlog"] = args.backlog
        if args.idle_sessions:
            self.p["idle"] = args.idle_sessions
        self.workdir = workdir
        self.cert = make_client_cert(workdir, "mx.bench.test")[:2]
        self.loadgen = Loadgen(workdir, args.connections)
        self.results = {}
        self.workers = args.workers

    def _prereq_common(self):
        need_file(binary("posternd"), "posternd")
        self.loadgen.help()

    # -- driver -----------------------------------------------------------

    def _progress(self, what, row):
        keep = {k: v for k, v in row.items() if not isinstance(v, dict) and k != "log_tail"}
        print(f"  [{what}] " + ", ".join(f"{k}={fmt(v)}" for k, v in keep.items()), flush=True)

    def run(self, names):
        self.selected = set(names) | set(getattr(self, "selected", ()))
        for name in names:
            load = loadavg()
            print(f"== {name} (load average {load})", flush=True)
            t0 = time.time()
            try:
                result = getattr(self, name)()
                result["status"] = "ok"
            except NotRun as e:
                result = {"title": TITLES[name], "status": f"not run: {e}", "rows": [],
                          "columns": []}
            except Interrupted:
                raise
            except Exception as e:
                result = {"title": TITLES[name], "status": f"not run: {one_line(e)}",
                          "rows": [], "columns": []}
            result.setdefault("seconds", round(time.time() - t0, 1))
            result.setdefault("load_before", load)
            self.results[name] = result
            print(render_text(result), flush=True)
