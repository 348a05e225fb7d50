"""Who may talk to the orchestrator: TLS on the gRPC port, token verifiers, and the caller's tenant.

``tls`` builds (reloadable) server credentials, ``verifiers`` turn a bearer token into a tenant,
``interceptor`` checks every call's ``authorization`` metadata, ``tenant`` carries the result to handlers.
"""
