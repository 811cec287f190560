"""Unit tests of the hub core, the store and the commit pipeline: no sockets."""
