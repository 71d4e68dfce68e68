/* The few kernel types the programs read, declared for CO-RE: libbpf relocates each
 * field access against the running kernel's BTF, so only the fields we use are named
 * here and their offsets do not matter. Keeps the build free of a generated vmlinux.h. */
#ifndef ETCD_TRACE_VMLINUX_MIN_H
#define ETCD_TRACE_VMLINUX_MIN_H

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_ARRAY_OF_MAPS = 12,
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};

enum {
	BPF_F_NO_PREALLOC = 1,
};

enum {
	BPF_LOCAL_STORAGE_GET_F_CREATE = 1,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

enum {
	BPF_RB_AVAIL_DATA = 0,
};

#define BPF_F_CURRENT_CPU 0xffffffffULL

struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data; /* the linear part of the packet, for direct access */
	__u32 data_end;
	/* the remaining fields are not used */
};

/* The registers a syscall was entered with, as the raw syscall tracepoints pass them:
 * the arguments, and the syscall's number (still there at the exit). */
#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long r14; /* Go's current goroutine (g) in Go code */
	unsigned long bx;
	unsigned long r10;
	unsigned long r8;
	unsigned long r9;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long ax;
	unsigned long cx;
	unsigned long orig_ax;
} __attribute__((preserve_access_index));
/* Go's register ABI (Go >= 1.17) at a function's entry: the receiver and a slice
 * argument (pointer, length); at its RET, the first result. */
#define GO_ARG0(r) ((r)->ax)
#define GO_ARG1(r) ((r)->bx)
#define GO_ARG2(r) ((r)->cx)
#define GO_RESULT0(r) ((r)->ax)
#define GO_G(r) ((r)->r14)
#define SYSCALL_ARG0(r) ((r)->di)
#define SYSCALL_ARG1(r) ((r)->si)
#define SYSCALL_ARG2(r) ((r)->dx)
#define SYSCALL_ARG3(r) ((r)->r10)
#define SYSCALL_NR(r) ((long)(r)->orig_ax)
#define NR_read 0
#define NR_write 1
#define NR_close 3
#define NR_pread64 17
#define NR_pwrite64 18
#define NR_writev 20
#define NR_dup2 33
#define NR_fsync 74
#define NR_fdatasync 75
#define NR_dup3 292
#elif defined(__TARGET_ARCH_arm64)
struct pt_regs {
	__u64 regs[31];
	__u64 orig_x0;
	__s32 syscallno;
} __attribute__((preserve_access_index));
#define SYSCALL_ARG0(r) ((r)->orig_x0) /* x0 holds the return value by the exit */
#define SYSCALL_ARG1(r) ((r)->regs[1])
#define SYSCALL_ARG2(r) ((r)->regs[2])
#define SYSCALL_ARG3(r) ((r)->regs[3])
#define SYSCALL_NR(r) ((long)(r)->syscallno)
#define NR_dup3 24
#define NR_close 57
#define NR_read 63
#define NR_write 64
#define NR_writev 66
#define NR_pread64 67
#define NR_pwrite64 68
#define NR_fsync 82
#define NR_fdatasync 83
#define NR_dup2 (-1) /* none: dup3 only */
/* Go's register ABI on arm64 (x0-x7 arguments, x28 the goroutine); the recorder attaches
 * TLS probes on x86-64 only. */
#define GO_ARG0(r) ((r)->regs[0])
#define GO_ARG1(r) ((r)->regs[1])
#define GO_ARG2(r) ((r)->regs[2])
#define GO_RESULT0(r) ((r)->regs[0])
#define GO_G(r) ((r)->regs[28])
#else
#error "bpf/vmlinux_min.h: add this architecture's pt_regs and syscall numbers"
#endif

struct super_block {
	__u32 s_dev;
} __attribute__((preserve_access_index));

struct inode {
	unsigned short i_mode;
	unsigned long i_ino;
	struct super_block *i_sb;
} __attribute__((preserve_access_index));

struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
} __attribute__((preserve_access_index));

struct path {
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
	struct inode *f_inode;
	void *private_data;
	long long f_pos;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

typedef struct {
	int counter;
} atomic_t;

struct signal_struct {
	atomic_t live; /* threads not yet exiting */
} __attribute__((preserve_access_index));

struct task_struct {
	struct files_struct *files;
	int tgid;
	char comm[16];
	int exit_code;
	struct signal_struct *signal;
} __attribute__((preserve_access_index));

struct in6_addr {
	__u8 in6_u[16];
};

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct socket {
	struct sock *sk;
} __attribute__((preserve_access_index));

struct iovec {
	void *iov_base;
	unsigned long iov_len;
};

#endif
