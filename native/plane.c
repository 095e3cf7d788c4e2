/*
 * native/plane.c — Baton's native splice data plane (an optional N-API addon, plain C).
 *
 * JavaScript picks a backend and decides; the plane may accept the client (listen(), EV_ACCEPT) and
 * connect the server (connect(), EV_CONNECT) itself. Otherwise Node accepts or connects, and once
 * both sockets are connected, JavaScript hands the two descriptors to this addon: it dup()s them (F_DUPFD_CLOEXEC, O_NONBLOCK) and JavaScript destroys
 * its own net.Socket objects. Closing the original descriptor sends nothing on the wire: the socket
 * lives on through the duplicate (tests/native/plane.test.ts checks that no FIN goes out). From then
 * on bytes move kernel to kernel with splice(2), and JavaScript hears only about things that happen.
 *
 *   client fd ──splice──► [c2s pipe] ──splice──► server fd
 *                              │ tee(2) (no copy: the replay pipe takes references to the same pages)
 *                              ▼
 *                        [replay pipe]   the client bytes the server has not answered yet
 *
 *   client fd ◄──splice── [s2c pipe] ◄──splice── server fd
 *
 * Threads (HAProxy's nbthread): bytes move on "lanes", each with its own epoll instance
 * (level-triggered), pipe pool and copy buffer. Lane 0 has no thread: the main loop watches its
 * epoll descriptor with one uv_poll_t. Lanes 1..threads are plane threads. A session starts on
 * lane 0 and moves, once, to the least loaded plane thread when it goes bulk (a read of COPY_READ
 * bytes or more; migrate()): small request/response and short sessions stay on the main loop,
 * where a thread hop per event would cost more than it saves (measured: keep-alive 1 KiB and
 * connection churn spent 10-25% more CPU per request on threads), while bulk streams run in
 * parallel (several iperf3 streams: up to 1.6x the Gbit/s, a third less CPU per GiB). `threads:
 * 0` keeps every session on lane 0. The main thread (JavaScript) still accepts, connects,
 * decides failover and reads stats.
 *
 *   main thread (libuv)                                lane k (a uv_thread, or lane 0 on the main loop)
 *   ───────────────────                                ────────────────────────────────────────────────
 *   attach ──lock──► the session's descriptors into the lane's epoll (epoll_ctl is thread-safe);
 *                    the kernel wakes the lane when there is something to move
 *   replaceServer / shutdownClient / pause / resume / close ──lock──► state changed and the session
 *                    pumped right there, on the calling thread (what the lane would do next)
 *   stats / poolStats ──lock──► a consistent snapshot
 *   uv_async_t ◄── uv_async_send ◄── events queued by the lane (client-eof, server-eof, error, close)
 *   uv_idle_t  ◄── events queued by a call's own pump
 *     └─ napi_make_callback per event
 *
 * - One mutex per lane. The lane takes it per session it pumps (not per batch), so a JavaScript call
 *   waits for one session's pump at most. A call does its work itself under that lock instead of
 *   posting it to the lane: no eventfd, no thread hop per call (connection churn makes several per
 *   session: attach, a held FIN's shutdownClient, a move). The lane's eventfd only stops it or
 *   makes it free released sessions.
 * - Events go into the lane's queue, drained on the main thread by a uv_async_t, one callback each
 *   through napi_make_callback (callback scope, process.nextTick and microtasks after) inside a
 *   handle scope: so a listener never runs inside a call that made it, as before. The session
 *   table (ids) is the main thread's alone. Stats are read live, under the lock, when JavaScript
 *   asks (in an event: when it is delivered, not when it was queued; a server EOF or an error stops
 *   the reads that would change what they say about it).
 * - Lifetime: a session's memory is JavaScript's until it is released (its `close` event delivered,
 *   or close() called), so stats stay readable in the `close` event. A released session goes to its
 *   lane's grave: the lane frees it after the batch of epoll events in flight (which may still name
 *   it) is done; its descriptors left epoll (EPOLL_CTL_DEL, then close) when it closed, so no later
 *   batch can.
 * - An event of a server that a replaceServer has since replaced (server-eof, a server error) is
 *   dropped at delivery: that server is gone and JavaScript moved on (event_t.gen).
 * - A session closed by its lane whose `close` event is still queued: pause/resume/shutdownClient
 *   are no-ops, replaceServer throws ERR_NATIVE_PLANE_CLOSED (its close event follows), close()
 *   releases it (and the event is not delivered).
 * - Env teardown (process exit, a worker thread ending): the async cleanup hook stops and joins the
 *   lane threads, closes every session, pipe and descriptor, then closes the uv handles.
 *
 * One direction (c2s or s2c) is a loop over two steps, until EAGAIN or a budget per wake-up:
 *   flush  splice(pipe → out). EAGAIN: the out side is full — wait for it to become writable and stop
 *          reading the in side (backpressure: a full pipe means no reads).
 *   fill   only into an EMPTY pipe: splice(in → pipe). 0 is EOF. tee(2) duplicates from the head of
 *          the pipe and cannot skip, so filling an empty pipe is what lets the c2s direction tee
 *          exactly the new bytes. The s2c direction follows the same rule for symmetry.
 * That is bulk. A direction starts in copy mode instead: recv into the lane's scratch buffer
 * and send on at once (what the out side does not take waits in a malloc'd `buf`, and nothing more
 * is read until it has gone), the client's bytes recorded in memory (`rec`) rather than tee'd. A
 * read that fills COPY_READ switches to splice; a splice read under SPLICE_MIN switches back. For a
 * small request/response this saves the tee and the replay drop, and recv/send cost less than
 * splice (pump; docs/native-plane.md, "Small messages are copied").
 * Half-close: EOF on one side → shutdown(SHUT_WR) on the other once the pipe has drained. A server
 * EOF can be held (holdServerEof): JavaScript then decides (crash or close?) and calls
 * shutdownClient (pass the FIN on), replaceServer (fail over) or close.
 *
 * Replay (opaque turn-taking: a request is the client bytes since the server last spoke):
 *   - client bytes in: unanswered += n; if recording, tee them into the replay pipe (copy mode:
 *     append them to `rec` up to REC_HEAP_MAX; past it, or before a tee or a replaceServer, the
 *     record is written into the replay pipe once). The replay pipe
 *     is sized with F_SETPIPE_SZ to replayBytes. A pipe's capacity is counted in page slots and tee
 *     duplicates buffers one for one, so a request in many small segments runs out of slots before
 *     bytes: then the recorded bytes are repacked into whole pages with one copy (compact_replay)
 *     and the tee retried. A tee that would pass replayBytes, or that still does not fit, stops
 *     recording and empties the pipe: the session is not replayable until the server next speaks.
 *   - server bytes in: the request is answered (opaquely). The replay pipe is emptied (spliced into
 *     /dev/null: references dropped, nothing copied), recording restarts.
 *   - replaceServer(newFd): the old server fd is closed; the unsent rest in the c2s pipe is dropped
 *     (it is a suffix of the replay pipe); a fresh replay pipe of the same size gets a tee of the old
 *     one and the old one becomes the c2s pipe, so the bytes go to the new server AND stay recorded
 *     for another failover if the new server dies before answering too.
 *   Invariant while recording: replay pipe = the `unanswered` client bytes, and the c2s pipe holds a
 *   suffix of them — except right after the server spoke while the c2s pipe still held older bytes
 *   (unanswered is 0 then, the replay pipe empty, and those bytes are simply sent on).
 *
 * Pipes come from a bounded pool of idle pipes per lane (maxIdlePipes, shared out between the
 * lanes). A direction holds a pipe only while bytes are in it: an empty pipe goes back to the pool
 * at the end of every wake-up and is taken again on the next readable event (HAProxy's maxpipes
 * idea), so an idle session holds no pipe at all.
 *
 * Kept in JavaScript: accepting, balancing, connecting, timeouts (stats expose lastActivity, in ms
 * of CLOCK_MONOTONIC_COARSE), failover policy. See docs/native-plane.md.
 */
#define _GNU_SOURCE
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#define PLANE_VERSION "5"
#define SLOT_BITS 16777216.0 /* id = generation * 2^24 + slot */
#define MAX_SLOTS 16777215u
#define READS_PER_WAKE 16    /* fill steps per direction per wake-up (fairness between sessions) */
#define POOL_SCAN 16         /* idle pipes looked at for an exact capacity match */
#define SCRATCH 65536        /* the copy buffer (small reads, compact_replay), one per lane, on first use */
#define COPY_READ 16384      /* a read in copy mode; one that fills it switches the direction to splice */
#define SPLICE_MIN 4096      /* a splice read shorter than this switches the direction back to copy */
#define REC_HEAP_MAX 16384   /* a request recorded in memory up to this, in the replay pipe past it */
#define MAX_THREADS 64       /* plane threads at most (HAProxy's default MAX_THREADS) */
#define BATCH 64             /* epoll events per wake-up of a lane */
#define GRAVE_WAKE 64        /* released sessions that wake a lane to free them (else: its next wake-up) */
#define LANE_STACK (256 * 1024)
#define MAX_ACCEPT 64        /* accept() calls per readable event of a listening socket (HAProxy's maxaccept) */
#define FIRST_MAX 24         /* client bytes that tell a client-first handshake (classify_first) */
#define HIST_MAX 65536       /* a framed session's bytes since its last clean point, per side; past it: hand-off */
#define H1_MAX_PENDING 63    /* http1 requests in flight the plane follows; more: hand-off */

enum { CLIENT = 0, SERVER = 1, INTERNAL = 2 };
enum { S_ACTIVE = 0, S_SERVER_DOWN = 1, S_CLOSED = 2 };
enum { EV_CLIENT_EOF = 1, EV_SERVER_EOF = 2, EV_ERROR = 3, EV_CLOSE = 4, EV_CONNECT = 5, EV_ACCEPT = 6, EV_CLIENT_GONE = 7, EV_HANDOFF = 8 };
/* Why a framed session goes to JavaScript (EV_HANDOFF's `a`). */
enum { H_UNFOLLOWED = 1, H_SERVER_EOF = 2, H_SERVER_ERROR = 3, H_CLIENT_EOF = 4, H_HISTORY = 5 };
enum { R_DONE = 0, R_CLIENT_ERROR = 1, R_INTERNAL_ERROR = 2, R_CLOSED = 3 };
enum { F_HOLD_SERVER_EOF = 1, F_SERVER_OWNED = 2, F_CLIENT_OWNED = 4, F_HTTP1 = 8, F_RESP = 16 };

/* A server connect the plane makes itself (connect()): its token is (generation << CONN_FD_BITS) | fd,
 * unique while the generation does not wrap; in lane 0's epoll its data is (token << 3) | CONN_TAG
 * (a session's data is a pointer, its low bits the side). */
#define CONN_FD_BITS 22
#define CONN_FD_MASK ((1u << CONN_FD_BITS) - 1)
#define CONN_TAG 2u
/* A connect that was done before connect() returned (loopback completes the handshake inside the
 * call): the token carries this bit, no EV_CONNECT follows, and the descriptor is in no epoll. */
#define CONN_NOW ((uint64_t)1 << 52)
/* A listening socket the plane accepts on (listen()): its data is (fd << 3) | LISTEN_TAG. */
#define LISTEN_TAG 3u
/* An accepted client not yet attached, watched for a reset (EPOLLONESHOT, no EPOLLIN: EPOLLERR and
 * EPOLLHUP only): (token << 3) | GONE_TAG. A session's data is its pointer (8-byte aligned) with
 * the side in bit 0, so its tag is 0 or 1. */
#define GONE_TAG 4u
#define TAG_BITS 3
#define TAG_MASK 7u

/* Stats layout (Float64Array), mirrored in lib/native/plane.ts. */
enum {
  ST_FROM_CLIENT, ST_TO_SERVER, ST_FROM_SERVER, ST_TO_CLIENT, ST_LAST_ACTIVITY, ST_REPLAY_BYTES,
  ST_UNANSWERED, ST_SERVER_SINCE_REQ, ST_REPLAYABLE, ST_TURNS, ST_FAILOVERS, ST_REPLAYED,
  ST_OVERFLOWS, ST_PIPES, ST_C2S_PENDING, ST_S2C_PENDING, ST_FLAGS, ST_IDLE_MS, ST_THREAD, ST_PARTIAL_MS,
  ST_LENGTH
};
/* ST_FLAGS bits */
enum {
  FL_CLIENT_EOF = 1, FL_SERVER_EOF = 2, FL_SERVER_FIN_SENT = 4, FL_CLIENT_FIN_SENT = 8,
  FL_SERVER_DOWN = 16, FL_PAUSED = 32, FL_CLOSED = 64, FL_SERVER_EOF_HELD = 128,
  FL_SERVER_FIRST = 256, FL_CLIENT_FIRST = 512, FL_HANDING = 1024
};
enum {
  PS_IDLE, PS_IN_USE, PS_CREATED, PS_DESTROYED, PS_RESIZED, PS_MAX_IDLE, PS_PIPE_SIZE, PS_SESSIONS,
  PS_COMPACTIONS, PS_THREADS, PS_RUNNING, PS_LENGTH
};

typedef struct { int r, w, cap; } pipe_t; /* r < 0: none */

typedef struct plane_s plane_t;
typedef struct lane_s lane_t;
typedef struct session_s session_t;

typedef struct {
  int fd;            /* the duplicate; -1 once closed */
  int mask;          /* EPOLLIN | EPOLLOUT registered in the lane's epoll now; 0: not registered */
  unsigned rd_ready : 1, wr_ready : 1;
} end_t;

typedef struct {   /* one direction */
  pipe_t p;
  size_t len;      /* bytes in the pipe */
  /* Copy mode: bytes read that the out side did not take at once (malloc'd, freed when sent).
   * Never at the same time as bytes in the pipe: a direction reads only when both are empty. */
  char *buf;
  size_t blen, boff;
  uint64_t in, out;
  unsigned in_done : 1;  /* EOF read (or no more reads wanted) */
  unsigned fin_sent : 1; /* shutdown(SHUT_WR) done on the out side */
  unsigned bulk : 1;     /* reads splice (a read filled COPY_READ); else they copy */
} flow_t;

/* Bytes read and not yet written on, in the pipe or in memory. */
#define PENDING(f) ((f)->len + (f)->blen)

/* `gen`: the session's server_gen when it was queued (a server's event outlived by a replaceServer
 * is dropped at delivery: that server is gone, and JavaScript has moved on). */
/* EV_ACCEPT: `id` is the accepted client's token, `gen` the listening descriptor, and the client's
 * address is in `addr` (4 or 16 bytes, by `fam`) and `port`. */
typedef struct {
  double id;
  int32_t err;
  uint32_t gen;
  uint8_t kind, a, fam;
  uint16_t port;
  uint8_t addr[16];
} event_t;
typedef struct { event_t *v; uint32_t n, cap; } events_t;

/* Bytes kept in memory (a framed session's history). */
typedef struct { char *b; size_t len, cap; } hist_t;

/* http1 as the plane follows it (h1_client, h1_server): the boundaries only, in the strict subset
 * described at h1_request_head; anything else hands the session to JavaScript. */
typedef struct {
  uint8_t req;        /* R_START, R_BODY */
  uint8_t res;        /* P_* */
  uint8_t npend;      /* requests whose head was read and whose response has not ended */
  uint8_t digits;     /* hex digits of the chunk-size line so far */
  uint64_t head_bits; /* bit i: the i-th oldest pending request is a HEAD (its response has no body) */
  uint64_t req_left;  /* Content-Length body bytes still to come */
  uint64_t res_left;  /* response body or chunk data bytes still to come; the chunk size being read */
  uint32_t max_head;  /* http1.maxHeadBytes */
} h1_t;

/* resp as the plane follows it (resp_client, resp_server). */
typedef struct {
  uint8_t q, a;       /* Q_*, A_* */
  /* Each direction has its own: a client read may end inside a length while a reply is read. */
  uint8_t qdigits, adigits, neg, kind, nlen;
  uint8_t in_array;   /* the reply is an array (a nested one is not followed) */
  uint32_t npend;     /* commands read whole and not answered */
  uint32_t elems, elem;
  uint64_t qnum, qleft; /* the command: a length being read, bulk bytes still to come */
  uint64_t anum, aleft; /* the reply: the same */
  uint32_t line;        /* bytes of the reply line so far */
  uint64_t values;    /* values of the reply still to come */
  uint64_t max_bulk;
  uint64_t since;     /* ms (CLOCK_MONOTONIC_COARSE) the command part-read now began; 0: none */
  char name[16];
} resp_t;

/* Every field but `released` is read and written under the lane's lock. */
struct session_s {
  lane_t *ln;
  double id;
  uint32_t slot;
  int state;
  unsigned paused : 1, hold_server_eof : 1, pass_fin : 1;
  /* One read brought COPY_READ bytes or more: bulk. On lane 0 with plane threads configured, the
   * session moves to one (lane_run). */
  unsigned bulky : 1;
  /* The server spoke before the client's first byte (a greeting): a new server would greet again,
   * so what the client has is not replayable elsewhere (opaque's `pinned`). Sticky. */
  unsigned server_first : 1;
  /* The client's first bytes open a client-first handshake (TLS ClientHello, HTTP/2 preface,
   * PostgreSQL startup; classify_first): once the server answers, no other server could go on. */
  unsigned client_first : 1;
  /* classify_first has decided (first[] is no longer needed). */
  unsigned first_done : 1;
  uint8_t first_n;
  uint8_t first[FIRST_MAX];
  end_t end[2];                 /* CLIENT, SERVER */
  flow_t c2s, s2c;
  pipe_t replay;
  /* replay_len: the recorded bytes. Copy-mode reads record in memory (rec, rec_len == replay_len)
   * up to REC_HEAP_MAX; a splice read, or more, moves the record into the replay pipe (rec_len 0). */
  size_t replay_len, replay_max, replay_cap;
  char *rec;
  size_t rec_len, rec_cap;
  int recording;
  uint64_t unanswered, server_since_req, turns, failovers, replayed, overflows;
  uint64_t last_activity;
  uint32_t server_gen; /* replaceServer calls; written on the main thread (under the lock) only */
  /* A framed session (F_HTTP1): the plane follows request and response boundaries (h1_t) and keeps
   * each side's bytes since the last clean point (hist), so that JavaScript can take the session
   * over at any moment and be where it would have been had it parsed every byte itself. */
  unsigned framed : 1;
  unsigned resp : 1; /* framed as resp (F_RESP), else http1 */
  /* The plane stopped moving the session's bytes: EV_HANDOFF is queued, detach() follows. */
  unsigned handing : 1;
  h1_t h1;
  resp_t rs;
  hist_t hist[2]; /* CLIENT's, SERVER's */
};

/* A plane thread (index 1..MAX_THREADS), or lane 0, which the main loop drives. */
struct lane_s {
  plane_t *pl;
  int index;
  uv_mutex_t lock;
  int epfd, wakefd;
  unsigned threaded : 1, wake_sent : 1, stop : 1;
  int running;                  /* the thread is up (main thread only) */
  uv_thread_t thread;
  uv_poll_t *poll;              /* lane 0: its epoll descriptor on the main loop */
  uint32_t live;                /* its sessions not yet released (main thread only) */
  uint64_t now;                 /* ms, CLOCK_MONOTONIC_COARSE, read once per wake-up */
  /* pipe pool */
  pipe_t *idle;
  uint32_t nidle, cap_idle;
  int pipe_size;
  int copy_reads; /* small reads copied (pump); 0: every read splices (configure copyReads) */
  double in_use, created, destroyed, resized, compactions;
  char *scratch;
  /* released sessions, freed after the batch of epoll events in flight */
  session_t **grave;
  uint32_t ngrave, cap_grave;
  events_t out; /* events for JavaScript */
};

struct plane_s {
  napi_env env;
  uv_loop_t *loop;
  napi_ref callback;
  napi_ref resource;
  napi_async_context async_ctx;
  int devnull;
  /* sessions by slot (the main thread's alone) */
  session_t **slots;
  uint32_t *gens;
  uint32_t nslots, cap_slots;
  uint32_t *free_slots;
  uint32_t nfree;
  uint32_t live;
  lane_t *lanes[MAX_THREADS + 1];
  int threads;   /* lanes new sessions go to: 0 → lane 0 (the main loop), n → lanes 1..n */
  uint32_t rr;
  uint32_t conn_gen; /* connect() and accepted clients' tokens */
  int listens;       /* listening sockets in lane 0's epoll: while any, lane 0's poll refs the loop */
  int connect_now;   /* connect() reports a connect done inside the call at once (CONN_NOW) */
  /* maxIdlePipes bounds the idle pipes of every lane together: idle_total counts them (atomic) */
  uint32_t max_idle, idle_total;
  /* settings each lane takes (configure) */
  int pipe_size, default_pipe_size, copy_reads;
  events_t spare;
  uv_async_t *async;  /* a plane thread queued events */
  uv_idle_t *idle;    /* a call from JavaScript queued events: delivered on the next loop turn */
  int handles_open;
  int shutting_down;
  napi_async_cleanup_hook_handle cleanup;
};

static void process(session_t *s);
static void api_pump(plane_t *pl, session_t *s);
static lane_t *lane_pick_thread(plane_t *pl);
static void migrate(session_t *s, lane_t *to);
static void on_idle(uv_idle_t *h);

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Grow a vector of `size`-byte items to hold one more. 0 on ENOMEM. */
static int grow(void **v, uint32_t *cap, uint32_t n, size_t size) {
  if (n < *cap) return 1;
  uint32_t c = *cap ? *cap * 2 : 64;
  void *g = realloc(*v, (size_t)c * size);
  if (g == NULL) return 0;
  *v = g;
  *cap = c;
  return 1;
}

/* ------------------------------------------------------------------------------------------------
 * Pipe pool (per lane, under its lock) */

static void pipe_destroy(lane_t *ln, pipe_t *p) {
  if (p->r < 0) return;
  close(p->r);
  close(p->w);
  p->r = p->w = -1;
  p->cap = 0;
  ln->destroyed++;
}

/* A pipe of capacity `want` (0: the data pipe size). 0 on failure, errno set. Not `strict` (data
 * pipes): a pipe the kernel will not resize is taken as it is — past fs.pipe-user-pages-soft an
 * unprivileged user's new pipes get one page, slower but still correct. `strict` (replay pipes):
 * the capacity is the replay bound, so a refusal is a failure (the pipe is still handed back in
 * *out, for pipe_put). */
static int pipe_get(lane_t *ln, pipe_t *out, int want, int strict) {
  if (want <= 0) want = ln->pipe_size;
  pipe_t p = {-1, -1, 0};
  uint32_t scan = ln->nidle < POOL_SCAN ? ln->nidle : POOL_SCAN;
  for (uint32_t i = 0; i < scan; i++) {
    uint32_t at = ln->nidle - 1 - i;
    if (ln->idle[at].cap == want) {
      p = ln->idle[at];
      ln->idle[at] = ln->idle[ln->nidle - 1];
      ln->nidle--;
      break;
    }
  }
  if (p.r < 0 && ln->nidle > 0) p = ln->idle[--ln->nidle];
  if (p.r >= 0) __atomic_sub_fetch(&ln->pl->idle_total, 1, __ATOMIC_RELAXED);
  if (p.r < 0) {
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return 0;
    p.r = fds[0];
    p.w = fds[1];
    p.cap = fcntl(p.r, F_GETPIPE_SZ);
    if (p.cap <= 0) p.cap = 65536;
    ln->created++;
  }
  if (p.cap != want) {
    int got = fcntl(p.r, F_SETPIPE_SZ, want);
    ln->resized++;
    if (got < want && !strict) {
      if (got > 0) p.cap = got;
    } else if (got < want) {
      int e = got < 0 ? errno : ENOMEM;
      if (got > 0) p.cap = got;
      ln->in_use++; /* so pipe_put's accounting stays balanced */
      *out = p;
      errno = e;
      return 0;
    } else {
      p.cap = got;
    }
  }
  ln->in_use++;
  *out = p;
  return 1;
}

/* Back to the pool; the pipe must be empty. */
static void pipe_put(lane_t *ln, pipe_t *p) {
  if (p->r < 0) return;
  ln->in_use--;
  plane_t *pl = ln->pl;
  if (pl->shutting_down || !grow((void **)&ln->idle, &ln->cap_idle, ln->nidle, sizeof(pipe_t))) {
    pipe_destroy(ln, p);
    return;
  }
  /* A place among the process's maxIdlePipes, or the pipe is closed. */
  if (__atomic_add_fetch(&pl->idle_total, 1, __ATOMIC_RELAXED) >
      __atomic_load_n(&pl->max_idle, __ATOMIC_RELAXED)) {
    __atomic_sub_fetch(&pl->idle_total, 1, __ATOMIC_RELAXED);
    pipe_destroy(ln, p);
    return;
  }
  ln->idle[ln->nidle++] = *p;
  p->r = p->w = -1;
  p->cap = 0;
}

/* Throw away `len` bytes in a pipe (page references dropped into /dev/null, nothing copied), then
 * return it to the pool; a pipe that cannot be emptied is closed instead. */
static void pipe_drop(lane_t *ln, pipe_t *p, size_t len) {
  if (p->r < 0) return;
  while (len > 0) {
    ssize_t n = splice(p->r, NULL, ln->pl->devnull, NULL, len, SPLICE_F_NONBLOCK);
    if (n > 0) {
      len -= (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    ln->in_use--;
    pipe_destroy(ln, p);
    return;
  }
  pipe_put(ln, p);
}

/* ------------------------------------------------------------------------------------------------
 * Session table (main thread only: attach, the API's lookups, release) */

static session_t *lookup(plane_t *pl, double id) {
  if (!(id >= 0) || id != (double)(uint64_t)id) return NULL;
  double gen = (double)(uint64_t)(id / SLOT_BITS);
  uint32_t slot = (uint32_t)(id - gen * SLOT_BITS);
  if (slot >= pl->nslots || pl->slots[slot] == NULL || (double)pl->gens[slot] != gen) return NULL;
  return pl->slots[slot];
}

static int slot_take(plane_t *pl, session_t *s) {
  uint32_t slot;
  if (pl->nfree > 0) {
    slot = pl->free_slots[--pl->nfree];
  } else {
    if (pl->nslots >= MAX_SLOTS) return 0;
    if (pl->nslots == pl->cap_slots) {
      uint32_t n = pl->cap_slots ? pl->cap_slots * 2 : 256;
      session_t **slots = realloc(pl->slots, n * sizeof(*slots));
      if (slots == NULL) return 0;
      pl->slots = slots;
      uint32_t *gens = realloc(pl->gens, n * sizeof(*gens));
      if (gens == NULL) return 0;
      pl->gens = gens;
      uint32_t *fr = realloc(pl->free_slots, n * sizeof(*fr));
      if (fr == NULL) return 0;
      pl->free_slots = fr;
      pl->cap_slots = n;
    }
    slot = pl->nslots++;
    pl->gens[slot] = 0;
  }
  pl->gens[slot] = (pl->gens[slot] + 1) & 0x0fffffff;
  if (pl->gens[slot] == 0) pl->gens[slot] = 1;
  pl->slots[slot] = s;
  s->slot = slot;
  s->id = (double)pl->gens[slot] * SLOT_BITS + slot;
  pl->live++;
  return 1;
}

static void slot_free(plane_t *pl, session_t *s) {
  pl->slots[s->slot] = NULL;
  pl->free_slots[pl->nfree++] = s->slot;
  pl->live--;
}

/* ------------------------------------------------------------------------------------------------
 * Events to JavaScript: queued on the lane, delivered on the main thread (deliver) */

static void queue_event(session_t *s, int kind, int a, int err) {
  events_t *q = &s->ln->out;
  if (!grow((void **)&q->v, &q->cap, q->n, sizeof(event_t))) return; /* ENOMEM: nothing to do */
  q->v[q->n].id = s->id;
  q->v[q->n].kind = (uint8_t)kind;
  q->v[q->n].a = (uint8_t)a;
  q->v[q->n].err = err;
  q->v[q->n].gen = s->server_gen;
  q->n++;
}

/* ------------------------------------------------------------------------------------------------
 * A session's two descriptors in its lane's epoll (data: the session pointer, the side in bit 0) */

static int end_watch(session_t *s, int side, int mask) {
  end_t *e = &s->end[side];
  if (e->fd < 0 || e->mask == mask) return 1;
  struct epoll_event ev;
  ev.events = (uint32_t)mask;
  ev.data.u64 = (uint64_t)(uintptr_t)s | (uint64_t)side;
  int op = e->mask == 0 ? EPOLL_CTL_ADD : mask == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
  if (epoll_ctl(s->ln->epfd, op, e->fd, &ev) != 0 && op != EPOLL_CTL_DEL) return 0;
  e->mask = mask;
  return 1;
}

/* Out of epoll first: a registration belongs to the open file, which a descriptor Node has not
 * closed yet may still share, so close() alone would leave it reporting. */
static void end_close(session_t *s, int side) {
  end_t *e = &s->end[side];
  if (e->fd >= 0) {
    end_watch(s, side, 0);
    close(e->fd);
    e->fd = -1;
  }
  e->mask = 0;
  e->rd_ready = e->wr_ready = 0;
}

static void end_open(session_t *s, int side, int fd) {
  end_t *e = &s->end[side];
  e->fd = fd;
  e->mask = 0;
  e->rd_ready = 1; /* try at once; EAGAIN clears it */
  e->wr_ready = 1;
}

/* ------------------------------------------------------------------------------------------------
 * The data path */

/* Forget the record (the server answered, or recording stops): nothing copied, nothing kept. */
static void drop_record(session_t *s) {
  if (s->replay.r >= 0) pipe_drop(s->ln, &s->replay, s->replay_len - s->rec_len);
  s->replay_len = 0;
  s->rec_len = 0;
}

/* An empty record holds no memory (as an idle direction holds no pipe). */
static void free_record(session_t *s) {
  free(s->rec);
  s->rec = NULL;
  s->rec_len = s->rec_cap = 0;
}

static void free_buf(flow_t *f) {
  free(f->buf);
  f->buf = NULL;
  f->blen = f->boff = 0;
}

static void stop_recording(session_t *s) {
  s->recording = 0;
  s->overflows++;
  drop_record(s);
}

/* Write `n` bytes to a pipe; returns how many went in (fewer: errno says why, ENOSPC for none taken). */
static size_t write_full(int fd, const char *data, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = write(fd, data + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = ENOSPC;
      break;
    }
    done += (size_t)w;
  }
  return done;
}

/* Move a record held in memory into the replay pipe (before a tee, or a replaceServer). 0 on failure. */
static int record_to_pipe(session_t *s) {
  if (s->rec_len == 0) return 1;
  if (s->replay.r < 0 && !pipe_get(s->ln, &s->replay, (int)s->replay_cap, 1)) {
    if (s->replay.r >= 0) pipe_put(s->ln, &s->replay);
    return 0;
  }
  size_t done = write_full(s->replay.w, s->rec, s->rec_len);
  if (done < s->rec_len) {
    /* The record stays in memory; a pipe with part of it in must not go back to the pool. */
    int e = errno;
    pipe_drop(s->ln, &s->replay, done);
    errno = e;
    return 0;
  }
  s->rec_len = 0;
  return 1;
}

/* A pipe's capacity is counted in slots (pages), not bytes, and tee(2) duplicates buffers one for
 * one: a request that came in many small segments fills the replay pipe's slots long before its
 * bytes reach replayBytes. Then copy its first `keep` bytes into a fresh pipe with write(), which
 * packs them into whole pages (the only copy the plane ever makes, and only in this case), and drop
 * the rest. 0 if that failed (the session then stops recording). */
static int compact_replay(session_t *s, size_t keep) {
  lane_t *ln = s->ln;
  pipe_t fresh = {-1, -1, 0};
  if (ln->scratch == NULL && (ln->scratch = malloc(SCRATCH)) == NULL) return 0;
  if (!pipe_get(ln, &fresh, s->replay.cap, 1)) {
    pipe_put(ln, &fresh);
    return 0;
  }
  size_t moved = 0;
  while (moved < keep) {
    size_t want = keep - moved < SCRATCH ? keep - moved : SCRATCH;
    ssize_t r = read(s->replay.r, ln->scratch, want);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0 || write(fresh.w, ln->scratch, (size_t)r) != r) {
      pipe_drop(ln, &fresh, moved);
      return 0;
    }
    moved += (size_t)r;
  }
  /* what is left in the old pipe (a partial tee) goes to /dev/null with the pipe */
  pipe_drop(ln, &s->replay, s->replay_len - keep);
  s->replay = fresh;
  s->replay_len = keep;
  ln->compactions++;
  return 1;
}

static ssize_t tee_all(int from, int to, size_t n) {
  ssize_t t;
  do t = tee(from, to, n, SPLICE_F_NONBLOCK);
  while (t < 0 && errno == EINTR);
  return t < 0 ? 0 : t;
}

/*
 * What a client's first bytes open, by the rules of lib/framing/client-first.ts (each protocol is
 * checked on the plane by tests/native/accept.test.ts): a client-first handshake whose state a
 * server keeps (FB_HANDSHAKE), anything else (FB_OTHER), or not enough bytes yet (FB_MORE).
 *   tls       16 03 0v len len 01          a handshake record carrying a ClientHello
 *   h2        PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n   (RFC 9113 §3.4, prior knowledge)
 *   postgres  int32 length, int32 code      StartupMessage (3.0), SSLRequest, GSSENCRequest
 */
enum { FB_MORE = 0, FB_OTHER = 1, FB_HANDSHAKE = 2 };

static uint32_t be32(const uint8_t *b) {
  return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static int classify_first(const uint8_t *b, size_t n) {
  if (n == 0) return FB_MORE;
  if (b[0] == 0x16) {
    if (n >= 2 && b[1] != 0x03) return FB_OTHER;
    if (n >= 3 && b[2] > 0x04) return FB_OTHER;
    if (n >= 5) {
      unsigned len = (unsigned)b[3] << 8 | b[4];
      if (len == 0 || len > 16384) return FB_OTHER;
    }
    if (n < 6) return FB_MORE;
    return b[5] == 0x01 ? FB_HANDSHAKE : FB_OTHER;
  }
  if (b[0] == 'P') {
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    size_t m = n < 24 ? n : 24;
    if (memcmp(b, preface, m) != 0) return FB_OTHER;
    return m == 24 ? FB_HANDSHAKE : FB_MORE;
  }
  if (b[0] == 0x00) {
    if (n < 8) return FB_MORE;
    uint32_t len = be32(b), code = be32(b + 4);
    if ((code == 80877103u || code == 80877104u) && len == 8) return FB_HANDSHAKE;
    if (code == 0x00030000u && len > 8 && len <= 10000) return FB_HANDSHAKE;
    return FB_OTHER;
  }
  return FB_OTHER;
}

/* The session's first client bytes, `n` of them at `data`, until classify_first decides. */
static void first_bytes(session_t *s, const char *data, size_t n) {
  size_t take = FIRST_MAX - s->first_n;
  if (take > n) take = n;
  memcpy(s->first + s->first_n, data, take);
  s->first_n = (uint8_t)(s->first_n + take);
  int kind = classify_first(s->first, s->first_n);
  if (kind == FB_MORE && s->first_n < FIRST_MAX) return;
  s->first_done = 1;
  s->client_first = kind == FB_HANDSHAKE;
}

/* ------------------------------------------------------------------------------------------------
 * Framed sessions: http1 on the plane (docs/native-plane.md, "http1 on the plane")
 *
 * The plane moves an http1 session's bytes as it moves opaque ones (copied: a framed session
 * never splices) and follows where each request and response ends, in a strict subset of HTTP/1.1
 * that the JavaScript framer (lib/framing/http1.ts) accepts alike. It decides nothing: whatever it
 * does not follow, and every server EOF or error and client EOF, stops the session and hands it to
 * JavaScript (EV_HANDOFF, then detach()), with each side's bytes since the last clean point (no
 * request in flight, no response open). JavaScript feeds those bytes to a new http1 framer and
 * replayer and carries on with Node sockets, exactly where it would be had it parsed them itself:
 * every failover, resume and bound stays JavaScript's.
 *
 * Followed: a request head wholly in one read, `method SP target SP HTTP/1.1`, header fields
 * `token ":" OWS text OWS` with CRLF endings, at most one Content-Length (digits), and no
 * Transfer-Encoding, Upgrade or Expect, Connection only `keep-alive`, not CONNECT; its body by
 * Content-Length. A response head wholly in one read, `HTTP/1.1 ddd SP reason`, status 200-599,
 * the same field rules, Transfer-Encoding only `chunked`, not both; its body none (HEAD, 204, 304),
 * by Content-Length, or chunked with bare size lines and no trailer fields. A response to a request
 * not wholly read yet, or with no request before it, is not followed. Bytes the plane does not
 * follow are not sent on: JavaScript's framer gets them first (a partial head stays unsent, as its
 * gate would hold it).
 */
enum { R_START = 0, R_BODY = 1 };
enum { P_START = 0, P_BODY, P_SIZE, P_SIZE_LF, P_DATA, P_DATA_CR, P_DATA_LF, P_TRAILER, P_TRAILER_LF };

static const uint8_t TCHAR[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1, ['-'] = 1,
    ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1,
    ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,
    ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static int is_text(uint8_t c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

static int hexval(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* `b[0, n)` is the lower-case ASCII `lower`, ignoring case. */
static int same_ci(const uint8_t *b, size_t n, const char *lower) {
  size_t m = strlen(lower);
  if (n != m) return 0;
  for (size_t k = 0; k < n; k++)
    if ((b[k] | 0x20) != (uint8_t)lower[k]) return 0;
  return 1;
}

/* What the header fields of a head (after its start line, up to and with the final CRLF) say. */
typedef struct {
  int has_length, chunked;
  uint64_t length;
} fields_t;

/*
 * The header fields from `h[i]` to the end of a head of `len` bytes (which ends with CRLF CRLF).
 * 1 when every field is in the followed subset; 0 otherwise. `request`: Transfer-Encoding, Upgrade
 * and Expect are not followed.
 */
static int h1_fields(const uint8_t *h, size_t i, size_t len, int request, fields_t *f) {
  memset(f, 0, sizeof *f);
  for (;;) {
    if (h[i] == '\r') return h[i + 1] == '\n' && i + 2 == len;
    size_t n0 = i;
    while (TCHAR[h[i]]) i++;
    size_t nlen = i - n0;
    if (nlen == 0 || h[i] != ':') return 0;
    i++;
    while (h[i] == ' ' || h[i] == '\t') i++;
    size_t v0 = i;
    while (h[i] != '\r') {
      if (!is_text(h[i])) return 0;
      i++;
    }
    if (h[i + 1] != '\n') return 0;
    size_t v1 = i;
    while (v1 > v0 && (h[v1 - 1] == ' ' || h[v1 - 1] == '\t')) v1--;
    i += 2;
    const uint8_t *name = h + n0, *v = h + v0;
    size_t vlen = v1 - v0;
    if (same_ci(name, nlen, "content-length")) {
      if (f->has_length || vlen == 0 || vlen > 15) return 0;
      uint64_t x = 0;
      for (size_t k = 0; k < vlen; k++) {
        if (v[k] < '0' || v[k] > '9') return 0;
        x = x * 10 + (uint64_t)(v[k] - '0');
      }
      f->has_length = 1;
      f->length = x;
    } else if (same_ci(name, nlen, "transfer-encoding")) {
      if (request || f->chunked || !same_ci(v, vlen, "chunked")) return 0;
      f->chunked = 1;
    } else if (same_ci(name, nlen, "connection")) {
      if (!same_ci(v, vlen, "keep-alive")) return 0;
    } else if (request && (same_ci(name, nlen, "upgrade") || same_ci(name, nlen, "expect"))) {
      return 0;
    }
  }
}

/* A request head `h[0, len)` (ending with CRLF CRLF): followed (1, and queued) or not (0). */
static int h1_request_head(h1_t *p, const uint8_t *h, size_t len) {
  if (len > p->max_head || p->npend >= H1_MAX_PENDING) return 0;
  size_t i = 0;
  while (TCHAR[h[i]]) i++;
  size_t mlen = i;
  if (mlen == 0 || h[i] != ' ') return 0;
  if (mlen == 7 && memcmp(h, "CONNECT", 7) == 0) return 0;
  int head = mlen == 4 && memcmp(h, "HEAD", 4) == 0;
  size_t t0 = ++i;
  while (h[i] > 0x20 && h[i] < 0x7f) i++;
  if (i == t0 || h[i] != ' ') return 0;
  i++;
  if (len - i < 10 || memcmp(h + i, "HTTP/1.1\r\n", 10) != 0) return 0;
  fields_t f;
  if (!h1_fields(h, i + 10, len, 1, &f)) return 0;
  p->head_bits |= (uint64_t)head << p->npend;
  p->npend++;
  if (f.has_length && f.length > 0) {
    p->req = R_BODY;
    p->req_left = f.length;
  }
  return 1;
}

/* Client bytes `d[0, n)`: how many of them the plane follows (n, or where it stops following). */
static size_t h1_client(h1_t *p, const uint8_t *d, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (p->req == R_BODY) {
      uint64_t take = n - i < p->req_left ? n - i : p->req_left;
      i += (size_t)take;
      p->req_left -= take;
      if (p->req_left == 0) p->req = R_START;
      continue;
    }
    /* A head, wholly in this read (an empty line before a request line is not followed either). */
    const uint8_t *end = memmem(d + i, n - i, "\r\n\r\n", 4);
    if (end == NULL || d[i] == '\r' || d[i] == '\n') return i;
    size_t len = (size_t)(end - (d + i)) + 4;
    if (!h1_request_head(p, d + i, len)) return i;
    i += len;
  }
  return n;
}

/* The oldest pending request's response has ended. */
static void h1_answered(h1_t *p) {
  p->npend--;
  p->head_bits >>= 1;
  p->res = P_START;
}

/* A response head `h[0, len)`: followed (1, and its body's framing set) or not (0). */
static int h1_response_head(h1_t *p, const uint8_t *h, size_t len) {
  if (len > p->max_head || len < 17 || memcmp(h, "HTTP/1.1 ", 9) != 0) return 0;
  if (h[9] < '2' || h[9] > '5' || h[10] < '0' || h[10] > '9' || h[11] < '0' || h[11] > '9' || h[12] != ' ')
    return 0;
  int status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
  size_t i = 13;
  while (h[i] != '\r') {
    if (!is_text(h[i])) return 0;
    i++;
  }
  if (h[i + 1] != '\n') return 0;
  fields_t f;
  if (!h1_fields(h, i + 2, len, 0, &f) || (f.has_length && f.chunked)) return 0;
  if ((p->head_bits & 1) || status == 204 || status == 304) {
    h1_answered(p);
  } else if (f.chunked) {
    p->res = P_SIZE;
    p->res_left = 0;
    p->digits = 0;
  } else if (f.has_length) {
    if (f.length == 0) h1_answered(p);
    else {
      p->res = P_BODY;
      p->res_left = f.length;
    }
  } else {
    return 0; /* the server's close would end it: JavaScript passes that FIN on */
  }
  return 1;
}

/*
 * Server bytes `d[0, n)`: how many the plane follows; `*clean` is set to the offset just past the
 * last response that left the session at a clean point (no request in flight or part-read), or
 * left alone.
 */
static size_t h1_server(h1_t *p, const uint8_t *d, size_t n, size_t *clean) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = d[i];
    switch (p->res) {
      case P_START: {
        /* Nothing asked, or the request is not wholly read yet (an early response). */
        if (p->npend == 0 || (p->npend == 1 && p->req != R_START)) return i;
        const uint8_t *end = memmem(d + i, n - i, "\r\n\r\n", 4);
        if (end == NULL) return i;
        size_t len = (size_t)(end - (d + i)) + 4;
        if (!h1_response_head(p, d + i, len)) return i;
        i += len;
        break;
      }
      case P_BODY: {
        uint64_t take = n - i < p->res_left ? n - i : p->res_left;
        i += (size_t)take;
        p->res_left -= take;
        if (p->res_left == 0) h1_answered(p);
        break;
      }
      case P_SIZE: {
        int v = hexval(c);
        if (v >= 0 && p->digits < 12) {
          p->res_left = p->res_left * 16 + (uint64_t)v;
          p->digits++;
        } else if (c == '\r' && p->digits > 0) {
          p->res = P_SIZE_LF;
        } else {
          return i;
        }
        i++;
        break;
      }
      case P_SIZE_LF:
        if (c != '\n') return i;
        p->res = p->res_left == 0 ? P_TRAILER : P_DATA;
        i++;
        break;
      case P_DATA: {
        uint64_t take = n - i < p->res_left ? n - i : p->res_left;
        i += (size_t)take;
        p->res_left -= take;
        if (p->res_left == 0) p->res = P_DATA_CR;
        break;
      }
      case P_DATA_CR:
        if (c != '\r') return i;
        p->res = P_DATA_LF;
        i++;
        break;
      case P_DATA_LF:
        if (c != '\n') return i;
        p->res = P_SIZE;
        p->res_left = 0;
        p->digits = 0;
        i++;
        break;
      case P_TRAILER:
        if (c != '\r') return i; /* trailer fields: JavaScript's */
        p->res = P_TRAILER_LF;
        i++;
        break;
      case P_TRAILER_LF:
        if (c != '\n') return i;
        h1_answered(p);
        i++;
        break;
    }
    if (p->res == P_START && p->npend == 0 && p->req == R_START) *clean = i;
  }
  return n;
}

/* ------------------------------------------------------------------------------------------------
 * Framed sessions: resp on the plane (docs/native-plane.md, "resp on the plane")
 *
 * As for http1: the plane follows where each Redis command and reply ends, in a strict subset the
 * JavaScript framer (lib/framing/resp/) accepts alike, and hands the session to JavaScript for
 * anything else. Followed: commands as multibulk arrays (`*N` N >= 1, then N `$len` bulk strings)
 * whose name is not one that sets session state, pins the session, stops the pairing of replies,
 * blocks or needs its arguments looked at (resp_special; JavaScript's prologue and pins would miss
 * it past the next clean point); RESP2 replies (`+ - :` lines, `$` bulk or null, `*` arrays of
 * those, not nested), one per command, in order. An inline command, RESP3, a reply with no command
 * before it (a push) are not followed.
 */
enum { Q_START = 0, Q_COUNT, Q_COUNT_LF, Q_BULK, Q_BLEN, Q_BLEN_LF, Q_DATA, Q_DATA_CR, Q_DATA_LF };
enum { A_START = 0, A_TYPE, A_LINE, A_LINE_LF, A_LEN, A_LEN_LF, A_DATA, A_DATA_CR, A_DATA_LF };
#define RESP_NAME_MAX 16

/* Commands the plane does not follow: session state (AUTH, SELECT…), transactions and pins,
 * subscriptions and the like (replies stop pairing), blocking ones, CLIENT (state, tracking, reply
 * modes), and those that end the connection. */
static const char *const RESP_SPECIAL[] = {
    "auth", "hello", "select", "readonly", "readwrite", "reset", "client", "multi", "exec",
    "discard", "watch", "unwatch", "subscribe", "psubscribe", "ssubscribe", "unsubscribe",
    "punsubscribe", "sunsubscribe", "monitor", "sync", "psync", "blpop", "brpop", "blmove",
    "brpoplpush", "bzpopmin", "bzpopmax", "blmpop", "bzmpop", "wait", "waitaof", "xread",
    "xreadgroup", "quit", "shutdown", "replicaof", "slaveof", "debug",
};

/* Names compare as header names do (same_ci: ASCII case-insensitive, against lower case). */
static int resp_special(const char *name, size_t n) {
  for (size_t k = 0; k < sizeof RESP_SPECIAL / sizeof RESP_SPECIAL[0]; k++)
    if (same_ci((const uint8_t *)name, n, RESP_SPECIAL[k])) return 1;
  return 0;
}

/* Client bytes `d[0, n)`: how many of them the plane follows. */
static size_t resp_client(resp_t *p, const uint8_t *d, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = d[i];
    switch (p->q) {
      case Q_START:
        if (c != '*') return i; /* an inline command */
        p->q = Q_COUNT;
        p->qnum = 0;
        p->qdigits = 0;
        break;
      case Q_COUNT:
        if (c >= '0' && c <= '9' && p->qdigits < 7) {
          p->qnum = p->qnum * 10 + (uint64_t)(c - '0');
          p->qdigits++;
          break;
        }
        if (c != '\r' || p->qnum == 0) return i; /* `*0`, `*-1`: no reply comes */
        p->q = Q_COUNT_LF;
        break;
      case Q_COUNT_LF:
        if (c != '\n') return i;
        p->elems = (uint32_t)p->qnum;
        p->elem = 0;
        p->q = Q_BULK;
        break;
      case Q_BULK:
        if (c != '$') return i;
        p->q = Q_BLEN;
        p->qnum = 0;
        p->qdigits = 0;
        break;
      case Q_BLEN:
        if (c >= '0' && c <= '9' && p->qdigits < 15) {
          /* Past the bound at the digit that passes it, as the JavaScript scanner says. */
          if (p->qnum * 10 + (uint64_t)(c - '0') > p->max_bulk) return i;
          p->qnum = p->qnum * 10 + (uint64_t)(c - '0');
          p->qdigits++;
          break;
        }
        if (c != '\r' || p->qdigits == 0) return i;
        if (p->elem == 0 && (p->qnum == 0 || p->qnum > RESP_NAME_MAX)) return i; /* no name we follow */
        p->q = Q_BLEN_LF;
        break;
      case Q_BLEN_LF:
        if (c != '\n') return i;
        p->qleft = p->qnum;
        p->nlen = 0;
        p->q = p->qleft > 0 ? Q_DATA : Q_DATA_CR;
        break;
      case Q_DATA: {
        uint64_t take = n - i < p->qleft ? n - i : p->qleft;
        if (p->elem == 0) {
          if (p->nlen + take > sizeof p->name) return i; /* never: the length was checked */
          memcpy(p->name + p->nlen, d + i, (size_t)take);
          p->nlen = (uint8_t)(p->nlen + take);
        }
        i += (size_t)take;
        p->qleft -= take;
        if (p->qleft == 0) p->q = Q_DATA_CR;
        continue;
      }
      case Q_DATA_CR:
        if (c != '\r') return i;
        p->q = Q_DATA_LF;
        break;
      case Q_DATA_LF:
        if (c != '\n') return i;
        if (p->elem == 0 && resp_special(p->name, p->nlen)) return i;
        if (++p->elem == p->elems) {
          p->npend++;
          p->q = Q_START;
        } else {
          p->q = Q_BULK;
        }
        break;
    }
    i++;
  }
  return n;
}

/* One value of the reply being read is whole. */
static void resp_value(resp_t *p) {
  if (--p->values > 0) {
    p->a = A_TYPE;
    return;
  }
  p->npend--;
  p->a = A_START;
}

/* Server bytes `d[0, n)`: how many the plane follows; `*clean` as for h1_server. */
static size_t resp_server(resp_t *p, const uint8_t *d, size_t n, size_t *clean) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = d[i];
    switch (p->a) {
      case A_START:
        if (p->npend == 0) return i; /* a push, or a reply to nothing we followed */
        p->values = 1;
        p->in_array = 0;
        p->a = A_TYPE;
        continue;
      case A_TYPE:
        if (c == '+' || c == '-' || c == ':') {
          p->a = A_LINE;
          p->line = 0;
        } else if (c == '$' || (c == '*' && !p->in_array)) {
          p->kind = c;
          p->anum = 0;
          p->adigits = 0;
          p->neg = 0;
          p->a = A_LEN;
        } else {
          return i; /* RESP3, or a nested array */
        }
        break;
      case A_LINE:
        /* Well inside the JavaScript scanner's maxInlineBytes (64 KiB, its default). */
        if (++p->line > 60000) return i;
        if (c == '\r') p->a = A_LINE_LF;
        else if (c == '\n') return i;
        break;
      case A_LINE_LF:
        if (++p->line > 60000) return i;
        if (c == '\n') resp_value(p);
        else if (c != '\r') p->a = A_LINE; /* a CR inside the line */
        break;
      case A_LEN:
        if (c == '-' && p->adigits == 0 && !p->neg) {
          p->neg = 1;
          break;
        }
        if (c >= '0' && c <= '9' && p->adigits < 15) {
          /* Each bound at the digit that passes it, as the JavaScript scanner says: only -1 is
           * negative, a bulk string at most maxBulkBytes, an array (here) at most 65,536. */
          uint64_t next = p->anum * 10 + (uint64_t)(c - '0');
          if (p->neg ? next != 1 : next > (p->kind == '*' ? 65536 : p->max_bulk)) return i;
          p->anum = next;
          p->adigits++;
          break;
        }
        if (c != '\r' || p->adigits == 0) return i;
        p->a = A_LEN_LF;
        break;
      case A_LEN_LF:
        if (c != '\n') return i;
        if (p->neg) {
          resp_value(p); /* null */
        } else if (p->kind == '$') {
          p->aleft = p->anum;
          p->a = p->aleft > 0 ? A_DATA : A_DATA_CR;
        } else {
          p->in_array = 1;
          p->values += p->anum;
          resp_value(p);
        }
        break;
      case A_DATA: {
        uint64_t take = n - i < p->aleft ? n - i : p->aleft;
        i += (size_t)take;
        p->aleft -= take;
        if (p->aleft == 0) p->a = A_DATA_CR;
        continue;
      }
      case A_DATA_CR:
        if (c != '\r') return i;
        p->a = A_DATA_LF;
        break;
      case A_DATA_LF:
        if (c != '\n') return i;
        resp_value(p);
        break;
    }
    i++;
    if (p->a == A_START && p->npend == 0 && p->q == Q_START) *clean = i;
  }
  return n;
}

/* A framed session's follower bound: http1's maxHeadBytes, or resp's maxBulkBytes (0 or out of
 * range: the default). */
static void follow_limit(session_t *s, double limit) {
  s->h1.max_head = limit >= 64 && limit <= 16777216.0 ? (uint32_t)limit : 65536;
  s->rs.max_bulk = limit >= 1 && limit <= 4294967296.0 ? (uint64_t)limit : 512u * 1024 * 1024;
}

/* `n` bytes read from `side`, to the session's follower (http1 or resp): how many it follows. */
static size_t follow(session_t *s, int side, const uint8_t *d, size_t n, size_t *clean) {
  if (s->resp) return side == CLIENT ? resp_client(&s->rs, d, n) : resp_server(&s->rs, d, n, clean);
  return side == CLIENT ? h1_client(&s->h1, d, n) : h1_server(&s->h1, d, n, clean);
}

static int hist_add(hist_t *h, const char *d, size_t n) {
  if (h->len + n > h->cap) {
    size_t cap = h->cap ? h->cap : 1024;
    while (cap < h->len + n) cap *= 2;
    char *grown = realloc(h->b, cap);
    if (grown == NULL) return 0;
    h->b = grown;
    h->cap = cap;
  }
  memcpy(h->b + h->len, d, n);
  h->len += n;
  return 1;
}

static void hist_free(hist_t *h) {
  free(h->b);
  h->b = NULL;
  h->len = h->cap = 0;
}

/* Stop moving a framed session's bytes: JavaScript takes it over (EV_HANDOFF, then detach()). */
static void hand_off(session_t *s, int why, int err) {
  if (s->handing) return;
  s->handing = 1;
  queue_event(s, EV_HANDOFF, why, err);
}

/*
 * A framed session read `n` bytes from `from` (copied, at `d`): followed and kept in the history.
 * Returns how many of them may go on now; fewer than `n` only when the session is handing off (the
 * rest are JavaScript's to parse and send).
 */
static size_t framed_in(session_t *s, int from, const char *d, size_t n) {
  hist_t *h = &s->hist[from];
  size_t clean = (size_t)-1;
  size_t ok;
  if (h->len + n > HIST_MAX) {
    ok = 0;
  } else {
    uint32_t before = s->rs.npend;
    ok = follow(s, from, (const uint8_t *)d, n, &clean);
    if (s->resp && from == CLIENT) {
      /* `requestTimeout` runs from the first byte of the command still part-read (as replayer.ts). */
      if (s->rs.q == Q_START) s->rs.since = 0;
      else if (s->rs.since == 0 || s->rs.npend > before) s->rs.since = s->ln->now;
    }
  }
  if (clean != (size_t)-1) {
    /* Everything before the clean point is answered: neither side's history needs it. */
    s->hist[CLIENT].len = 0;
    h->len = 0;
    d += clean;
    n -= clean;
    ok -= clean;
  }
  if (!hist_add(h, d, n)) {
    hand_off(s, H_HISTORY, ENOMEM);
    return 0;
  }
  s->unanswered = s->resp ? s->rs.npend : s->h1.npend;
  if (ok < n) hand_off(s, h->len > HIST_MAX ? H_HISTORY : H_UNFOLLOWED, 0);
  return ok + (clean != (size_t)-1 ? clean : 0);
}

/* Client bytes read: `data` when they were copied (copy mode), NULL when they are in the c2s pipe
 * (then the first ones were classified before the read: pump peeks at them). */
static void on_client_bytes(session_t *s, size_t n, const char *data) {
  if (!s->first_done && data != NULL) first_bytes(s, data, n);
  s->unanswered += n;
  s->server_since_req = 0;
  if (s->replay_max == 0 || !s->recording) return;
  if (s->replay_len + n > s->replay_max) {
    stop_recording(s);
    return;
  }
  if (data != NULL && s->rec_len == s->replay_len && s->rec_len + n <= REC_HEAP_MAX) {
    if (s->rec_len + n > s->rec_cap) {
      size_t cap = s->rec_cap ? s->rec_cap * 2 : 2048;
      while (cap < s->rec_len + n) cap *= 2;
      char *grown = realloc(s->rec, cap);
      if (grown == NULL) goto to_pipe;
      s->rec = grown;
      s->rec_cap = cap;
    }
    memcpy(s->rec + s->rec_len, data, n);
    s->rec_len += n;
    s->replay_len += n;
    return;
  }
to_pipe:
  if (!record_to_pipe(s)) {
    stop_recording(s);
    return;
  }
  if (s->replay.r < 0 && !pipe_get(s->ln, &s->replay, (int)s->replay_cap, 1)) {
    if (s->replay.r >= 0) pipe_put(s->ln, &s->replay); /* F_SETPIPE_SZ refused: not replayable */
    stop_recording(s);
    return;
  }
  if (data != NULL) {
    size_t done = write_full(s->replay.w, data, n);
    s->replay_len += done;
    if (done < n) stop_recording(s);
    return;
  }
  size_t before = s->replay_len;
  ssize_t t = tee_all(s->c2s.p.r, s->replay.w, n);
  if (t == (ssize_t)n) {
    s->replay_len += n;
    return;
  }
  /* Out of slots, not of bytes (replay_len + n <= replay_max): pack what is recorded, try again. */
  s->replay_len += (size_t)t;
  if (before > 0 && compact_replay(s, before)) {
    t = tee_all(s->c2s.p.r, s->replay.w, n);
    if (t == (ssize_t)n) {
      s->replay_len += n;
      return;
    }
    s->replay_len += (size_t)t;
  }
  stop_recording(s);
}

static void on_server_bytes(session_t *s, size_t n) {
  if (s->c2s.in == 0) s->server_first = 1;
  s->server_since_req += n;
  if (s->unanswered > 0) {
    s->turns++;
    s->unanswered = 0;
  }
  if (s->replay_len > 0) drop_record(s);
  s->recording = s->replay_max > 0;
}

static void server_failed(session_t *s, int err) {
  if (s->state != S_ACTIVE) return;
  s->state = S_SERVER_DOWN;
  end_close(s, SERVER);
  queue_event(s, EV_ERROR, SERVER, err);
}

static void release_all(session_t *s) {
  lane_t *ln = s->ln;
  pipe_drop(ln, &s->c2s.p, s->c2s.len);
  pipe_drop(ln, &s->s2c.p, s->s2c.len);
  drop_record(s);
  free_record(s);
  free_buf(&s->c2s);
  free_buf(&s->s2c);
  hist_free(&s->hist[CLIENT]);
  hist_free(&s->hist[SERVER]);
  s->c2s.len = s->s2c.len = 0;
}

static void session_close(session_t *s, int reason, int emit) {
  if (s->state == S_CLOSED) return;
  s->state = S_CLOSED;
  end_close(s, CLIENT);
  end_close(s, SERVER);
  release_all(s);
  /* Not emitted (JavaScript's own close()): events still queued for it are dropped when they are
   * delivered, as the session is released by then (deliver_one). */
  if (emit) queue_event(s, EV_CLOSE, reason, 0);
}

static void client_failed(session_t *s, int err) {
  queue_event(s, EV_ERROR, CLIENT, err);
  session_close(s, R_CLIENT_ERROR, 1);
}

static void internal_failed(session_t *s, int err) {
  queue_event(s, EV_ERROR, INTERNAL, err);
  session_close(s, R_INTERNAL_ERROR, 1);
}

static int may_read(session_t *s, int side) {
  const flow_t *f = side == CLIENT ? &s->c2s : &s->s2c;
  const end_t *e = &s->end[side];
  return s->state == S_ACTIVE && !s->paused && !s->handing && !f->in_done && PENDING(f) == 0 && e->fd >= 0 &&
         s->end[!side].fd >= 0;
}

/* A write error on the out side: the server's fails the server connection (0), the client's ends
 * the session (-1). */
static int out_failed(session_t *s, int to, int err) {
  if (to == SERVER && s->framed) {
    hand_off(s, H_SERVER_ERROR, err);
    return 0;
  }
  if (to == SERVER) {
    server_failed(s, err);
    return 0;
  }
  client_failed(s, err);
  return -1;
}

/* The in side's EOF. */
static void on_eof(session_t *s, int from, flow_t *f) {
  f->in_done = 1;
  if (from == CLIENT) {
    queue_event(s, EV_CLIENT_EOF, 0, 0);
  } else {
    if (!s->hold_server_eof) s->pass_fin = 1;
    queue_event(s, EV_SERVER_EOF, s->hold_server_eof, 0);
  }
}

/* What a read's result asks of pump's loop. */
enum { READ_BYTES, READ_AGAIN, READ_STOP, READ_GONE };

/* A read (recv or splice) returned `n`: bytes to pass on, an interrupted call to retry, nothing
 * more to read now (EAGAIN, EOF, a failed server connection), or the session is gone. */
static int read_result(session_t *s, int from, end_t *in, flow_t *f, ssize_t n) {
  if (n > 0) return READ_BYTES;
  if (n == 0 && s->framed) {
    /* JavaScript decides (hide the FIN, replay, pass it on); its socket reads the EOF again. */
    hand_off(s, from == CLIENT ? H_CLIENT_EOF : H_SERVER_EOF, 0);
    return READ_STOP;
  }
  if (n == 0) {
    on_eof(s, from, f);
    return READ_STOP;
  }
  if (errno == EAGAIN) {
    in->rd_ready = 0;
    return READ_STOP;
  }
  if (errno == EINTR) return READ_AGAIN;
  if (from == SERVER && s->framed) {
    hand_off(s, H_SERVER_ERROR, errno);
    return READ_STOP;
  }
  if (from == SERVER) {
    server_failed(s, errno);
    return READ_STOP;
  }
  client_failed(s, errno);
  return READ_GONE;
}

static void on_bytes_in(session_t *s, int from, size_t n, const char *data) {
  flow_t *f = from == CLIENT ? &s->c2s : &s->s2c;
  f->in += (uint64_t)n;
  s->last_activity = s->ln->now;
  if (s->framed) return; /* framed_in follows them (pump), on lane 0 */
  if (n >= COPY_READ) s->bulky = 1;
  if (from == CLIENT)
    on_client_bytes(s, n, data);
  else
    on_server_bytes(s, n);
}

/*
 * Move bytes from `from` to the other side. Returns 0 if the session closed.
 *
 * Two ways to read: small messages (request/response) are copied — recv into the plane's one
 * scratch buffer and send on at once, two cheap calls, the record kept in memory — and bulk is
 * spliced through a pipe. A copy read that fills COPY_READ switches the direction to splice; a
 * splice read under SPLICE_MIN switches it back (HAProxy splices only past a size for the same
 * reason: for a small message, moving page references costs more than copying the bytes). What
 * the out side does not take at once stays in the direction's `buf` until it is writable.
 */
static int pump(session_t *s, int from) {
  int to = !from;
  flow_t *f = from == CLIENT ? &s->c2s : &s->s2c;
  end_t *in = &s->end[from], *out = &s->end[to];
  lane_t *ln = s->ln;
  int reads = 0;
  if (s->handing) return 1; /* what is read and not sent is JavaScript's now (detach) */
  for (;;) {
    if (f->blen > 0) {
      if (out->fd < 0 || !out->wr_ready) break;
      ssize_t n = send(out->fd, f->buf + f->boff, f->blen, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN) {
          out->wr_ready = 0;
          break;
        }
        if (errno == EINTR) continue;
        if (out_failed(s, to, errno) < 0) return 0;
        break;
      }
      f->boff += (size_t)n;
      f->blen -= (size_t)n;
      f->out += (uint64_t)n;
      s->last_activity = ln->now;
      if (f->blen == 0) free_buf(f);
      continue;
    }
    if (f->len > 0) {
      if (out->fd < 0 || !out->wr_ready) break;
      ssize_t n = splice(f->p.r, NULL, out->fd, NULL, f->len, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
      if (n < 0) {
        if (errno == EAGAIN) {
          out->wr_ready = 0;
          break;
        }
        if (errno == EINTR) continue;
        if (out_failed(s, to, errno) < 0) return 0;
        break;
      }
      if (n == 0) { /* the pipe holds less than we counted: a bug, never a hang */
        internal_failed(s, EIO);
        return 0;
      }
      f->len -= (size_t)n;
      f->out += (uint64_t)n;
      s->last_activity = ln->now;
      continue;
    }
    if (reads == READS_PER_WAKE || !in->rd_ready || !may_read(s, from)) break;
    if ((!f->bulk && ln->copy_reads) || s->framed) {
      if (ln->scratch == NULL && (ln->scratch = malloc(SCRATCH)) == NULL) {
        internal_failed(s, ENOMEM);
        return 0;
      }
      ssize_t n = recv(in->fd, ln->scratch, COPY_READ, MSG_DONTWAIT);
      reads++;
      int r = read_result(s, from, in, f, n);
      if (r == READ_AGAIN) continue;
      if (r == READ_STOP) break;
      if (r == READ_GONE) return 0;
      if (n == COPY_READ)
        f->bulk = !s->framed;
      else
        in->rd_ready = 0; /* a short read drained the socket: wait for the next readable event rather
                             than pay a recv that returns EAGAIN (level-triggered, so nothing is missed) */
      on_bytes_in(s, from, (size_t)n, ln->scratch);
      /* A framed session sends what the plane follows; the rest waits for JavaScript. */
      size_t go = s->framed ? framed_in(s, from, ln->scratch, (size_t)n) : (size_t)n;
      /* The scratch buffer is the plane's: what the out side does not take now is kept. */
      size_t sent = 0;
      int failed = 0;
      while (sent < go && out->wr_ready) {
        ssize_t w = send(out->fd, ln->scratch + sent, go - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN) {
            out->wr_ready = 0;
            break;
          }
          failed = errno;
          break;
        }
        sent += (size_t)w;
      }
      f->out += (uint64_t)sent;
      if (sent < (size_t)n) {
        f->buf = malloc((size_t)n - sent);
        if (f->buf == NULL) {
          internal_failed(s, ENOMEM);
          return 0;
        }
        memcpy(f->buf, ln->scratch + sent, (size_t)n - sent);
        f->blen = (size_t)n - sent;
        f->boff = 0;
      }
      if (failed) {
        if (out_failed(s, to, failed) < 0) return 0;
        break;
      }
      if (s->handing) return 1;
      continue;
    }
    if (f->p.r < 0 && !pipe_get(ln, &f->p, 0, 0)) {
      int e = errno;
      if (f->p.r >= 0) pipe_put(ln, &f->p);
      internal_failed(s, e);
      return 0;
    }
    /* The client's first bytes, not yet classified: looked at in the socket (MSG_PEEK) before the
     * splice takes them past us. */
    ssize_t peeked = 0;
    char peek[FIRST_MAX];
    if (from == CLIENT && !s->first_done) {
      peeked = recv(in->fd, peek, FIRST_MAX - s->first_n, MSG_PEEK | MSG_DONTWAIT);
      if (peeked > 0) first_bytes(s, peek, (size_t)peeked);
    }
    ssize_t n = splice(in->fd, NULL, f->p.w, NULL, (size_t)f->p.cap, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
    reads++;
    int r = read_result(s, from, in, f, n);
    if (r == READ_AGAIN) continue;
    if (r == READ_STOP) break;
    if (r == READ_GONE) return 0;
    /* More arrived between the peek and the splice: bytes the classification did not see. */
    if (from == CLIENT && !s->first_done && n > (peeked > 0 ? peeked : 0)) s->first_done = 1;
    if (n < SPLICE_MIN) f->bulk = 0;
    f->len = (size_t)n;
    on_bytes_in(s, from, (size_t)n, NULL);
  }
  /* Half-close: the in side's FIN goes on once everything before it has. */
  int fin_ok = from == CLIENT ? 1 : s->pass_fin;
  if (f->in_done && fin_ok && PENDING(f) == 0 && !f->fin_sent && out->fd >= 0 &&
      (to == CLIENT || s->state == S_ACTIVE)) {
    shutdown(out->fd, SHUT_WR);
    f->fin_sent = 1;
  }
  return 1;
}


static void update(session_t *s) {
  for (int side = CLIENT; side <= SERVER; side++) {
    const flow_t *into = side == CLIENT ? &s->s2c : &s->c2s;
    int mask = 0;
    if (may_read(s, side)) mask |= EPOLLIN;
    if (PENDING(into) > 0 && !s->handing) mask |= EPOLLOUT;
    if (!end_watch(s, side, mask)) {
      internal_failed(s, errno);
      return;
    }
  }
  /* An idle direction holds no pipe. */
  if (s->c2s.len == 0) pipe_put(s->ln, &s->c2s.p);
  if (s->s2c.len == 0) pipe_put(s->ln, &s->s2c.p);
  if (s->replay_len == 0) {
    pipe_put(s->ln, &s->replay);
    if (s->rec != NULL) free_record(s);
  }
  /* An idle framed session holds no history either. */
  if (s->hist[CLIENT].len == 0 && s->hist[CLIENT].b != NULL) hist_free(&s->hist[CLIENT]);
  if (s->hist[SERVER].len == 0 && s->hist[SERVER].b != NULL) hist_free(&s->hist[SERVER]);
}

/* Under the lane's lock, on the lane. */
static void process(session_t *s) {
  if (s->state == S_CLOSED) return;
  if (pump(s, CLIENT)) pump(s, SERVER);
  if (s->state == S_CLOSED) return;
  if (s->c2s.in_done && s->c2s.fin_sent && s->s2c.in_done && s->s2c.fin_sent &&
      PENDING(&s->c2s) == 0 && PENDING(&s->s2c) == 0 && s->state == S_ACTIVE)
    session_close(s, R_DONE, 1);
  else
    update(s);
}

/* ------------------------------------------------------------------------------------------------
 * Lanes */

/* Under the lock: make the lane's epoll_wait return (once per wake-up, however many calls). */
static void lane_wake(lane_t *ln) {
  if (ln->wake_sent) return;
  uint64_t one = 1;
  ssize_t w;
  do w = write(ln->wakefd, &one, sizeof one);
  while (w < 0 && errno == EINTR);
  ln->wake_sent = 1;
}

/* Under the lock. */
static void grave_free(lane_t *ln) {
  for (uint32_t i = 0; i < ln->ngrave; i++) free(ln->grave[i]);
  ln->ngrave = 0;
}

/*
 * One wake-up of a lane: the sessions epoll reported, then the released ones are freed (no event
 * of this batch is left to name them). The lock is taken per session. Returns 1 when the lane is
 * told to stop.
 */
static void connect_done(lane_t *ln, uint64_t token);
static void accept_ready(lane_t *ln, int lfd);
static void client_gone(lane_t *ln, uint64_t token);

static int lane_run(lane_t *ln, const struct epoll_event *evs, int n) {
  uint64_t now = mono_ms();
  for (int i = 0; i < n; i++) {
    uint64_t d = evs[i].data.u64;
    if (d == 0) continue; /* the wake-up eventfd: read below */
    if ((d & TAG_MASK) > 1) {
      if ((d & TAG_MASK) == LISTEN_TAG)
        accept_ready(ln, (int)(d >> TAG_BITS));
      else if ((d & TAG_MASK) == GONE_TAG)
        client_gone(ln, d >> TAG_BITS);
      else
        connect_done(ln, d >> TAG_BITS);
      continue;
    }
    session_t *s = (session_t *)(uintptr_t)(d & ~(uint64_t)1);
    uint32_t ev = evs[i].events;
    uv_mutex_lock(&ln->lock);
    /* s->ln: a session lane 0 moved to a thread earlier in this batch is that thread's now. */
    if (s->ln == ln && s->state != S_CLOSED) {
      /* A stale event of a replaced server descriptor lands on the new one: a spurious readiness,
       * which the next read or write (EAGAIN) clears. */
      end_t *e = &s->end[d & 1];
      ln->now = now;
      if (ev & (EPOLLERR | EPOLLHUP)) e->rd_ready = e->wr_ready = 1; /* the next call reports it */
      if (ev & EPOLLIN) e->rd_ready = 1;
      if (ev & EPOLLOUT) e->wr_ready = 1;
      process(s);
      if (!ln->threaded && s->bulky && s->state != S_CLOSED) {
        lane_t *to = lane_pick_thread(ln->pl);
        if (to != NULL) migrate(s, to);
      }
    }
    uv_mutex_unlock(&ln->lock);
  }
  uv_mutex_lock(&ln->lock);
  ln->now = now;
  if (ln->wake_sent) {
    uint64_t x;
    ssize_t r;
    do r = read(ln->wakefd, &x, sizeof x);
    while (r < 0 && errno == EINTR);
    ln->wake_sent = 0;
  }
  grave_free(ln);
  int stop = ln->stop;
  int notify = ln->out.n > 0;
  uv_mutex_unlock(&ln->lock);
  if (notify && ln->threaded) uv_async_send(ln->pl->async);
  return stop;
}

static void lane_main(void *arg) {
  lane_t *ln = arg;
  /* Signals are the main thread's (libuv's handlers): none interrupts a plane thread. */
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  struct epoll_event evs[BATCH];
  for (;;) {
    int n = epoll_wait(ln->epfd, evs, BATCH, -1);
    if (n < 0) n = 0; /* EINTR; nothing else can fail on a valid epoll descriptor */
    if (lane_run(ln, evs, n)) break;
  }
}

static void deliver(plane_t *pl);

/* Lane 0: its epoll descriptor became readable on the main loop. */
static void on_lane_poll(uv_poll_t *h, int status, int events) {
  lane_t *ln = h->data;
  struct epoll_event evs[BATCH];
  int n = epoll_wait(ln->epfd, evs, BATCH, 0);
  lane_run(ln, evs, n < 0 ? 0 : n);
  deliver(ln->pl);
}

static void handle_closed(plane_t *pl);

static void on_handle_closed(uv_handle_t *h) {
  plane_t *pl = h->data;
  free(h);
  handle_closed(pl);
}

/* Under the lock: close one of the lane's idle pipes. */
static void idle_close_one(lane_t *ln) {
  pipe_destroy(ln, &ln->idle[--ln->nidle]);
  __atomic_sub_fetch(&ln->pl->idle_total, 1, __ATOMIC_RELAXED);
}

/* Under the lock: the plane's settings; idle pipes past maxIdlePipes (all lanes together) closed. */
static void lane_settings(lane_t *ln) {
  plane_t *pl = ln->pl;
  ln->pipe_size = pl->pipe_size;
  ln->copy_reads = pl->copy_reads;
  while (ln->nidle > 0 &&
         __atomic_load_n(&pl->idle_total, __ATOMIC_RELAXED) > __atomic_load_n(&pl->max_idle, __ATOMIC_RELAXED))
    idle_close_one(ln);
}

static void lane_free(lane_t *ln) {
  while (ln->nidle > 0) idle_close_one(ln);
  for (uint32_t i = 0; i < ln->ngrave; i++) free(ln->grave[i]);
  if (ln->epfd >= 0) close(ln->epfd);
  if (ln->wakefd >= 0) close(ln->wakefd);
  free(ln->idle);
  free(ln->scratch);
  free(ln->grave);
  free(ln->out.v);
  uv_mutex_destroy(&ln->lock);
  free(ln);
}

/* A new lane (its thread not started yet). NULL on failure, errno set. */
static lane_t *lane_new(plane_t *pl, int index) {
  lane_t *ln = calloc(1, sizeof(lane_t));
  if (ln == NULL) return NULL;
  ln->pl = pl;
  ln->index = index;
  ln->threaded = index > 0;
  ln->epfd = ln->wakefd = -1;
  if (uv_mutex_init(&ln->lock) != 0) {
    free(ln);
    errno = ENOMEM;
    return NULL;
  }
  ln->epfd = epoll_create1(EPOLL_CLOEXEC);
  ln->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data = {.u64 = 0}};
  if (ln->epfd < 0 || ln->wakefd < 0 || epoll_ctl(ln->epfd, EPOLL_CTL_ADD, ln->wakefd, &ev) != 0) {
    int e = errno;
    lane_free(ln);
    errno = e;
    return NULL;
  }
  lane_settings(ln);
  if (!ln->threaded) {
    ln->poll = malloc(sizeof(uv_poll_t));
    int rc = ln->poll == NULL ? UV_ENOMEM : uv_poll_init(pl->loop, ln->poll, ln->epfd);
    if (rc != 0) {
      free(ln->poll);
      lane_free(ln);
      errno = -rc;
      return NULL;
    }
    ln->poll->data = ln;
    pl->handles_open++;
    uv_poll_start(ln->poll, UV_READABLE, on_lane_poll);
    uv_unref((uv_handle_t *)ln->poll); /* the async handle keeps the loop alive while sessions live */
  }
  return ln;
}

/* Lane `index`, created and its thread started if need be. NULL on failure, errno set. */
static lane_t *lane_get(plane_t *pl, int index) {
  lane_t *ln = pl->lanes[index];
  if (ln == NULL && (ln = pl->lanes[index] = lane_new(pl, index)) == NULL) return NULL;
  if (ln->threaded && !ln->running) {
    uv_thread_options_t opt;
    opt.flags = UV_THREAD_HAS_STACK_SIZE;
    opt.stack_size = LANE_STACK;
    int rc = uv_thread_create_ex(&ln->thread, &opt, lane_main, ln);
    if (rc != 0) {
      errno = -rc;
      return NULL;
    }
    ln->running = 1;
    /* Named here rather than by the thread itself, so the name is there once attach returns. */
    char name[16];
    snprintf(name, sizeof name, "baton-plane-%d", ln->index);
    pthread_setname_np(ln->thread, name);
  }
  return ln;
}

/* Stop and join a lane's thread (main thread). Its sessions, if any, wait until it starts again;
 * only lanes without any are stopped, but at teardown. */
static void lane_stop(lane_t *ln) {
  if (!ln->running) return;
  uv_mutex_lock(&ln->lock);
  ln->stop = 1;
  lane_wake(ln);
  uv_mutex_unlock(&ln->lock);
  uv_thread_join(&ln->thread);
  ln->running = 0;
  ln->stop = 0;
}

/* The plane thread for a session that goes bulk: the least loaded of lanes 1..threads (round-robin
 * among equals). NULL when none can be had (errno set): the session stays where it is. */
static lane_t *lane_pick_thread(plane_t *pl) {
  if (pl->threads == 0) return NULL;
  for (int i = 1; i <= pl->threads; i++)
    if (lane_get(pl, i) == NULL) return NULL;
  int best = 0;
  uint32_t load = 0;
  for (int k = 0; k < pl->threads; k++) {
    int i = 1 + (int)((pl->rr + (uint32_t)k) % (uint32_t)pl->threads);
    if (best == 0 || pl->lanes[i]->live < load) {
      best = i;
      load = pl->lanes[i]->live;
    }
  }
  pl->rr++;
  return pl->lanes[best];
}

/* A new session starts on lane 0, the main loop. Every configured thread starts with the first
 * session, so the process's threads and descriptors settle at once (a thread that cannot start
 * now is tried again when a session goes bulk). */
static lane_t *lane_for_new(plane_t *pl) {
  for (int i = 1; i <= pl->threads; i++) lane_get(pl, i);
  return lane_get(pl, 0);
}

/* Lane 0, on the main thread, with its lock held (no other thread ever takes it): move a session
 * that went bulk to plane thread `to`. Its descriptors leave lane 0's epoll and join `to`'s, which
 * the kernel then wakes; its pipes are counted in `to`'s pool from now on. */
static void migrate(session_t *s, lane_t *to) {
  lane_t *from = s->ln;
  plane_t *pl = from->pl;
  end_watch(s, CLIENT, 0);
  end_watch(s, SERVER, 0);
  double pipes = (s->c2s.p.r >= 0) + (s->s2c.p.r >= 0) + (s->replay.r >= 0);
  from->in_use -= pipes;
  from->live--;
  to->live++;
  uv_mutex_lock(&to->lock);
  to->in_use += pipes;
  s->ln = to;
  s->end[CLIENT].rd_ready = s->end[CLIENT].wr_ready = 1;
  s->end[SERVER].rd_ready = s->end[SERVER].wr_ready = 1;
  to->now = from->now;
  update(s);
  /* Not in `to`'s epoll (it failed, and closed): nothing wakes the thread to report it. */
  if (to->out.n > 0 && s->state == S_CLOSED) uv_idle_start(pl->idle, on_idle);
  uv_mutex_unlock(&to->lock);
}

/* JavaScript is done with a session (its close event delivered, or close()): main thread. Its lane
 * frees it once no event in flight can name it. */
static void release(plane_t *pl, session_t *s) {
  lane_t *ln = s->ln;
  slot_free(pl, s);
  ln->live--;
  if (pl->live == 0) uv_unref((uv_handle_t *)pl->async);
  if (!ln->threaded) {
    /* Lane 0 runs its batches on this thread, each to the end: none is in flight now. */
    free(s);
  } else {
    uv_mutex_lock(&ln->lock);
    if (grow((void **)&ln->grave, &ln->cap_grave, ln->ngrave, sizeof(session_t *)))
      ln->grave[ln->ngrave++] = s;
    /* else ENOMEM: the session leaks rather than risk a use after free */
    if (ln->ngrave >= GRAVE_WAKE || ln->live == 0) lane_wake(ln);
    uv_mutex_unlock(&ln->lock);
  }
  /* A thread the configuration no longer has ends with its last session. */
  if (ln->threaded && ln->index > pl->threads && ln->live == 0 && !pl->shutting_down) {
    lane_stop(ln);
    uv_mutex_lock(&ln->lock);
    grave_free(ln);
    uv_mutex_unlock(&ln->lock);
  }
}

/* ------------------------------------------------------------------------------------------------
 * Delivery to JavaScript (main thread, from a uv callback: no JavaScript on the stack) */

static void report_exception(napi_env env) {
  napi_value err;
  if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
}

/* One event; the callback may call back in (close, replaceServer, ...). A session JavaScript
 * released (close()) hears nothing more. After `close`, the session is released. */
static void deliver_one(plane_t *pl, const event_t *e) {
  session_t *s = NULL;
  if (e->kind != EV_CONNECT && e->kind != EV_ACCEPT && e->kind != EV_CLIENT_GONE) { /* a token */
    s = lookup(pl, e->id);
    if (s == NULL) return;
    /* Of a server replaced since (server_gen is the main thread's own: no lock needed to read it). */
    if ((e->kind == EV_SERVER_EOF || (e->kind == EV_ERROR && e->a == SERVER)) && e->gen != s->server_gen)
      return;
  }
  napi_env env = pl->env;
  napi_handle_scope scope;
  if (pl->callback != NULL && napi_open_handle_scope(env, &scope) == napi_ok) {
    napi_value fn, recv;
    if (napi_get_reference_value(env, pl->callback, &fn) == napi_ok && fn != NULL &&
        napi_get_global(env, &recv) == napi_ok) {
      napi_value argv[6], result;
      size_t argc = 4;
      napi_create_double(env, e->id, &argv[0]);
      napi_create_int32(env, e->kind, &argv[1]);
      napi_create_int32(env, e->kind == EV_ACCEPT ? (int32_t)e->gen : e->a, &argv[2]);
      napi_create_int32(env, e->err, &argv[3]);
      if (e->kind == EV_ACCEPT) {
        /* (token, EV_ACCEPT, listening fd, errno, address, port) */
        char host[INET6_ADDRSTRLEN] = "";
        if (e->fam == 4 || e->fam == 6) inet_ntop(e->fam == 4 ? AF_INET : AF_INET6, e->addr, host, sizeof host);
        napi_create_string_utf8(env, host, NAPI_AUTO_LENGTH, &argv[4]);
        napi_create_int32(env, e->port, &argv[5]);
        argc = 6;
      }
      napi_status st = napi_make_callback(env, pl->async_ctx, recv, fn, argc, argv, &result);
      if (st == napi_pending_exception) report_exception(env);
    }
    napi_close_handle_scope(env, scope);
  }
  if (e->kind == EV_CLOSE && (s = lookup(pl, e->id)) != NULL) release(pl, s);
}

/* ------------------------------------------------------------------------------------------------
 * Server connects made by the plane (docs/native-plane.md, "Connects"): no Node socket for the
 * server, so none of its set-up, its libuv registration, the dup and the close of the original.
 * The descriptor waits in lane 0's epoll (EPOLLOUT, one-shot); its completion is an EV_CONNECT
 * event with SO_ERROR. A failed one is closed here; a good one stays in lane 0's epoll, disarmed,
 * for attach() to take over (one EPOLL_CTL_MOD) or cancelConnect() to close. */

/* Under the lane's lock: a zeroed event about a token (a connect, an accepted client) at the end of
 * the lane's queue, or NULL (ENOMEM). */
static event_t *token_event(lane_t *ln, int kind, uint64_t token, int err) {
  events_t *q = &ln->out;
  if (!grow((void **)&q->v, &q->cap, q->n, sizeof(event_t))) return NULL;
  event_t *e = &q->v[q->n++];
  memset(e, 0, sizeof *e);
  e->id = (double)token;
  e->kind = (uint8_t)kind;
  e->err = err;
  return e;
}

/* Lane 0, on the main thread. */
static void connect_done(lane_t *ln, uint64_t token) {
  int fd = (int)(token & CONN_FD_MASK);
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) close(fd); /* out of the epoll with it: nothing else holds the file */
  uv_mutex_lock(&ln->lock);
  token_event(ln, EV_CONNECT, token, err);
  uv_mutex_unlock(&ln->lock);
}

/* ------------------------------------------------------------------------------------------------
 * Accepting (docs/native-plane.md, "Accepts"): a listening socket JavaScript bound is watched in
 * lane 0's epoll (listen()); each readable event accepts up to MAX_ACCEPT clients with accept4,
 * which gives the client's address without a getpeername. Each client is one EV_ACCEPT event with
 * a token like a connect's; its descriptor is in no epoll until attach() takes it (F_CLIENT_OWNED),
 * and JavaScript may instead close it or take it for a Node socket. Out of descriptors (or any
 * other accept failure), the listening socket leaves the epoll's interest set and one EV_ACCEPT
 * with the errno says so: new clients wait in the kernel's queue until resumeAccept(), as HAProxy
 * pauses a listener rather than accept and drop clients it cannot serve. */

/* Lane 0, on the main thread, under its lock. */
static void queue_accept(lane_t *ln, int lfd, uint64_t token, int err, const struct sockaddr_storage *sa) {
  event_t *e = token_event(ln, EV_ACCEPT, token, err);
  if (e == NULL) {
    if (token != 0) close((int)(token & CONN_FD_MASK)); /* ENOMEM: the client is closed */
    return;
  }
  e->gen = (uint32_t)lfd;
  if (sa != NULL && sa->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    e->fam = 4;
    memcpy(e->addr, &in->sin_addr, 4);
    e->port = ntohs(in->sin_port);
  } else if (sa != NULL && sa->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    e->fam = 6;
    memcpy(e->addr, &in6->sin6_addr, 16);
    e->port = ntohs(in6->sin6_port);
  }
}

/* A listening socket in lane 0's epoll: add it, change its interest (0: paused), or take it out. */
static int listen_watch(lane_t *ln, int fd, int op, uint32_t events) {
  struct epoll_event ev;
  ev.events = events;
  ev.data.u64 = ((uint64_t)fd << TAG_BITS) | LISTEN_TAG;
  return epoll_ctl(ln->epfd, op, fd, &ev);
}

/* Lane 0, on the main thread: the listening socket `lfd` is readable. */
static void accept_ready(lane_t *ln, int lfd) {
  plane_t *pl = ln->pl;
  uv_mutex_lock(&ln->lock);
  for (int i = 0; i < MAX_ACCEPT; i++) {
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    int fd = accept4(lfd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0 && (unsigned)fd > CONN_FD_MASK) {
      close(fd);
      fd = -1;
      err = EMFILE;
    }
    if (fd < 0) {
      /* A client that reset while queued, or a signal: the next one. The queue is empty: done. */
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
      if (err == EAGAIN) break;
      listen_watch(ln, lfd, EPOLL_CTL_MOD, 0);
      queue_accept(ln, lfd, 0, err, NULL);
      break;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pl->conn_gen = (pl->conn_gen + 1) & ((1u << 30) - 1);
    uint64_t token = ((uint64_t)pl->conn_gen << CONN_FD_BITS) | (uint64_t)fd;
    /* Until the attach: a client that resets while its server is being connected is reported
     * (client_gone), as Node's socket would report it; a FIN alone is not (a half-closed client may
     * still want its answer). The attach's first update is then an EPOLL_CTL_MOD. */
    struct epoll_event ev;
    ev.events = EPOLLONESHOT;
    ev.data.u64 = (token << TAG_BITS) | GONE_TAG;
    if (epoll_ctl(ln->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close(fd);
      continue;
    }
    queue_accept(ln, lfd, token, 0, &sa);
  }
  uv_mutex_unlock(&ln->lock);
}

/* Lane 0, on the main thread: an accepted client not yet attached reset or failed. Its descriptor
 * stays JavaScript's (closeAccepted). */
static void client_gone(lane_t *ln, uint64_t token) {
  int fd = (int)(token & CONN_FD_MASK);
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0) err = ECONNRESET;
  uv_mutex_lock(&ln->lock);
  token_event(ln, EV_CLIENT_GONE, token, err);
  uv_mutex_unlock(&ln->lock);
}

static void deliver(plane_t *pl) {
  for (int i = 0; i <= MAX_THREADS && !pl->shutting_down; i++) {
    lane_t *ln = pl->lanes[i];
    if (ln == NULL) continue;
    uv_mutex_lock(&ln->lock);
    events_t q = ln->out;
    if (q.n > 0) {
      ln->out = pl->spare;
      pl->spare.v = NULL;
      pl->spare.cap = 0;
    }
    uv_mutex_unlock(&ln->lock);
    if (q.n == 0) continue;
    /* New clients last: a server's FIN in this batch then reaches the crash check before the new
     * sessions' connects start, so those connects can witness it (replay/crash-check.ts: only a
     * connect that started after a close answers for it). Accepts belong to no session: moving
     * them changes no session's order of events. */
    for (uint32_t k = 0; k < q.n && !pl->shutting_down; k++)
      if (q.v[k].kind != EV_ACCEPT) deliver_one(pl, &q.v[k]);
    for (uint32_t k = 0; k < q.n && !pl->shutting_down; k++)
      if (q.v[k].kind == EV_ACCEPT) deliver_one(pl, &q.v[k]);
    q.n = 0;
    if (pl->spare.v == NULL)
      pl->spare = q;
    else
      free(q.v);
  }
}

static void on_async(uv_async_t *h) {
  deliver(h->data);
}

static void on_idle(uv_idle_t *h) {
  uv_idle_stop(h);
  deliver(h->data);
}

/*
 * A call from JavaScript changed a session: pump it now, on this thread, under the lane's lock
 * (what the lane would do on its next wake-up, without the wake-up: no eventfd, no thread hop).
 * What it queues for JavaScript is delivered on the next loop turn, never inside the call.
 */
static void api_pump(plane_t *pl, session_t *s) {
  lane_t *ln = s->ln;
  uint32_t before = ln->out.n;
  ln->now = mono_ms();
  process(s);
  if (ln->out.n > before) uv_idle_start(pl->idle, on_idle);
}

/* ------------------------------------------------------------------------------------------------
 * N-API glue */

static int throw_errno(napi_env env, const char *what, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, "ERR_NATIVE_PLANE_SYSCALL", msg);
  return 0;
}

#define GET_ARGS(n)                                                                 \
  size_t argc = n;                                                                  \
  napi_value argv[n];                                                               \
  plane_t *pl;                                                                      \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&pl) != napi_ok) return NULL;

static int arg_double(napi_env env, napi_value v, double *out) {
  if (napi_get_value_double(env, v, out) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected a number");
    return 0;
  }
  return 1;
}

/* A session JavaScript has not released (it may be closed, its close event on its way). */
static session_t *arg_session(napi_env env, plane_t *pl, napi_value v) {
  double id;
  if (!arg_double(env, v, &id)) return NULL;
  session_t *s = lookup(pl, id);
  if (s == NULL)
    napi_throw_error(env, "ERR_NATIVE_PLANE_SESSION", "no such session (closed or never opened)");
  return s;
}

/* fcntl(F_DUPFD_CLOEXEC), non-blocking. */
static int dup_socket(napi_env env, double d) {
  if (!(d >= 0 && d < 2147483647.0) || d != (double)(int)d) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "fd must be a non-negative integer");
    return -1;
  }
  /* O_NONBLOCK is on the file description the two descriptors share (libuv opened Node's sockets
   * with it); set once more with one ioctl (as uv_poll_init_socket did), for a raw descriptor: a
   * blocking one would hang a plane thread with its lock held. */
  int fd = fcntl((int)d, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, "dup", errno);
    return -1;
  }
  int on = 1;
  if (ioctl(fd, FIONBIO, &on) != 0) {
    int e = errno;
    close(fd);
    throw_errno(env, "ioctl FIONBIO", e);
    return -1;
  }
  return fd;
}

static int pipe_cap_for(size_t bytes) {
  long page = sysconf(_SC_PAGESIZE);
  if (page <= 0) page = 4096;
  size_t cap = (bytes + (size_t)page - 1) / (size_t)page * (size_t)page;
  return cap > 0x40000000u ? 0x40000000 : (int)cap;
}

/* attach(clientFd, serverFd, replayBytes, flags, head?) → id */
/* An error whose `code` is the errno's name (EMFILE, ECONNREFUSED): what Node's own errors say, so
 * that JavaScript tells Baton's shortages from a backend's refusal the same way for both. */
static int throw_errno_named(napi_env env, const char *what, int err) {
  char msg[160];
  const char *name = strerrorname_np(err);
  snprintf(msg, sizeof msg, "%s %s", what, name != NULL ? name : strerror(err));
  napi_throw_error(env, name != NULL ? name : "ERR_NATIVE_PLANE_SYSCALL", msg);
  return 0;
}

/* connect(family 4|6, address, port, now?) → token. The connect has started (or failed at once:
 * thrown, with the errno's name as the code); its outcome comes as an EV_CONNECT event, or, with
 * `now` and a connect done inside the call, the token says so (CONN_NOW). */
static napi_value js_connect(napi_env env, napi_callback_info info) {
  GET_ARGS(4)
  double fam_d, port_d, now_d = 0;
  char addr[64];
  size_t alen = 0;
  if (argc < 3 || !arg_double(env, argv[0], &fam_d) || !arg_double(env, argv[2], &port_d)) return NULL;
  if (argc >= 4 && !arg_double(env, argv[3], &now_d)) return NULL;
  if (napi_get_value_string_utf8(env, argv[1], addr, sizeof addr, &alen) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "address must be a string");
    return NULL;
  }
  struct sockaddr_storage sa;
  socklen_t salen;
  memset(&sa, 0, sizeof sa);
  int port = (int)port_d;
  if (!(port_d >= 0 && port_d <= 65535) || port != port_d) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "port must be 0 .. 65535");
    return NULL;
  }
  if (fam_d == 4) {
    struct sockaddr_in *in = (struct sockaddr_in *)&sa;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &in->sin_addr) != 1) goto bad;
    salen = sizeof *in;
  } else if (fam_d == 6) {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, addr, &in6->sin6_addr) != 1) goto bad;
    salen = sizeof *in6;
  } else {
    goto bad;
  }
  if (pl->callback == NULL) {
    napi_throw_error(env, "ERR_NATIVE_PLANE_NO_CALLBACK", "setCallback() first");
    return NULL;
  }
  lane_t *ln = lane_get(pl, 0);
  if (ln == NULL) return throw_errno(env, "plane lane", errno), NULL;
  int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno_named(env, "socket", errno), NULL;
  if ((unsigned)fd > CONN_FD_MASK) {
    close(fd);
    return throw_errno_named(env, "socket", EMFILE), NULL;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&sa, salen) != 0 && errno != EINPROGRESS) {
    int e = errno;
    close(fd);
    return throw_errno_named(env, "connect", e), NULL;
  }
  pl->conn_gen = (pl->conn_gen + 1) & ((1u << 30) - 1);
  uint64_t token = ((uint64_t)pl->conn_gen << CONN_FD_BITS) | (uint64_t)fd;
  /* Done already? On loopback the handshake runs inside connect(): then the outcome is known now,
   * and waiting for the epoll to say so would cost the session a turn of the main loop (measured:
   * 380 µs on average under churn when the connect was started from a plane callback). */
  struct pollfd pfd = {.fd = fd, .events = POLLOUT, .revents = 0};
  int soerr = 0;
  socklen_t soerr_len = sizeof soerr;
  if (now_d > 0 && pl->connect_now && poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLERR | POLLHUP)) == 0 &&
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &soerr_len) == 0 && soerr == 0) {
    napi_value now;
    napi_create_double(env, (double)(token | CONN_NOW), &now);
    return now;
  }
  struct epoll_event ev;
  ev.events = EPOLLOUT | EPOLLONESHOT;
  ev.data.u64 = (token << TAG_BITS) | CONN_TAG;
  if (epoll_ctl(ln->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    int e = errno;
    close(fd);
    return throw_errno_named(env, "epoll_ctl", e), NULL;
  }
  napi_value out;
  napi_create_double(env, (double)token, &out);
  return out;
bad:
  napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "expected family 4 or 6 and an IP address of it");
  return NULL;
}

static int arg_token_fd(napi_env env, napi_value v) {
  double t;
  if (!arg_double(env, v, &t)) return -1;
  if (!(t >= 0 && t < 9007199254740992.0)) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "not a connect token");
    return -1;
  }
  return (int)((uint64_t)t & CONN_FD_MASK);
}

/* cancelConnect(token): the connect is no longer wanted (timed out, its session ended). Only for a
 * token whose EV_CONNECT has not reported a failure (that one is closed already) and that no
 * attach() took. */
static napi_value js_cancel_connect(napi_env env, napi_callback_info info) {
  GET_ARGS(1)
  (void)pl;
  int fd = arg_token_fd(env, argv[0]);
  if (fd >= 0) close(fd);
  return NULL;
}

/* localName(token) → "address:port" of a connected token (the table's `server` field). */
static napi_value js_local_name(napi_env env, napi_callback_info info) {
  GET_ARGS(1)
  (void)pl;
  int fd = arg_token_fd(env, argv[0]);
  if (fd < 0) return NULL;
  struct sockaddr_storage sa;
  socklen_t len = sizeof sa;
  char host[INET6_ADDRSTRLEN] = "", out[INET6_ADDRSTRLEN + 8];
  int port = 0;
  if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
    if (sa.ss_family == AF_INET) {
      inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, host, sizeof host);
      port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
    } else if (sa.ss_family == AF_INET6) {
      inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, host, sizeof host);
      port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    }
  }
  snprintf(out, sizeof out, "%s:%d", host, port);
  napi_value v;
  napi_create_string_utf8(env, out, NAPI_AUTO_LENGTH, &v);
  return v;
}

static int arg_fd(napi_env env, napi_value v) {
  double d;
  if (!arg_double(env, v, &d)) return -1;
  if (!(d >= 0 && d <= (double)CONN_FD_MASK) || d != (double)(int)d) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "fd must be a descriptor number");
    return -1;
  }
  return (int)d;
}

/* listen(fd, backlog): accept on `fd`, a bound socket the caller keeps (and closes after unlisten);
 * listen(2) is called with `backlog` (0: the socket listens already). */
static napi_value js_listen(napi_env env, napi_callback_info info) {
  GET_ARGS(2)
  double backlog;
  if (argc < 2) return NULL;
  int fd = arg_fd(env, argv[0]);
  if (fd < 0 || !arg_double(env, argv[1], &backlog)) return NULL;
  if (pl->callback == NULL) {
    napi_throw_error(env, "ERR_NATIVE_PLANE_NO_CALLBACK", "setCallback() first");
    return NULL;
  }
  lane_t *ln = lane_get(pl, 0);
  if (ln == NULL) return throw_errno(env, "plane lane", errno), NULL;
  if (backlog > 0 && listen(fd, backlog > 65535 ? 65535 : (int)backlog) != 0)
    return throw_errno_named(env, "listen", errno), NULL;
  int on = 1;
  if (ioctl(fd, FIONBIO, &on) != 0) return throw_errno_named(env, "ioctl FIONBIO", errno), NULL;
  if (listen_watch(ln, fd, EPOLL_CTL_ADD, EPOLLIN) != 0) return throw_errno_named(env, "epoll_ctl", errno), NULL;
  /* A listening socket keeps the process alive, as Node's own listening server does. */
  if (pl->listens++ == 0) uv_ref((uv_handle_t *)ln->poll);
  return NULL;
}

/* unlisten(fd): stop accepting on `fd` (the caller closes it). Accepts already queued are still
 * delivered. */
static napi_value js_unlisten(napi_env env, napi_callback_info info) {
  GET_ARGS(1)
  if (argc < 1) return NULL;
  int fd = arg_fd(env, argv[0]);
  lane_t *ln = pl->lanes[0];
  if (fd < 0 || ln == NULL) return NULL;
  if (listen_watch(ln, fd, EPOLL_CTL_DEL, 0) == 0 && pl->listens > 0 && --pl->listens == 0)
    uv_unref((uv_handle_t *)ln->poll);
  return NULL;
}

/* forgetAccepted(token): an accepted client leaves lane 0's epoll (its descriptor becomes a Node
 * socket's, which registers it in libuv's own). */
static napi_value js_forget_accepted(napi_env env, napi_callback_info info) {
  GET_ARGS(1)
  if (argc < 1) return NULL;
  int fd = arg_token_fd(env, argv[0]);
  lane_t *ln = pl->lanes[0];
  if (fd >= 0 && ln != NULL) epoll_ctl(ln->epfd, EPOLL_CTL_DEL, fd, NULL);
  return NULL;
}

/* resumeAccept(fd): accept again after a failed accept paused it. */
static napi_value js_resume_accept(napi_env env, napi_callback_info info) {
  GET_ARGS(1)
  if (argc < 1) return NULL;
  int fd = arg_fd(env, argv[0]);
  lane_t *ln = pl->lanes[0];
  if (fd < 0 || ln == NULL) return NULL;
  if (listen_watch(ln, fd, EPOLL_CTL_MOD, EPOLLIN) != 0) throw_errno_named(env, "epoll_ctl", errno);
  return NULL;
}

static napi_value js_attach(napi_env env, napi_callback_info info) {
  GET_ARGS(6)
  double cfd_d, sfd_d, replay_d, flags_d;
  if (argc < 4 || !arg_double(env, argv[0], &cfd_d) || !arg_double(env, argv[1], &sfd_d) ||
      !arg_double(env, argv[2], &replay_d) || !arg_double(env, argv[3], &flags_d))
    return NULL;
  void *head = NULL;
  size_t head_len = 0;
  if (argc >= 5) {
    napi_valuetype t;
    napi_typeof(env, argv[4], &t);
    if (t != napi_undefined && t != napi_null &&
        napi_get_buffer_info(env, argv[4], &head, &head_len) != napi_ok) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "head must be a Buffer");
      return NULL;
    }
  }
  /* F_SERVER_OWNED: sfd_d is a connect() token whose connect succeeded: the descriptor is the
   * plane's already, registered (disarmed) in lane 0's epoll, and this call owns it from here on:
   * closed on every failure below. */
  int owned = ((int)flags_d & F_SERVER_OWNED) != 0;
  int owned_fd = owned && sfd_d >= 0 && sfd_d < 9007199254740992.0 ? (int)((uint64_t)sfd_d & CONN_FD_MASK) : -1;
  /* F_CLIENT_OWNED: cfd_d is a client the plane accepted (listen()): its descriptor is the plane's
   * already (in no epoll), and this call owns it as it owns a connected server. */
  int cowned = ((int)flags_d & F_CLIENT_OWNED) != 0;
  int cowned_fd = cowned && cfd_d >= 0 && cfd_d < 9007199254740992.0 ? (int)((uint64_t)cfd_d & CONN_FD_MASK) : -1;
#define DROP_OWNED()                 \
  do {                               \
    if (owned) close(owned_fd);      \
    if (cowned) close(cowned_fd);    \
  } while (0)
  if ((owned && owned_fd < 0) || (cowned && cowned_fd < 0)) {
    if (owned && owned_fd >= 0) close(owned_fd);
    if (cowned && cowned_fd >= 0) close(cowned_fd);
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "not a connect or accept token");
    return NULL;
  }
  if (!(replay_d >= 0 && replay_d <= 1073741824.0)) {
    DROP_OWNED();
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "replayBytes must be 0 .. 1 GiB");
    return NULL;
  }
  if (pl->callback == NULL) {
    DROP_OWNED();
    napi_throw_error(env, "ERR_NATIVE_PLANE_NO_CALLBACK", "setCallback() first");
    return NULL;
  }
  lane_t *ln = lane_for_new(pl);
  if (ln == NULL) {
    DROP_OWNED();
    throw_errno(env, "plane thread", errno);
    return NULL;
  }
  session_t *s = calloc(1, sizeof(session_t));
  if (s == NULL) {
    DROP_OWNED();
    throw_errno(env, "calloc", ENOMEM);
    return NULL;
  }
  s->ln = ln;
  s->end[CLIENT].fd = s->end[SERVER].fd = -1;
  s->c2s.p.r = s->c2s.p.w = s->s2c.p.r = s->s2c.p.w = s->replay.r = s->replay.w = -1;
  s->replay_max = (size_t)replay_d;
  s->replay_cap = s->replay_max ? (size_t)pipe_cap_for(s->replay_max) : 0;
  s->recording = s->replay_max > 0;
  s->hold_server_eof = ((int)flags_d & F_HOLD_SERVER_EOF) != 0;
  s->pass_fin = !s->hold_server_eof;
  s->last_activity = mono_ms();
  if ((int)flags_d & (F_HTTP1 | F_RESP)) {
    /* Followed by h1_* or resp_*; JavaScript keeps the record and decides (EV_HANDOFF). The 6th
     * argument: http1's maxHeadBytes, resp's maxBulkBytes. */
    double limit = 0;
    if (argc >= 6) napi_get_value_double(env, argv[5], &limit);
    s->framed = 1;
    s->resp = ((int)flags_d & F_RESP) != 0;
    follow_limit(s, limit);
    s->replay_max = s->replay_cap = 0;
    s->recording = 0;
    s->hold_server_eof = 0;
    s->pass_fin = 1;
    s->first_done = 1;
  }

  int cfd = cowned ? cowned_fd : dup_socket(env, cfd_d);
  if (cfd < 0) {
    if (owned) close(owned_fd);
    free(s);
    return NULL;
  }
#undef DROP_OWNED
  int sfd = owned ? owned_fd : dup_socket(env, sfd_d);
  if (sfd < 0) {
    close(cfd);
    free(s);
    return NULL;
  }
  if (!slot_take(pl, s)) {
    close(cfd);
    close(sfd);
    free(s);
    throw_errno(env, "session table", ENOMEM);
    return NULL;
  }
  uv_mutex_lock(&ln->lock);
  end_open(s, CLIENT, cfd);
  end_open(s, SERVER, sfd);
  /* In lane 0's epoll since connect(): the first update() is an EPOLL_CTL_MOD (no mask it computes
   * has EPOLLONESHOT). Sessions start on lane 0 (lane_for_new). */
  if (owned) s->end[SERVER].mask = ((uint64_t)sfd_d & CONN_NOW) ? 0 : EPOLLOUT | EPOLLONESHOT;
  /* An accepted client is in lane 0's epoll too, watched for a reset since accept_ready. */
  if (cowned) s->end[CLIENT].mask = EPOLLONESHOT;
  int ok = 1, e = 0;
  /* Node has just read what the client sent, and the server has not had the request yet: a recv on
   * either now would return EAGAIN. Wait for the first readable event (level-triggered: bytes or a
   * FIN already there are reported at once). */
  s->end[CLIENT].rd_ready = s->end[SERVER].rd_ready = 0;
  if (head_len > 0 && (ln->copy_reads || s->framed)) {
    /* Bytes Node read before the hand-off (the request held while connecting, an accept stage's
     * peek): sent from memory on the first wake-up and recorded like a copy read (one send, no pipe). */
    if ((s->c2s.buf = malloc(head_len)) == NULL) {
      e = ENOMEM;
      ok = 0;
    } else {
      memcpy(s->c2s.buf, head, head_len);
      s->c2s.blen = head_len;
      s->c2s.in += head_len;
      if (s->framed) {
        ln->now = s->last_activity;
        framed_in(s, CLIENT, s->c2s.buf, head_len); /* handing off: pump sends nothing of it */
      } else {
        on_client_bytes(s, head_len, s->c2s.buf);
      }
    }
  } else if (head_len > 0) {
    /* Bytes Node read before the hand-off (an accept stage's peek): into the c2s pipe with write(),
     * then recorded like any client bytes. */
    if (!pipe_get(ln, &s->c2s.p, head_len > (size_t)ln->pipe_size ? pipe_cap_for(head_len) : 0, 1)) {
      e = errno;
      ok = 0;
    } else {
      ssize_t w = write(s->c2s.p.w, head, head_len);
      if (w != (ssize_t)head_len) {
        e = w < 0 ? errno : ENOSPC;
        s->c2s.len = w > 0 ? (size_t)w : 0;
        ok = 0;
      } else {
        s->c2s.len = head_len;
        s->c2s.in += head_len;
        if (!s->first_done) first_bytes(s, (const char *)head, head_len);
        on_client_bytes(s, head_len, NULL);
      }
    }
  }
  if (ok) {
    /* Into the lane's epoll (read interest both sides; write interest on the server for a head):
     * the lane is woken by the kernel when there is something to do, not by this call. */
    update(s);
    if (s->state == S_CLOSED) {
      e = errno ? errno : EIO;
      ok = 0;
    }
  }
  if (!ok) {
    /* Not seen by the lane (out of epoll again, if it got in): freed at once. What update() may
     * have queued names a slot that is free again, so it is never delivered. */
    session_close(s, R_INTERNAL_ERROR, 0);
    uv_mutex_unlock(&ln->lock);
    slot_free(pl, s);
    free(s);
    throw_errno(env, "attach", e);
    return NULL;
  }
  ln->live++;
  /* A framed session's head it does not follow queued a hand-off: delivered on the next loop
   * turn, as a call's own pump's events are (nothing else would wake the delivery). */
  if (ln->out.n > 0 && !ln->threaded) uv_idle_start(pl->idle, on_idle);
  /* A client the plane accepted has most likely sent its request by now (nothing read it): move
   * it at once, as the lane would on its next wake-up, rather than wait for that wake-up. */
  if (cowned && s->state != S_CLOSED) {
    s->end[CLIENT].rd_ready = 1;
    api_pump(pl, s);
  }
  uv_mutex_unlock(&ln->lock);
  if (pl->live == 1) uv_ref((uv_handle_t *)pl->async);
  napi_value out;
  napi_create_double(env, s->id, &out);
  return out;
}

/* replaceServer(id, fd) → bytes re-sent */
static napi_value js_replace_server(napi_env env, napi_callback_info info) {
  GET_ARGS(2)
  if (argc < 2) return NULL;
  session_t *s = arg_session(env, pl, argv[0]);
  if (s == NULL) return NULL;
  double fd_d;
  if (!arg_double(env, argv[1], &fd_d)) return NULL;
  int fd = dup_socket(env, fd_d);
  if (fd < 0) return NULL;
  lane_t *ln = s->ln;
  uv_mutex_lock(&ln->lock);
  if (s->state == S_CLOSED) {
    uv_mutex_unlock(&ln->lock);
    close(fd);
    napi_throw_error(env, "ERR_NATIVE_PLANE_CLOSED",
                     "the session has closed (its close event follows): nothing to move");
    return NULL;
  }
  int replayable = s->replay_max > 0 && s->recording;
  if (s->unanswered > 0 && !replayable) {
    uv_mutex_unlock(&ln->lock);
    close(fd);
    napi_throw_error(env, "ERR_NATIVE_PLANE_NOT_REPLAYABLE",
                     "the unanswered client bytes were not all recorded (replay overflow): "
                     "the session cannot move to another server");
    return NULL;
  }

  size_t resend = 0;
  if (replayable && s->replay_len > 0 && !record_to_pipe(s)) {
    int e = errno ? errno : EIO;
    uv_mutex_unlock(&ln->lock);
    close(fd);
    throw_errno(env, "replay pipe", e);
    return NULL;
  }
  if (replayable && s->replay_len > 0) {
    /* The c2s pipe (or buffer) holds a suffix of the replay pipe: drop it, send the whole record
     * again, and keep a copy (tee into a fresh replay pipe of the same size) for the next failover. */
    free_buf(&s->c2s);
    pipe_t fresh = {-1, -1, 0};
    int have_fresh = pipe_get(ln, &fresh, s->replay.cap, 1);
    ssize_t t = -1;
    if (have_fresh) {
      do t = tee(s->replay.r, fresh.w, s->replay_len, SPLICE_F_NONBLOCK);
      while (t < 0 && errno == EINTR);
    } else if (fresh.r >= 0) {
      pipe_put(ln, &fresh);
    }
    pipe_drop(ln, &s->c2s.p, s->c2s.len);
    s->c2s.p = s->replay;
    s->c2s.len = s->replay_len;
    resend = s->replay_len;
    if (have_fresh && t == (ssize_t)s->replay_len) {
      s->replay = fresh;
    } else {
      if (have_fresh) pipe_drop(ln, &fresh, t > 0 ? (size_t)t : 0);
      s->replay.r = s->replay.w = -1;
      s->replay.cap = 0;
      s->replay_len = 0;
      s->recording = 0;
      s->overflows++;
    }
  }
  end_close(s, SERVER);
  end_open(s, SERVER, fd);
  s->state = S_ACTIVE;
  if (!s->s2c.fin_sent) s->s2c.in_done = 0; /* a client already given its FIN gets no more bytes */
  s->c2s.fin_sent = 0;
  s->pass_fin = !s->hold_server_eof;
  s->failovers++;
  s->server_gen++;
  s->replayed += resend;
  api_pump(pl, s);
  uv_mutex_unlock(&ln->lock);
  napi_value out;
  napi_create_double(env, (double)resend, &out);
  return out;
}

/* shutdownClient(id): no more server bytes; the FIN goes to the client after what is in flight. */
static napi_value js_shutdown_client(napi_env env, napi_callback_info info) {
  GET_ARGS(1)
  session_t *s = arg_session(env, pl, argv[0]);
  if (s == NULL) return NULL;
  uv_mutex_lock(&s->ln->lock);
  if (s->state != S_CLOSED) {
    s->s2c.in_done = 1;
    s->pass_fin = 1;
    api_pump(pl, s);
  }
  uv_mutex_unlock(&s->ln->lock);
  return NULL;
}

static napi_value js_pause(napi_env env, napi_callback_info info) {
  GET_ARGS(2)
  session_t *s = arg_session(env, pl, argv[0]);
  if (s == NULL) return NULL;
  bool paused = true;
  if (argc >= 2) napi_get_value_bool(env, argv[1], &paused);
  uv_mutex_lock(&s->ln->lock);
  if (s->state != S_CLOSED) {
    s->paused = paused;
    if (!paused) s->end[CLIENT].rd_ready = s->end[SERVER].rd_ready = 1;
    api_pump(pl, s);
  }
  uv_mutex_unlock(&s->ln->lock);
  return NULL;
}

/* close(id, resetClient?): both descriptors closed now, and the session released (no event
 * follows). With resetClient the client gets an RST, not a FIN (SO_LINGER 0): a server's reset that
 * cannot be hidden must not look like a clean end. false for a session already released. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  GET_ARGS(2)
  double id;
  if (!arg_double(env, argv[0], &id)) return NULL;
  bool reset = false;
  if (argc >= 2) napi_get_value_bool(env, argv[1], &reset);
  session_t *s = lookup(pl, id);
  napi_value out;
  napi_get_boolean(env, s != NULL, &out);
  if (s != NULL) {
    uv_mutex_lock(&s->ln->lock);
    if (s->state != S_CLOSED) {
      if (reset && s->end[CLIENT].fd >= 0) {
        struct linger l = {1, 0};
        setsockopt(s->end[CLIENT].fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      }
      session_close(s, R_CLOSED, 0);
    }
    uv_mutex_unlock(&s->ln->lock);
    release(pl, s);
  }
  return out;
}

static int set_buffer(napi_env env, napi_value arr, uint32_t k, const char *data, size_t n) {
  napi_value v;
  if (n == 0) napi_get_undefined(env, &v);
  else if (napi_create_buffer_copy(env, n, data, NULL, &v) != napi_ok) return 0;
  return napi_set_element(env, arr, k, v) == napi_ok;
}

/*
 * detach(id) → [clientFd, serverFd, clientHistory, clientUnsent, serverHistory, serverUnsent]:
 * a framed session leaves the plane for JavaScript (after its EV_HANDOFF, or when JavaScript needs
 * it: a bound, a move). The descriptors are the caller's (-1: none); each side's history is the
 * bytes read since the last clean point, and its unsent bytes those read and not yet written on
 * (the history's tail, or, past a clean point, more). Buffers are undefined when empty. The
 * session is released: no event follows.
 */
static napi_value js_detach(napi_env env, napi_callback_info info) {
  GET_ARGS(1)
  session_t *s = arg_session(env, pl, argv[0]);
  if (s == NULL) return NULL;
  lane_t *ln = s->ln;
  uv_mutex_lock(&ln->lock);
  if (s->state == S_CLOSED || !s->framed) {
    uv_mutex_unlock(&ln->lock);
    napi_throw_error(env, "ERR_NATIVE_PLANE_CLOSED", "not a framed session that is open: nothing to detach");
    return NULL;
  }
  s->handing = 1;
  napi_value out, v;
  int ok = napi_create_array_with_length(env, 6, &out) == napi_ok;
  for (int side = CLIENT; side <= SERVER; side++) {
    end_t *e = &s->end[side];
    end_watch(s, side, 0);
    napi_create_int32(env, e->fd, &v);
    if (ok) ok = napi_set_element(env, out, (uint32_t)side, v) == napi_ok;
    if (!ok && e->fd >= 0) close(e->fd);
    e->fd = -1;
    e->mask = 0;
  }
  if (ok)
    ok = set_buffer(env, out, 2, s->hist[CLIENT].b, s->hist[CLIENT].len) &&
         set_buffer(env, out, 3, s->c2s.buf + s->c2s.boff, s->c2s.blen) &&
         set_buffer(env, out, 4, s->hist[SERVER].b, s->hist[SERVER].len) &&
         set_buffer(env, out, 5, s->s2c.buf + s->s2c.boff, s->s2c.blen);
  s->state = S_CLOSED;
  release_all(s);
  uv_mutex_unlock(&ln->lock);
  release(pl, s);
  return ok ? out : NULL;
}

/*
 * followProbe(resp, limit, sides, chunks) → followed: the boundary follower alone, for tests that
 * hold it against the JavaScript framers (tests/native/follow-agreement.test.ts). A fresh http1
 * (resp false) or resp state is fed the chunks in order, chunks[k] read from sides[k] (0 client, 1
 * server); followed[k] is how many bytes of chunks[k] it followed, and feeding stops at the first
 * chunk not followed whole (the rest are -1). No session, no socket.
 */
static napi_value js_follow_probe(napi_env env, napi_callback_info info) {
  GET_ARGS(4)
  (void)pl;
  if (argc < 4) return NULL;
  bool is_resp = false;
  double limit = 0;
  napi_get_value_bool(env, argv[0], &is_resp);
  if (!arg_double(env, argv[1], &limit)) return NULL;
  uint32_t n = 0, m = 0;
  if (napi_get_array_length(env, argv[2], &n) != napi_ok || napi_get_array_length(env, argv[3], &m) != napi_ok || n != m) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "sides and chunks: arrays of one length");
    return NULL;
  }
  /* A session that is only its followers' state: no descriptors, no lane, never pumped. */
  session_t *s = calloc(1, sizeof(session_t));
  if (s == NULL) {
    throw_errno(env, "calloc", ENOMEM);
    return NULL;
  }
  s->resp = is_resp;
  follow_limit(s, limit);
  napi_value out;
  napi_create_array_with_length(env, n, &out);
  int stopped = 0;
  for (uint32_t k = 0; k < n; k++) {
    napi_value side_v, chunk_v, r;
    int32_t side = 0;
    void *data = NULL;
    size_t len = 0;
    napi_get_element(env, argv[2], k, &side_v);
    napi_get_element(env, argv[3], k, &chunk_v);
    napi_get_value_int32(env, side_v, &side);
    if (napi_get_buffer_info(env, chunk_v, &data, &len) != napi_ok) {
      free(s);
      napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "chunks must be Buffers");
      return NULL;
    }
    double followed = -1;
    if (!stopped) {
      size_t clean = (size_t)-1;
      size_t ok = follow(s, side == CLIENT ? CLIENT : SERVER, data, len, &clean);
      followed = (double)ok;
      if (ok < len) stopped = 1;
    }
    napi_create_double(env, followed, &r);
    napi_set_element(env, out, k, r);
  }
  free(s);
  return out;
}

/* Under the lane's lock. */
static void fill_stats(const session_t *s, double *d) {
  d[ST_FROM_CLIENT] = (double)s->c2s.in;
  d[ST_TO_SERVER] = (double)s->c2s.out;
  d[ST_FROM_SERVER] = (double)s->s2c.in;
  d[ST_TO_CLIENT] = (double)s->s2c.out;
  d[ST_LAST_ACTIVITY] = (double)s->last_activity;
  d[ST_REPLAY_BYTES] = (double)s->replay_len;
  d[ST_UNANSWERED] = (double)s->unanswered;
  d[ST_SERVER_SINCE_REQ] = (double)s->server_since_req;
  d[ST_REPLAYABLE] = s->replay_max > 0 && s->recording ? 1 : 0;
  d[ST_TURNS] = (double)s->turns;
  d[ST_FAILOVERS] = (double)s->failovers;
  d[ST_REPLAYED] = (double)s->replayed;
  d[ST_OVERFLOWS] = (double)s->overflows;
  d[ST_PIPES] = (s->c2s.p.r >= 0) + (s->s2c.p.r >= 0) + (s->replay.r >= 0);
  d[ST_C2S_PENDING] = (double)PENDING(&s->c2s);
  d[ST_S2C_PENDING] = (double)PENDING(&s->s2c);
  int fl = 0;
  if (s->c2s.in_done) fl |= FL_CLIENT_EOF;
  if (s->s2c.in_done) fl |= FL_SERVER_EOF;
  if (s->c2s.fin_sent) fl |= FL_SERVER_FIN_SENT;
  if (s->s2c.fin_sent) fl |= FL_CLIENT_FIN_SENT;
  if (s->state == S_SERVER_DOWN) fl |= FL_SERVER_DOWN;
  if (s->paused) fl |= FL_PAUSED;
  if (s->state == S_CLOSED) fl |= FL_CLOSED;
  if (s->s2c.in_done && !s->pass_fin) fl |= FL_SERVER_EOF_HELD;
  if (s->server_first) fl |= FL_SERVER_FIRST;
  if (s->client_first) fl |= FL_CLIENT_FIRST;
  if (s->handing) fl |= FL_HANDING;
  d[ST_FLAGS] = fl;
  uint64_t now = mono_ms();
  d[ST_IDLE_MS] = now > s->last_activity ? (double)(now - s->last_activity) : 0;
  d[ST_THREAD] = s->ln->index;
  d[ST_PARTIAL_MS] = s->resp && s->rs.since > 0 && now > s->rs.since ? (double)(now - s->rs.since) : 0;
}

static double *arg_f64(napi_env env, napi_value v, size_t need) {
  napi_typedarray_type type;
  size_t len;
  void *data;
  if (napi_get_typedarray_info(env, v, &type, &len, &data, NULL, NULL) != napi_ok ||
      type != napi_float64_array || len < need) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected a large enough Float64Array");
    return NULL;
  }
  return data;
}

/* stats(id, Float64Array) → false when the session is gone (stats stay readable during 'close') */
static napi_value js_stats(napi_env env, napi_callback_info info) {
  GET_ARGS(2)
  double id;
  if (argc < 2 || !arg_double(env, argv[0], &id)) return NULL;
  double *d = arg_f64(env, argv[1], ST_LENGTH);
  if (d == NULL) return NULL;
  session_t *s = lookup(pl, id);
  if (s != NULL) {
    uv_mutex_lock(&s->ln->lock);
    fill_stats(s, d);
    uv_mutex_unlock(&s->ln->lock);
  }
  napi_value out;
  napi_get_boolean(env, s != NULL, &out);
  return out;
}

static napi_value js_pool_stats(napi_env env, napi_callback_info info) {
  GET_ARGS(1)
  double *d = arg_f64(env, argv[0], PS_LENGTH);
  if (d == NULL) return NULL;
  double idle = 0, in_use = 0, created = 0, destroyed = 0, resized = 0, compactions = 0, running = 0;
  for (int i = 0; i <= MAX_THREADS; i++) {
    lane_t *ln = pl->lanes[i];
    if (ln == NULL) continue;
    uv_mutex_lock(&ln->lock);
    idle += ln->nidle;
    in_use += ln->in_use;
    created += ln->created;
    destroyed += ln->destroyed;
    resized += ln->resized;
    compactions += ln->compactions;
    uv_mutex_unlock(&ln->lock);
    running += ln->running;
  }
  d[PS_IDLE] = idle;
  d[PS_IN_USE] = in_use;
  d[PS_CREATED] = created;
  d[PS_DESTROYED] = destroyed;
  d[PS_RESIZED] = resized;
  d[PS_MAX_IDLE] = pl->max_idle;
  d[PS_PIPE_SIZE] = pl->pipe_size;
  d[PS_SESSIONS] = pl->live;
  d[PS_COMPACTIONS] = compactions;
  d[PS_THREADS] = pl->threads;
  d[PS_RUNNING] = running;
  return NULL;
}

/* configure(maxIdlePipes, pipeSize, copyReads, threads); -1 (or 0 for pipeSize) leaves a setting as
 * it is. A lower pipe bound closes the idle pipes above it at once; a new pipe size applies to
 * pipes taken from now on (idle ones of another size are resized on reuse). `threads` applies to
 * new sessions: a thread the configuration no longer has ends with its last session. */
static napi_value js_configure(napi_env env, napi_callback_info info) {
  GET_ARGS(5)
  double max_idle, size;
  if (argc < 2 || !arg_double(env, argv[0], &max_idle) || !arg_double(env, argv[1], &size)) return NULL;
  double copy = -1, threads = -1, now = -1;
  if (argc >= 3 && !arg_double(env, argv[2], &copy)) return NULL;
  if (argc >= 4 && !arg_double(env, argv[3], &threads)) return NULL;
  if (argc >= 5 && !arg_double(env, argv[4], &now)) return NULL;
  if (now >= 0) pl->connect_now = now > 0;
  if (threads != -1 && !(threads >= 0 && threads <= MAX_THREADS && threads == (double)(int)threads)) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "threads must be an integer from 0 to 64");
    return NULL;
  }
  if (max_idle >= 0 && max_idle <= 1048576) __atomic_store_n(&pl->max_idle, (uint32_t)max_idle, __ATOMIC_RELAXED);
  if (size > 0) {
    int cap = pipe_cap_for((size_t)size);
    pl->pipe_size = cap < 4096 ? 4096 : cap;
  }
  if (copy >= 0) pl->copy_reads = copy > 0;
  if (threads >= 0) pl->threads = (int)threads;
  for (int i = 0; i <= MAX_THREADS; i++) {
    lane_t *ln = pl->lanes[i];
    if (ln == NULL) continue;
    uv_mutex_lock(&ln->lock);
    lane_settings(ln);
    uv_mutex_unlock(&ln->lock);
    if (ln->threaded && ln->index > pl->threads && ln->live == 0 && ln->running) {
      lane_stop(ln);
      uv_mutex_lock(&ln->lock);
      grave_free(ln);
      uv_mutex_unlock(&ln->lock);
    }
  }
  return NULL;
}

static napi_value js_set_callback(napi_env env, napi_callback_info info) {
  GET_ARGS(1)
  napi_valuetype t;
  if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "callback must be a function");
    return NULL;
  }
  if (pl->callback != NULL) napi_delete_reference(env, pl->callback);
  napi_create_reference(env, argv[0], 1, &pl->callback);
  return NULL;
}

/* ------------------------------------------------------------------------------------------------
 * Teardown */

static void plane_free(plane_t *pl) {
  free(pl->slots);
  free(pl->gens);
  free(pl->free_slots);
  free(pl->spare.v);
  free(pl);
}

/* One of our uv handles finished closing; at env teardown the last one lets Node go on. */
static void handle_closed(plane_t *pl) {
  pl->handles_open--;
  if (pl->shutting_down && pl->handles_open == 0 && pl->cleanup != NULL) {
    napi_async_cleanup_hook_handle c = pl->cleanup;
    plane_free(pl);
    napi_remove_async_cleanup_hook(c);
  }
}

/* Env teardown (process exit, a worker thread ending): join the threads, close every session,
 * pipe and descriptor, close the handles, then let Node go on. */
static void on_cleanup(napi_async_cleanup_hook_handle handle, void *arg) {
  plane_t *pl = arg;
  for (int i = 1; i <= MAX_THREADS; i++)
    if (pl->lanes[i] != NULL) lane_stop(pl->lanes[i]);
  pl->shutting_down = 1; /* no thread left: pipes are closed, not pooled, from here */
  pl->cleanup = handle;
  for (uint32_t i = 0; i < pl->nslots; i++) {
    session_t *s = pl->slots[i];
    if (s == NULL) continue;
    session_close(s, R_CLOSED, 0);
    free(s);
    pl->slots[i] = NULL;
  }
  for (int i = 0; i <= MAX_THREADS; i++) {
    lane_t *ln = pl->lanes[i];
    if (ln == NULL) continue;
    if (ln->poll != NULL) {
      ln->poll->data = pl;
      uv_close((uv_handle_t *)ln->poll, on_handle_closed);
      ln->poll = NULL;
    }
    lane_free(ln);
    pl->lanes[i] = NULL;
  }
  if (pl->devnull >= 0) close(pl->devnull);
  pl->devnull = -1;
  if (pl->callback != NULL) napi_delete_reference(pl->env, pl->callback);
  if (pl->resource != NULL) napi_delete_reference(pl->env, pl->resource);
  if (pl->async_ctx != NULL) napi_async_destroy(pl->env, pl->async_ctx);
  pl->callback = pl->resource = NULL;
  pl->async_ctx = NULL;
  uv_close((uv_handle_t *)pl->async, on_handle_closed);
  pl->async = NULL;
  uv_close((uv_handle_t *)pl->idle, on_handle_closed);
  pl->idle = NULL;
  /* from here the last handle_closed() frees `pl` and removes the hook */
}

static napi_value init(napi_env env, napi_value exports) {
  plane_t *pl = calloc(1, sizeof(plane_t));
  if (pl == NULL) return NULL;
  pl->env = env;
  pl->devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (napi_get_uv_event_loop(env, &pl->loop) != napi_ok || pl->devnull < 0) {
    napi_throw_error(env, "ERR_NATIVE_PLANE_INIT", "no event loop or no /dev/null");
    return NULL;
  }
  pl->async = malloc(sizeof(uv_async_t));
  if (pl->async == NULL || uv_async_init(pl->loop, pl->async, on_async) != 0) {
    napi_throw_error(env, "ERR_NATIVE_PLANE_INIT", "uv_async_init failed");
    return NULL;
  }
  pl->async->data = pl;
  uv_unref((uv_handle_t *)pl->async); /* referenced while sessions live, as their sockets would be */
  pl->idle = malloc(sizeof(uv_idle_t));
  if (pl->idle == NULL || uv_idle_init(pl->loop, pl->idle) != 0) {
    napi_throw_error(env, "ERR_NATIVE_PLANE_INIT", "uv_idle_init failed");
    return NULL;
  }
  pl->idle->data = pl;
  pl->handles_open = 2;
  pl->max_idle = 1024;
  pl->copy_reads = 1;
  pl->connect_now = 1;
  {
    unsigned cpus = uv_available_parallelism();
    pl->threads = cpus < 1 ? 1 : cpus > MAX_THREADS ? MAX_THREADS : (int)cpus;
  }
  {
    int fds[2];
    pl->default_pipe_size = 65536;
    if (pipe2(fds, O_CLOEXEC) == 0) {
      int c = fcntl(fds[0], F_GETPIPE_SZ);
      if (c > 0) pl->default_pipe_size = c;
      close(fds[0]);
      close(fds[1]);
    }
    pl->pipe_size = pl->default_pipe_size;
  }
  napi_value resource, name;
  napi_create_object(env, &resource);
  napi_create_reference(env, resource, 1, &pl->resource);
  napi_create_string_utf8(env, "baton:native-plane", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, resource, name, &pl->async_ctx);
  napi_add_async_cleanup_hook(env, on_cleanup, pl, NULL);

  napi_property_descriptor props[] = {
      {"setCallback", NULL, js_set_callback, NULL, NULL, NULL, napi_enumerable, pl},
      {"attach", NULL, js_attach, NULL, NULL, NULL, napi_enumerable, pl},
      {"connect", NULL, js_connect, NULL, NULL, NULL, napi_enumerable, pl},
      {"cancelConnect", NULL, js_cancel_connect, NULL, NULL, NULL, napi_enumerable, pl},
      {"localName", NULL, js_local_name, NULL, NULL, NULL, napi_enumerable, pl},
      {"listen", NULL, js_listen, NULL, NULL, NULL, napi_enumerable, pl},
      {"unlisten", NULL, js_unlisten, NULL, NULL, NULL, napi_enumerable, pl},
      {"resumeAccept", NULL, js_resume_accept, NULL, NULL, NULL, napi_enumerable, pl},
      {"forgetAccepted", NULL, js_forget_accepted, NULL, NULL, NULL, napi_enumerable, pl},
      {"replaceServer", NULL, js_replace_server, NULL, NULL, NULL, napi_enumerable, pl},
      {"shutdownClient", NULL, js_shutdown_client, NULL, NULL, NULL, napi_enumerable, pl},
      {"pause", NULL, js_pause, NULL, NULL, NULL, napi_enumerable, pl},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, pl},
      {"detach", NULL, js_detach, NULL, NULL, NULL, napi_enumerable, pl},
      {"followProbe", NULL, js_follow_probe, NULL, NULL, NULL, napi_enumerable, pl},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_enumerable, pl},
      {"poolStats", NULL, js_pool_stats, NULL, NULL, NULL, napi_enumerable, pl},
      {"configure", NULL, js_configure, NULL, NULL, NULL, napi_enumerable, pl},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_value v;
  napi_create_string_utf8(env, PLANE_VERSION, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, exports, "version", v);
  napi_create_int32(env, ST_LENGTH, &v);
  napi_set_named_property(env, exports, "statsLength", v);
  napi_create_int32(env, PS_LENGTH, &v);
  napi_set_named_property(env, exports, "poolStatsLength", v);
  napi_create_int32(env, MAX_THREADS, &v);
  napi_set_named_property(env, exports, "maxThreads", v);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
