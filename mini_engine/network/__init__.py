"""Networking: netlink, addresses, bridges and veth pairs, DNS, nftables, published ports."""
