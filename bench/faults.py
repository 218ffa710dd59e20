"""The long fault campaign: tests/test_faults.py with more rounds of the three faults (the
server, the tick process and PostgreSQL killed under write load) and a long outage.

    .venv/bin/python bench/faults.py [ROUNDS] [OUTAGE_SECONDS]     # default 10 rounds, 40 s
"""

import os
import subprocess
import sys

rounds = sys.argv[1] if len(sys.argv) > 1 else "10"
outage = sys.argv[2] if len(sys.argv) > 2 else "40"
env = {**os.environ, "USAGEMETER_FAULT_ROUNDS": rounds, "USAGEMETER_FAULT_OUTAGE": outage}
test = ["-m", "pytest", "-q", "-s", "tests/test_faults.py"]
sys.exit(subprocess.call([sys.executable, *test], env=env))
