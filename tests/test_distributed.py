"""The gloo process group is destroyed at exit (see mystyle_pl/distributed.py for the SIGABRT race)."""

import subprocess
import sys

from tests.helpers import REPO_ROOT

SCRIPT = """
import atexit, tempfile, os
import torch.distributed as dist
from mystyle_pl import distributed
store = dist.FileStore(os.path.join(tempfile.mkdtemp(), "store"), 1)
dist.init_process_group("gloo", store=store, rank=0, world_size=1)
distributed.destroy_process_group_at_exit()
distributed.destroy_process_group_at_exit()  # idempotent: one handler
atexit._run_exitfuncs()  # what the interpreter runs at exit, before finalisation
print("initialised after the exit handlers:", dist.is_initialized())
atexit._run_exitfuncs()  # a second run finds no group and does nothing
"""


def test_the_default_process_group_is_destroyed_by_the_exit_handler():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "initialised after the exit handlers: False" in out.stdout
