"""benchmarks/pipecat_bot.py runs as a script, so benchmarks/ is first on its sys.path."""

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_no_benchmark_module_shadows_the_standard_library():
    # a benchmarks/queue.py once made Pipecat's `import queue` (concurrent.futures) load it, and
    # the bot, hence `make bench`, did not start
    names = {path.stem for path in BENCHMARKS.glob("*.py")}
    assert not names & set(sys.stdlib_module_names)
