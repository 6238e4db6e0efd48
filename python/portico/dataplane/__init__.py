"""Data plane: the ASGI application and the chain of phases every request passes through."""
