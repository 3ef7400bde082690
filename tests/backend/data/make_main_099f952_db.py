"""Write the schema-1 fixture main-099f952.db with main's own code (kept to show how).

git archive 099f952 | tar -x -C /tmp/oldmain
cd /tmp/oldmain && python tests/backend/data/make_main_099f952_db.py /tmp/main-099f952.db
"""

import sys

sys.path.insert(0, "/tmp/oldmain")
sys.path.insert(0, "/tmp/oldmain/tests/backend")
from pathlib import Path

from backend_testing import metric_request

from mlpulse.backend.ingest.limits import Limits
from mlpulse.backend.ingest.pipeline import ingest
from mlpulse.backend.storage.sqlite import SQLiteStore

out = Path(sys.argv[1])
out.unlink(missing_ok=True)
store = SQLiteStore(out)
# Fixed times (so the fixture is reproducible): 2026-11-30 12:00 UTC onwards.
T0 = 1796040000
start = T0 - 60
for i in range(30):
    t = T0 + 10 * i + 5
    point = {
        "value": 3 * (i + 1),
        "start_s": start,
        "time_s": t,
        "attributes": {"ml.model.name": "m"},
    }
    req = metric_request("ml.model.predictions", temporality=2, points=[point])
    ingest(store, req, Limits())
    point = {"value": 2, "start_s": t - 10, "time_s": t, "attributes": {"ml.model.name": "m"}}
    req = metric_request("ml.model.feedback", temporality=1, points=[point])
    ingest(store, req, Limits())
store.close()
print("ok", out)
