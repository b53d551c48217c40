"""A local Ray for `serve run --address`: started with logical GPUs, its address on stdout, stopped
when stdin closes (so the test that started it stops exactly this Ray, never another one).
Usage: python rayhost.py NUM_CPUS NUM_GPUS
"""

import sys

import ray

ray.init(num_cpus=int(sys.argv[1]), num_gpus=int(sys.argv[2]), include_dashboard=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
