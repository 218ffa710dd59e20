"""The long fuzzing campaign: tests/test_fuzz.py with many generated requests per operation
(default 500 valid and 500 invalid, each valid one also sent with its strings spoiled).

    .venv/bin/python bench/fuzz.py [EXAMPLES]     # TEST_DATABASE_URL as for the tests
"""

import os
import subprocess
import sys

examples = sys.argv[1] if len(sys.argv) > 1 else "500"
env = {**os.environ, "USAGEMETER_FUZZ_EXAMPLES": examples}
test = ["-m", "pytest", "-q", "-s", "tests/test_fuzz.py"]
sys.exit(subprocess.call([sys.executable, *test], env=env))
