"""HTTP routers, one per concern: ``score`` (product API), ``oip`` (KServe V2), ``models``,
``admin``; ``deps`` reads the shared objects from ``app.state``."""
