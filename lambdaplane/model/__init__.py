"""Typed values every layer shares (IPAM arithmetic, …): pure, no I/O, imported by store/,
net/, sandbox/ and service/ alike; imports only errors/config."""
