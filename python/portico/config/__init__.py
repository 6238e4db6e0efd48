"""Configuration: declarative models, file loading (YAML, OpenAPI) and compilation for the core."""
