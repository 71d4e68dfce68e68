/* What this kernel's missing netem would do to a TCP port's segments, for the chaos
 * tests: duplicate some, hold some back. Built by tests/chaos.rs with clang -target bpf
 * and -D PORT, FILLER_PORT, DUP_PER_MILLE, HOLD_PER_MILLE and HOLD_CLASS, and attached
 * with `tc`.
 *
 * - "tc/duplicate" (clsact egress, direct-action): sends a copy of the segment out of
 *   the same device first (bpf_clone_redirect), marked so that it is not copied again.
 * - "tc/hold" (classifier of an htb root qdisc, direct-action): puts the segment into
 *   the minor class HOLD_CLASS, which is slow and kept busy by the test's filler
 *   datagrams (UDP to FILLER_PORT, always put there), so the segment waits while the
 *   segments after it pass in the default class: they arrive reordered. A token bucket
 *   lets a packet pass at once when idle, hence the filler. fq, which would hold a
 *   segment until its skb->tstamp, is not in this kernel; nor are netem and etf.
 *
 * Only segments that carry payload, to or from PORT, are touched: a lost handshake is
 * what the drops do. Helpers are declared here: no libbpf headers are needed. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#define SEC(name) __attribute__((section(name), used))

static long (*bpf_clone_redirect)(struct __sk_buff *skb, __u32 ifindex,
				  __u64 flags) = (void *)BPF_FUNC_clone_redirect;
static __u32 (*bpf_get_prandom_u32)(void) = (void *)BPF_FUNC_get_prandom_u32;
static long (*bpf_skb_load_bytes)(const struct __sk_buff *skb, __u32 offset, void *to,
				  __u32 len) = (void *)BPF_FUNC_skb_load_bytes;

/* On the copy: it passes untouched when it comes through the egress hook again. */
#define COPY_MARK 0xc4a05

enum { OTHER, SEGMENT, FILLER };

/* What the packet is (veth: Ethernet, IPv4). */
static __attribute__((always_inline)) int kind(struct __sk_buff *skb)
{
	struct iphdr ip;
	if (skb->protocol != __constant_htons(ETH_P_IP))
		return OTHER;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
		return OTHER;
	__u32 ihl = (ip.ihl & 0xf) * 4;
	if (ip.protocol == IPPROTO_UDP) {
		struct udphdr udp;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + ihl, &udp, sizeof(udp)))
			return OTHER;
		return udp.dest == __constant_htons(FILLER_PORT) ? FILLER : OTHER;
	}
	struct tcphdr tcp;
	if (ip.protocol != IPPROTO_TCP || bpf_skb_load_bytes(skb, ETH_HLEN + ihl, &tcp, sizeof(tcp)))
		return OTHER;
	if (tcp.source != __constant_htons(PORT) && tcp.dest != __constant_htons(PORT))
		return OTHER;
	__u32 headers = ihl + tcp.doff * 4;
	return __constant_ntohs(ip.tot_len) > headers ? SEGMENT : OTHER;
}

static __attribute__((always_inline)) int chance(__u32 per_mille)
{
	return bpf_get_prandom_u32() % 1000 < per_mille;
}

SEC("tc/duplicate")
int duplicate(struct __sk_buff *skb)
{
	if (skb->mark != COPY_MARK && kind(skb) == SEGMENT && chance(DUP_PER_MILLE)) {
		skb->mark = COPY_MARK;
		bpf_clone_redirect(skb, skb->ifindex, 0);
		skb->mark = 0;
	}
	return TC_ACT_OK;
}

SEC("tc/hold")
int hold(struct __sk_buff *skb)
{
	int k = kind(skb);
	/* Only the minor number: the kernel keeps 16 bits of it. */
	if (k == FILLER || (k == SEGMENT && chance(HOLD_PER_MILLE)))
		skb->tc_classid = HOLD_CLASS;
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
