"""Built-in merge methods, one module each; every module here is imported by
:func:`humanllm_ray.merge.registry.load_methods`, so a new file is a new method."""
