"""Desired network state → kernel. The only package that touches netlink and nftables."""
