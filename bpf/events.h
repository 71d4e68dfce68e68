/* The kernel -> userspace event layout. This header is the one place that fixes it:
 * the eBPF programs fill these structs and src/record/layout.rs parses them by the same
 * offsets (a test there checks the sizes). Every event starts with a __u32 type.
 * Variable-length data follows the fixed part; only the bytes captured are sent.
 * Through the ring buffers, events come in batches (struct et_batch), but for process
 * events; through the perf buffer, one by one. */
#ifndef ETCD_TRACE_EVENTS_H
#define ETCD_TRACE_EVENTS_H

#define ET_MAX_SNAPLEN 65535      /* largest TCP payload prefix a packet event carries */
#define ET_MAX_DATA 65536         /* largest buffer prefix a syscall event carries; a WAL
				   * write longer than this goes on in et_syscall_more events */
#define ET_MAX_WAL_WRITE (4 << 20) /* the most of one WAL write kept (--file-data) */
#define ET_PATH_DEPTH 4           /* path components kept below the data dir */
#define ET_NAME_LEN 64            /* bytes per path component, NUL included */
#define ET_TLS_CHUNK 16384        /* plaintext bytes per TLS event at most: a larger
				   * Read or Write gives several events */

enum et_event_type {
	ET_PACKET = 1,
	ET_SYSCALL = 2,
	ET_BATCH = 3,
	ET_TLS = 4,
	ET_PROCESS = 5,
	ET_SYSCALL_MORE = 6,
};

enum et_direction {
	ET_INGRESS = 0,
	ET_EGRESS = 1,
};

enum et_call {
	ET_WRITE = 0,
	ET_PWRITE64 = 1,
	ET_WRITEV = 2,
	ET_READ = 3,
	ET_PREAD64 = 4,
	ET_FSYNC = 5,
	ET_FDATASYNC = 6,
};

enum et_file_kind {
	ET_FILE_DATA = 1,   /* a regular file below a traced data dir */
	ET_FILE_SOCKET = 2, /* a TCP socket with a traced local or peer port */
};

#define ET_OFFSET_UNKNOWN ((__u64)-1)

/* 80 bytes, then captured_len payload bytes. */
struct et_packet {
	__u32 type;        /* ET_PACKET */
	__u32 ifindex;
	__u64 ts_ns;       /* CLOCK_MONOTONIC */
	__u8 direction;    /* enum et_direction */
	__u8 family;       /* 4 or 6 */
	__u8 tcp_flags;
	__u8 _pad0;
	__u16 sport;       /* host byte order */
	__u16 dport;
	__u32 seq;         /* host byte order */
	__u32 ack;
	__u16 window;
	__u16 _pad1;
	__u32 payload_len; /* TCP payload length on the wire */
	__u32 captured_len;
	__u8 saddr[16];    /* IPv4 uses the first 4 bytes */
	__u8 daddr[16];
	__u32 _pad2;
};

/* 328 bytes at most: the first `depth` names are sent, then data_len buffer bytes
 * (at ET_SYSCALL_NAMES_OFFSET + depth * ET_NAME_LEN). */
#define ET_SYSCALL_NAMES_OFFSET 72
struct et_syscall {
	__u32 type;        /* ET_SYSCALL */
	__u32 call;        /* enum et_call */
	__u64 enter_ns;
	__u64 exit_ns;
	__u32 pid;         /* tgid */
	__u32 tid;
	__s32 fd;
	__u8 file_kind;    /* enum et_file_kind */
	__u8 depth;        /* components in names[], names[0] is the file itself */
	__u16 _pad0;
	__s64 ret;
	__u64 offset;      /* ET_OFFSET_UNKNOWN when not known */
	__u64 requested;
	__u16 lport;       /* sockets only, host byte order */
	__u16 rport;
	__u32 data_len;
	char names[ET_PATH_DEPTH][ET_NAME_LEN];
};

/* 88 bytes, then data_len plaintext bytes. What a traced etcd process wrote to
 * (ET_EGRESS, at the entry of Go's crypto/tls.(*Conn).Write) or read from (ET_INGRESS, at
 * the return of (*Conn).Read) one TLS connection. Each direction of a connection is a
 * byte stream numbered from its first byte seen: `offset` places the chunk in it, so the
 * reader can tell what is missing. The socket is learned from the first socket syscall
 * made inside a Read or Write: events before that (a client's first Write, which does
 * the handshake) have family 0, and the reader takes the addresses from a later event
 * of the same conn_id. */
struct et_tls {
	__u32 type;        /* ET_TLS */
	__u32 pid;         /* tgid */
	__u64 ts_ns;       /* CLOCK_MONOTONIC */
	__u64 conn_id;     /* the connection, numbered from 1 by the programs */
	__u64 offset;      /* of data's first byte in this direction's plaintext */
	__u32 tid;
	__u32 len;         /* plaintext bytes this event stands for, at most ET_TLS_CHUNK */
	__u32 data_len;    /* bytes captured, which follow; fewer than len when the rest
			    * could not be read from etcd's memory */
	__u8 direction;    /* enum et_direction: ET_EGRESS etcd wrote, ET_INGRESS etcd read */
	__u8 family;       /* 4 or 6; 0 while the connection's socket is not known */
	__u16 lport;       /* host byte order */
	__u16 rport;
	__u16 _pad0;
	__u32 _pad1;
	__u8 laddr[16];    /* IPv4 uses the first 4 bytes */
	__u8 raddr[16];
};

/* 24 bytes, then data_len bytes: more of the buffer of a WAL write whose et_syscall
 * carried its first ET_MAX_DATA bytes. Sent right after it from the same CPU, in order,
 * each with the next ET_MAX_DATA bytes at most; userspace joins them to it (the same
 * tid and enter_ns, and `at` where its data ends). */
struct et_syscall_more {
	__u32 type;        /* ET_SYSCALL_MORE */
	__u32 tid;
	__u64 enter_ns;    /* the et_syscall's */
	__u32 at;          /* of data's first byte in the write's buffer */
	__u32 data_len;
};

enum et_process_change {
	ET_PROCESS_START = 0,    /* exec'd a binary named etcd, and is traced from now on */
	ET_PROCESS_EXIT = 1,     /* a traced process ended: its last thread exited */
	ET_PROCESS_UNTRACED = 2, /* exec'd etcd, but MAX_TRACED processes are traced already */
};

/* 24 bytes. A traced etcd process started or ended. Sent on its own, never in a batch:
 * userspace picks these out as they come, to look at a new process at once. */
struct et_process {
	__u32 type;        /* ET_PROCESS */
	__u32 pid;         /* tgid */
	__u64 ts_ns;       /* CLOCK_MONOTONIC */
	__u8 change;       /* enum et_process_change */
	__u8 _pad0;
	__u16 _pad1;
	__s32 exit_code;   /* ET_PROCESS_EXIT: the task's exit_code as wait(2) reports it (the
			    * killing signal in bits 0-6, else the exit status in bits 8-15) */
};

/* 16 bytes, then `len` bytes holding `count` events, each starting 8-byte aligned (its
 * length follows from its own header: et_packet's captured_len, et_syscall's depth and
 * data_len, et_tls's and et_syscall_more's data_len). */
struct et_batch {
	__u32 type;        /* ET_BATCH */
	__u32 count;
	__u32 len;
	__u32 stage;       /* 2 * cpu + 0 (syscalls) or 1 (packets): one area's batches hold
			    * its events in time order */
};

/* Latency histograms, kept in the kernel for the whole recording (a per-CPU array map,
 * not events): the syscall exit program counts every fsync, fdatasync and write of the
 * traced processes on the WAL and the backend database, whether its event is sent, lost
 * or not sent at all (--no-syscalls). One histogram per (data dir, kind), at index
 * dir * ET_HIST_KINDS + kind; the dir is the data dir's slot, given by userspace. Bucket
 * 0 counts durations below 2 ns, bucket i > 0 those in [2^i, 2^(i+1)) ns, and the last
 * bucket everything from 2^(ET_HIST_BUCKETS-1) ns (about 34 s) up. */
#define ET_HIST_BUCKETS 36
#define ET_HIST_DIRS 16           /* data dir slots (the programs' data_dirs map) */

enum et_hist_kind {
	ET_HIST_WAL_SYNC = 0,     /* fsync or fdatasync of a file in member/wal/ */
	ET_HIST_WAL_WRITE = 1,    /* write, pwrite64, writev to a file in member/wal/ */
	ET_HIST_DB_SYNC = 2,      /* fsync or fdatasync of member/snap/db (bbolt) */
	ET_HIST_DB_WRITE = 3,     /* write, pwrite64, writev to member/snap/db */
	ET_HIST_KINDS = 4,
};

/* 8 * (ET_HIST_BUCKETS + 1) bytes: one CPU's share of one histogram. */
struct et_hist {
	__u64 buckets[ET_HIST_BUCKETS];
	__u64 sum_ns;      /* of the durations counted */
};

#endif
