# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lab 07: networking, from lo alone to published ports and names
#
# Chapter: `chapters/07-networking.md`. Run as root, headless with
# `python labs/07-networking/lab.py`, or open this file as a notebook.
#
# The engine makes a bridge, veths and an nftables table, and turns on
# routing: on your machine's own network that is not a lab's business.
# So this lab makes two network namespaces first (`labkit.Playground`):
# one plays the host, where the engine runs, and one plays the world
# outside, linked to the host at 10.99.0.1 <-> 10.99.0.2. When the lab
# ends they go, with everything in them.

# %%
import json
import subprocess
import sys

from mini_engine.labkit import Playground, check, check_answers, own_roots, require_root, wait_until

require_root()
own_roots("07-networking")
lab = Playground()
HOST_IP, OUTSIDE_IP = lab.HOST_IP, lab.OUTSIDE_IP
engine = lab.show_engine  # mini-engine ARGS in the playground's host namespace, shown


FETCH = ("import sys, urllib.request; "
         "print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode(), end='')")


def fetch(where: str, url: str) -> str:
    """An HTTP GET from the host or the outside namespace: the page, or '' if none came."""
    return getattr(lab, where)(sys.executable, "-c", FETCH, url, check=False).stdout


# %% [markdown]
# ## 1. From lo alone to eth0
# At stage 6 the container's network namespace has `lo` and nothing else.
# At stage 7 it also has `eth0`, with an address from the engine's IPAM,
# a default route through the bridge, and the MTU of the host's way out
# (the playground's uplink has 1400, not Ethernet's 1500).

# %%
result = engine("--stage", "6", "run", "--rm", "busybox", "ip", "-o", "link")
check([line.split(":")[1].strip() for line in result.stdout.splitlines()] == ["lo"],
      "stage 6: the only link is lo")
result = engine("run", "--rm", "busybox", "sh", "-c",
                "ip -o -4 addr show eth0; ip route; cat /sys/class/net/eth0/mtu")
lines = result.stdout.splitlines()
check("inet 10.88.0.2/16" in lines[0], "stage 7: eth0 has 10.88.0.2/16, the first address after the gateway")
check(lines[1].startswith("default via 10.88.0.1 dev eth0"),
      "the default route goes through the bridge, 10.88.0.1")
check(lines[-1] == str(lab.UPLINK_MTU), f"eth0's MTU is the uplink's, {lab.UPLINK_MTU}")

# %% [markdown]
# ## 2. The host's side: a bridge and one veth per container
# While a container runs, the host namespace has the bridge `mini0` and
# the container's end of the cable, `me<short id>`, plugged into it. When
# it ends, both are gone: the bridge goes with its last container.

# %%
sleeper = lab.engine_popen("run", "--rm", "--name", "sleeper", "busybox", "sleep", "60")
check(wait_until(lambda: engine("exec", "sleeper", "true", quiet=True).returncode == 0), "the container runs")
links = json.loads(lab.host("ip", "-j", "link").stdout)
print("$ ip -br link    (in the host namespace)")
print(lab.host("ip", "-br", "link").stdout)
bridge = [link for link in links if link["ifname"] == "mini0"]
veths = [link for link in links if link["ifname"].startswith("me")]
check(len(bridge) == 1 and len(veths) == 1, "the host has the bridge mini0 and one veth")
check(veths[0].get("master") == "mini0", f"{veths[0]['ifname']} is plugged into mini0")
engine("kill", "sleeper")
sleeper.wait(timeout=30)
names = [link["ifname"] for link in json.loads(lab.host("ip", "-j", "link").stdout)]
check("mini0" in names and not any(n.startswith("me") for n in names),
      "after the container: no veth; the bridge stays for the next one (as docker0)")

# %% [markdown]
# ## 3. The way out: masquerade
# A server in the outside namespace prints the address each connection
# comes from. The container's is 10.88.0.x; the server sees the host's,
# 10.99.0.1, because nftables rewrote the source on the way out.

# %%
SERVER = ("import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
          f"s.bind(('{OUTSIDE_IP}', 9000)); s.listen(); print('ready', flush=True); "
          "c, peer = s.accept(); print(peer[0], flush=True)")
server = subprocess.Popen(["nsenter", f"--net={lab.ns('outside')}", sys.executable, "-c", SERVER],
                          stdout=subprocess.PIPE, text=True)
check(server.stdout.readline() == "ready\n", "the outside server listens on 10.99.0.2:9000")
engine("run", "--rm", "busybox", "sh", "-c", f"echo hello | nc -w 3 {OUTSIDE_IP} 9000")
seen = server.stdout.readline().strip()
server.wait(timeout=10)
check(seen == HOST_IP, f"the outside saw {seen}: the host's address, not the container's")

# %% [markdown]
# ## 4. A published port, from three places
# busybox's httpd serves a page in a container published with
# `-p 8080:80`. It answers at the host's address, at 127.0.0.1 (thanks to
# route_localnet on the bridge and a masquerade rule), and from the
# outside namespace. A second container asking for the same port is
# refused: the engine holds the port with a bound socket.

# %%
SERVE = "mkdir -p /www && echo hello from web > /www/index.html && exec httpd -f -p 80 -h /www"
web = lab.engine_popen("run", "--rm", "--name", "web", "-p", "8080:80", "busybox", "sh", "-c", SERVE)
check(wait_until(lambda: fetch("host", f"http://{HOST_IP}:8080/") == "hello from web\n"),
      f"the host fetches http://{HOST_IP}:8080/")
check(fetch("host", "http://127.0.0.1:8080/") == "hello from web\n", "and http://127.0.0.1:8080/")
check(fetch("outside", f"http://{HOST_IP}:8080/") == "hello from web\n",
      "and the outside namespace, through the host")
print("$ nft list table inet mini_engine")
print(lab.host("nft", "list", "table", "inet", "mini_engine").stdout)
taken = engine("run", "--rm", "-p", "8080:80", "busybox", "true")
check(taken.returncode == 125 and "port 8080/tcp on 0.0.0.0 is already in use" in taken.stderr,
      "a second -p 8080:80 is refused with a clear error")
engine("kill", "web")
web.wait(timeout=30)

# %% [markdown]
# ## 5. Names on a network of their own
# Containers on a network made with `network create` find each other by
# name (the network's shared /etc/hosts, and its DNS responder on the
# bridge's address, which answers `nslookup` too); a container on another
# network finds neither the name nor, by address, the container.

# %%
engine("network", "create", "front")
engine("network", "create", "back")
alpha = lab.engine_popen("run", "--rm", "--name", "alpha", "--network", "front", "busybox", "sleep", "60")
check(wait_until(lambda: engine("exec", "alpha", "true", quiet=True).returncode == 0), "alpha runs on front")
result = engine("run", "--rm", "--network", "front", "busybox", "sh", "-c",
                "cat /etc/hosts; ping -c 1 -W 3 alpha")
check(result.returncode == 0, "a second container on front pings alpha by name")
address = result.stdout.split("PING alpha (")[1].split(")")[0]
result = engine("run", "--rm", "--network", "front", "busybox", "sh", "-c",
                "cat /etc/resolv.conf; nslookup alpha")
check(result.stdout.startswith("nameserver 10.89.0.1\n")
      and f"Name:\talpha\nAddress: {address}\n" in result.stdout,
      "front's DNS responder, at the bridge's 10.89.0.1, answers alpha's name")
result = engine("run", "--rm", "--network", "back", "busybox", "sh", "-c",
                f"ping -c 1 -W 2 alpha; ping -c 1 -W 2 {address}")
check("bad address 'alpha'" in result.stderr and "100% packet loss" in result.stdout,
      f"from back: no name alpha, and {address} does not answer")
engine("kill", "alpha")
alpha.wait(timeout=30)
engine("network", "rm", "front", "back")

# %% [markdown]
# ## 6. Nothing left
# Every container is gone: so are the veths and the leases. The default
# network's bridge, mini0, and the nft table stay for the next container,
# as docker0 does; `network prune` takes them down.

# %%
names = [link["ifname"] for link in json.loads(lab.host("ip", "-j", "link").stdout)]
check(sorted(names) == ["lo", "mini0", "uplink"], "no veth left; the bridge mini0 waits for the next container")
engine("network", "prune")
names = [link["ifname"] for link in json.loads(lab.host("ip", "-j", "link").stdout)]
check(sorted(names) == ["lo", "uplink"], "the host namespace has only lo and its uplink")
check(lab.host("nft", "list", "tables").stdout == "", "no nft table")
lab.close()

# %% [markdown]
# ## Your turn
# - Run `mini-engine run --rm -p 80 busybox sleep 30` in the playground
#   (`lab.engine_popen(...)`) and find which host port the kernel chose:
#   `mini-engine ps --format json`, then fetch it.
# - Publish a UDP port, `-p 5353:53/udp`, with `nc -u -l -p 53` in the
#   container, and send it a datagram from the outside namespace.
# - Make a network with `--subnet 10.99.0.0/16`. Which error do you get,
#   and which route of the host's namespace is it about?
# - Kill an engine with SIGKILL while its container runs. What do the
#   leases say, and what does `mini-engine prune` do about it?

# %% [markdown]
# ## Check your answers
# Write your answer in `my_answers` and run the cell: it says right or
# wrong. (The lab keeps only a digest of the right answers; the answers,
# and why, are in the instructor guide.)
#
# 1. What is the name of the default network's bridge?
# 2. Which subnet does the default network hand out addresses from? In
#    CIDR notation.

# %%
my_answers = {1: None, 2: None}
check_answers("07-networking", my_answers, {
    1: ('9fe0288ff20b8bb1',),
    2: ('0b5178ac3335d1ed',),
})

# %%
print("lab 07 done")
