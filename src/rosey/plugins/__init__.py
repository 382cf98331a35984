"""Static knowledge about plugins, no processes: manifests, discovery, dependencies, grants."""
