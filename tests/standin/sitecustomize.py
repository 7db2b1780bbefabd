"""Python imports this at start when this folder is on PYTHONPATH: with
FASTCIFAR_CUDA_STANDIN=N set, the process runs under the CUDA stand-in (cuda_standin.py)."""

import os

if int(os.environ.get("FASTCIFAR_CUDA_STANDIN", "0") or 0) > 0:
    import cuda_standin

    cuda_standin.StandIn(int(os.environ[cuda_standin.ENV])).install()
