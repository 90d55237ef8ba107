"""modeldeploy runtime: cache populator, model loader and readiness-gated server."""
