"""The MPI and Dask extras stay optional: rnncap, its trainer and its CLI import without them,
and one process under no launcher never touches mpi4py."""

import subprocess
import sys


def test_rnncap_imports_and_trains_without_mpi4py_or_dask(tmp_path):
    script = """
import sys
sys.modules["mpi4py"] = None      # importing them now raises ImportError
sys.modules["distributed"] = None
sys.modules["dask"] = None
import rnncap, rnncap.run, rnncap.cli, rnncap.mpi, rnncap.distributed
from rnncap import mpi
assert mpi.world() is None
print("ok")
"""
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_under_a_launcher_without_mpi4py_the_error_says_what_to_install(monkeypatch):
    import rnncap.mpi as mpi

    monkeypatch.setenv("PMI_SIZE", "4")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    try:
        mpi.world()
    except mpi.MPIError as err:
        assert "one of 4 MPI ranks" in str(err) and "pip install 'rnncap[mpi]'" in str(err)
    else:
        raise AssertionError("no error")


def test_dask_without_distributed_says_what_to_install(monkeypatch):
    from rnncap import distributed

    monkeypatch.setitem(sys.modules, "distributed", None)
    try:
        with distributed.connect("local:2"):
            pass
    except distributed.DaskError as err:
        assert "pip install 'rnncap[dask]'" in str(err)
    else:
        raise AssertionError("no error")
