// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
//
// ferroswitch's XDP program (issue 13): UDP for the media plane's address and RTP port
// range goes to the receive queue's AF_XDP socket; everything else (ARP, ND, ICMP, SIP,
// IP options, fragments, other addresses and ports) goes on to the kernel. A queue with
// no socket bound falls back to the kernel too (bpf_redirect_map's default action), so a
// detached or dead worker loses nothing: its kernel sockets are still bound.
//
// Built with Debian's clang: clang -O2 -g -target bpf -c media_redirect.bpf.c
// (media-plane/build.rs does it when clang and libbpf-dev are installed).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// What the media plane serves: its IPv4 and IPv6 addresses (zero: none) and its RTP
// port range, written by the loader into `config` before the program is attached.
struct media_config {
	__u32 ipv4;          // network byte order
	__u32 ipv6[4];       // network byte order
	__u16 port_min;      // host byte order
	__u16 port_max;
	__u16 has_ipv6;
	// How many workers share the range: worker i owns the span ports from
	// port_min + i * span (the last one the rest too; span 0: one worker). A frame for
	// another worker's port still goes to this queue's socket, whose worker hands it over
	// (no steering rule put it on its worker's queue); it is counted.
	__u16 workers;
	__u32 span;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct media_config);
} config SEC(".maps");

// Receive queue -> the AF_XDP socket of the worker bound to it.
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

// Per CPU: [0] frames for the media plane (redirected, or passed when no socket),
// [1] frames passed to the kernel as not ours, [2] media frames passed for want of a
// socket on their queue, [3] media frames for another worker's ports than the queue's
// (handed over by the queue's worker: no steering rule put them on their worker's queue).
enum { COUNT_MEDIA, COUNT_PASSED, COUNT_NO_SOCKET, COUNT_OTHER_QUEUE, COUNTERS };
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &which);
	if (n)
		*n += 1;
}

static __always_inline int pass(void)
{
	count(COUNT_PASSED);
	return XDP_PASS;
}

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

SEC("xdp")
int ferroswitch_media(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct media_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return XDP_PASS;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return pass();
	__be16 proto = eth->h_proto;
	void *l3 = eth + 1;
	// Up to two VLAN tags (802.1Q, 802.1ad), kept in the frame.
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *v = l3;
		if ((void *)(v + 1) > end)
			return pass();
		proto = v->proto;
		l3 = v + 1;
	}

	struct udphdr *udp;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > end)
			return pass();
		// No options, not a fragment, UDP, to the media address.
		if (ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff)) || ip->protocol != IPPROTO_UDP)
			return pass();
		if (!cfg->ipv4 || ip->daddr != cfg->ipv4)
			return pass();
		udp = (void *)(ip + 1);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > end)
			return pass();
		// UDP right after the fixed header (extension headers go to the kernel).
		if (!cfg->has_ipv6 || ip6->nexthdr != IPPROTO_UDP)
			return pass();
		__u32 *d = ip6->daddr.in6_u.u6_addr32;
		if (d[0] != cfg->ipv6[0] || d[1] != cfg->ipv6[1] || d[2] != cfg->ipv6[2] || d[3] != cfg->ipv6[3])
			return pass();
		udp = (void *)(ip6 + 1);
	} else {
		return pass();
	}
	if ((void *)(udp + 1) > end)
		return pass();
	__u16 port = bpf_ntohs(udp->dest);
	if (port < cfg->port_min || port > cfg->port_max)
		return pass();

	count(COUNT_MEDIA);
	if (cfg->span && cfg->workers > 1) {
		__u32 owner = (__u32)(port - cfg->port_min) / cfg->span;
		if (owner >= cfg->workers)
			owner = cfg->workers - 1;
		if (owner != ctx->rx_queue_index)
			count(COUNT_OTHER_QUEUE);
	}
	int action = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
	if (action == XDP_PASS)
		count(COUNT_NO_SOCKET);
	return action;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
