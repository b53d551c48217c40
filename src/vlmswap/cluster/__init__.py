"""Cluster mode: vlmswap's gateway on Ray Serve, one replica per GPU, requests routed by model.

Each `ModelHost` replica runs vlmswap's own gateway (manager, scheduler, safety rules) in
process, without a socket; Ray Serve's model multiplexing sends each request to a replica
that already holds its model; the `Ingress` serves the single gateway's HTTP surface in front
of all of them; the `Board` gathers status, metrics and events from every replica. Ray is an
extra (`pip install "vlmswap[ray]"`): nothing here is imported by the core.
"""
