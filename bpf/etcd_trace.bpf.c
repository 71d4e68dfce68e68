// SPDX-License-Identifier: GPL-2.0
/* etcd-trace's eBPF programs: TC programs that copy TCP segments of the traced ports, and
 * syscall tracepoints that report the traced etcd processes' writes, reads and syncs on
 * data-dir files and traced sockets. Filtering happens here, so pipes, eventfds and
 * unrelated files never cost a ring-buffer slot. Events are built in per-CPU staging
 * areas and reach the ring buffers in batches; flush_stages, run by userspace on each
 * CPU before it sends a batch to the writer, hands over the rest. The event layout is in
 * events.h. */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "events.h"

char LICENSE[] SEC("license") = "GPL";

/* Configuration, fixed by userspace before the programs load. */
const volatile __u32 use_ringbuf = 1;
const volatile __u32 snaplen = 4096;
/* WAL writes and reads; above ET_MAX_DATA, writes go on in et_syscall_more events. */
const volatile __u32 file_data_limit = 65536;
/* Other data-dir files (the bbolt backend, snapshots): their pages are never decoded, so
 * only a prefix to recognise them by. */
const volatile __u32 other_file_data_limit = 512;
const volatile __u32 socket_data_limit = 0;
/* Capture TLS plaintext: the uprobes on Go's crypto/tls are loaded, and the syscall
 * programs learn each TLS connection's socket. */
const volatile __u32 trace_tls = 0;
/* Report every read and write etcd makes on sockets of the traced ports (their times and
 * sizes). Otherwise only the first on each socket is reported: it says which process
 * serves the connection, which is what the analyses need of them, for a fraction of the
 * events. */
const volatile __u32 every_socket_syscall = 0;
/* Send syscall events. Without (--no-syscalls) the syscall programs still run, for the
 * latency histograms alone. */
const volatile __u32 emit_syscalls = 1;
/* What to trace: a few compares that every syscall and segment on the machine passes
 * through, not map lookups. The ports are fixed at load time (constants to the
 * verifier). The pids change while recording: with follow_exec, a process that execs a
 * binary named etcd takes a free place in traced_pid_list, and a traced process's place
 * is freed when it ends. Writable global data (mmapped), changed only by the programs,
 * with compare-and-swap; userspace sets the first entries before loading. */
#define MAX_TRACED 16 /* pids, and ports */
const volatile __u32 follow_exec = 0;
/* The traced processes by tgid, 0 for a free place. A process's place also numbers its
 * fd slots. 64-bit entries: clang has no 32-bit compare-and-swap for BPF before -mcpu=v3. */
__u64 traced_pid_list[MAX_TRACED] = {};
/* Places in use or used since loading (it only grows): the checks look no further. */
__u64 traced_pid_count = 0;
const volatile __u32 traced_port_count = 0;
const volatile __u32 traced_port_list[MAX_TRACED] = {};
/* Set when an interface's link-layer header is not Ethernet's 14 bytes (l2_len has it). */
const volatile __u32 l2_exceptions = 0;
/* Read back by userspace tests to check its parser against this compiler's layout. */
const volatile __u32 packet_header_size = sizeof(struct et_packet);
const volatile __u32 syscall_header_size = sizeof(struct et_syscall);
const volatile __u32 batch_header_size = sizeof(struct et_batch);
const volatile __u32 tls_header_size = sizeof(struct et_tls);
const volatile __u32 process_header_size = sizeof(struct et_process);
const volatile __u32 syscall_more_header_size = sizeof(struct et_syscall_more);
const volatile __u32 hist_size = sizeof(struct et_hist);
const volatile __u32 hist_shape[] = { ET_HIST_BUCKETS, ET_HIST_KINDS, ET_HIST_DIRS };
const volatile __u32 packet_offsets[] = {
	__builtin_offsetof(struct et_packet, ts_ns),
	__builtin_offsetof(struct et_packet, sport),
	__builtin_offsetof(struct et_packet, seq),
	__builtin_offsetof(struct et_packet, window),
	__builtin_offsetof(struct et_packet, payload_len),
	__builtin_offsetof(struct et_packet, captured_len),
	__builtin_offsetof(struct et_packet, saddr),
	__builtin_offsetof(struct et_packet, daddr),
};
const volatile __u32 syscall_offsets[] = {
	__builtin_offsetof(struct et_syscall, enter_ns),
	__builtin_offsetof(struct et_syscall, pid),
	__builtin_offsetof(struct et_syscall, fd),
	__builtin_offsetof(struct et_syscall, file_kind),
	__builtin_offsetof(struct et_syscall, ret),
	__builtin_offsetof(struct et_syscall, offset),
	__builtin_offsetof(struct et_syscall, requested),
	__builtin_offsetof(struct et_syscall, lport),
	__builtin_offsetof(struct et_syscall, data_len),
	__builtin_offsetof(struct et_syscall, names),
};
const volatile __u32 tls_offsets[] = {
	__builtin_offsetof(struct et_tls, ts_ns),
	__builtin_offsetof(struct et_tls, conn_id),
	__builtin_offsetof(struct et_tls, offset),
	__builtin_offsetof(struct et_tls, tid),
	__builtin_offsetof(struct et_tls, len),
	__builtin_offsetof(struct et_tls, data_len),
	__builtin_offsetof(struct et_tls, direction),
	__builtin_offsetof(struct et_tls, family),
	__builtin_offsetof(struct et_tls, lport),
	__builtin_offsetof(struct et_tls, rport),
	__builtin_offsetof(struct et_tls, laddr),
	__builtin_offsetof(struct et_tls, raddr),
};
const volatile __u32 syscall_more_offsets[] = {
	__builtin_offsetof(struct et_syscall_more, tid),
	__builtin_offsetof(struct et_syscall_more, enter_ns),
	__builtin_offsetof(struct et_syscall_more, at),
	__builtin_offsetof(struct et_syscall_more, data_len),
};
const volatile __u32 process_offsets[] = {
	__builtin_offsetof(struct et_process, pid),
	__builtin_offsetof(struct et_process, ts_ns),
	__builtin_offsetof(struct et_process, change),
	__builtin_offsetof(struct et_process, exit_code),
};

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP 6
#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define S_IFREG 0100000
#define TC_ACT_UNSPEC (-1) /* also TCX_NEXT: let the packet go on untouched */
#define MAX_IOV 8
#define EAGAIN 11

_Static_assert(__builtin_offsetof(struct et_syscall, names) == ET_SYSCALL_NAMES_OFFSET,
	       "events.h: ET_SYSCALL_NAMES_OFFSET is where names start");

/* Never wake the reader: it polls the rings every 50 ms, which a burst of a million
 * events a second does not fill, and a wakeup costs the traced process an interrupt
 * (and asking how full the ring is, a cache miss on the reader's position). */
#define RB_FLAGS BPF_RB_NO_WAKEUP

/* The event channel: one ring buffer per CPU, or a perf buffer on old kernels / --buffer
 * perf. A ring shared by all CPUs makes every event take its lock and position lines
 * from the CPU that wrote last: with writers on two CPUs here, that added ~200 ns to each
 * event, and it grows with the CPUs. Userspace creates the rings (sizes are its choice)
 * and puts their events back in time order. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1); /* one per possible CPU, set by userspace */
	__type(key, __u32);
	__type(value, __u32);
} rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf_events SEC(".maps");

/* Per-CPU counters: [COUNTER_LOST] events that could not be handed over (userspace turns
 * increments into loss records), [COUNTER_SENT] events handed over, so a test can check
 * that sent + lost is everything. */
#define COUNTER_LOST 0
#define COUNTER_SENT 1
/* [COUNTER_EMPTY_READS] reads of a traced process that found nothing (EAGAIN): Go polls
 * its sockets that way, and such a read says nothing about a request, so it is counted,
 * not sent (and its fd is not even looked at). */
#define COUNTER_EMPTY_READS 2
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* clang 14 tends to check a bound on one register and pass another to the helper, and
 * the verifier then sees an unbounded length. Masking right before the call, after a
 * compiler barrier, gives it a bound it can prove: [0, mask]. */
#define BOUNDED(n, mask)                \
	({                              \
		__u64 __n = (n);        \
		barrier_var(__n);       \
		__n & (mask);           \
	})

/* Events are built in place in a per-CPU staging area and reach the CPU's ring in
 * batches: a ring buffer reservation and commit (a lock with interrupts off, and an
 * atomic exchange) cost ~100-150 ns here, more than building most events. A batch is
 * handed over once it holds STAGE_HAND_OVER bytes; userspace has what is left handed
 * over before it sends a batch to the writer (flush_stages, run on each CPU, 4 times a
 * second), so no event waits longer than that. Two areas per CPU (2*cpu for syscalls,
 * 2*cpu+1 for packets), because a TC program in a softirq can interrupt a syscall
 * program on the same CPU. `busy` is set
 * while an event is being added: the flush, which interrupts whatever runs on the CPU,
 * leaves both areas alone then and is asked again. With the perf buffer, each event is
 * output on its own as soon as it is built (the area is only scratch space). */
#define STAGE_HAND_OVER 0x4000 /* below this, where the next event starts (8-aligned) */
#define STAGE_BYTES 0x20000    /* room for STAGE_HAND_OVER plus the largest event */
struct stage {
	__u32 busy;
	__u32 count; /* events staged */
	__u32 len;   /* bytes staged; each event starts 8-byte aligned */
	__u32 idx;   /* which area this is (2 * cpu + kind), set when an event is added */
	struct et_batch batch; /* filled in when handed over: sent with the events */
	__u8 events[STAGE_BYTES];
};

_Static_assert(STAGE_HAND_OVER + sizeof(struct et_syscall) + ET_MAX_DATA <= STAGE_BYTES,
	       "a syscall event fits after a nearly full stage");
_Static_assert(STAGE_HAND_OVER + sizeof(struct et_packet) + ET_MAX_SNAPLEN <= STAGE_BYTES,
	       "a packet event fits after a nearly full stage");
_Static_assert(STAGE_HAND_OVER + sizeof(struct et_tls) + ET_TLS_CHUNK <= STAGE_BYTES,
	       "a TLS event fits after a nearly full stage");
_Static_assert(STAGE_HAND_OVER + sizeof(struct et_syscall_more) + ET_MAX_DATA <= STAGE_BYTES,
	       "a WAL write's next part fits after a nearly full stage");

#define STAGE_SYSCALLS 0
#define STAGE_PACKETS 1

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2); /* 2 per possible CPU, set by userspace */
	__type(key, __u32);
	__type(value, struct stage);
} stages SEC(".maps");

/* Where v is among the first count entries of list (of MAX_TRACED), or -1. */
#define list_index(list, count, v)                          \
	({                                                  \
		int __at = -1;                              \
		__u64 __count = (count);                    \
		_Pragma("unroll") for (int __i = 0; __i < MAX_TRACED; __i++) \
		{                                           \
			if (__i >= __count)                 \
				break;                      \
			if ((list)[__i] == (v)) {           \
				__at = __i;                 \
				break;                      \
			}                                   \
		}                                           \
		__at;                                       \
	})

/* The place of a traced process, or -1. */
static __always_inline int traced_pid_index(__u32 tgid)
{
	return list_index(traced_pid_list, traced_pid_count, tgid);
}

#define is_traced_pid(tgid) (traced_pid_index(tgid) >= 0)
#define is_traced_port(port) (list_index(traced_port_list, traced_port_count, (port)) >= 0)

/* A data dir by (kernel dev_t, inode): a file belongs to it when an ancestor matches.
 * The value is the dir's slot for the latency histograms (below ET_HIST_DIRS). */
struct dir_key {
	__u64 ino;
	__u32 dev;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ET_HIST_DIRS);
	__type(key, struct dir_key);
	__type(value, __u8);
} data_dirs SEC(".maps");

/* Link-layer header length per ifindex, for the interfaces where it is not Ethernet's 14
 * (consulted only when l2_exceptions is set). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} l2_len SEC(".maps");

/* What classify() decided for an fd of a traced process, so that the walk up the
 * dentries and the socket reads happen once per open file, not once per syscall. An
 * entry is used only while the fd still points to the same struct file, and is dropped
 * when the process closes or dup2s over the fd. Fds below FD_SLOTS have a slot in an
 * array (fd_slots), the rest an entry in a hash: a hash lookup cost ~180 ns of every
 * traced syscall here (its bucket and element are cold after etcd's own work), an array
 * slot is one cache line at a computed address. */
#define FD_SLOTS 4096
/* Read by userspace, which sizes fd_slots to FD_SLOTS per place in traced_pid_list (all
 * MAX_TRACED when following). A place taken again has its slots cleared first. */
const volatile __u32 fd_slots_per_process = FD_SLOTS;
struct fd_key {
	__u32 tgid;
	__s32 fd;
};

/* hist_file: which histograms a data file's calls go to. */
#define HIST_FILE_NONE 0
#define HIST_FILE_WAL 1
#define HIST_FILE_DB 2

struct fd_verdict {
	__u64 file;
	__u8 kind; /* 0: not traced */
	__u8 depth;
	__u16 lport;
	__u16 rport;
	__u8 hist_dir;  /* the data dir's slot */
	__u8 hist_file; /* HIST_FILE_* */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct fd_key);
	__type(value, struct fd_verdict);
} fd_verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FD_SLOTS); /* FD_SLOTS per place, set by userspace */
	__type(key, __u32);
	__type(value, struct fd_verdict);
} fd_slots SEC(".maps");

/* The array slot of a traced process's fd (the process's place in the pid list), or
 * NULL when the fd is past FD_SLOTS. */
static __always_inline struct fd_verdict *fd_slot(int pid_index, int fd)
{
	if (pid_index < 0 || fd < 0 || fd >= FD_SLOTS)
		return NULL;
	__u32 idx = (__u32)pid_index * FD_SLOTS + (__u32)fd;
	return bpf_map_lookup_elem(&fd_slots, &idx);
}

/* A syscall between its enter and exit tracepoints, in the thread's own storage (cheaper
 * than a hash keyed by thread id: no bucket lock, no delete). Only the arguments and the
 * time: what the fd is gets decided at the exit, so a read that found nothing (EAGAIN,
 * half of Go's socket reads) costs no lookup at all. */
struct inflight {
	__u64 enter_ns;
	__u64 buf;
	__u64 requested;
	__u64 offset;
	__s32 fd;
	__u32 call;
	__u32 active; /* 0: nothing in flight */
	__u32 _pad;
	/* Set by the TLS uprobes: the goroutine (g) of a (*Conn).Read or Write running on
	 * this thread and its tls.Conn, until a syscall of that goroutine names the
	 * connection's socket. */
	__u64 tls_g;
	__u64 tls_conn;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct inflight);
} inflight SEC(".maps");

/* The latency histograms (events.h), summed over the CPUs by userspace. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ET_HIST_DIRS * ET_HIST_KINDS);
	__type(key, __u32);
	__type(value, struct et_hist);
} latency SEC(".maps");

/* floor(log2(v)) for v > 0, 0 for 0: without a loop, for the verifier. */
static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0;
	if (v >> 32) {
		v >>= 32;
		r += 32;
	}
	if (v >> 16) {
		v >>= 16;
		r += 16;
	}
	if (v >> 8) {
		v >>= 8;
		r += 8;
	}
	if (v >> 4) {
		v >>= 4;
		r += 4;
	}
	if (v >> 2) {
		v >>= 2;
		r += 2;
	}
	if (v >> 1)
		r += 1;
	return r;
}

/* Count one call of a WAL or backend file in its histogram. Atomic adds: two tasks may
 * run the program on one CPU (it can be preempted), and an uncontended atomic on a
 * CPU's own line costs little. */
static __always_inline void hist_add(struct fd_verdict *v, __u32 call, __u64 ns)
{
	__u32 kind;
	int sync = call == ET_FSYNC || call == ET_FDATASYNC;
	int write = call == ET_WRITE || call == ET_PWRITE64 || call == ET_WRITEV;
	if (v->hist_file == HIST_FILE_WAL && sync)
		kind = ET_HIST_WAL_SYNC;
	else if (v->hist_file == HIST_FILE_WAL && write)
		kind = ET_HIST_WAL_WRITE;
	else if (v->hist_file == HIST_FILE_DB && sync)
		kind = ET_HIST_DB_SYNC;
	else if (v->hist_file == HIST_FILE_DB && write)
		kind = ET_HIST_DB_WRITE;
	else
		return;
	if (v->hist_dir >= ET_HIST_DIRS)
		return;
	__u32 key = (__u32)v->hist_dir * ET_HIST_KINDS + kind;
	struct et_hist *h = bpf_map_lookup_elem(&latency, &key);
	if (!h)
		return;
	__u32 bucket = log2_u64(ns);
	if (bucket >= ET_HIST_BUCKETS)
		bucket = ET_HIST_BUCKETS - 1;
	__sync_fetch_and_add(&h->buckets[bucket], 1);
	__sync_fetch_and_add(&h->sum_ns, ns);
}

static __always_inline void add(__u32 key, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &key);
	if (v)
		*v += n;
}

static __always_inline void count(__u32 key)
{
	add(key, 1);
}

static __always_inline void *ring_of_this_cpu(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&rings, &cpu);
}

/* This CPU's staging area for `kind`, taken for adding an event (NULL: the area is in
 * use by an interrupted program, which cannot happen with programs that run with
 * preemption off, but costs one load to rule out; the event is counted as lost). */
static __always_inline struct stage *stage_take(__u32 kind)
{
	__u32 idx = bpf_get_smp_processor_id() * 2 + kind;
	struct stage *st = bpf_map_lookup_elem(&stages, &idx);
	if (!st)
		return NULL;
	if (st->busy) {
		count(COUNTER_LOST);
		return NULL;
	}
	st->busy = 1;
	st->idx = idx;
	barrier();
	return st;
}

/* Where the next event goes: below STAGE_HAND_OVER, 8-byte aligned. */
static __always_inline void *stage_next(struct stage *st)
{
	return st->events + BOUNDED(st->len, STAGE_HAND_OVER - 8);
}

/* The staged events to the CPU's ring as one batch; counted as sent, or all as lost. */
static __always_inline void stage_hand_over(struct stage *st)
{
	__u32 n = st->count;
	if (!n)
		return;
	st->batch.type = ET_BATCH;
	st->batch.count = n;
	st->batch.len = st->len;
	st->batch.stage = st->idx;
	__u64 size = sizeof(st->batch) + BOUNDED(st->len, STAGE_BYTES - 1);
	void *ring = ring_of_this_cpu();
	long err = ring ? bpf_ringbuf_output(ring, &st->batch, size, RB_FLAGS) : -1;
	add(err ? COUNTER_LOST : COUNTER_SENT, n);
	st->count = 0;
	st->len = 0;
}

/* The event of `size` bytes at stage_next() is complete: keep it (perf buffer: send
 * it), hand the batch over when it is full, and release the area. */
static __always_inline void stage_put(void *ctx, struct stage *st, __u64 size)
{
	if (use_ringbuf) {
		st->len += (size + 7) & ~7ULL;
		st->count += 1;
		if (st->len >= STAGE_HAND_OVER)
			stage_hand_over(st);
	} else {
		long err = bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU,
						 st->events, BOUNDED(size, STAGE_BYTES - 1));
		count(err ? COUNTER_LOST : COUNTER_SENT);
	}
	barrier();
	st->busy = 0;
}

/* ---------------------------------------------------------------- packets */

struct ipv4_hdr {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u8 saddr[4];
	__u8 daddr[4];
};

struct ipv6_hdr {
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct tcp_hdr {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff_res;
	__u8 flags;
	__be16 window;
	__u16 check;
	__u16 urg_ptr;
};

/* Copy a header at off out of the packet: straight from the linear data when it is there
 * (a bounds check, no helper call), else through bpf_skb_load_bytes (paged data). */
#define PACKET_HEADER(skb, off, to)                                                   \
	({                                                                             \
		void *__end = (void *)(long)(skb)->data_end;                           \
		__u8 *__at = (__u8 *)(long)(skb)->data + ((off) & 0x1ff);              \
		int __err = 0;                                                         \
		if ((void *)(__at + sizeof(*(to))) <= __end)                           \
			__builtin_memcpy((to), __at, sizeof(*(to)));                   \
		else                                                                   \
			__err = bpf_skb_load_bytes((skb), (off), (to), sizeof(*(to))); \
		__err;                                                                 \
	})

static __always_inline int handle_skb(struct __sk_buff *skb, __u8 direction)
{
	__u32 ifindex = skb->ifindex;
	__u32 nh = ETH_HLEN;
	if (l2_exceptions) {
		__u32 *l2 = bpf_map_lookup_elem(&l2_len, &ifindex);
		if (l2)
			nh = *l2 & 0xff;
	}

	__u16 proto = bpf_ntohs(skb->protocol);
	__u32 skb_len = skb->len;
	__u32 th_off, ip_payload;
	__u8 family;
	struct et_packet hdr = {};

	if (proto == ETH_P_IP) {
		struct ipv4_hdr ip;
		if (PACKET_HEADER(skb, nh, &ip))
			return TC_ACT_UNSPEC;
		if (ip.protocol != IPPROTO_TCP)
			return TC_ACT_UNSPEC;
		if (bpf_ntohs(ip.frag_off) & 0x1fff) /* not the first fragment */
			return TC_ACT_UNSPEC;
		__u32 ihl = (ip.ver_ihl & 0x0f) * 4;
		__u32 tot = bpf_ntohs(ip.tot_len);
		if (ihl < 20)
			return TC_ACT_UNSPEC;
		th_off = nh + ihl;
		/* GSO packets may carry a zero or stale total length: trust skb->len then. */
		if (tot >= ihl && nh + tot <= skb_len)
			ip_payload = tot - ihl;
		else
			ip_payload = skb_len > th_off ? skb_len - th_off : 0;
		family = 4;
		__builtin_memcpy(hdr.saddr, ip.saddr, 4);
		__builtin_memcpy(hdr.daddr, ip.daddr, 4);
	} else if (proto == ETH_P_IPV6) {
		struct ipv6_hdr ip6;
		if (PACKET_HEADER(skb, nh, &ip6))
			return TC_ACT_UNSPEC;
		if (ip6.nexthdr != IPPROTO_TCP)
			return TC_ACT_UNSPEC;
		th_off = nh + sizeof(ip6);
		__u32 plen = bpf_ntohs(ip6.payload_len);
		if (plen && th_off + plen <= skb_len)
			ip_payload = plen;
		else
			ip_payload = skb_len > th_off ? skb_len - th_off : 0;
		family = 6;
		__builtin_memcpy(hdr.saddr, ip6.saddr, 16);
		__builtin_memcpy(hdr.daddr, ip6.daddr, 16);
	} else {
		return TC_ACT_UNSPEC;
	}

	struct tcp_hdr th;
	if (PACKET_HEADER(skb, th_off, &th))
		return TC_ACT_UNSPEC;
	__u16 sport = bpf_ntohs(th.source);
	__u16 dport = bpf_ntohs(th.dest);
	if (!is_traced_port(sport) && !is_traced_port(dport))
		return TC_ACT_UNSPEC;

	__u32 doff = (th.doff_res >> 4) * 4;
	if (doff < 20 || doff > ip_payload)
		return TC_ACT_UNSPEC;
	__u32 payload_len = ip_payload - doff;
	__u8 flags = th.flags;
	/* Pure ACKs carry nothing a decoder needs; SYN, FIN and RST do. */
	if (payload_len == 0 && !(flags & 0x07))
		return TC_ACT_UNSPEC;

	struct stage *st = stage_take(STAGE_PACKETS);
	if (!st)
		return TC_ACT_UNSPEC;
	struct et_packet *ev = stage_next(st);
	hdr.type = ET_PACKET;
	hdr.ifindex = ifindex;
	hdr.ts_ns = bpf_ktime_get_ns();
	hdr.direction = direction;
	hdr.family = family;
	hdr.tcp_flags = flags;
	hdr.sport = sport;
	hdr.dport = dport;
	hdr.seq = bpf_ntohl(th.seq);
	hdr.ack = bpf_ntohl(th.ack_seq);
	hdr.window = bpf_ntohs(th.window);
	hdr.payload_len = payload_len;

	__u32 off = th_off + doff;
	__u32 cap = payload_len;
	if (cap > snaplen)
		cap = snaplen;
	if (off + cap > skb_len)
		cap = off < skb_len ? skb_len - off : 0;
	if (cap > ET_MAX_SNAPLEN)
		cap = ET_MAX_SNAPLEN;
	if (cap > 0) {
		/* [1, 65536]: within the stage after the 80-byte header */
		cap = BOUNDED(cap - 1, 0xffff) + 1;
		if (bpf_skb_load_bytes(skb, off, (__u8 *)ev + sizeof(*ev), cap))
			cap = 0;
	}
	hdr.captured_len = cap;
	__builtin_memcpy(ev, &hdr, sizeof(hdr));
	stage_put(skb, st, sizeof(*ev) + cap);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int tc_ingress(struct __sk_buff *skb)
{
	return handle_skb(skb, ET_INGRESS);
}

SEC("tc")
int tc_egress(struct __sk_buff *skb)
{
	return handle_skb(skb, ET_EGRESS);
}

/* ---------------------------------------------------------------- syscalls */

/* The task pointer is BTF-typed, so the walk to the fd array is plain loads that the
 * verifier guards, not a helper call per field. */
static __always_inline struct file *fd_file(struct task_struct *task, int fd)
{
	struct fdtable *fdt = task->files->fdt;
	unsigned int max_fds = fdt->max_fds;
	struct file **fds = fdt->fd;
	struct file *f = NULL;

	if (fd < 0 || (unsigned int)fd >= max_fds)
		return NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

/* Decide in the kernel whether an fd is worth an event: a TCP socket on a traced port,
 * or a regular file below a traced data dir (up to ET_PATH_DEPTH levels down). Fills in
 * v; its kind stays 0 when the file is neither. */
static __always_inline void classify(struct file *f, struct fd_verdict *v)
{
	struct inode *inode = BPF_CORE_READ(f, f_inode);
	unsigned short mode = BPF_CORE_READ(inode, i_mode);

	if ((mode & S_IFMT) == S_IFSOCK) {
		struct socket *sock = BPF_CORE_READ(f, private_data);
		struct sock *sk = BPF_CORE_READ(sock, sk);
		unsigned short family = BPF_CORE_READ(sk, __sk_common.skc_family);
		if (family != AF_INET && family != AF_INET6)
			return;
		__u16 lport = BPF_CORE_READ(sk, __sk_common.skc_num);
		__u16 rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
		if (!is_traced_port(lport) && !is_traced_port(rport))
			return;
		v->kind = ET_FILE_SOCKET;
		v->lport = lport;
		v->rport = rport;
		return;
	}
	if ((mode & S_IFMT) != S_IFREG)
		return;

	struct dir_key key = {};
	key.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	/* The file's name and its directory's, for the histograms: member/wal/<any> is
	 * the WAL, member/snap/db the backend. Read once per open file. */
	char name[4] = {}, dir[5] = {};
	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(d, d_name.name));
	bpf_probe_read_kernel_str(dir, sizeof(dir), BPF_CORE_READ(d, d_parent, d_name.name));
	__u8 hist_file = HIST_FILE_NONE;
	if (dir[0] == 'w' && dir[1] == 'a' && dir[2] == 'l' && dir[3] == 0)
		hist_file = HIST_FILE_WAL;
	else if (dir[0] == 's' && dir[1] == 'n' && dir[2] == 'a' && dir[3] == 'p' &&
		 dir[4] == 0 && name[0] == 'd' && name[1] == 'b' && name[2] == 0)
		hist_file = HIST_FILE_DB;
#pragma unroll
	for (int depth = 1; depth <= ET_PATH_DEPTH; depth++) {
		d = BPF_CORE_READ(d, d_parent);
		key.ino = BPF_CORE_READ(d, d_inode, i_ino);
		__u8 *slot = bpf_map_lookup_elem(&data_dirs, &key);
		if (slot) {
			v->kind = ET_FILE_DATA;
			v->depth = depth;
			v->hist_dir = *slot;
			/* Only where the file's directory is below the data dir. */
			v->hist_file = depth >= 2 ? hist_file : HIST_FILE_NONE;
			return;
		}
	}
}

static __noinline void tls_learn_socket(struct pt_regs *regs, struct inflight *inf, int fd);
static __always_inline void tls_forget_fd(__u32 tgid, int fd);

static __always_inline int on_enter(struct pt_regs *regs, __u32 call, int fd, __u64 buf,
				    __u64 requested, __u64 offset)
{
	if (!is_traced_pid(bpf_get_current_pid_tgid() >> 32))
		return 0;
	struct inflight *inf = bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0,
						    BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!inf)
		return 0;
	if (trace_tls && inf->tls_conn && (call == ET_READ || call == ET_WRITE))
		tls_learn_socket(regs, inf, fd);
	inf->enter_ns = bpf_ktime_get_ns();
	inf->buf = buf;
	inf->requested = requested;
	inf->offset = offset;
	inf->fd = fd;
	inf->call = call;
	inf->active = 1;
	return 0;
}

/* What the fd of a traced process is (kind 0: not traced), from the cache while the fd
 * still points to the same struct file; *first is set when this call classified it. */
static __always_inline int fd_verdict(struct file *f, __u32 tgid, int pid_index, int fd,
				      struct fd_verdict *out, int *first)
{
	struct fd_key key = { .tgid = tgid, .fd = fd };
	struct fd_verdict *slot = fd_slot(pid_index, fd);
	struct fd_verdict *known = slot ? slot : bpf_map_lookup_elem(&fd_verdicts, &key);
	if (known && known->file == (__u64)f) {
		*out = *known;
		*first = 0;
		return out->kind;
	}
	*first = 1;
	struct fd_verdict v = { .file = (__u64)f };
	classify(f, &v);
	if (slot) {
		/* The file last: a reader that sees it sees the verdict that goes with it
		 * (threads of one process see the same file behind an fd, so two writers
		 * write the same). */
		slot->kind = v.kind;
		slot->depth = v.depth;
		slot->lport = v.lport;
		slot->rport = v.rport;
		slot->hist_dir = v.hist_dir;
		slot->hist_file = v.hist_file;
		barrier();
		slot->file = v.file;
	} else {
		bpf_map_update_elem(&fd_verdicts, &key, &v, BPF_ANY);
	}
	*out = v;
	return v.kind;
}

/* The fixed part of a syscall event, before the path names. */
static __always_inline void fill_syscall_head(struct et_syscall *ev, struct inflight *inf,
					      struct fd_verdict *v, __u64 offset, __u64 id,
					      long ret, __u64 exit_ns)
{
	ev->type = ET_SYSCALL;
	ev->call = inf->call;
	ev->enter_ns = inf->enter_ns;
	ev->exit_ns = exit_ns;
	ev->pid = id >> 32;
	ev->tid = (__u32)id;
	ev->fd = inf->fd;
	ev->file_kind = v->kind;
	ev->depth = v->depth;
	ev->_pad0 = 0;
	ev->ret = ret;
	ev->offset = offset;
	ev->requested = inf->requested;
	ev->lport = v->lport;
	ev->rport = v->rport;
}

/* Where a data-file call without an explicit offset started: the file position has
 * already moved past the bytes read or written. */
static __always_inline __u64 start_offset(struct file *f, __u32 call, long ret)
{
	if (call == ET_FSYNC || call == ET_FDATASYNC)
		return ET_OFFSET_UNKNOWN;
	__s64 pos = BPF_CORE_READ(f, f_pos);
	if (ret > 0)
		pos -= ret;
	return pos < 0 ? ET_OFFSET_UNKNOWN : (__u64)pos;
}

/* The rest of a WAL write whose first ET_MAX_DATA bytes its et_syscall carried. */
struct more_emit {
	void *ctx;
	__u64 buf;
	__u64 len; /* bytes to send in all, the et_syscall's included */
	__u64 enter_ns;
	__u32 tid;
};

#define MORE_MAX_CHUNKS (ET_MAX_WAL_WRITE / ET_MAX_DATA)

static long emit_more_chunk(__u32 i, struct more_emit *e)
{
	__u64 done = (__u64)(i + 1) * ET_MAX_DATA;
	if (done >= e->len)
		return 1;
	__u64 n = e->len - done;
	if (n > ET_MAX_DATA)
		n = ET_MAX_DATA;
	/* A part lost (counted) ends the write's data there: those after could not be
	 * placed. */
	struct stage *st = stage_take(STAGE_SYSCALLS);
	if (!st)
		return 1;
	struct et_syscall_more *ev = stage_next(st);
	ev->type = ET_SYSCALL_MORE;
	ev->tid = e->tid;
	ev->enter_ns = e->enter_ns;
	ev->at = done;
	n = BOUNDED(n - 1, ET_MAX_DATA - 1) + 1;
	if (bpf_probe_read_user((__u8 *)ev + sizeof(*ev), n, (void *)(e->buf + done)))
		n = 0;
	ev->data_len = n;
	stage_put(e->ctx, st, sizeof(*ev) + n);
	return n ? 0 : 1;
}

static __always_inline int on_exit(void *ctx, __u32 call, long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	int pid_index = traced_pid_index(id >> 32);
	if (pid_index < 0)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct inflight *inf = bpf_task_storage_get(&inflight, task, 0, 0);
	if (!inf || !inf->active)
		return 0;
	inf->active = 0;
	/* An enter seen without its exit (attached in between) is not this call's. */
	if (inf->call != call)
		return 0;
	if (call == ET_READ && ret == -EAGAIN) {
		count(COUNTER_EMPTY_READS);
		return 0;
	}
	struct file *f = fd_file(task, inf->fd);
	if (!f)
		return 0;
	struct fd_verdict v;
	int first;
	__u8 kind = fd_verdict(f, id >> 32, pid_index, inf->fd, &v, &first);
	if (!kind)
		return 0;
	/* One time for the histogram and the event: a test checks the one against the
	 * other. */
	__u64 exit_ns = bpf_ktime_get_ns();
	if (kind == ET_FILE_DATA && v.hist_file)
		hist_add(&v, call, exit_ns - inf->enter_ns);
	if (!emit_syscalls)
		return 0;
	if (kind == ET_FILE_SOCKET && !first && !every_socket_syscall)
		return 0;
	__u64 offset = inf->offset;
	if (offset == ET_OFFSET_UNKNOWN && kind == ET_FILE_DATA)
		offset = start_offset(f, call, ret);

	struct stage *st = stage_take(STAGE_SYSCALLS);
	if (!st)
		return 0;
	struct et_syscall *ev = stage_next(st);
	fill_syscall_head(ev, inf, &v, offset, id, ret, exit_ns);
	if (kind == ET_FILE_SOCKET && !socket_data_limit) {
		/* The common event, sizes and times of a socket read or write: no names, no
		 * data. */
		ev->data_len = 0;
		stage_put(ctx, st, ET_SYSCALL_NAMES_OFFSET);
		return 0;
	}

	__u32 depth = v.depth;
	if (depth > ET_PATH_DEPTH)
		depth = ET_PATH_DEPTH;
	struct dentry *d = depth ? BPF_CORE_READ(f, f_path.dentry) : NULL;
#pragma unroll
	for (int i = 0; i < ET_PATH_DEPTH; i++) {
		ev->names[i][0] = 0;
		if (i < depth) {
			const unsigned char *name = BPF_CORE_READ(d, d_name.name);
			bpf_probe_read_kernel_str(ev->names[i], ET_NAME_LEN, name);
			d = BPF_CORE_READ(d, d_parent);
		}
	}

	/* The buffer's first bytes: what was written, or what a read returned. */
	__u64 n = 0;
	__u64 src = inf->buf;
	if (ret > 0 && call != ET_FSYNC && call != ET_FDATASYNC) {
		n = ret;
		if (call == ET_WRITEV) {
			struct iovec iov = {};
			bpf_probe_read_user(&iov, sizeof(iov), (void *)src);
			src = (__u64)iov.iov_base;
			if (n > iov.iov_len)
				n = iov.iov_len;
		}
		__u64 limit = other_file_data_limit;
		if (kind == ET_FILE_SOCKET)
			limit = socket_data_limit;
		else if (depth >= 2 && ev->names[1][0] == 'w' && ev->names[1][1] == 'a' &&
			 ev->names[1][2] == 'l' && ev->names[1][3] == 0)
			limit = file_data_limit; /* the file's directory is wal/ */
		if (n > limit)
			n = limit;
	}
	/* All of a long WAL write: what this event cannot carry follows it. */
	struct more_emit more = {};
	if (n > ET_MAX_DATA && (call == ET_WRITE || call == ET_PWRITE64)) {
		more.ctx = ctx;
		more.buf = src;
		more.len = n;
		more.enter_ns = inf->enter_ns;
		more.tid = (__u32)id;
	}
	if (n > ET_MAX_DATA)
		n = ET_MAX_DATA;
	/* Only the names in use are sent; the data follows them. */
	__u64 head = ET_SYSCALL_NAMES_OFFSET + BOUNDED(depth, 7) * ET_NAME_LEN;
	if (head > sizeof(*ev))
		head = sizeof(*ev);
	if (n > 0) {
		n = BOUNDED(n - 1, ET_MAX_DATA - 1) + 1;
		if (bpf_probe_read_user((__u8 *)ev + head, n, (void *)src))
			n = 0;
	}
	ev->data_len = n;
	stage_put(ctx, st, head + n);
	if (more.len && n == ET_MAX_DATA)
		bpf_loop(MORE_MAX_CHUNKS, emit_more_chunk, &more, 0);
	return 0;
}

static __always_inline __u64 iov_total(__u64 iov_ptr, __u64 iovcnt)
{
	__u64 total = 0;
#pragma unroll
	for (int i = 0; i < MAX_IOV; i++) {
		if (i >= iovcnt)
			break;
		struct iovec iov = {};
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(iov_ptr + i * sizeof(iov))))
			break;
		total += iov.iov_len;
	}
	return total;
}

/* An fd that is closed or replaced may point to another file next time: forget what
 * classify() said about it. */
static __always_inline int forget_fd(int fd)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	int pid_index = traced_pid_index(tgid);
	if (pid_index < 0)
		return 0;
	if (trace_tls)
		tls_forget_fd(tgid, fd);
	struct fd_verdict *slot = fd_slot(pid_index, fd);
	if (slot) {
		slot->file = 0;
		return 0;
	}
	struct fd_key key = { .tgid = tgid, .fd = fd };
	bpf_map_delete_elem(&fd_verdicts, &key);
	return 0;
}

/* One program for every syscall's entry and one for its exit, on the raw tracepoints:
 * the per-syscall tracepoints would each first build a perf record of the arguments,
 * which cost more than the programs themselves. A syscall we do not trace costs a switch
 * on its number. */
SEC("tp_btf/sys_enter")
int sys_enter(__u64 *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx[0];
	long nr = (long)ctx[1];

	switch (nr) {
	case NR_write:
		return on_enter(regs, ET_WRITE, SYSCALL_ARG0(regs), SYSCALL_ARG1(regs),
				SYSCALL_ARG2(regs), ET_OFFSET_UNKNOWN);
	case NR_read:
		return on_enter(regs, ET_READ, SYSCALL_ARG0(regs), SYSCALL_ARG1(regs),
				SYSCALL_ARG2(regs), ET_OFFSET_UNKNOWN);
	case NR_writev:
		/* The pid first: iov_total reads the caller's iovecs, and most writevs on
		 * the machine are not etcd's. */
		if (!is_traced_pid(bpf_get_current_pid_tgid() >> 32))
			return 0;
		return on_enter(regs, ET_WRITEV, SYSCALL_ARG0(regs), SYSCALL_ARG1(regs),
				iov_total(SYSCALL_ARG1(regs), SYSCALL_ARG2(regs)),
				ET_OFFSET_UNKNOWN);
	case NR_pwrite64:
		return on_enter(regs, ET_PWRITE64, SYSCALL_ARG0(regs), SYSCALL_ARG1(regs),
				SYSCALL_ARG2(regs), SYSCALL_ARG3(regs));
	case NR_pread64:
		return on_enter(regs, ET_PREAD64, SYSCALL_ARG0(regs), SYSCALL_ARG1(regs),
				SYSCALL_ARG2(regs), SYSCALL_ARG3(regs));
	case NR_fsync:
		return on_enter(regs, ET_FSYNC, SYSCALL_ARG0(regs), 0, 0, ET_OFFSET_UNKNOWN);
	case NR_fdatasync:
		return on_enter(regs, ET_FDATASYNC, SYSCALL_ARG0(regs), 0, 0, ET_OFFSET_UNKNOWN);
	case NR_close:
		return forget_fd(SYSCALL_ARG0(regs));
	case NR_dup2:
	case NR_dup3:
		return forget_fd(SYSCALL_ARG1(regs));
	}
	return 0;
}

SEC("tp_btf/sys_exit")
int sys_exit(__u64 *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx[0];
	long ret = (long)ctx[1];
	__u32 call;

	switch (SYSCALL_NR(regs)) {
	case NR_write:
		call = ET_WRITE;
		break;
	case NR_read:
		call = ET_READ;
		break;
	case NR_writev:
		call = ET_WRITEV;
		break;
	case NR_pwrite64:
		call = ET_PWRITE64;
		break;
	case NR_pread64:
		call = ET_PREAD64;
		break;
	case NR_fsync:
		call = ET_FSYNC;
		break;
	case NR_fdatasync:
		call = ET_FDATASYNC;
		break;
	default:
		return 0;
	}
	return on_exit(ctx, call, ret);
}

/* ---------------------------------------------------------------- etcd processes */

/* A process event, on its own, straight to this CPU's ring (or the perf buffer),
 * waking the reader: these are rare, and a new etcd's TLS must be probed before it
 * serves. */
static __always_inline void process_event(void *ctx, __u32 tgid, __u8 change, __s32 exit_code)
{
	struct et_process ev = {
		.type = ET_PROCESS,
		.pid = tgid,
		.ts_ns = bpf_ktime_get_ns(),
		.change = change,
		.exit_code = exit_code,
	};
	long err;
	if (use_ringbuf) {
		void *ring = ring_of_this_cpu();
		err = ring ? bpf_ringbuf_output(ring, &ev, sizeof(ev), BPF_RB_FORCE_WAKEUP) : -1;
	} else {
		err = bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU, &ev, sizeof(ev));
	}
	count(err ? COUNTER_LOST : COUNTER_SENT);
}

/* traced_pid_count is at least n. Each failed swap means another program raised it, which
 * happens at most MAX_TRACED times: this many tries always succeed. */
static __always_inline void raise_traced_pid_count(__u64 n)
{
#pragma unroll
	for (int i = 0; i <= MAX_TRACED; i++) {
		__u64 now = traced_pid_count;
		if (now >= n || __sync_val_compare_and_swap(&traced_pid_count, now, n) == now)
			return;
	}
}

static long clear_fd_slot(__u32 i, __u32 *first)
{
	__u32 idx = *first + i;
	struct fd_verdict *slot = bpf_map_lookup_elem(&fd_slots, &idx);
	if (slot)
		slot->file = 0;
	return 0;
}

/* Forget what the place's last process had in its fd slots. */
static __always_inline void clear_fd_slots(int place)
{
	if (place < 0 || place >= MAX_TRACED)
		return;
	__u32 first = (__u32)place * FD_SLOTS;
	bpf_loop(FD_SLOTS, clear_fd_slot, &first, 0);
}

/* The lowest free place for tgid, or -1 when all are taken. */
static __always_inline int take_place(__u32 tgid)
{
#pragma unroll
	for (int i = 0; i < MAX_TRACED; i++) {
		if (__sync_val_compare_and_swap(&traced_pid_list[i], 0, (__u64)tgid) == 0) {
			raise_traced_pid_count(i + 1);
			return i;
		}
	}
	return -1;
}

/* The process's name after exec (the new binary's file name) is etcd. */
static __always_inline bool is_etcd(struct task_struct *p)
{
	return p->comm[0] == 'e' && p->comm[1] == 't' && p->comm[2] == 'c' && p->comm[3] == 'd' &&
	       p->comm[4] == 0;
}

/* With follow_exec: a process that execs etcd is traced from here on, before it makes a
 * system call as etcd (its WAL reads at startup, its first writes). One that was traced
 * already (etcd exec'd again) keeps its place; its fds are looked at anew. */
SEC("tp_btf/sched_process_exec")
int process_exec(__u64 *ctx)
{
	struct task_struct *p = (struct task_struct *)ctx[0];
	if (!follow_exec || !is_etcd(p))
		return 0;
	__u32 tgid = p->tgid;
	if (!tgid)
		return 0;
	int place = traced_pid_index(tgid);
	if (place < 0)
		place = take_place(tgid);
	if (place < 0) {
		process_event(ctx, tgid, ET_PROCESS_UNTRACED, 0);
		return 0;
	}
	/* The process runs no other thread while it execs: nothing uses its slots now. */
	clear_fd_slots(place);
	process_event(ctx, tgid, ET_PROCESS_START, 0);
	return 0;
}

/* A traced process ends when its last thread exits (signal->live reaches 0 before this
 * tracepoint; two threads may both see it, the swap picks one): its place is freed and
 * its exit code or killing signal reported. */
SEC("tp_btf/sched_process_exit")
int process_exit(__u64 *ctx)
{
	struct task_struct *p = (struct task_struct *)ctx[0];
	__u32 tgid = p->tgid;
	int place = traced_pid_index(tgid);
	if (place < 0 || place >= MAX_TRACED)
		return 0;
	if (p->signal->live.counter != 0)
		return 0;
	if (__sync_val_compare_and_swap(&traced_pid_list[place], (__u64)tgid, 0) != tgid)
		return 0;
	process_event(ctx, tgid, ET_PROCESS_EXIT, p->exit_code);
	return 0;
}

/* Userspace runs this (BPF_PROG_TEST_RUN, the pid in args[0]) for an etcd that started
 * after it looked for them but before process_exec was attached: the process takes a
 * place, as at an exec. Returns 1 when it does, 0 when it had one, 2 when all are
 * taken. */
SEC("raw_tp")
int trace_pid(__u64 *ctx)
{
	__u32 tgid = (__u32)ctx[0];
	if (!tgid || traced_pid_index(tgid) >= 0)
		return 0;
	int place = take_place(tgid);
	if (place < 0)
		return 2;
	clear_fd_slots(place);
	return 1;
}

/* Userspace runs this (BPF_PROG_TEST_RUN, the pid in args[0]) for a process it will not
 * trace (its data dir is not the one asked for): the process's place is freed. Returns 1
 * when it was traced. */
SEC("raw_tp")
int untrace_pid(__u64 *ctx)
{
	__u32 tgid = (__u32)ctx[0];
	int place = traced_pid_index(tgid);
	if (!tgid || place < 0 || place >= MAX_TRACED)
		return 0;
	return __sync_val_compare_and_swap(&traced_pid_list[place], (__u64)tgid, 0) == tgid;
}

/* ---------------------------------------------------------------- TLS plaintext */

/* Go's crypto/tls: uprobes at the entry of (*Conn).Write (the plaintext is in its
 * arguments), and at the entry of (*Conn).Read and where it copies the plaintext into
 * the caller's buffer (its one call to runtime.memmove: destination RAX, source RBX,
 * length RCX), or, where Read has no such call, at every RET (the result n in RAX;
 * uretprobes break Go, which moves goroutine stacks). Go's register ABI: receiver c in
 * RAX, the slice b in RBX (pointer) and RCX (length), the goroutine in R14. A Read is
 * keyed by its goroutine from entry to copy, since a goroutine may move to another
 * thread when it blocks. Userspace finds the addresses (record/go_binary) and
 * attaches per traced process, on instructions the kernel emulates (a jump, a call)
 * where it can: any other costs a second trap. */

struct tls_conn_key {
	__u64 conn; /* the *tls.Conn: Go's heap objects do not move */
	__u32 tgid;
	__u32 _pad;
};

/* What the programs know of one tls.Conn. */
struct tls_conn {
	__u64 id;      /* numbered from 1; a new number when the pointer is reused */
	__u64 sk;      /* the struct sock it was seen on; 0 while not known */
	__u64 next[2]; /* the next byte's offset, per direction (enum et_direction) */
	__u8 family;   /* 0 while not known */
	__u8 ignore;   /* a socket on no traced port (a TLS metrics listener, say) */
	__u16 lport;
	__u16 rport;
	__u16 _pad;
	__u8 laddr[16];
	__u8 raddr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tls_conn_key);
	__type(value, struct tls_conn);
} tls_conns SEC(".maps");

/* The connection on each socket fd, so that closing the fd forgets the connection: a
 * tls.Conn allocated later at the same address is a new one, even before its socket is
 * learned (a client's first Write does the handshake, after the probe). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fd_key);
	__type(value, __u64);
} tls_fds SEC(".maps");

struct tls_call_key {
	__u64 g;
	__u32 tgid;
	__u32 _pad;
};

struct tls_read {
	__u64 conn;
	__u64 buf;
};

/* Reads between their entry and return, by goroutine: one per connection idle in a
 * Read, so room for many. A Read whose entry was not seen (it began before the probes
 * were attached) is not reported. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tls_call_key);
	__type(value, struct tls_read);
} tls_reads SEC(".maps");

/* [0]: the last connection number given out. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} tls_conn_ids SEC(".maps");

static __always_inline __u64 tls_new_conn_id(void)
{
	__u32 zero = 0;
	__u64 *last = bpf_map_lookup_elem(&tls_conn_ids, &zero);
	return last ? __sync_fetch_and_add(last, 1) + 1 : 0;
}

static __always_inline struct tls_conn *tls_conn_of(__u32 tgid, __u64 conn)
{
	struct tls_conn_key key = { .conn = conn, .tgid = tgid };
	struct tls_conn *c = bpf_map_lookup_elem(&tls_conns, &key);
	if (c)
		return c;
	struct tls_conn fresh = { .id = tls_new_conn_id() };
	bpf_map_update_elem(&tls_conns, &key, &fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(&tls_conns, &key);
}

/* The thread runs a Read or Write of goroutine g on conn: its next read or write
 * syscall from g names the socket. */
static __always_inline void tls_note_call(__u64 g, __u64 conn)
{
	struct inflight *inf = bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0,
						    BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!inf)
		return;
	inf->tls_g = g;
	inf->tls_conn = conn;
}

static __always_inline void tls_forget_fd(__u32 tgid, int fd)
{
	struct fd_key key = { .tgid = tgid, .fd = fd };
	__u64 *conn = bpf_map_lookup_elem(&tls_fds, &key);
	if (!conn)
		return;
	struct tls_conn_key ck = { .conn = *conn, .tgid = tgid };
	bpf_map_delete_elem(&tls_conns, &ck);
	bpf_map_delete_elem(&tls_fds, &key);
}

/* A read or write syscall of the goroutine inside a Read or Write: its fd is the
 * connection's socket (the syscall stubs leave R14 alone, so it still names g). */
static __noinline void tls_learn_socket(struct pt_regs *regs, struct inflight *inf, int fd)
{
	if (inf->tls_g != GO_G(regs))
		return;
	__u64 conn = inf->tls_conn;
	inf->tls_conn = 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct tls_conn_key key = { .conn = conn, .tgid = tgid };
	struct tls_conn *c = bpf_map_lookup_elem(&tls_conns, &key);
	if (!c)
		return;
	struct file *f = fd_file(bpf_get_current_task_btf(), fd);
	if (!f)
		return;
	struct inode *inode = BPF_CORE_READ(f, f_inode);
	if ((BPF_CORE_READ(inode, i_mode) & S_IFMT) != S_IFSOCK)
		return;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if ((__u64)sk == c->sk)
		return;
	unsigned short family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return;
	if (c->sk) {
		/* Another socket behind the same pointer: a new connection. */
		c->id = tls_new_conn_id();
		c->next[0] = 0;
		c->next[1] = 0;
	}
	c->sk = (__u64)sk;
	c->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	c->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	c->ignore = !is_traced_port(c->lport) && !is_traced_port(c->rport);
	if (family == AF_INET) {
		__be32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__be32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(c->laddr, &l, 4);
		__builtin_memcpy(c->raddr, &r, 4);
		c->family = 4;
	} else {
		bpf_core_read(c->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(c->raddr, 16, &sk->__sk_common.skc_v6_daddr);
		c->family = 6;
	}
	struct fd_key fk = { .tgid = tgid, .fd = fd };
	bpf_map_update_elem(&tls_fds, &fk, &conn, BPF_ANY);
}

/* A Read's or Write's plaintext, cut into events of at most ET_TLS_CHUNK bytes. */
struct tls_emit {
	void *ctx;
	struct tls_conn *conn;
	__u64 buf;
	__u64 len;
	__u64 offset; /* of buf's first byte */
	__u64 ts_ns;
	__u64 id;     /* pid_tgid */
	__u8 direction;
};

/* Calls longer than this many chunks (64 MiB) are cut: the reader sees the rest as a
 * gap, from the offsets. */
#define TLS_MAX_CHUNKS 4096

static long tls_emit_chunk(__u32 i, struct tls_emit *e)
{
	__u64 done = (__u64)i * ET_TLS_CHUNK;
	if (done >= e->len)
		return 1;
	__u64 n = e->len - done;
	if (n > ET_TLS_CHUNK)
		n = ET_TLS_CHUNK;
	struct stage *st = stage_take(STAGE_SYSCALLS);
	if (!st)
		return 0;
	struct et_tls *ev = stage_next(st);
	struct tls_conn *c = e->conn;
	ev->type = ET_TLS;
	ev->pid = e->id >> 32;
	ev->ts_ns = e->ts_ns;
	ev->conn_id = c->id;
	ev->offset = e->offset + done;
	ev->tid = (__u32)e->id;
	ev->len = n;
	ev->direction = e->direction;
	ev->family = c->family;
	ev->lport = c->lport;
	ev->rport = c->rport;
	ev->_pad0 = 0;
	ev->_pad1 = 0;
	__builtin_memcpy(ev->laddr, c->laddr, 16);
	__builtin_memcpy(ev->raddr, c->raddr, 16);
	n = BOUNDED(n - 1, ET_TLS_CHUNK - 1) + 1;
	if (bpf_probe_read_user((__u8 *)ev + sizeof(*ev), n, (void *)(e->buf + done)))
		n = 0;
	ev->data_len = n;
	stage_put(e->ctx, st, sizeof(*ev) + n);
	return 0;
}

static __always_inline void tls_emit(void *ctx, __u64 conn, __u8 direction, __u64 buf,
				     __u64 len)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_conn *c = tls_conn_of(id >> 32, conn);
	if (!c || c->ignore || !len)
		return;
	struct tls_emit e = {
		.ctx = ctx,
		.conn = c,
		.buf = buf,
		.len = len,
		.offset = __sync_fetch_and_add(&c->next[direction & 1], len),
		.ts_ns = bpf_ktime_get_ns(),
		.id = id,
		.direction = direction,
	};
	__u64 chunks = (len + ET_TLS_CHUNK - 1) / ET_TLS_CHUNK;
	if (chunks > TLS_MAX_CHUNKS)
		chunks = TLS_MAX_CHUNKS;
	bpf_loop(chunks, tls_emit_chunk, &e, 0);
}

SEC("uprobe")
int tls_write_enter(struct pt_regs *ctx)
{
	if (!is_traced_pid(bpf_get_current_pid_tgid() >> 32))
		return 0;
	__u64 conn = GO_ARG0(ctx);
	tls_note_call(GO_G(ctx), conn);
	tls_emit(ctx, conn, ET_EGRESS, GO_ARG1(ctx), GO_ARG2(ctx));
	return 0;
}


SEC("uprobe")
int tls_read_enter(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!is_traced_pid(tgid))
		return 0;
	struct tls_call_key key = { .g = GO_G(ctx), .tgid = tgid };
	struct tls_read r = { .conn = GO_ARG0(ctx), .buf = GO_ARG1(ctx) };
	tls_note_call(key.g, r.conn);
	bpf_map_update_elem(&tls_reads, &key, &r, BPF_ANY);
	return 0;
}

/* The Read of this goroutine, taken out of the map; its note cleared. */
static __always_inline int tls_read_done(struct pt_regs *ctx, struct tls_read *out)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct tls_call_key key = { .g = GO_G(ctx), .tgid = tgid };
	struct tls_read *r = bpf_map_lookup_elem(&tls_reads, &key);
	if (!r)
		return -1;
	*out = *r;
	bpf_map_delete_elem(&tls_reads, &key);
	struct inflight *inf = bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0, 0);
	if (inf && inf->tls_g == key.g)
		inf->tls_conn = 0;
	return 0;
}

/* At Read's copy into the caller's buffer: the plaintext is at the source. */
SEC("uprobe")
int tls_read_copy(struct pt_regs *ctx)
{
	struct tls_read read;
	if (tls_read_done(ctx, &read))
		return 0;
	__u64 n = GO_ARG2(ctx);
	if (n > 0)
		tls_emit(ctx, read.conn, ET_INGRESS, GO_ARG1(ctx), n);
	return 0;
}

/* At each RET of a Read without a copy to probe: the plaintext is in the buffer. */
SEC("uprobe")
int tls_read_return(struct pt_regs *ctx)
{
	struct tls_read read;
	if (tls_read_done(ctx, &read))
		return 0;
	long n = (long)GO_RESULT0(ctx);
	if (n > 0)
		tls_emit(ctx, read.conn, ET_INGRESS, read.buf, n);
	return 0;
}

/* Userspace runs this on each CPU before it sends a batch to the writer
 * (BPF_PROG_TEST_RUN with BPF_F_TEST_RUN_ON_CPU, so in an interrupt on that CPU): it
 * hands over what the CPU's staging areas hold, so no event waits for a batch to fill.
 * Returns 1 when the interrupted program was adding an event (it may hold the ring's
 * lock): ask again. */
SEC("raw_tp")
int flush_stages(void *ctx)
{
	if (!use_ringbuf) /* nothing is staged for the perf buffer */
		return 0;
	__u32 idx = bpf_get_smp_processor_id() * 2;
	struct stage *sys = bpf_map_lookup_elem(&stages, &idx);
	idx += 1;
	struct stage *pkt = bpf_map_lookup_elem(&stages, &idx);
	if (!sys || !pkt)
		return 0;
	if (sys->busy || pkt->busy)
		return 1;
	stage_hand_over(sys);
	stage_hand_over(pkt);
	return 0;
}
