"""What the orchestrator lets a tenant and the process take on.

``tenants`` holds per-tenant limits in Redis (so they hold across replicas), ``shedding`` refuses new
sessions when this process is at capacity or its event loop lags, ``admission`` puts both in front of
the API methods.
"""
