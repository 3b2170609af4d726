"""Release environments: transformers releases and release sets, the tox configuration, what
each environment installs beside transformers, and the cache of throwaway environments."""
